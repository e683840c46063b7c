// The Accelerator's checkpoints: SaveState, LoadState, SaveModel (see
// accelerator.h for the contract and checkpoint/ for the formats).

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "accelerator/internal/data_parallel.h"
#include "checkpoint/folder.h"
#include "checkpoint/inspect.h"
#include "checkpoint/model_state.h"
#include "checkpoint/optimizer_state.h"
#include "checkpoint/rng_state.h"
#include "checkpoint/scheduler_state.h"
#include "bigmodel/safetensors_parts.h"
#include "bigmodel/torch_file.h"
#include "checkpoint/sharded_state.h"
#include "checkpoint/torch_file.h"
#include "precision/fp8_linear.h"
#include "state/collectives.h"
#include "state/logging.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"
#include "trackers/progress_bar.h"

namespace accelerate {
namespace {

namespace fs = std::filesystem;
using Dict = c10::Dict<c10::IValue, c10::IValue>;

Dict NewDict() { return Dict(c10::AnyType::get(), c10::AnyType::get()); }

// Accelerate's numbering: "optimizer.bin", "optimizer_1.bin", ...
std::string Numbered(const std::string& stem, size_t i,
                     const std::string& extension) {
  return i == 0 ? absl::StrCat(stem, extension)
                : absl::StrCat(stem, "_", i, extension);
}

std::string RandomStatesName(int process) {
  return absl::StrCat("random_states_", process, ".pkl");
}

// A status as text for a gather: "ok", or "<code>\t<message>".
std::string EncodeStatus(const absl::Status& status) {
  return status.ok() ? std::string("ok")
                     : absl::StrCat(static_cast<int>(status.code()), "\t",
                                    status.message());
}

// `EncodeStatus`'s text back, the message prefixed "process <p>: " when
// `name_process`.
absl::Status DecodeStatus(absl::string_view text, size_t process,
                          bool name_process) {
  if (text == "ok") return absl::OkStatus();
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(text, absl::MaxSplits('\t', 1));
  int code = static_cast<int>(absl::StatusCode::kUnknown);
  (void)absl::SimpleAtoi(parts.first, &code);
  return absl::Status(
      static_cast<absl::StatusCode>(code),
      name_process ? absl::StrCat("process ", process, ": ", parts.second)
                   : std::string(parts.second));
}

// Every process's `mine`; the first failure (naming its process) when any
// failed. Collective.
absl::Status Agree(const state::PartialState& state, const absl::Status& mine) {
  ACCELERATE_ASSIGN_OR_RETURN(std::vector<std::string> all,
                              state::GatherObject(state, EncodeStatus(mine)));
  for (size_t p = 0; p < all.size(); ++p) {
    absl::Status status = DecodeStatus(all[p], p, state.num_processes() > 1);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

// A file a process wrote into the staging folder.
struct WrittenFile {
  std::string name;
  uint64_t bytes = 0;
  std::string kind;
};

// "ok\n<name>\t<bytes>\t<kind>\n..." or the failure's `EncodeStatus`.
std::string EncodeReport(const absl::StatusOr<std::vector<WrittenFile>>& files) {
  if (!files.ok()) return EncodeStatus(files.status());
  std::string out = "ok";
  for (const WrittenFile& file : *files) {
    absl::StrAppend(&out, "\n", file.name, "\t", file.bytes, "\t", file.kind);
  }
  return out;
}

absl::StatusOr<std::vector<WrittenFile>> DecodeReport(const std::string& text,
                                                      int process) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (lines[0] != "ok") return DecodeStatus(text, process, true);
  std::vector<WrittenFile> files;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> parts = absl::StrSplit(lines[i], '\t');
    WrittenFile file;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[1], &file.bytes)) {
      return absl::InternalError(absl::StrCat("bad save report: ", lines[i]));
    }
    file.name = parts[0];
    file.kind = parts[2];
    files.push_back(std::move(file));
  }
  return files;
}

// One file of the checkpoint that any process may write.
struct SharedItem {
  std::string name;
  std::string kind;
  // Whether its content is the same on every process (else the main
  // process writes it).
  bool replicated = true;
  std::function<absl::Status(const std::string& path)> write;
};

// Reads a part of a tensor of `parts` (false for a tensor it lacks).
sharding::ReadPart ReaderOf(const bigmodel::SafetensorsParts& parts) {
  return [&parts](const std::string& name, int64_t start,
                  at::Tensor dest) -> absl::StatusOr<bool> {
    if (!parts.Contains(name)) return false;
    ACCELERATE_RETURN_IF_ERROR(parts.Read(name, start, dest));
    return true;
  };
}

// The engine's views of this process's parts, as the files hold them.
std::vector<checkpoint::TensorPart> ToTensorParts(
    std::vector<sharding::TensorPartView> views) {
  std::vector<checkpoint::TensorPart> parts;
  for (sharding::TensorPartView& view : views) {
    parts.push_back({std::move(view.name), std::move(view.shape), view.start,
                     std::move(view.values)});
  }
  return parts;
}

// A FULL_SHARD model's parts from a sharded checkpoint (SHARDED_STATE_DICT,
// written by any number of processes), and its buffers, whole. Strict, as
// LoadModelState: every parameter and buffer, and nothing else.
absl::Status LoadModelParts(torch::nn::Module& model,
                            sharding::FullyShardedModel& sharded,
                            const bigmodel::SafetensorsParts& parts) {
  std::set<std::string> expected;
  for (const auto& item : model.named_parameters()) expected.insert(item.key());
  for (const auto& item : model.named_buffers()) expected.insert(item.key());
  std::vector<std::string> unexpected;
  for (const std::string& name : parts.names()) {
    if (expected.count(name) == 0) unexpected.push_back(name);
  }
  if (!unexpected.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sharded checkpoint: unexpected tensors ",
        absl::StrJoin(unexpected, ", "), " (not in the model)"));
  }
  ACCELERATE_RETURN_IF_ERROR(sharded.LoadParameterParts(
      [&](const std::string& name) { return parts.shape(name); },
      ReaderOf(parts)));
  for (const auto& item : model.named_buffers()) {
    ACCELERATE_ASSIGN_OR_RETURN(at::Tensor whole, parts.ReadWhole(item.key()));
    if (!whole.sizes().equals(item.value().sizes())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sharded checkpoint: buffer ", item.key(), " has shape ",
          c10::str(whole.sizes()), "; the model's is ",
          c10::str(item.value().sizes())));
    }
    ACCELERATE_RETURN_IF_ERROR(state::RunGuarded("loading a buffer", [&] {
      torch::NoGradGuard no_grad;
      item.value().copy_(whole);
    }));
  }
  return absl::OkStatus();
}

// The parts of an optimizer's state from `<stem>.rank-*` files of `dir`
// (the step counts in their metadata as "step.<id>").
absl::Status LoadOptimizerParts(torch::optim::Optimizer& optimizer,
                                sharding::FullyShardedModel& sharded,
                                const std::string& dir,
                                const std::string& stem) {
  ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<bigmodel::SafetensorsParts> parts,
                              bigmodel::SafetensorsParts::Open(dir, stem));
  std::map<int64_t, int64_t> steps;
  for (const auto& [key, value] : parts->metadata()) {
    int64_t id = 0;
    int64_t step = 0;
    if (!absl::StartsWith(key, "step.")) continue;
    if (!absl::SimpleAtoi(key.substr(5), &id) ||
        !absl::SimpleAtoi(value, &step)) {
      return absl::DataLossError(absl::StrCat(
          stem, ": malformed step entry \"", key, "\": \"", value, "\""));
    }
    steps[id] = step;
  }
  return sharded.LoadOptimizerParts(
      optimizer, steps,
      ReaderOf(*parts));
}

// Sets `initial_lr` in each group of `optimizer_state` (Python's
// structure) from `base_lrs`, one per group; nothing when they differ in
// number.
void AddInitialLrs(const c10::IValue& optimizer_state,
                   const std::vector<double>& base_lrs) {
  c10::List<c10::IValue> groups =
      optimizer_state.toGenericDict().at("param_groups").toList();
  if (groups.size() != base_lrs.size()) return;
  for (size_t g = 0; g < groups.size(); ++g) {
    groups.get(g).toGenericDict().insert_or_assign("initial_lr", base_lrs[g]);
  }
}

absl::StatusOr<std::vector<WrittenFile>> WriteItems(
    const std::vector<const SharedItem*>& items, const std::string& staging,
    const SaveStateOptions& options) {
  std::vector<WrittenFile> written;
  for (const SharedItem* item : items) {
    const std::string path = (fs::path(staging) / item->name).string();
    if (options.on_stage) options.on_stage("writing " + item->name);
    ACCELERATE_RETURN_IF_ERROR(item->write(path));
    ACCELERATE_ASSIGN_OR_RETURN(uint64_t bytes, checkpoint::FileSize(path));
    if (options.on_stage) options.on_stage("wrote " + item->name);
    written.push_back({item->name, bytes, item->kind});
  }
  return written;
}

}  // namespace

c10::IValue Accelerator::ProcessState() const {
  Dict states = NewDict();
  states.insert("step", gradients_.step());
  checkpoint::AddGeneratorStates(states);
  Dict ours = NewDict();
  ours.insert("version", int64_t{1});
  ours.insert("num_processes", int64_t{state_->num_processes()});
  ours.insert("sync_gradients", gradients_.sync_gradients());
  c10::List<c10::IValue> loaders(c10::AnyType::get());
  for (const auto& weak : loaders_) {
    std::shared_ptr<data::PreparedDataLoader> loader = weak.lock();
    if (loader == nullptr) {
      loaders.push_back(c10::IValue());
      continue;
    }
    const data::LoaderState position = loader->state();
    Dict entry = NewDict();
    entry.insert("epoch", position.epoch);
    entry.insert("batches_done", position.batches_done);
    entry.insert("seed", static_cast<int64_t>(position.seed));
    loaders.push_back(entry);
  }
  ours.insert("loaders", loaders);
  c10::List<c10::IValue> counters(c10::AnyType::get());
  for (const auto& optimizer : optimizers_) {
    Dict entry = NewDict();
    entry.insert("steps_taken", optimizer->steps_taken());
    entry.insert("step_was_skipped", optimizer->step_was_skipped());
    counters.push_back(entry);
  }
  ours.insert("optimizers", counters);
  // Gradients being accumulated: this process's own.
  c10::List<c10::IValue> gradients(c10::AnyType::get());
  for (const auto& model : model_order_) {
    c10::Dict<std::string, at::Tensor> grads;
    for (const auto& item : model->named_parameters()) {
      if (item.value().grad().defined()) {
        grads.insert(item.key(), item.value().grad());
      }
    }
    gradients.push_back(grads);
  }
  ours.insert("gradients", gradients);
  ours.insert("fp8_scales", Fp8ScalesState());
  states.insert("accelerate_cpp", ours);
  return states;
}

absl::Status Accelerator::RestoreProcessState(
    const std::string& source, const checkpoint::CheckpointReport& report) {
  try {
    return RestoreProcessStateUnguarded(source, report);
  } catch (const std::exception& e) {  // A field of the wrong type.
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    return absl::DataLossError(absl::StrCat(
        (fs::path(source) / RandomStatesName(state_->process_index())).string(),
        " does not hold what it should: ", what));
  }
}

absl::Status Accelerator::RestoreProcessStateUnguarded(
    const std::string& source, const checkpoint::CheckpointReport& report) {
  const std::string own = RandomStatesName(state_->process_index());
  const std::string own_path = (fs::path(source) / own).string();
  absl::StatusOr<c10::IValue> states = bigmodel::LoadTorchFile(own_path);
  if (!states.ok()) {
    if (report.has_manifest && state_->process_index() < report.num_processes) {
      return states.status();
    }
    ACCELERATE_LOG(WARNING)
        << "could not load random states from " << own_path << " ("
        << states.status().message()
        << "); generators, loader positions and the accumulation step "
           "start afresh";
    return absl::OkStatus();
  }
  if (!states->isGenericDict()) {
    return absl::DataLossError(absl::StrCat(own_path, " is not a dict"));
  }
  Dict dict = states->toGenericDict();
  ACCELERATE_RETURN_IF_ERROR(checkpoint::RestoreGeneratorStates(dict, own));
  // Python Accelerate's file: the step and torch's generators are restored
  // above and below; Python's and NumPy's generators have no counterpart.
  if (dict.contains("random_state") || dict.contains("numpy_random_seed")) {
    ACCELERATE_LOG(WARNING)
        << own_path << " holds Python's and NumPy's generator states "
           "(random_state, numpy_random_seed), which have no LibTorch "
           "counterpart: not restored";
  }
  auto ours_it = dict.find("accelerate_cpp");
  int64_t step = 0;
  if (auto found = dict.find("step");
      found != dict.end() && found->value().isInt()) {
    step = found->value().toInt();
  }
  bool sync = step % gradients_.accumulation_steps() == 0;
  if (ours_it == dict.end() || !ours_it->value().isGenericDict()) {
    gradients_.Restore(step, sync);
    return absl::OkStatus();
  }
  Dict ours = ours_it->value().toGenericDict();
  if (auto found = ours.find("sync_gradients");
      found != ours.end() && found->value().isBool()) {
    sync = found->value().toBool();
  }
  gradients_.Restore(step, sync);
  const bool same_world =
      report.num_processes == state_->num_processes();
  if (auto found = ours.find("loaders"); found != ours.end() &&
                                         found->value().isList()) {
    c10::List<c10::IValue> saved = found->value().toList();
    if (!same_world && !saved.empty()) {
      ACCELERATE_LOG(WARNING)
          << "checkpoint " << source << " was saved by "
          << report.num_processes << " processes, not "
          << state_->num_processes()
          << ": loader positions are per process and are not restored";
    }
    for (size_t i = 0; same_world && i < saved.size() && i < loaders_.size();
         ++i) {
      std::shared_ptr<data::PreparedDataLoader> loader = loaders_[i].lock();
      if (loader == nullptr || !saved.get(i).isGenericDict()) continue;
      Dict entry = saved.get(i).toGenericDict();
      data::LoaderState position;
      position.epoch = entry.at("epoch").toInt();
      position.batches_done = entry.at("batches_done").toInt();
      position.seed = static_cast<uint64_t>(entry.at("seed").toInt());
      absl::Status restored = loader->Restore(position);
      if (!restored.ok()) {
        return absl::Status(restored.code(),
                            absl::StrCat(own, ": loader ", i, ": ",
                                         restored.message()));
      }
    }
  }
  if (auto found = ours.find("optimizers"); found != ours.end() &&
                                            found->value().isList()) {
    c10::List<c10::IValue> saved = found->value().toList();
    for (size_t i = 0; i < saved.size() && i < optimizers_.size(); ++i) {
      if (!saved.get(i).isGenericDict()) continue;
      Dict entry = saved.get(i).toGenericDict();
      optimizers_[i]->RestoreCounters(entry.at("steps_taken").toInt(),
                                      entry.at("step_was_skipped").toBool());
    }
  }
  if (auto found = ours.find("fp8_scales"); found != ours.end()) {
    ACCELERATE_RETURN_IF_ERROR(RestoreFp8Scales(found->value(), own));
  }
  if (auto found = ours.find("gradients"); found != ours.end() &&
                                           found->value().isList()) {
    c10::List<c10::IValue> saved = found->value().toList();
    for (size_t i = 0; i < saved.size() && i < model_order_.size(); ++i) {
      if (!saved.get(i).isGenericDict()) continue;
      Dict grads = saved.get(i).toGenericDict();
      for (const auto& item : model_order_[i]->named_parameters()) {
        at::Tensor& grad = item.value().mutable_grad();
        auto g = grads.find(item.key());
        if (g == grads.end()) {
          grad = at::Tensor();
          continue;
        }
        const at::Tensor value = g->value().toTensor();
        if (!value.sizes().equals(item.value().sizes())) {
          return absl::InvalidArgumentError(absl::StrCat(
              own, ": the gradient of ", item.key(), " has shape ",
              c10::str(value.sizes()), ", its parameter ",
              c10::str(item.value().sizes())));
        }
        grad = value.to(item.value().device(), item.value().scalar_type());
      }
    }
  }
  return absl::OkStatus();
}

c10::IValue Accelerator::Fp8ScalesState() const {
  c10::List<c10::IValue> layers(c10::AnyType::get());
  for (const auto& weak : fp8_layers_) {
    auto layer =
        std::dynamic_pointer_cast<precision::Fp8LinearImpl>(weak.lock());
    if (layer == nullptr || layer->scales() == nullptr) {
      layers.push_back(c10::IValue());
      continue;
    }
    Dict scales = NewDict();
    auto add = [&](const char* name, const precision::DelayedScale& scale) {
      const precision::DelayedScale::Saved saved = scale.Save();
      Dict entry = NewDict();
      entry.insert("history", saved.history);
      entry.insert("scale", saved.scale);
      entry.insert("updates", saved.updates);
      entry.insert("pending", saved.pending);
      scales.insert(name, entry);
    };
    add("input", layer->scales()->input);
    add("weight", layer->scales()->weight);
    add("grad_output", layer->scales()->grad_output);
    layers.push_back(scales);
  }
  return layers;
}

absl::Status Accelerator::RestoreFp8Scales(const c10::IValue& saved,
                                          const std::string& source) {
  if (!saved.isList()) return absl::OkStatus();
  const c10::List<c10::IValue> layers = saved.toList();
  for (size_t i = 0; i < layers.size() && i < fp8_layers_.size(); ++i) {
    auto layer =
        std::dynamic_pointer_cast<precision::Fp8LinearImpl>(fp8_layers_[i].lock());
    if (layer == nullptr || layer->mutable_scales() == nullptr ||
        !layers.get(i).isGenericDict()) {
      continue;
    }
    Dict scales = layers.get(i).toGenericDict();
    precision::Fp8LayerScales& ours = *layer->mutable_scales();
    for (auto [name, scale] :
         {std::pair<const char*, precision::DelayedScale*>{"input", &ours.input},
          {"weight", &ours.weight},
          {"grad_output", &ours.grad_output}}) {
      auto found = scales.find(name);
      if (found == scales.end() || !found->value().isGenericDict()) continue;
      Dict entry = found->value().toGenericDict();
      absl::Status restored = scale->Restore(
          {entry.at("history").toTensor(), entry.at("scale").toTensor(),
           entry.at("updates").toInt(), entry.at("pending").toBool()});
      if (!restored.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": fp8 layer ", i, " ", name, ": ", restored.message()));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bigmodel::NamedTensors> Accelerator::GetStateDict(
    const torch::nn::Module& model) {
  sharding::FullyShardedModel* sharded = FullyShardedFor(model);
  if (sharded == nullptr) return checkpoint::ModelStateDict(model);
  ACCELERATE_RETURN_IF_ERROR(sharded->Unshard());
  bigmodel::NamedTensors weights;
  absl::Status copied = state::RunGuarded("copying the gathered weights", [&] {
    for (auto& [name, tensor] : checkpoint::ModelStateDict(model)) {
      weights.emplace_back(name, tensor.clone());
    }
  });
  absl::Status resharded = sharded->Reshard();
  if (!copied.ok()) return copied;
  if (!resharded.ok()) return resharded;
  return weights;
}

std::pair<sharding::FullyShardedModel*, size_t>
Accelerator::ShardedCheckpointModel() {
  if (!options_.sharding->sharded_state_dict) return {nullptr, 0};
  std::vector<size_t> found;
  for (size_t i = 0; i < model_order_.size(); ++i) {
    if (FullyShardedFor(*model_order_[i]) != nullptr) found.push_back(i);
  }
  if (found.size() == 1) {
    return {FullyShardedFor(*model_order_[found[0]]), found[0]};
  }
  static std::atomic<bool> warned{false};
  if (found.size() > 1 && !warned.exchange(true)) {
    ACCELERATE_LOG(WARNING)
        << "SHARDED_STATE_DICT with " << found.size()
        << " FULL_SHARD models: checkpoints are written in the unsharded "
           "layout (FULL_STATE_DICT)";
  }
  return {nullptr, 0};
}

absl::StatusOr<std::shared_ptr<void>> Accelerator::UnshardForCheckpoint(
    const sharding::FullyShardedModel* keep_sharded) {
  // What was unsharded, undone in reverse order by the handle's deleter.
  struct Undo {
    std::vector<sharding::ShardedOptimizer*> optimizers;
    std::vector<std::pair<sharding::FullyShardedModel*,
                          torch::optim::Optimizer*>>
        model_optimizers;
    std::vector<sharding::FullyShardedModel*> models;
  };
  auto undo = std::make_shared<Undo>();
  const auto reshard = [](const Undo& all) {
    for (sharding::ShardedOptimizer* sharded : all.optimizers) {
      absl::Status cut = sharded->Reshard();
      ACCELERATE_CHECK(cut.ok()) << "resharding the optimizer state: " << cut;
    }
    for (const auto& [model, optimizer] : all.model_optimizers) {
      absl::Status cut = model->ReshardOptimizer(*optimizer);
      ACCELERATE_CHECK(cut.ok()) << "resharding the optimizer state: " << cut;
    }
    for (sharding::FullyShardedModel* model : all.models) {
      absl::Status cut = model->Reshard();
      ACCELERATE_CHECK(cut.ok()) << "resharding the parameters: " << cut;
    }
  };
  absl::Status status;
  for (const auto& model : model_order_) {
    sharding::FullyShardedModel* sharded = FullyShardedFor(*model);
    if (sharded == nullptr || sharded == keep_sharded) continue;
    status = sharded->Unshard();
    if (!status.ok()) break;
    undo->models.push_back(sharded);
    for (const auto& optimizer : optimizers_) {
      status = sharded->UnshardOptimizer(optimizer->optimizer());
      if (!status.ok()) break;
      undo->model_optimizers.emplace_back(sharded, &optimizer->optimizer());
    }
    if (!status.ok()) break;
  }
  for (const auto& optimizer : optimizers_) {
    if (!status.ok()) break;
    sharding::ShardedOptimizer* sharded = optimizer->mutable_sharded();
    if (sharded == nullptr) continue;
    status = sharded->Unshard();
    if (status.ok()) undo->optimizers.push_back(sharded);
  }
  if (!status.ok()) {
    reshard(*undo);
    return ShardingError(status);
  }
  // Its deleter runs when the last copy goes, on every path out.
  return std::shared_ptr<void>(nullptr,
                               [reshard, undo](void*) { reshard(*undo); });
}

absl::StatusOr<std::string> Accelerator::SaveState(
    const std::string& dir, const SaveStateOptions& options) {
  checkpoint::ProjectConfiguration& project = options_.project_config;
  std::string target = dir;
  if (project.automatic_checkpoint_naming) {
    target = checkpoint::AutomaticCheckpointFolder(project);
  } else if (target.empty()) {
    return absl::InvalidArgumentError(
        "SaveState: no folder given and project_config."
        "automatic_checkpoint_naming is off");
  }
  const std::string staging = checkpoint::StagingFolder(target);
  const int rank = state_->process_index();
  const int world = state_->num_processes();

  // 1. The main process readies the staging folder; everyone waits for it.
  absl::Status staged;
  if (state_->is_main_process()) {
    if (project.automatic_checkpoint_naming && fs::exists(target)) {
      absl::StatusOr<checkpoint::CheckpointReport> report =
          checkpoint::InspectCheckpoint(target);
      if (report.ok() && report->complete) {
        staged = absl::FailedPreconditionError(absl::StrCat(
            "checkpoint folder ", target, " (iteration ", project.iteration,
            ") already exists; set project_config.iteration to the "
            "iteration to start from"));
      }
    }
    if (staged.ok()) staged = checkpoint::RecreateFolder(staging);
  }
  ACCELERATE_RETURN_IF_ERROR(Agree(*state_, staged));
  if (options.on_stage) options.on_stage("staged");

  for (const auto& weak : stream_loaders_) {
    if (!weak.expired()) {
      ACCELERATE_LOG(WARNING)
          << "SaveState: a stream loader's position is not saved; after "
             "LoadState it starts its epoch from the stream's start";
      break;
    }
  }

  // Sharded parameters and optimizer state are written whole, in
  // Accelerate's layout (FSDP's FULL_STATE_DICT): gathered for the
  // writing, cut back after; under SHARDED_STATE_DICT a FULL_SHARD model
  // and the optimizers' state are written as each process's parts.
  const auto [parts_model, parts_index] = ShardedCheckpointModel();
  ACCELERATE_ASSIGN_OR_RETURN(const std::shared_ptr<void> reshard,
                              UnshardForCheckpoint(parts_model));

  // 2. What goes in: the shared files, spread over the processes.
  std::vector<bigmodel::NamedTensors> weights;
  bool all_synced = true;
  for (size_t i = 0; i < model_order_.size(); ++i) {
    const auto& model = model_order_[i];
    const DataParallel& dp = *models_.at(model.get());
    all_synced = all_synced && dp.sync_enabled();
    if (parts_model != nullptr && i == parts_index) {
      weights.emplace_back();  // Its parts are written below.
      continue;
    }
    // Unprefixed even with several processes: Python Accelerate saves and
    // loads the model it was given, not its DDP wrapper (`_models` keeps
    // the bare module), so its `load_state` refuses "module." names.
    weights.push_back(checkpoint::ModelStateDict(*model));
  }
  absl::Status hooks;
  for (const SaveStateHook& hook : save_hooks_) {
    absl::Status ran = state::RunGuarded("a save-state hook", [&] {
      hooks = hook(model_order_, weights, staging);
    });
    if (!ran.ok()) hooks = ran;
    if (!hooks.ok()) break;
  }
  ACCELERATE_RETURN_IF_ERROR(Agree(*state_, hooks));

  std::vector<SharedItem> shared;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i].empty()) continue;  // A hook saves it.
    shared.push_back({Numbered("model", i, ".safetensors"), "model", true,
                      [&, i](const std::string& path) {
                        return checkpoint::SaveModelState(path, weights[i]);
                      }});
  }
  for (size_t i = 0; i < optimizers_.size(); ++i) {
    shared.push_back(
        {Numbered("optimizer", i, ".bin"), "optimizer", true,
         [&, i](const std::string& path) -> absl::Status {
           ACCELERATE_ASSIGN_OR_RETURN(
               c10::IValue value,
               checkpoint::OptimizerStateDict(optimizers_[i]->optimizer()));
           if (parts_model != nullptr) {
             // The state is in each process's parts file.
             value.toGenericDict().insert_or_assign(
                 "state", c10::impl::GenericDict(c10::IntType::get(),
                                                 c10::AnyType::get()));
           }
           // A Python scheduler writes `initial_lr` (the learning rate its
           // schedule starts from) into each group of its optimizer, so
           // Python's optimizer.bin holds it, and Python needs it to build
           // a scheduler that resumes at a `last_epoch`. The first
           // scheduler of this optimizer sets it, as in Python.
           for (const auto& s : schedulers_) {
             if (s->optimizer() != optimizers_[i].get()) continue;
             AddInitialLrs(value, s->base_lrs());
             break;
           }
           return checkpoint::SaveTorchFile(path, value);
         }});
  }
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    shared.push_back(
        {Numbered("scheduler", i, ".bin"), "scheduler", true,
         [&, i](const std::string& path) -> absl::Status {
           const PreparedScheduler& s = *schedulers_[i];
           if (s.optimizer() == nullptr) {
             return absl::FailedPreconditionError(
                 "a scheduler prepared without its optimizer cannot be saved");
           }
           return checkpoint::SaveTorchFile(
               path, checkpoint::SchedulerStateDict(
                         s.scheduler(), s.optimizer()->optimizer(),
                         {.skipped_calls = s.skipped_calls(),
                          .base_lrs = s.base_lrs()}));
         }});
  }
  if (scaler_ != nullptr) {
    shared.push_back({"scaler.pt", "scaler", true,
                      [&](const std::string& path) {
                        const precision::GradScalerState s = scaler_->State();
                        Dict dict = NewDict();
                        dict.insert("scale", s.scale);
                        dict.insert("growth_factor", s.growth_factor);
                        dict.insert("backoff_factor", s.backoff_factor);
                        dict.insert("growth_interval", s.growth_interval);
                        dict.insert("_growth_tracker", s.growth_tracker);
                        return checkpoint::SaveTorchFile(path, dict);
                      }});
  }
  for (size_t i = 0; i < custom_objects_.size(); ++i) {
    shared.push_back({absl::StrCat("custom_checkpoint_", i, ".pkl"), "custom",
                      false, [&, i](const std::string& path) -> absl::Status {
                        c10::IValue value;
                        ACCELERATE_RETURN_IF_ERROR(state::RunGuarded(
                            absl::StrCat("custom_checkpoint_", i, " state_dict"),
                            [&] { value = custom_objects_[i].state_dict(); }));
                        return checkpoint::SaveTorchFile(path, value);
                      }});
  }
  std::vector<const SharedItem*> mine;
  for (size_t k = 0; k < shared.size(); ++k) {
    const int writer =
        all_synced && shared[k].replicated ? static_cast<int>(k % world) : 0;
    if (writer == rank) mine.push_back(&shared[k]);
  }
  // This process's own files.
  std::vector<SharedItem> own;
  own.push_back({RandomStatesName(rank), "random_states", false,
                 [&](const std::string& path) {
                   return checkpoint::SaveTorchFile(path, ProcessState());
                 }});
  if (parts_model != nullptr) {
    const torch::nn::Module& model = *model_order_[parts_index];
    own.push_back(
        {bigmodel::PartFileName(Numbered("model", parts_index, ""), rank,
                                   world),
         "model", false, [&](const std::string& path) {
           std::vector<checkpoint::TensorPart> parts =
               ToTensorParts(parts_model->ParameterParts());
           // Buffers are whole on every process: the main process's go in.
           if (rank == 0) {
             for (const auto& item : model.named_buffers()) {
               parts.push_back({item.key(), item.value().sizes().vec(), 0,
                                item.value().detach().reshape({-1})});
             }
           }
           return checkpoint::SaveShardFile(path, parts);
         }});
    for (size_t i = 0; i < optimizers_.size(); ++i) {
      own.push_back(
          {bigmodel::PartFileName(Numbered("optimizer", i, ""), rank,
                                     world),
           "optimizer", false, [&, i](const std::string& path) {
             std::vector<sharding::TensorPartView> views;
             std::map<int64_t, int64_t> steps;
             ACCELERATE_RETURN_IF_ERROR(parts_model->OptimizerParts(
                 optimizers_[i]->optimizer(), &views, &steps));
             std::vector<checkpoint::TensorPart> parts =
                 ToTensorParts(std::move(views));
             std::map<std::string, std::string> metadata;
             for (const auto& [id, step] : steps) {
               metadata[absl::StrCat("step.", id)] = absl::StrCat(step);
             }
             return checkpoint::SaveShardFile(path, parts, metadata);
           }});
    }
  }
  for (const SharedItem& item : own) mine.push_back(&item);

  // 3. Every process writes its files and reports.
  absl::StatusOr<std::vector<WrittenFile>> written =
      WriteItems(mine, staging, options);
  ACCELERATE_ASSIGN_OR_RETURN(
      std::vector<std::string> reports,
      state::GatherObject(*state_, EncodeReport(written)));
  checkpoint::CheckpointManifest manifest;
  absl::Status all_written;
  for (size_t p = 0; p < reports.size() && all_written.ok(); ++p) {
    absl::StatusOr<std::vector<WrittenFile>> files =
        DecodeReport(reports[p], static_cast<int>(p));
    if (!files.ok()) {
      all_written = files.status();
      break;
    }
    for (const WrittenFile& file : *files) {
      checkpoint::CheckpointFile* entry = manifest.add_files();
      entry->set_name(file.name);
      entry->set_bytes(file.bytes);
      entry->set_process(static_cast<int>(p));
      entry->set_kind(file.kind);
    }
  }
  if (!all_written.ok()) {
    if (state_->is_main_process()) (void)checkpoint::RemoveTree(staging);
    return all_written;
  }
  if (options.on_stage) options.on_stage("agreed");

  // 4. The main process lists it all and renames the folder into place.
  absl::Status committed;
  if (state_->is_main_process()) {
    std::set<std::string> listed;
    for (const auto& file : manifest.files()) listed.insert(file.name());
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(staging, error)) {
      const std::string name = entry.path().filename();
      if (!entry.is_regular_file() || listed.count(name) > 0) continue;
      // Written by a save hook.
      committed = checkpoint::SyncPath(entry.path().string());
      if (!committed.ok()) break;
      checkpoint::CheckpointFile* file = manifest.add_files();
      file->set_name(name);
      file->set_bytes(entry.file_size());
      file->set_process(0);
      file->set_kind(checkpoint::KindOfFile(name));
    }
    manifest.set_format(checkpoint::kManifestFormat);
    manifest.set_version(1);
    manifest.set_num_processes(world);
    manifest.set_iteration(project.iteration);
    if (committed.ok()) committed = checkpoint::WriteManifest(staging, manifest);
    if (committed.ok()) {
      if (options.on_stage) options.on_stage("committing");
      committed = checkpoint::CommitFolder(staging, target);
    }
    if (committed.ok() && options.on_stage) options.on_stage("committed");
    if (committed.ok() && project.automatic_checkpoint_naming) {
      absl::StatusOr<std::vector<std::string>> removed =
          checkpoint::PruneCheckpoints(
              {.project_dir = project.project_dir,
               .total_limit = project.total_limit});
      if (!removed.ok()) {
        ACCELERATE_LOG(WARNING) << "total_limit: " << removed.status();
      } else if (!removed->empty()) {
        ACCELERATE_LOG(INFO) << "total_limit " << *project.total_limit
                             << ": removed " << removed->size()
                             << " older checkpoint(s)";
      }
    }
    if (!committed.ok()) (void)checkpoint::RemoveTree(staging);
  }
  ACCELERATE_RETURN_IF_ERROR(Agree(*state_, committed));
  ++project.iteration;
  return target;
}

absl::StatusOr<std::string> Accelerator::LoadState(
    const std::string& dir, const LoadStateOptions& options) {
  const checkpoint::ProjectConfiguration& project = options_.project_config;
  std::string source = dir;
  if (source.empty()) {
    if (!project.automatic_checkpoint_naming) {
      return absl::InvalidArgumentError(
          "LoadState: no folder given and project_config."
          "automatic_checkpoint_naming is off");
    }
    ACCELERATE_ASSIGN_OR_RETURN(
        source,
        checkpoint::LatestCheckpoint(checkpoint::CheckpointsFolder(project)));
  }
  // A FULL_SHARD model saved as parts (SHARDED_STATE_DICT, by any number
  // of processes) takes its parts of them, and so does its optimizers'
  // state; no gathering.
  sharding::FullyShardedModel* parts_model = nullptr;
  size_t parts_index = 0;
  std::unique_ptr<bigmodel::SafetensorsParts> model_parts;
  absl::Status parts_error;
  for (size_t i = 0; i < model_order_.size() && parts_model == nullptr; ++i) {
    sharding::FullyShardedModel* sharded = FullyShardedFor(*model_order_[i]);
    if (sharded == nullptr) continue;
    absl::StatusOr<std::unique_ptr<bigmodel::SafetensorsParts>> opened =
        bigmodel::SafetensorsParts::Open(source, Numbered("model", i, ""));
    if (opened.ok()) {
      parts_model = sharded;
      parts_index = i;
      model_parts = *std::move(opened);
    } else if (!absl::IsNotFound(opened.status())) {
      parts_error = opened.status();  // Reported below, by every process.
    }
  }
  // Sharded optimizers take the whole state of the file, then their
  // slices of it (every process, before anything can fail apart).
  ACCELERATE_ASSIGN_OR_RETURN(const std::shared_ptr<void> reshard,
                              UnshardForCheckpoint(parts_model));
  absl::Status loaded = [&]() -> absl::Status {
    ACCELERATE_ASSIGN_OR_RETURN(checkpoint::CheckpointReport report,
                                checkpoint::InspectCheckpoint(source));
    if (!report.complete) {
      return absl::DataLossError(
          absl::StrCat("checkpoint ", source, " is incomplete: ",
                       report.problems.front()));
    }
    auto path = [&](const std::string& name) {
      return (fs::path(source) / name).string();
    };
    std::vector<std::shared_ptr<torch::nn::Module>> models = model_order_;
    std::optional<trackers::ProgressBar> bar;
    if (options.progress_bar) {
      bar.emplace(static_cast<int64_t>(models.size() + optimizers_.size() +
                                       schedulers_.size() +
                                       (scaler_ != nullptr) +
                                       custom_objects_.size()),
                  state_.get(),
                  trackers::ProgressBarOptions{.description =
                                                   "loading checkpoint"});
    }
    const auto loaded_one = [&] {
      if (bar.has_value()) bar->Update();
    };
    for (const LoadStateHook& hook : load_hooks_) {
      absl::Status hooked;
      ACCELERATE_RETURN_IF_ERROR(state::RunGuarded(
          "a load-state hook", [&] { hooked = hook(models, source); }));
      ACCELERATE_RETURN_IF_ERROR(hooked);
    }
    ACCELERATE_RETURN_IF_ERROR(parts_error);
    for (size_t i = 0; i < models.size(); ++i) {
      if (models[i] == nullptr) continue;
      if (parts_model != nullptr && i == parts_index) {
        ACCELERATE_RETURN_IF_ERROR(
            LoadModelParts(*models[i], *parts_model, *model_parts));
        loaded_one();
        continue;
      }
      // As Python: model.safetensors, else the legacy pytorch_model.bin
      // (`safe_serialization=False`).
      std::string weights = path(Numbered("model", i, ".safetensors"));
      const std::string legacy = path(Numbered("pytorch_model", i, ".bin"));
      if (!fs::exists(weights) && fs::exists(legacy)) weights = legacy;
      ACCELERATE_RETURN_IF_ERROR(
          checkpoint::LoadModelState(*models[i], weights));
      loaded_one();
    }
    for (size_t i = 0; i < optimizers_.size(); ++i) {
      const std::string name = Numbered("optimizer", i, ".bin");
      ACCELERATE_ASSIGN_OR_RETURN(
          c10::IValue value,
          bigmodel::LoadTorchFile(path(name),
                                  {.map_file = options.map_files}));
      ACCELERATE_RETURN_IF_ERROR(checkpoint::LoadOptimizerStateDict(
          optimizers_[i]->optimizer(), value, name));
      if (parts_model != nullptr) {
        ACCELERATE_RETURN_IF_ERROR(LoadOptimizerParts(
            optimizers_[i]->optimizer(), *parts_model, source,
            Numbered("optimizer", i, "")));
      }
      loaded_one();
    }
    for (size_t i = 0; i < schedulers_.size(); ++i) {
      const std::string name = Numbered("scheduler", i, ".bin");
      ACCELERATE_ASSIGN_OR_RETURN(c10::IValue value,
                                  bigmodel::LoadTorchFile(path(name)));
      PreparedScheduler& s = *schedulers_[i];
      ACCELERATE_ASSIGN_OR_RETURN(
          checkpoint::SchedulerCounts counts,
          checkpoint::LoadSchedulerStateDict(s.scheduler(), value, name));
      s.RestoreCounters(checkpoint::SchedulerSteps(s.scheduler()),
                        counts.skipped_calls, std::move(counts.base_lrs));
      loaded_one();
    }
    if (scaler_ != nullptr) {
      ACCELERATE_ASSIGN_OR_RETURN(c10::IValue value,
                                  bigmodel::LoadTorchFile(path("scaler.pt")));
      if (!value.isGenericDict()) {
        return absl::DataLossError(
            absl::StrCat(path("scaler.pt"), " is not a dict"));
      }
      Dict dict = value.toGenericDict();
      auto number = [&](const char* key) -> absl::StatusOr<double> {
        auto found = dict.find(key);
        if (found == dict.end() ||
            !(found->value().isDouble() || found->value().isInt())) {
          return absl::InvalidArgumentError(
              absl::StrCat("scaler.pt: ", key, " is missing or not a number"));
        }
        return found->value().isInt()
                   ? static_cast<double>(found->value().toInt())
                   : found->value().toDouble();
      };
      precision::GradScalerState s;
      ACCELERATE_ASSIGN_OR_RETURN(s.scale, number("scale"));
      ACCELERATE_ASSIGN_OR_RETURN(s.growth_factor, number("growth_factor"));
      ACCELERATE_ASSIGN_OR_RETURN(s.backoff_factor, number("backoff_factor"));
      ACCELERATE_ASSIGN_OR_RETURN(const double interval,
                                  number("growth_interval"));
      ACCELERATE_ASSIGN_OR_RETURN(const double tracker,
                                  number("_growth_tracker"));
      s.growth_interval = static_cast<int64_t>(interval);
      s.growth_tracker = static_cast<int64_t>(tracker);
      ACCELERATE_RETURN_IF_ERROR(scaler_->LoadState(s));
      loaded_one();
    }
    size_t custom_files = 0;
    for (const auto& file : report.files) custom_files += file.kind == "custom";
    if (custom_files != custom_objects_.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint ", source, " holds ", custom_files,
          " custom checkpoints; ", custom_objects_.size(),
          " objects are registered for checkpointing"));
    }
    for (size_t i = 0; i < custom_objects_.size(); ++i) {
      const std::string name = absl::StrCat("custom_checkpoint_", i, ".pkl");
      ACCELERATE_ASSIGN_OR_RETURN(c10::IValue value,
                                  bigmodel::LoadTorchFile(path(name)));
      absl::Status restored;
      ACCELERATE_RETURN_IF_ERROR(state::RunGuarded(
          absl::StrCat(name, " load_state_dict"),
          [&] { restored = custom_objects_[i].load_state_dict(value); }));
      ACCELERATE_RETURN_IF_ERROR(restored);
      loaded_one();
    }
    return RestoreProcessState(source, report);
  }();
  ACCELERATE_RETURN_IF_ERROR(Agree(*state_, loaded));
  // The next automatic checkpoint follows the one loaded (Accelerate would
  // stop at the existing folder instead).
  checkpoint::ProjectConfiguration& config = options_.project_config;
  if (config.automatic_checkpoint_naming) {
    if (std::optional<int64_t> number =
            checkpoint::CheckpointNumber(fs::path(source).filename())) {
      config.iteration = std::max(config.iteration, *number + 1);
    }
  }
  return source;
}

absl::Status Accelerator::SaveModel(const torch::nn::Module& model,
                                    const std::string& dir,
                                    uint64_t max_shard_bytes) {
  // A FULL_SHARD model's weights are gathered on every process first.
  sharding::FullyShardedModel* sharded = FullyShardedFor(model);
  if (sharded != nullptr) ACCELERATE_RETURN_IF_ERROR(sharded->Unshard());
  absl::Status saved;
  if (state_->is_main_process()) {
    saved = [&]() -> absl::Status {
      std::error_code error;
      if (fs::exists(dir, error) && !fs::is_directory(dir, error)) {
        return absl::InvalidArgumentError(
            absl::StrCat("SaveModel: ", dir, " is a file, not a folder"));
      }
      fs::create_directories(dir, error);
      if (error) {
        return absl::PermissionDeniedError(absl::StrCat(
            "SaveModel: cannot create ", dir, ": ", error.message()));
      }
      for (const auto& item : model.named_parameters()) {
        if (item.value().device().is_meta()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "SaveModel: parameter ", item.key(),
              " is on the meta device (load its weights first)"));
        }
      }
      // Stale shards of an earlier save (a different shard count).
      for (const auto& entry : fs::directory_iterator(dir, error)) {
        const std::string name = entry.path().filename();
        if (entry.is_regular_file() &&
            ((name.rfind("model-", 0) == 0 &&
              name.find("-of-") != std::string::npos) ||
             name == "model.safetensors" ||
             name == "model.safetensors.index.json")) {
          fs::remove(entry.path(), error);
        }
      }
      return bigmodel::SaveShardedSafetensors(
          dir, checkpoint::ModelStateDict(model),
          {.max_shard_bytes = max_shard_bytes});
    }();
  }
  if (sharded != nullptr) {
    absl::Status resharded = sharded->Reshard();
    if (saved.ok()) saved = resharded;
  }
  return Agree(*state_, saved);
}

}  // namespace accelerate
