// LoadCheckpointAndDispatch (see dispatch.h), in steps: the execution
// device from the map; a plan matching every model tensor with a stored
// one, a device and a dtype (from the headers, before anything is placed);
// placing the tensors one at a time, resident ones in the model and
// offloaded ones in the offload engine (internal/offload_engine.h); and
// the offload folder, written last.

#include "bigmodel/dispatch.h"

#include <algorithm>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/core/InferenceMode.h>
#include <c10/core/TensorImpl.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/nn/module.h>
#include "bigmodel/available_memory.h"
#include "bigmodel/empty_weights.h"
#include "bigmodel/internal/device_aligner.h"
#include "bigmodel/internal/offload_engine.h"
#include "bigmodel/internal/page_cache.h"
#include "bigmodel/internal/staged_upload.h"
#include "bigmodel/module_tree.h"
#include "bigmodel/offload.h"
#include "bigmodel/safetensors.h"
#include "bigmodel/sharded_checkpoint.h"
#include "state/placeholder.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::bigmodel_internal::DeviceAligner;
using ::accelerate::bigmodel_internal::DropPages;
using ::accelerate::bigmodel_internal::OffloadEngine;
using ::accelerate::bigmodel_internal::Slot;
using ::accelerate::bigmodel_internal::StagedUpload;
using ::accelerate::bigmodel_internal::StagedUploadIfPossible;

// One converted-weight batch is written to the offload folder (and its
// index rewritten) per this many bytes, not per tensor.
constexpr int64_t kConvertedBatchBytes = int64_t{64} << 20;

c10::Device CudaDevice(int index) {
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

// Where offloaded weights run: the map's first GPU (Accelerate's main
// device), else the CPU. `FailedPrecondition` for a GPU this process does
// not see.
absl::StatusOr<c10::Device> ExecutionDevice(const DeviceMap& device_map) {
  std::optional<int> first;
  for (const auto& [module, device] : device_map) {
    if (!device.is_gpu()) continue;
    if (!first) first = device.gpu_index();
    const int visible =
        at::hasCUDA()
            ? c10::impl::VirtualGuardImpl(c10::kCUDA).deviceCount()
            : 0;
    if (device.gpu_index() >= visible) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the device map places \"", module, "\" on GPU ",
          device.gpu_index(), " but this process sees ",
          visible == 0 ? "no CUDA device"
                       : absl::StrCat(visible, " GPU(s) (0 to ", visible - 1,
                                      "; CUDA_VISIBLE_DEVICES)")));
    }
  }
  return first ? CudaDevice(*first) : c10::Device(c10::kCPU);
}

// How many GPUs `device_map` uses.
size_t GpuCount(const DeviceMap& device_map) {
  std::set<int> gpus;
  for (const auto& [module, device] : device_map) {
    if (device.is_gpu()) gpus.insert(device.gpu_index());
  }
  return gpus.size();
}

// The device of the longest entry of `map` that names `tensor` or a module
// holding it; nullptr when none does.
const Device* LongestEntryCovering(const std::map<std::string, Device>& map,
                                   const std::string& tensor) {
  std::string prefix = tensor;
  while (true) {
    auto it = map.find(prefix);
    if (it != map.end()) return &it->second;
    if (prefix.empty()) return nullptr;
    const size_t dot = prefix.rfind('.');
    prefix = dot == std::string::npos ? "" : prefix.substr(0, dot);
  }
}

std::string ModuleOf(const std::string& tensor) {
  const size_t dot = tensor.rfind('.');
  return dot == std::string::npos ? "" : tensor.substr(0, dot);
}

std::string Shape(c10::IntArrayRef sizes) {
  return absl::StrCat("[", absl::StrJoin(sizes, ", "), "]");
}

// A model tensor, once per TensorImpl (tied weights share one).
struct ModelTensor {
  std::string name;
  std::vector<std::string> aliases;  // Other names of the same tensor.
  at::Tensor tensor;
  bool buffer = false;
};

std::vector<ModelTensor> ModelTensors(const torch::nn::Module& model) {
  std::vector<ModelTensor> tensors;
  std::unordered_map<const c10::TensorImpl*, size_t> seen;
  auto add = [&](const std::string& name, const at::Tensor& tensor,
                 bool buffer) {
    if (!tensor.defined()) return;
    auto [it, inserted] =
        seen.emplace(tensor.unsafeGetTensorImpl(), tensors.size());
    if (inserted) {
      tensors.push_back(ModelTensor{name, {}, tensor, buffer});
    } else {
      tensors[it->second].aliases.push_back(name);
    }
  };
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    add(item.key(), item.value(), false);
  }
  for (const auto& item : model.named_buffers(/*recurse=*/true)) {
    add(item.key(), item.value(), true);
  }
  return tensors;
}

// What loading does with one model tensor.
struct TensorPlan {
  const ModelTensor* tensor = nullptr;
  std::string source;                 // Its name in the checkpoint.
  Device device = Device::Cpu();      // Where the map puts it.
  at::ScalarType dtype = at::kFloat;  // Its dtype once loaded.
};

// Every model tensor's plan, in model order, and the checkpoint tensors
// the model has no place for.
struct LoadPlan {
  std::vector<TensorPlan> tensors;
  std::vector<std::string> unexpected_keys;
};

// Matches every model tensor with a stored one (by header: nothing is read
// yet), a device and a dtype, so that a bad checkpoint or map changes
// nothing. Errors as LoadCheckpointAndDispatch's.
absl::StatusOr<LoadPlan> PlanLoad(const std::vector<ModelTensor>& tensors,
                                  const std::vector<TensorEntry>& entries,
                                  const DeviceMap& device_map,
                                  const std::string& checkpoint,
                                  const DispatchOptions& options) {
  std::map<std::string, Device> by_module;
  for (const auto& [module, device] : device_map) {
    by_module.insert_or_assign(module, device);
  }
  std::map<std::string, const TensorEntry*> stored_entries;
  for (const TensorEntry& entry : entries) stored_entries[entry.name] = &entry;
  LoadPlan plan;
  std::vector<std::string> missing;
  std::set<std::string> used;  // Checkpoint names the model takes.
  for (const ModelTensor& wanted : tensors) {
    const Device* device = LongestEntryCovering(by_module, wanted.name);
    if (device == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("the device map has no entry for \"", wanted.name,
                       "\" or any module holding it"));
    }
    std::string source;
    if (stored_entries.count(wanted.name)) {
      source = wanted.name;
    } else {
      for (const std::string& alias : wanted.aliases) {
        if (stored_entries.count(alias)) {
          source = alias;
          break;
        }
      }
    }
    if (source.empty()) {
      missing.push_back(wanted.name);
      continue;
    }
    used.insert(source);
    used.insert(wanted.name);
    used.insert(wanted.aliases.begin(), wanted.aliases.end());
    const TensorEntry& entry = *stored_entries.at(source);
    if (c10::IntArrayRef(entry.shape) != wanted.tensor.sizes()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", source, "\" is ", Shape(entry.shape), " in ",
                       checkpoint, " but the model's \"", wanted.name, "\" is ",
                       Shape(wanted.tensor.sizes())));
    }
    ACCELERATE_ASSIGN_OR_RETURN(const at::ScalarType stored_type,
                                SafetensorsScalarType(entry));
    const at::ScalarType dtype =
        options.dtype && at::isFloatingType(stored_type) ? *options.dtype
                                                         : stored_type;
    if (device->is_disk() && dtype != stored_type &&
        options.offload_folder.empty() &&
        !(wanted.buffer && !options.offload_buffers)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", wanted.name, "\" goes to disk as ", c10::toString(dtype),
          " (stored as ", c10::toString(stored_type),
          "): converting it needs an offload_folder"));
    }
    plan.tensors.push_back(TensorPlan{&wanted, source, *device, dtype});
  }
  if (!missing.empty()) {
    const size_t shown = std::min<size_t>(missing.size(), 10);
    return absl::NotFoundError(absl::StrCat(
        checkpoint, " lacks ", missing.size(), " weight(s) of the model: ",
        absl::StrJoin(missing.begin(), missing.begin() + shown, ", "),
        missing.size() > shown ? ", ..." : ""));
  }
  for (const TensorEntry& entry : entries) {
    if (!used.count(entry.name)) plan.unexpected_keys.push_back(entry.name);
  }
  return plan;
}

// A LibTorch exception raised while loading `name`, as a status.
absl::Status StatusFromLoadingException(const std::exception& error,
                                        const std::string& name) {
  return state::StatusFromException(absl::StrCat("loading \"", name, "\""),
                                    error);
}

// Places planned tensors one at a time: resident ones into the model,
// offloaded ones as slots of the engine, and converted disk weights into
// the offload folder, in batches.
class WeightPlacer {
 public:
  WeightPlacer(ShardedCheckpoint& stored, OffloadEngine& engine,
               c10::Device execution, const DispatchOptions& options)
      : stored_(stored),
        engine_(engine),
        execution_(execution),
        options_(options) {}

  absl::Status Place(const TensorPlan& plan);

  // Writes what is left for the offload folder, then points the disk slots
  // read through it at their entries.
  absl::Status Finish();

 private:
  // Offloaded: disk weights, and CPU weights when the model runs on a GPU;
  // buffers stay on the execution device unless `offload_buffers`.
  bool Offloaded(const TensorPlan& plan) const {
    return (plan.device.is_disk() ||
            (plan.device.is_cpu() && !execution_.is_cpu())) &&
           !(plan.tensor->buffer && !options_.offload_buffers);
  }
  absl::Status PlaceResident(const TensorPlan& plan, const at::Tensor& stored,
                             bool mapped);
  // The staged upload onto `gpu`, made on first use; nullptr where there is
  // no staging (plain copies then).
  absl::StatusOr<StagedUpload*> UploadTo(c10::Device gpu);
  absl::Status PlaceOffloaded(const TensorPlan& plan, const at::Tensor& stored,
                              bool mapped);
  absl::Status WriteConvertedToFolder();

  ShardedCheckpoint& stored_;
  OffloadEngine& engine_;
  const c10::Device execution_;
  const DispatchOptions& options_;
  // Disk weights to record as pointers into the checkpoint, per file.
  std::map<std::string, std::vector<std::string>> pointers_;
  // Disk weights for the offload folder (converted, or from `torch.save`
  // shards), written to it in batches.
  NamedTensors converted_;
  int64_t converted_bytes_ = 0;
  // Disk slots read back through the offload folder, with their names.
  std::vector<std::pair<std::pair<int, int>, std::string>> from_folder_;
  // GPU weights go through one staged upload per GPU, finished in
  // `Finish`.
  std::map<c10::DeviceIndex, std::unique_ptr<StagedUpload>> uploads_;
};

absl::Status WeightPlacer::Place(const TensorPlan& plan) {
  ACCELERATE_ASSIGN_OR_RETURN(auto loaded, stored_.Load({plan.source}));
  const at::Tensor stored = loaded.at(plan.source);
  loaded.clear();
  // Zero-copy over the file, unless the bytes could not be aliased.
  const bool mapped = AliasesMapping(stored);
  try {
    ACCELERATE_RETURN_IF_ERROR(Offloaded(plan)
                                   ? PlaceOffloaded(plan, stored, mapped)
                                   : PlaceResident(plan, stored, mapped));
  } catch (const std::exception& error) {
    return StatusFromLoadingException(error, plan.tensor->name);
  }
  if (converted_bytes_ >= kConvertedBatchBytes) return WriteConvertedToFolder();
  return absl::OkStatus();
}

absl::Status WeightPlacer::PlaceResident(const TensorPlan& plan,
                                         const at::Tensor& stored,
                                         bool mapped) {
  // GPU weights on their GPU, CPU weights on the CPU when the model runs
  // there, kept buffers of offloaded modules where it runs.
  const c10::Device device =
      plan.device.is_gpu() ? CudaDevice(plan.device.gpu_index())
      : plan.device.is_cpu() && execution_.is_cpu() ? c10::Device(c10::kCPU)
                                                    : execution_;
  if (device.is_cuda() && stored.is_contiguous()) {
    ACCELERATE_ASSIGN_OR_RETURN(StagedUpload * upload, UploadTo(device));
    if (upload != nullptr) {
      // Its bytes arrive by `Finish` (converted on the way if need be).
      const at::Tensor value = at::empty(
          stored.sizes(), at::TensorOptions().dtype(plan.dtype).device(device));
      ACCELERATE_RETURN_IF_ERROR(upload->AddConverted(stored, value));
      if (mapped) DropPages(stored);
      return ReplaceTensor(plan.tensor->tensor, value);
    }
  }
  at::Tensor value = stored;
  if (plan.dtype != stored.scalar_type() || !device.is_cpu() ||
      (mapped && !options_.zero_copy)) {
    value = stored.to(device, plan.dtype, /*non_blocking=*/false,
                      /*copy=*/true);
    if (mapped) DropPages(stored);
  }
  return ReplaceTensor(plan.tensor->tensor, value);
}

absl::Status WeightPlacer::PlaceOffloaded(const TensorPlan& plan,
                                          const at::Tensor& stored,
                                          bool mapped) {
  const std::pair<int, int> where =
      engine_.AddSlot(engine_.UnitFor(ModuleOf(plan.tensor->name)));
  Slot& slot = engine_.slot(where);
  slot.name = plan.tensor->name;
  slot.target = plan.tensor->tensor;
  slot.dtype = plan.dtype;
  slot.placeholder = state::MakePlaceholder(plan.dtype, stored.sizes());
  ACCELERATE_ASSIGN_OR_RETURN(const std::string file,
                              stored_.FileOf(plan.source));
  if (plan.device.is_cpu()) {
    // Offloaded to memory: kept on the CPU, copied on use.
    slot.source = stored.to(c10::kCPU, plan.dtype, /*non_blocking=*/false,
                            /*copy=*/mapped);
    if (mapped) DropPages(stored);
  } else if (plan.dtype == stored.scalar_type() && mapped &&
             (options_.offload_folder.empty() ||
              ShardedCheckpoint::IsSafetensors(file))) {
    // Used in place from the checkpoint's mapping; with an offload folder,
    // through a pointer into the safetensors file it records.
    slot.source = stored;
    slot.mapped = true;
    if (!options_.offload_folder.empty()) {
      pointers_[absl::StrCat(stored_.dir(), "/", file)].push_back(plan.source);
      from_folder_.emplace_back(where, plan.source);
    }
  } else if (options_.offload_folder.empty()) {
    // Bytes the file could not lend (unaligned): a copy in memory.
    slot.source = stored;
  } else {
    // Converted, or from a `torch.save` shard (no pointer into it): written
    // to the offload folder, as Python's `offload_weight` does.
    converted_.emplace_back(plan.source, stored.to(plan.dtype));
    converted_bytes_ += converted_.back().second.nbytes();
    if (mapped) DropPages(stored);
    from_folder_.emplace_back(where, plan.source);
  }
  return absl::OkStatus();
}

absl::Status WeightPlacer::WriteConvertedToFolder() {
  ACCELERATE_RETURN_IF_ERROR(
      OffloadTensors(options_.offload_folder, converted_));
  converted_.clear();
  converted_bytes_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<StagedUpload*> WeightPlacer::UploadTo(c10::Device gpu) {
  auto it = uploads_.find(gpu.index());
  if (it == uploads_.end()) {
    ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<StagedUpload> upload,
                                StagedUploadIfPossible(gpu));
    it = uploads_.emplace(gpu.index(), std::move(upload)).first;
  }
  return it->second.get();
}

absl::Status WeightPlacer::Finish() {
  for (auto& [gpu, upload] : uploads_) {
    if (upload != nullptr) ACCELERATE_RETURN_IF_ERROR(upload->Finish());
  }
  if (!converted_.empty()) ACCELERATE_RETURN_IF_ERROR(WriteConvertedToFolder());
  if (from_folder_.empty()) return absl::OkStatus();
  for (const auto& [file, names] : pointers_) {
    ACCELERATE_RETURN_IF_ERROR(
        OffloadPointers(options_.offload_folder, file, names));
  }
  ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<OffloadedWeights> weights,
                              OffloadedWeights::Open(options_.offload_folder));
  for (const auto& [where, name] : from_folder_) {
    Slot& slot = engine_.slot(where);
    ACCELERATE_ASSIGN_OR_RETURN(slot.source, weights->Get(name));
    slot.mapped = AliasesMapping(slot.source);
  }
  return absl::OkStatus();
}

}  // namespace

class DispatchedModel::Engine : public OffloadEngine {
 public:
  using OffloadEngine::OffloadEngine;
};

DispatchedModel::DispatchedModel() = default;
DispatchedModel::~DispatchedModel() = default;

c10::Device DispatchedModel::execution_device() const {
  return engine_->device();
}

std::vector<std::string> DispatchedModel::offloaded() const {
  return engine_->names();
}

void DispatchedModel::Release() { engine_->Release(); }

DispatchStats DispatchedModel::stats() const { return engine_->stats(); }

absl::StatusOr<DeviceMap> InferDeviceMap(const torch::nn::Module& model,
                                         const std::string& strategy,
                                         DeviceMapOptions options) {
  if (options.max_memory.empty()) {
    ACCELERATE_ASSIGN_OR_RETURN(options.max_memory, AvailableMaxMemory());
  }
  return PlanDeviceMap(DescribeModule(model), options, strategy);
}

absl::StatusOr<std::unique_ptr<DispatchedModel>> LoadCheckpointAndDispatch(
    torch::nn::Module& model, const std::string& checkpoint,
    const DeviceMap& device_map, const DispatchOptions& options) {
  ACCELERATE_ASSIGN_OR_RETURN(const c10::Device execution,
                              ExecutionDevice(device_map));
  // Loaded weights are ordinary tensors even if the caller is in
  // InferenceMode.
  c10::InferenceMode normal(/*enabled=*/false);

  ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<ShardedCheckpoint> stored,
                              ShardedCheckpoint::Open(checkpoint));
  ACCELERATE_ASSIGN_OR_RETURN(const std::vector<TensorEntry> entries,
                              stored->Entries());
  const std::vector<ModelTensor> tensors = ModelTensors(model);
  ACCELERATE_ASSIGN_OR_RETURN(
      LoadPlan plan,
      PlanLoad(tensors, entries, device_map, checkpoint, options));

  auto dispatched = std::unique_ptr<DispatchedModel>(new DispatchedModel());
  dispatched->unexpected_keys_ = std::move(plan.unexpected_keys);
  std::unique_ptr<DispatchedModel::Engine> engine;
  try {
    engine = std::make_unique<DispatchedModel::Engine>(
        execution, options.prefetch, options.prefetch_bytes);
  } catch (const std::exception& error) {
    return state::StatusFromException("setting up offloaded execution", error);
  }

  // From here on an error (a file that cannot be written, memory) may leave
  // part of the model placed.
  WeightPlacer placer(*stored, *engine, execution, options);
  const int64_t total = static_cast<int64_t>(plan.tensors.size());
  for (int64_t i = 0; i < total; ++i) {
    ACCELERATE_RETURN_IF_ERROR(placer.Place(plan.tensors[i]));
    if (options.progress) options.progress(i + 1, total);
  }
  ACCELERATE_RETURN_IF_ERROR(placer.Finish());
  engine->Start();
  dispatched->engine_ = std::move(engine);
  if (GpuCount(device_map) > 1) {
    // Resident weights where they were placed; offloaded ones (placeholders
    // now) where the engine loads them.
    std::vector<DeviceAligner::Weight> weights;
    for (const ModelTensor& tensor : tensors) {
      const bool resident = tensor.tensor.is_cuda();
      weights.push_back({tensor.tensor,
                         resident ? tensor.tensor.device() : execution,
                         /*mark=*/resident});
    }
    try {
      dispatched->aligner_ =
          std::make_unique<DeviceAligner>(std::move(weights));
    } catch (const std::exception& error) {
      return state::StatusFromException("aligning devices", error);
    }
  }
  return dispatched;
}

}  // namespace accelerate::bigmodel
