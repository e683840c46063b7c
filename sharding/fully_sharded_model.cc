#include "sharding/fully_sharded_model.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <typeinfo>
#include <unordered_set>
#include <utility>
#include <vector>

#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/graph_task.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/torch.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sharding/internal/optimizer_state.h"
#include "sharding/internal/slice_broadcasts.h"
#include "state/collectives.h"
#include "state/logging.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::sharding {
namespace {

using ::accelerate::sharding_internal::Bytes;

bool InBackward() { return torch::autograd::get_current_graph_task_id() != -1; }

// The state kind of `optimizer`, or Unimplemented naming it for `what`.
absl::StatusOr<sharding_internal::StateKind> KindFor(
    const torch::optim::Optimizer& optimizer, const std::string& what) {
  std::optional<sharding_internal::StateKind> kind =
      sharding_internal::KindOf(optimizer);
  if (!kind.has_value()) {
    return absl::UnimplementedError(absl::StrCat(
        what, " of ", typeid(optimizer).name(), " (only SGD, Adam and AdamW)"));
  }
  return *std::move(kind);
}

std::string UnitLabel(const std::string& name) {
  return name.empty() ? std::string("the root module") : "\"" + name + "\"";
}

}  // namespace

FullyShardedModel::FullyShardedModel(std::shared_ptr<torch::nn::Module> model,
                                     const state::PartialState& state,
                                     const FullyShardedOptions& options)
    : model_(std::move(model)),
      state_(state),
      options_(options),
      shard_group_(state.process_group()),
      world_(state.num_processes()),
      rank_(state.process_index()) {}

absl::StatusOr<std::unique_ptr<FullyShardedModel>> FullyShardedModel::Create(
    std::shared_ptr<torch::nn::Module> model, const state::PartialState& state,
    const FullyShardedOptions& options) {
  if (model == nullptr) {
    return absl::InvalidArgumentError("FullyShardedModel needs a model");
  }
  std::unique_ptr<FullyShardedModel> sharded(
      new FullyShardedModel(model, state, options));
  FullyShardedModel& self = *sharded;

  // Units: the root, then the listed submodules.
  std::vector<std::string> names = {""};
  {
    std::unordered_set<std::string> modules;
    for (const auto& item : model->named_modules()) modules.insert(item.key());
    for (const std::string& name : options.units) {
      if (name.empty() ||
          std::find(names.begin(), names.end(), name) != names.end()) {
        continue;
      }
      if (modules.count(name) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "FULL_SHARD unit \"", name, "\" is not a submodule of ",
            model->name()));
      }
      names.push_back(name);
    }
  }
  // Each parameter goes to the innermost unit holding it.
  std::vector<std::vector<int>> members(names.size());
  {
    std::unordered_set<const void*> seen;
    for (const auto& item : model->named_parameters()) {
      if (!seen.insert(item.value().unsafeGetTensorImpl()).second) continue;
      size_t best = 0;
      for (size_t u = 1; u < names.size(); ++u) {
        if (absl::StartsWith(item.key(), names[u] + ".") &&
            names[u].size() > names[best].size()) {
          best = u;
        }
      }
      Param param;
      param.name = item.key();
      param.tensor = item.value();
      members[best].push_back(static_cast<int>(self.params_.size()));
      self.params_.push_back(std::move(param));
    }
  }
  // With sync_module_states the main process's values are the truth: its
  // slices are scattered below, its buffers broadcast here. The other
  // processes' parameters may then be empty (on the meta device, as
  // bigmodel's InitEmptyWeights makes them): they never hold the whole
  // model (CPU-RAM-efficient loading).
  const bool scatter = options.sync_module_states && state.use_distributed();
  const bool has_values = !scatter || state.process_index() == 0;
  std::string problem;
  for (const Param& p : self.params_) {
    if (has_values && p.tensor.device().is_meta() && problem.empty()) {
      problem = absl::StrCat(
          "FULL_SHARD: parameter ", p.name, " is on the meta device",
          scatter ? " on the main process (which gives every process its "
                    "values)"
                  : " (load its weights first, or let the main process "
                    "give them: sync_module_states)");
    }
  }
  // Every process learns of one process's problem before the collectives
  // below, rather than waiting in them until the time-out.
  if (state.use_distributed()) {
    ACCELERATE_ASSIGN_OR_RETURN(std::vector<std::string> problems,
                                state::GatherObject(state, problem));
    for (size_t p = 0; p < problems.size(); ++p) {
      if (!problems[p].empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("process ", p, ": ", problems[p]));
      }
    }
  } else if (!problem.empty()) {
    return absl::InvalidArgumentError(problem);
  }
  if (scatter) {
    std::vector<at::Tensor> buffers = model->buffers();
    ACCELERATE_RETURN_IF_ERROR(state::BroadcastInPlace(state, buffers));
  }
  // HYBRID_SHARD: slices shared within blocks of processes (a node's),
  // replicated across them.
  const int world_size = state.num_processes();
  int group_size = options.shard_group_size == -1 ? state.num_local_processes()
                   : options.shard_group_size > 0 ? options.shard_group_size
                                                  : world_size;
  if (group_size <= 0 || world_size % group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sharding group of ", group_size, " processes: it must divide the ",
        world_size, " processes"));
  }
  if (group_size < world_size) {
    const int rank = state.process_index();
    const int block = rank / group_size;
    std::vector<int> shard_ranks;
    for (int r = block * group_size; r < (block + 1) * group_size; ++r) {
      shard_ranks.push_back(r);
    }
    std::vector<int> replica_ranks;
    for (int r = rank % group_size; r < world_size; r += group_size) {
      replica_ranks.push_back(r);
    }
    if (group_size > 1) {
      ACCELERATE_ASSIGN_OR_RETURN(
          self.own_shard_group_,
          state.NewGroup(shard_ranks, absl::StrCat("shard_", block)));
      self.shard_group_ = self.own_shard_group_.get();
    } else {
      self.shard_group_ = nullptr;
    }
    ACCELERATE_ASSIGN_OR_RETURN(
        self.replica_group_,
        state.NewGroup(replica_ranks,
                       absl::StrCat("replica_", rank % group_size)));
    self.world_ = group_size;
    self.rank_ = rank % group_size;
  }

  // Flat buffers, slices, parts, placeholders, gradient hooks.
  const int64_t world = self.world_;
  const int64_t rank = self.rank_;
  absl::Status laid_out = state::RunGuarded("sharding the parameters", [&] {
    torch::NoGradGuard no_grad;
    c10::InferenceMode normal(/*enabled=*/false);
    for (size_t n = 0; n < names.size(); ++n) {
      if (members[n].empty()) continue;
      const int u = static_cast<int>(self.units_.size());
      Unit unit;
      unit.name = names[n];
      unit.params = members[n];
      const at::Tensor& first = self.params_[unit.params[0]].tensor;
      int64_t total = 0;
      for (int i : unit.params) {
        Param& p = self.params_[i];
        TORCH_CHECK(p.tensor.scalar_type() == first.scalar_type() &&
                        p.tensor.device() == first.device(),
                    "FULL_SHARD unit ", UnitLabel(unit.name), " mixes ",
                    c10::toString(first.scalar_type()), " on ",
                    first.device().str(), " (", self.params_[unit.params[0]].name,
                    ") with ", c10::toString(p.tensor.scalar_type()), " on ",
                    p.tensor.device().str(), " (", p.name,
                    "): a unit needs one dtype and one device");
        p.unit = u;
        p.offset = total;
        total += p.tensor.numel();
        if (p.tensor.requires_grad()) ++unit.trainable;
      }
      unit.shard_size = std::max<int64_t>(1, (total + world - 1) / world);
      unit.gather_dtype = first.scalar_type();
      const int64_t low = rank * unit.shard_size;
      const int64_t high = low + unit.shard_size;
      self.device_ = first.device().is_meta() ? state.device() : first.device();
      const at::TensorOptions flat_options =
          first.options().device(self.device_);
      at::Tensor full;
      if (has_values) {
        full = at::zeros({unit.shard_size * world}, flat_options);
        for (int i : unit.params) {
          Param& p = self.params_[i];
          full.narrow(0, p.offset, p.tensor.numel())
              .copy_(p.tensor.detach().reshape({-1}));
        }
      }
      if (scatter) {
        // Each process's slice from the main process.
        unit.shard = at::empty({unit.shard_size}, flat_options);
        std::vector<at::Tensor> outputs = {unit.shard};
        std::vector<std::vector<at::Tensor>> inputs;
        if (state.process_index() == 0) {
          inputs.emplace_back();
          for (int r = 0; r < world_size; ++r) {
            inputs[0].push_back(full.narrow(0, (r % world) * unit.shard_size,
                                            unit.shard_size));
          }
        }
        c10d::ScatterOptions scatter_options;
        scatter_options.rootRank = 0;
        state.process_group()->scatter(outputs, inputs, scatter_options)->wait();
      } else {
        unit.shard = full.narrow(0, low, unit.shard_size).clone();
      }
      full = at::Tensor();
      if (options.offload_params && !unit.shard.device().is_cpu()) {
        // The slice lives in (pinned) CPU memory; units are gathered onto
        // the model's device.
        unit.shard = unit.shard.to(at::kCPU).pin_memory();
      }
      for (int i : unit.params) {
        Param& p = self.params_[i];
        const int64_t begin = std::max(low, p.offset);
        const int64_t end = std::min(high, p.offset + p.tensor.numel());
        p.part_at = begin < end ? begin - p.offset : 0;
        p.part = unit.shard.narrow(0, begin < end ? begin - low : 0,
                                   begin < end ? end - begin : 0)
                     .detach();
        if (p.tensor.requires_grad()) p.part.requires_grad_(true);
        p.placeholder =
            state::MakePlaceholder(p.tensor.scalar_type(), p.tensor.sizes());
        self.index_[p.tensor.unsafeGetTensorImpl()] = i;
        self.index_[p.part.unsafeGetTensorImpl()] = i;
      }
      unit.waiting = unit.trainable;
      self.units_.push_back(std::move(unit));
    }
  });
  if (!laid_out.ok()) return laid_out;
  state::InstallPlaceholderFallbackOnce();
  sharding_internal::InstallSavedTensorHooksOnce();
  for (Param& p : self.params_) {
    p.tensor.unsafeGetTensorImpl()->shallow_copy_from(p.placeholder);
    state::RegisterPlaceholderOwner(p.tensor.unsafeGetTensorImpl(), &self,
                                    p.unit);
  }
  if (options.activation_checkpointing &&
      std::none_of(self.units_.begin(), self.units_.end(),
                   [](const Unit& unit) { return !unit.name.empty(); })) {
    ACCELERATE_LOG(WARNING)
        << "activation checkpointing: the model has no unit but the root "
           "(whose forward is never checkpointed), so nothing is; pick "
           "units with an auto-wrap policy (FSDP_AUTO_WRAP_POLICY)";
  }
  if (options.activation_checkpointing) {
    // Every unit's parameters mark where a forward enters it; the root's
    // forward is not checkpointed (as Accelerate's wrapping leaves it).
    self.checkpoint_counters_ =
        std::make_shared<sharding_internal::CheckpointCounters>();
    for (const Param& p : self.params_) {
      const Unit& unit = self.units_[p.unit];
      sharding_internal::RegisterCheckpointParam(
          p.tensor.unsafeGetTensorImpl(), &self, p.unit, !unit.name.empty(),
          UnitLabel(unit.name), self.device_, self.checkpoint_counters_);
    }
  }
  return sharded;
}

FullyShardedModel::~FullyShardedModel() {
  sharding_internal::ForgetCheckpointParams(this);
  std::lock_guard<std::mutex> lock(mu_);
  // After a failed collective there is nothing to wait for (and a failed
  // send or receive, waited for again, would wait forever).
  if (!broken_.empty()) reductions_.clear();
  for (Reduction& r : reductions_) {
    for (const auto& work : r.works) {
      try {
        work->wait();
      } catch (const std::exception&) {
        // Already reported by the backward that launched it.
      }
    }
  }
  for (Param& p : params_) {
    if (p.accumulator) p.accumulator->del_post_hook(p.hook);
    state::ForgetPlaceholderOwner(p.tensor.unsafeGetTensorImpl());
  }
  for (Unit& unit : units_) {
    if (unit.installed) {
      sharding_internal::ForgetStorage(unit.full.storage().unsafeGetStorageImpl());
    }
  }
}

void FullyShardedModel::Fail(const std::string& what, const std::exception& e) {
  const auto* error = dynamic_cast<const c10::Error*>(&e);
  broken_ = absl::StrCat(what, ": ",
                         error != nullptr ? error->what_without_backtrace()
                                          : e.what());
  TORCH_CHECK(false, "accelerate FULL_SHARD: ", broken_);
}

void FullyShardedModel::StartGather(int u, bool prefetch) {
  Unit& unit = units_[u];
  c10::InferenceMode normal(/*enabled=*/false);
  torch::NoGradGuard no_grad;
  // An offloaded slice comes to the device first; under mixed precision
  // it is cast before it travels.
  const at::ScalarType dtype = GatherDtype(u);
  at::Tensor local =
      unit.shard.device() == device_ && unit.shard.scalar_type() == dtype
          ? unit.shard
          : unit.shard.to(device_, dtype, /*non_blocking=*/true);
  if (world_ == 1) {
    unit.full = local;
  } else {
    unit.full = at::empty({unit.shard_size * world_},
                          local.options());
    try {
      if (device_.is_cpu()) {
        // Broadcasts into place: gloo's all-gather copies through a buffer.
        unit.full.narrow(0, rank_ * unit.shard_size, unit.shard_size)
            .copy_(local);
        unit.gathering = sharding_internal::BroadcastSlices(
            *shard_group_, unit.full, unit.shard_size);
      } else {
        unit.gathering.push_back(
            shard_group_->_allgather_base(unit.full, local));
      }
    } catch (const std::exception& e) {
      Fail(absl::StrCat("all-gathering unit ", UnitLabel(unit.name),
                        " on process ", rank_),
           e);
    }
  }
  ++stats_.all_gathers;
  if (prefetch) ++stats_.prefetched;
}

at::ScalarType FullyShardedModel::GatherDtype(int u) {
  Unit& unit = units_[u];
  if (held_ || !options_.param_dtype.has_value()) {
    unit.gather_dtype = unit.shard.scalar_type();
  } else if (!InBackward()) {
    // In the compute dtype inside autocast regions (as the Accelerator's
    // steps are), else in full precision (an evaluation outside them);
    // backward gathers as its forward did, what the saved tensors expect.
    unit.gather_dtype = at::autocast::is_autocast_enabled(device_.type())
                            ? *options_.param_dtype
                            : unit.shard.scalar_type();
  }
  return unit.gather_dtype;
}

void FullyShardedModel::WaitForGather(int u) {
  Unit& unit = units_[u];
  if (unit.gathering.empty()) return;
  std::vector<c10::intrusive_ptr<c10d::Work>> works =
      std::move(unit.gathering);
  unit.gathering.clear();
  try {
    for (const auto& work : works) work->wait();
  } catch (const std::exception& e) {
    Fail(absl::StrCat("all-gathering unit ", UnitLabel(unit.name),
                      " on process ", rank_),
         e);
  }
}

void FullyShardedModel::EnsureGathered(int u) {
  Unit& unit = units_[u];
  if (unit.full.defined() && unit.full.scalar_type() != GatherDtype(u)) {
    ReshardUnit(u, /*write_back=*/false);  // Gathered in the other dtype.
  }
  if (unit.installed) return;
  if (!unit.full.defined()) StartGather(u, /*prefetch=*/false);
  WaitForGather(u);
  c10::InferenceMode normal(/*enabled=*/false);
  torch::NoGradGuard no_grad;
  for (int i : unit.params) {
    Param& p = params_[i];
    at::Tensor view =
        unit.full.narrow(0, p.offset, p.placeholder->numel())
            .view(p.placeholder->sizes());
    p.tensor.unsafeGetTensorImpl()->shallow_copy_from(view.getIntrusivePtr());
    if (p.tensor.requires_grad() && !p.accumulator) AttachGradientHook(i);
  }
  sharding_internal::RegisterStorage(unit.full.storage().unsafeGetStorageImpl(),
                                     this, u);
  unit.installed = true;
  if (InBackward() && sync_ && !unit.reduced) GiveGradientBuffer(u);
}

at::TensorOptions FullyShardedModel::GradientOptions(const Unit& unit) const {
  return unit.shard.options().device(device_).dtype(
      options_.reduce_dtype.value_or(unit.shard.scalar_type()));
}

void FullyShardedModel::AttachGradientHook(int i) {
  // While the parameter is real: autograd records its device and dtype.
  Param& p = params_[i];
  p.accumulator = torch::autograd::impl::grad_accumulator(p.tensor);
  p.hook = p.accumulator->add_post_hook(
      std::make_unique<torch::autograd::utils::LambdaPostHook>(
          [this, i](const torch::autograd::variable_list& outputs,
                    const torch::autograd::variable_list&) {
            OnGradient(i);
            return outputs;
          }));
}

void FullyShardedModel::GiveGradientBuffer(int u) {
  Unit& unit = units_[u];
  if (unit.grads.defined() || unit.trainable == 0) return;
  for (int i : unit.params) {
    if (params_[i].tensor.grad().defined()) return;  // accumulating (no_sync)
  }
  // The gradients accumulate into one flat buffer, which is then the
  // reduce-scatter's input (no copy, one whole-size buffer per unit).
  unit.grads = at::zeros({unit.shard_size * world_}, GradientOptions(unit));
  for (int i : unit.params) {
    Param& p = params_[i];
    if (!p.tensor.requires_grad()) continue;
    p.tensor.mutable_grad() =
        unit.grads.narrow(0, p.offset, p.placeholder->numel())
            .view(p.placeholder->sizes());
  }
}

void FullyShardedModel::ReshardUnit(int u, bool write_back) {
  Unit& unit = units_[u];
  WaitForGather(u);
  if (unit.installed) {
    if (write_back && world_ > 1) {
      torch::NoGradGuard no_grad;
      unit.shard.copy_(
          unit.full.narrow(0, rank_ * unit.shard_size, unit.shard_size));
    }
    for (int i : unit.params) {
      params_[i].tensor.unsafeGetTensorImpl()->shallow_copy_from(
          params_[i].placeholder);
    }
    sharding_internal::ForgetStorage(unit.full.storage().unsafeGetStorageImpl());
    unit.installed = false;
  }
  unit.full.reset();
}

void FullyShardedModel::Prefetch(int u) {
  if (u < 0) return;
  Unit& unit = units_[u];
  if (unit.installed || unit.full.defined()) return;
  if (!InBackward()) GatherDtype(u);  // The forward's, for its backward.
  if (in_backward_ && unit.reduced) return;
  StartGather(u, /*prefetch=*/true);
}

void FullyShardedModel::CastBuffers() {
  if (!options_.buffer_dtype.has_value() || !cast_buffers_.empty() ||
      !at::autocast::is_autocast_enabled(device_.type())) {
    return;
  }
  torch::NoGradGuard no_grad;
  c10::InferenceMode normal(/*enabled=*/false);
  for (at::Tensor& buffer : model_->buffers()) {
    const at::ScalarType own = buffer.scalar_type();
    if (!at::isFloatingType(own) || own == *options_.buffer_dtype) continue;
    cast_buffers_.emplace_back(buffer, own);
    buffer.set_data(buffer.to(*options_.buffer_dtype));
  }
}

void FullyShardedModel::RestoreBuffers() {
  torch::NoGradGuard no_grad;
  c10::InferenceMode normal(/*enabled=*/false);
  for (auto& [buffer, own] : cast_buffers_) buffer.set_data(buffer.to(own));
  cast_buffers_.clear();
}

void FullyShardedModel::Materialize(const std::vector<int>& tags) {
  std::lock_guard<std::mutex> lock(mu_);
  TORCH_CHECK(broken_.empty(), "accelerate FULL_SHARD: ", broken_);
  for (int u : tags) EnsureGathered(u);
  if (InBackward()) {
    if (options_.backward_prefetch == BackwardPrefetch::kBackwardPre) {
      Prefetch(units_[tags.back()].previous);
    }
    return;
  }
  if (held_) return;
  CastBuffers();
  if (checkpoint_counters_ != nullptr) {
    // The forward's thread records the units' operations from here on
    // (those under gradient mode).
    sharding_internal::StartRecording();
  }
  if (options_.reshard_after_forward) {
    for (int v = 1; v < static_cast<int>(units_.size()); ++v) {
      if (units_[v].installed &&
          std::find(tags.begin(), tags.end(), v) == tags.end()) {
        ReshardUnit(v, /*write_back=*/false);
      }
    }
  }
  const int u = tags.back();
  if (last_forward_ >= 0 && last_forward_ != u) {
    units_[last_forward_].next = u;
    units_[u].previous = last_forward_;
  }
  last_forward_ = u;
  if (options_.forward_prefetch) {
    int next = units_[u].next;
    if (next < 0 && u + 1 < static_cast<int>(units_.size())) next = u + 1;
    Prefetch(next);
  }
}

at::Tensor FullyShardedModel::Storage(int tag) {
  std::lock_guard<std::mutex> lock(mu_);
  TORCH_CHECK(broken_.empty(), "accelerate FULL_SHARD: ", broken_);
  EnsureGathered(tag);
  if (options_.backward_prefetch == BackwardPrefetch::kBackwardPre &&
      InBackward()) {
    Prefetch(units_[tag].previous);
  }
  return units_[tag].full;
}

void FullyShardedModel::OnGradient(int index) {
  std::lock_guard<std::mutex> lock(mu_);
  TORCH_CHECK(broken_.empty(), "accelerate FULL_SHARD: ", broken_);
  if (!in_backward_) {
    in_backward_ = true;
    torch::autograd::Engine::get_default_engine().queue_callback(
        [this] { EndBackward(); });
  }
  Param& p = params_[index];
  if (p.got_grad) return;
  p.got_grad = true;
  Unit& unit = units_[p.unit];
  if (--unit.waiting > 0) return;
  if (sync_) LaunchReduce(p.unit);
  if (!held_) ReshardUnit(p.unit, /*write_back=*/false);
  if (options_.backward_prefetch == BackwardPrefetch::kBackwardPost) {
    Prefetch(unit.previous);
  }
}

void FullyShardedModel::LaunchReduce(int u) {
  Unit& unit = units_[u];
  torch::NoGradGuard no_grad;
  at::Tensor input;
  if (unit.grads.defined()) {
    // The gradients accumulated in place (GiveGradientBuffer).
    input = std::move(unit.grads);
    unit.grads = at::Tensor();
    for (int i : unit.params) params_[i].tensor.mutable_grad().reset();
  } else {
    input = at::empty({unit.shard_size * world_}, GradientOptions(unit));
    int64_t filled = 0;  // Everything before it is written.
    for (int i : unit.params) {
      Param& p = params_[i];
      const int64_t n = p.placeholder->numel();
      const at::Tensor& grad = p.tensor.grad();
      if (p.offset > filled) input.narrow(0, filled, p.offset - filled).zero_();
      if (p.tensor.requires_grad() && grad.defined()) {
        input.narrow(0, p.offset, n).copy_(grad.reshape({-1}));
        p.tensor.mutable_grad().reset();
      } else {
        input.narrow(0, p.offset, n).zero_();
      }
      filled = p.offset + n;
    }
    if (filled < input.numel()) {
      input.narrow(0, filled, input.numel() - filled).zero_();
    }
  }
  // On one process the input is the result.
  Reduction reduction{u, {}, input, input};
  if (world_ > 1) {
    try {
      if (device_.is_cpu()) {
        // Gloo's reduce-scatter copies through buffers of its own (70 ms
        // for 64 MB on 2 processes; an all-reduce of the whole buffer, 40
        // ms). Each process sends every other one its part of the
        // gradients and adds what it receives into its own part, in place:
        // a reduce-scatter's bytes, 22 ms.
        reduction.output =
            input.narrow(0, rank_ * unit.shard_size, unit.shard_size);
        const int tag = p2p_tag_++;
        for (int64_t p = 0; p < world_; ++p) {
          if (p == rank_) continue;
          std::vector<at::Tensor> sent = {
              input.narrow(0, p * unit.shard_size, unit.shard_size)};
          reduction.works.push_back(
              shard_group_->send(sent, static_cast<int>(p), tag));
          reduction.received.push_back(
              at::empty({unit.shard_size}, input.options()));
          std::vector<at::Tensor> into = {reduction.received.back()};
          reduction.works.push_back(
              shard_group_->recv(into, static_cast<int>(p), tag));
        }
      } else {
        reduction.output = at::empty({unit.shard_size}, input.options());
        reduction.works.push_back(
            shard_group_->_reduce_scatter_base(reduction.output, input));
      }
    } catch (const std::exception& e) {
      Fail(absl::StrCat("reduce-scattering the gradients of unit ",
                        UnitLabel(unit.name), " on process ", rank_),
           e);
    }
  }
  reductions_.push_back(std::move(reduction));
  unit.reduced = true;
  ++stats_.reduce_scatters;
  // Bounded memory: on a GPU one reduction stays in flight while the next
  // unit's backward runs (the one before finished); on a CPU, where gloo
  // competes with the backward for the same cores and overlap buys little
  // (measured: 2% of a step, for 15% more peak memory), none, sparing a
  // unit's gradients.
  const size_t in_flight = device_.is_cpu() ? 0 : 1;
  while (reductions_.size() > in_flight) {
    FinishReduce(reductions_.front());
    reductions_.erase(reductions_.begin());
  }
}

void FullyShardedModel::FinishReduce(Reduction& r) {
  torch::NoGradGuard no_grad;
  if (!r.works.empty()) {
    try {
      for (const auto& work : r.works) work->wait();
    } catch (const std::exception& e) {
      Fail(absl::StrCat("reduce-scattering the gradients of unit ",
                        UnitLabel(units_[r.unit].name), " on process ", rank_),
           e);
    }
    for (const at::Tensor& part : r.received) r.output.add_(part);
    r.received.clear();
    // The sum over processes, averaged.
    r.output.div_(world_);
  }
  if (replica_group_ != nullptr) {
    // HYBRID_SHARD: then averaged over the replicas.
    try {
      std::vector<at::Tensor> tensors = {r.output};
      replica_group_->allreduce(tensors)->wait();
    } catch (const std::exception& e) {
      Fail(absl::StrCat("averaging the gradients of unit ",
                        UnitLabel(units_[r.unit].name), " across replicas"),
           e);
    }
    r.output.div_(replica_group_->getSize());
  }
  r.input = at::Tensor();
  const Unit& unit = units_[r.unit];
  const int64_t low = world_ > 1 ? rank_ * unit.shard_size : 0;
  for (int i : unit.params) {
    Param& p = params_[i];
    if (!p.tensor.requires_grad()) continue;
    const int64_t n = p.part.numel();
    at::Tensor slice =
        r.output.narrow(0, n > 0 ? p.offset + p.part_at - low : 0, n);
    if (p.part.grad().defined()) {
      p.part.mutable_grad().add_(
          slice.to(p.part.device(), p.part.scalar_type()));
    } else {
      // Its own tensor, not a view (optimizers detach gradients in
      // place); in CPU memory when offloaded, in the part's dtype.
      p.part.mutable_grad() =
          slice.to(p.part.device(), p.part.scalar_type(),
                   /*non_blocking=*/false, /*copy=*/true);
    }
  }
  r.output = at::Tensor();
}

void FullyShardedModel::EndBackward() {
  std::lock_guard<std::mutex> lock(mu_);
  in_backward_ = false;
  last_forward_ = -1;
  if (broken_.empty() && sync_) {
    // Units some of whose gradients never came (parameters the loss did
    // not reach): every process reduces them, in unit order.
    for (int u = 0; u < static_cast<int>(units_.size()); ++u) {
      if (!units_[u].reduced && units_[u].trainable > 0) LaunchReduce(u);
    }
  }
  for (Unit& unit : units_) {
    unit.reduced = false;
    unit.waiting = unit.trainable;
    // Not reduced (no_sync): the gradients stay in the parameters, views
    // of this buffer, for the next backward to add to.
    unit.grads = at::Tensor();
  }
  for (Param& p : params_) p.got_grad = false;
  for (int u = 0; u < static_cast<int>(units_.size()); ++u) {
    if (!held_) ReshardUnit(u, /*write_back=*/false);
  }
  std::vector<Reduction> reductions = std::move(reductions_);
  reductions_.clear();
  for (Reduction& r : reductions) FinishReduce(r);
  RestoreBuffers();
}

void FullyShardedModel::ReleaseGathered() {
  if (checkpoint_counters_ != nullptr) sharding_internal::EndUnitForward();
  std::lock_guard<std::mutex> lock(mu_);
  if (held_ || in_backward_) return;
  RestoreBuffers();
  for (int u = 0; u < static_cast<int>(units_.size()); ++u) {
    if (units_[u].installed || units_[u].full.defined()) {
      ReshardUnit(u, /*write_back=*/false);
    }
  }
}

void FullyShardedModel::set_sync(bool sync) {
  std::lock_guard<std::mutex> lock(mu_);
  sync_ = sync;
}

absl::Status FullyShardedModel::ShardOptimizer(
    torch::optim::Optimizer& optimizer) {
  // An optimizer of other parameters only is none of this model's concern.
  bool holds_ours = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& group : optimizer.param_groups()) {
      for (const at::Tensor& t : group.params()) {
        holds_ours = holds_ours || index_.count(t.unsafeGetTensorImpl()) > 0;
      }
    }
  }
  if (!holds_ours) return absl::OkStatus();
  if (!sharding_internal::IsElementwise(optimizer)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FULL_SHARD needs an elementwise optimizer (SGD, Adam, AdamW, "
        "RMSprop, Adagrad); ",
        typeid(optimizer).name(), " is not one"));
  }
  if (!optimizer.state().empty()) {
    return absl::FailedPreconditionError(
        "the optimizer already has state: shard the model before its first "
        "step");
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t g = 0; g < optimizer.param_groups().size(); ++g) {
    for (at::Tensor& t : optimizer.param_groups()[g].params()) {
      auto it = index_.find(t.unsafeGetTensorImpl());
      if (it == index_.end()) continue;
      Param& p = params_[it->second];
      if (!p.tensor.requires_grad()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "param group ", g, " holds \"", p.name,
            "\", which does not require gradients: a sharded optimizer "
            "holds trainable parameters only"));
      }
      t = p.part;
    }
  }
  return absl::OkStatus();
}

absl::Status FullyShardedModel::Unshard() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!broken_.empty()) return absl::FailedPreconditionError(broken_);
  return state::RunGuarded("gathering the sharded parameters", [&] {
    RestoreBuffers();
    held_ = true;
    for (int u = 0; u < static_cast<int>(units_.size()); ++u) {
      // A unit gathered in the compute dtype (mixed precision) is gathered
      // again in full precision.
      if (units_[u].full.defined() &&
          units_[u].full.scalar_type() != units_[u].shard.scalar_type()) {
        ReshardUnit(u, /*write_back=*/false);
      }
      EnsureGathered(u);
    }
  });
}

absl::Status FullyShardedModel::Reshard() {
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status status = state::RunGuarded("resharding the parameters", [&] {
    for (int u = 0; u < static_cast<int>(units_.size()); ++u) {
      ReshardUnit(u, /*write_back=*/true);
    }
  });
  held_ = false;
  return status;
}

absl::Status FullyShardedModel::UnshardOptimizer(
    torch::optim::Optimizer& optimizer) {
  ACCELERATE_ASSIGN_OR_RETURN(sharding_internal::StateKind kind_value,
                              KindFor(optimizer, "gathering the sharded state"));
  const sharding_internal::StateKind* kind = &kind_value;
  std::lock_guard<std::mutex> lock(mu_);
  if (!held_) {
    return absl::FailedPreconditionError(
        "UnshardOptimizer needs the parameters gathered (Unshard first)");
  }
  auto& states = optimizer.state();
  return state::RunGuarded("gathering the optimizer state", [&] {
    torch::NoGradGuard no_grad;
    // Which parameters the optimizer holds (as parts).
    std::vector<bool> held(params_.size(), false);
    for (auto& group : optimizer.param_groups()) {
      for (at::Tensor& t : group.params()) {
        auto it = index_.find(t.unsafeGetTensorImpl());
        if (it != index_.end() &&
            t.unsafeGetTensorImpl() ==
                params_[it->second].part.unsafeGetTensorImpl()) {
          held[it->second] = true;
          t = params_[it->second].tensor;
        }
      }
    }
    for (const Unit& unit : units_) {
      std::vector<int> with_state;
      for (int i : unit.params) {
        if (held[i] &&
            states.count(params_[i].part.unsafeGetTensorImpl()) > 0) {
          with_state.push_back(i);
        }
      }
      if (with_state.empty()) continue;
      const torch::optim::OptimizerParamState& like =
          *states.at(params_[with_state[0]].part.unsafeGetTensorImpl());
      const size_t count = kind->fields(like).size();
      std::vector<std::vector<at::Tensor>> whole(params_.size());
      for (size_t f = 0; f < count; ++f) {
        const at::Tensor sample = kind->fields(like)[f];
        at::Tensor full;
        if (sample.defined()) {
          at::Tensor local = at::zeros({unit.shard_size}, sample.options());
          const int64_t low = rank_ * unit.shard_size;
          for (int i : with_state) {
            const Param& p = params_[i];
            const at::Tensor field =
                kind->fields(*states.at(p.part.unsafeGetTensorImpl()))[f];
            if (p.part.numel() > 0) {
              local.narrow(0, p.offset + p.part_at - low, p.part.numel())
                  .copy_(field.reshape({-1}));
            }
          }
          if (world_ == 1) {
            full = local;
          } else {
            // Collectives run on the model's device (offloaded state too).
            at::Tensor sent = local.to(device_);
            full = at::empty({unit.shard_size * world_}, sent.options());
            shard_group_->_allgather_base(full, sent)->wait();
            full = full.to(local.device());
          }
        }
        for (int i : with_state) {
          const Param& p = params_[i];
          whole[i].push_back(full.defined()
                                 ? full.narrow(0, p.offset, p.tensor.numel())
                                       .view(p.tensor.sizes())
                                       .clone()
                                 : at::Tensor());
        }
      }
      for (int i : with_state) {
        const Param& p = params_[i];
        auto made = kind->make(*states.at(p.part.unsafeGetTensorImpl()),
                               whole[i]);
        states.erase(p.part.unsafeGetTensorImpl());
        states[p.tensor.unsafeGetTensorImpl()] = std::move(made);
      }
    }
  });
}

absl::Status FullyShardedModel::ReshardOptimizer(
    torch::optim::Optimizer& optimizer) {
  const std::optional<sharding_internal::StateKind> kind =
      sharding_internal::KindOf(optimizer);
  std::lock_guard<std::mutex> lock(mu_);
  auto& states = optimizer.state();
  return state::RunGuarded("cutting the optimizer state", [&] {
    torch::NoGradGuard no_grad;
    for (auto& group : optimizer.param_groups()) {
      for (at::Tensor& t : group.params()) {
        auto it = index_.find(t.unsafeGetTensorImpl());
        if (it == index_.end()) continue;
        const Param& p = params_[it->second];
        if (t.unsafeGetTensorImpl() != p.tensor.unsafeGetTensorImpl()) {
          continue;
        }
        auto found = states.find(p.tensor.unsafeGetTensorImpl());
        if (found != states.end() && kind.has_value()) {
          std::vector<at::Tensor> cut;
          for (const at::Tensor& field : kind->fields(*found->second)) {
            cut.push_back(field.defined()
                              ? field.reshape({-1})
                                    .narrow(0, p.part_at, p.part.numel())
                                    .clone()
                              : at::Tensor());
          }
          auto made = kind->make(*found->second, cut);
          states.erase(found);
          states[p.part.unsafeGetTensorImpl()] = std::move(made);
        }
        t = p.part;
      }
    }
  });
}

std::vector<TensorPartView> FullyShardedModel::ParameterParts() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<TensorPartView> parts;
  for (const Param& p : params_) {
    parts.push_back({p.name, p.placeholder->sizes().vec(), p.part_at,
                     p.part.detach()});
  }
  return parts;
}

absl::Status FullyShardedModel::LoadParameterParts(
    const std::function<absl::StatusOr<std::vector<int64_t>>(
        const std::string&)>& shape_of,
    const ReadPart& read) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int u = 0; u < static_cast<int>(units_.size()); ++u) {
    if (!held_) ReshardUnit(u, /*write_back=*/false);
  }
  torch::NoGradGuard no_grad;
  for (Param& p : params_) {
    absl::StatusOr<std::vector<int64_t>> shape = shape_of(p.name);
    if (!shape.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sharded checkpoint: parameter ", p.name, ": ",
          shape.status().message()));
    }
    if (*shape != p.placeholder->sizes().vec()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sharded checkpoint: ", p.name, " has shape [",
          absl::StrJoin(*shape, ", "), "]; the model's is [",
          absl::StrJoin(p.placeholder->sizes(), ", "), "]"));
    }
    ACCELERATE_ASSIGN_OR_RETURN(const bool found,
                                read(p.name, p.part_at, p.part.detach()));
    if (!found) {
      return absl::InvalidArgumentError(
          absl::StrCat("sharded checkpoint: no parameter ", p.name));
    }
  }
  return absl::OkStatus();
}

absl::Status FullyShardedModel::OptimizerParts(
    const torch::optim::Optimizer& optimizer,
    std::vector<TensorPartView>* parts,
    std::map<int64_t, int64_t>* steps) const {
  ACCELERATE_ASSIGN_OR_RETURN(sharding_internal::StateKind kind_value,
                              KindFor(optimizer, "sharded checkpoints"));
  const sharding_internal::StateKind* kind = &kind_value;
  std::lock_guard<std::mutex> lock(mu_);
  int64_t id = 0;
  for (const auto& group : optimizer.param_groups()) {
    for (const at::Tensor& t : group.params()) {
      const int64_t my_id = id++;
      auto found = optimizer.state().find(t.unsafeGetTensorImpl());
      if (found == optimizer.state().end()) continue;
      std::vector<int64_t> shape = t.sizes().vec();
      int64_t start = 0;
      auto ours = index_.find(t.unsafeGetTensorImpl());
      if (ours != index_.end()) {
        const Param& p = params_[ours->second];
        shape = p.placeholder->sizes().vec();
        start = p.part_at;
      }
      (*steps)[my_id] = kind->step(*found->second);
      const std::vector<at::Tensor> fields = kind->fields(*found->second);
      for (size_t f = 0; f < fields.size(); ++f) {
        if (!fields[f].defined()) continue;
        parts->push_back({absl::StrCat(my_id, ".", kind->names[f]), shape,
                          start, fields[f].reshape({-1})});
      }
    }
  }
  return absl::OkStatus();
}

absl::Status FullyShardedModel::LoadOptimizerParts(
    torch::optim::Optimizer& optimizer, const std::map<int64_t, int64_t>& steps,
    const ReadPart& read) {
  ACCELERATE_ASSIGN_OR_RETURN(sharding_internal::StateKind kind_value,
                              KindFor(optimizer, "sharded checkpoints"));
  const sharding_internal::StateKind* kind = &kind_value;
  std::lock_guard<std::mutex> lock(mu_);
  torch::NoGradGuard no_grad;
  auto& states = optimizer.state();
  int64_t id = 0;
  for (const auto& group : optimizer.param_groups()) {
    for (const at::Tensor& t : group.params()) {
      const int64_t my_id = id++;
      auto step = steps.find(my_id);
      if (step == steps.end()) continue;
      int64_t start = 0;
      auto ours = index_.find(t.unsafeGetTensorImpl());
      if (ours != index_.end()) start = params_[ours->second].part_at;
      std::vector<at::Tensor> fields;
      for (const std::string& field : kind->names) {
        at::Tensor value = at::empty(t.sizes(), t.options());
        ACCELERATE_ASSIGN_OR_RETURN(
            const bool found,
            read(absl::StrCat(my_id, ".", field), start, value));
        fields.push_back(found ? value : at::Tensor());
      }
      states[t.unsafeGetTensorImpl()] = kind->make_at(step->second, fields);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<double> FullyShardedModel::ClipGradNorm(double max_norm,
                                                       double norm_type) {
  double total = 0;
  ACCELERATE_RETURN_IF_ERROR(state::RunGuarded("clip_grad_norm", [&] {
    torch::NoGradGuard no_grad;
    std::vector<at::Tensor> grads;
    for (const Param& p : params_) {
      if (p.part.grad().defined()) grads.push_back(p.part.grad());
    }
    const bool inf = std::isinf(norm_type);
    at::Tensor local =
        at::zeros({1}, at::TensorOptions(at::kDouble).device(device_));
    for (const at::Tensor& g : grads) {
      if (g.numel() == 0) continue;
      at::Tensor a = g.detach().abs().to(device_, at::kDouble);
      if (inf) {
        local = at::maximum(local, a.max().reshape({1}));
      } else {
        local += a.pow(norm_type).sum();
      }
    }
    if (world_ > 1) {
      std::vector<at::Tensor> tensors = {local};
      c10d::AllreduceOptions options;
      options.reduceOp = inf ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
      shard_group_->allreduce(tensors, options)->wait();
    }
    total = inf ? local.item<double>()
                : std::pow(local.item<double>(), 1.0 / norm_type);
    const double coefficient = max_norm / (total + 1e-6);
    if (coefficient < 1.0) {
      for (at::Tensor& g : grads) g.mul_(coefficient);
    }
  }));
  return total;
}

absl::Status FullyShardedModel::ClipGradValue(double clip_value) {
  return state::RunGuarded("clip_grad_value", [&] {
    torch::NoGradGuard no_grad;
    for (const Param& p : params_) {
      if (p.part.grad().defined()) {
        p.part.grad().clamp_(-clip_value, clip_value);
      }
    }
  });
}

StateBytes FullyShardedModel::Bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  StateBytes bytes;
  for (const Unit& unit : units_) {
    bytes.parameters += sharding_internal::Bytes(unit.shard);
    if (world_ > 1) bytes.parameters += sharding_internal::Bytes(unit.full);
  }
  for (const Param& p : params_) {
    bytes.gradients += sharding_internal::Bytes(p.part.grad()) +
                       sharding_internal::Bytes(p.tensor.grad());
  }
  return bytes;
}

FullyShardedStats FullyShardedModel::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  FullyShardedStats stats = stats_;
  if (checkpoint_counters_ != nullptr) {
    stats.checkpointed = checkpoint_counters_->checkpointed.load();
    stats.recomputed = checkpoint_counters_->recomputed.load();
    stats.not_checkpointed = checkpoint_counters_->kept.load();
  }
  return stats;
}

std::vector<std::string> FullyShardedModel::unit_names() const {
  std::vector<std::string> names;
  for (const Unit& unit : units_) names.push_back(unit.name);
  return names;
}

std::vector<at::Tensor> FullyShardedModel::parts() const {
  std::vector<at::Tensor> parts;
  for (const Param& p : params_) parts.push_back(p.part);
  return parts;
}

}  // namespace accelerate::sharding
