// Accelerate's `load_checkpoint_and_dispatch` and offloaded execution: loads
// a (sharded) safetensors or `pytorch_model.bin` checkpoint into a model
// built under `InitEmptyWeights` (empty_weights.h) following a device map
// (device_map.h), and runs the model unchanged with part of its weights on
// the CPU or on disk.
//
// clang-format off
//   // `model` was built under InitEmptyWeights; `map` is InferDeviceMap's
//   // (below: InferDeviceMap(model, "auto")) or written by hand.
//   absl::StatusOr<std::unique_ptr<DispatchedModel>> Example(
//       torch::nn::Module& model, const DeviceMap& map) {
//     absl::StatusOr<std::unique_ptr<DispatchedModel>> dispatched =
//         LoadCheckpointAndDispatch(model, "/tmp/ckpt", map,
//                                   {.offload_folder = "/tmp/offload"});
//     if (!dispatched.ok()) return dispatched.status();
//     // The model's forward runs unchanged; inputs go to
//     // (*dispatched)->execution_device().
//     return dispatched;
//   }
// clang-format on
//
// Placement: a weight goes where the longest device-map entry naming it or
// one of its modules says. Weights on a GPU index, and on "cpu" when the
// model runs on the CPU, are resident. The others are offloaded: the module
// keeps a placeholder tensor (device `privateuseone`, no storage), and the
// first operation that touches one of them loads every offloaded weight of
// the module owning it onto the execution device (the map's GPU, else the
// CPU), in place, releasing the weights of the module used before.
// LibTorch modules have no forward hooks, so this is done one level lower:
// a dispatcher fallback on the placeholders' dispatch key
// (state/placeholder.h). While one module runs, the weights of the
// next ones (in the order the previous pass used them, else registration
// order; see `prefetch_bytes`) are prepared on a background thread
// (internal/offload_engine.h).
// Disk weights are read through a mapping of the checkpoint itself (or of
// the offload folder), never reopened per tensor; a CPU execution device
// uses them in place and gives the pages back on release.
//
// Offloaded weights are for inference: writes to them are not kept, and
// code that takes `.data()` or `.detach()` of a weight before any
// operation has touched it gets a tensor LibTorch cannot run (an error
// names the operation).
//
// Several GPUs: a map may spread the model over GPUs (Accelerate's
// "balanced" maps). Activations then follow the weights: an operation
// given tensors on different devices has them moved to where the weight it
// uses lives (or, with no weight, where the last weight used lives; a
// tensor written in place stays put), per operation rather than in forward
// hooks (internal/device_aligner.h). Offloaded weights run on the map's
// first GPU (Accelerate's main device), the model's inputs go there
// (`execution_device()`), and its output stays on the device of its last
// operation (Accelerate moves it back to the inputs'). Aligning costs a
// dispatcher fallback on every operation of a thread that has run the
// model, while the DispatchedModel lives.
// Weights placed on a GPU are loaded through page-locked buffers (one
// staged upload per GPU; without page-locked memory, plain copies), filled
// by several host threads, or converted into them when the map asks for
// another dtype (no converted copy of a whole tensor); the current stream
// waits for them. On a GPU, offloaded weights travel through pinned host buffers
// on a copy stream of their own; the forward's current stream waits for them on the
// GPU, so a forward may run on any stream. Between forwards on different
// streams, call `Release()` (weights still loaded from the previous stream
// are not waited for again).
//
// Thread safety: one forward at a time per dispatched model, and Release or
// destruction only between forwards. The model must outlive its
// DispatchedModel; when a DispatchedModel is destroyed its offloaded
// weights become unusable (using them is an error).

#ifndef ACCELERATE_BIGMODEL_DISPATCH_H_
#define ACCELERATE_BIGMODEL_DISPATCH_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include "bigmodel/device.h"
#include "bigmodel/device_map.h"

namespace torch::nn {
class Module;
}
namespace accelerate::bigmodel_internal {
class DeviceAligner;
}

namespace accelerate::bigmodel {

// How LoadCheckpointAndDispatch places and runs the offloaded weights.
struct DispatchOptions {
  // Folder for the weights placed on "disk". When set, each gets an entry in
  // `<offload_folder>/index.json` (Accelerate's format): a pointer into the
  // checkpoint's safetensors file when the weight is used as stored, a
  // `.dat` file when it is converted (`dtype`) or comes from a `torch.save`
  // shard (`pytorch_model.bin`); they are then read back
  // through that index. When empty, disk weights are read straight from
  // the checkpoint, and converting one is an error. Default: empty.
  std::string offload_folder;
  // Floating-point weights are converted to this dtype (Accelerate's
  // `dtype`). Default: as stored.
  std::optional<at::ScalarType> dtype;
  // Offload the buffers of offloaded modules too. Default false: buffers
  // are small and stay on the execution device, as in Accelerate.
  bool offload_buffers = false;
  // Prepare the next modules' offloaded weights on a background thread
  // while the current one runs. Default true.
  bool prefetch = true;
  // How far ahead to prepare, in bytes of weights: the next module always,
  // then following ones while their total stays within this. Prepared
  // weights take memory on the execution device (or page-cache pages, for
  // disk weights used in place on the CPU) beyond the device map's budget.
  // Default 0: the next module only.
  int64_t prefetch_bytes = 0;
  // Resident CPU weights alias the checkpoint's mapping (copy-on-write)
  // instead of being copied, when not converted. Default true: loading
  // reads nothing, pages come in on first use.
  bool zero_copy = true;
  // Called after each weight is placed with (weights done, weights total).
  std::function<void(int64_t, int64_t)> progress;
};

// What the offloaded execution has done so far.
struct DispatchStats {
  int64_t loads = 0;          // Modules whose offloaded weights were loaded.
  int64_t prefetch_hits = 0;  // Of those, prepared in the background.
  int64_t releases = 0;       // Modules whose weights were given back.
  // Bytes sent to the GPU through pinned buffers on the copy stream.
  int64_t staged_bytes = 0;
};

// The offloading state of a dispatched model (see the top of the file).
class DispatchedModel {
 public:
  ~DispatchedModel();
  DispatchedModel(const DispatchedModel&) = delete;
  DispatchedModel& operator=(const DispatchedModel&) = delete;

  // Where offloaded weights run, and the model's inputs go: the map's first
  // GPU, else the CPU.
  c10::Device execution_device() const;
  // Names of the offloaded weights, in registration order.
  std::vector<std::string> offloaded() const;
  // Checkpoint tensors the model has no place for (not loaded).
  const std::vector<std::string>& unexpected_keys() const {
    return unexpected_keys_;
  }
  // Gives back the offloaded weights now loaded (e.g. between generations).
  void Release();
  DispatchStats stats() const;

 private:
  friend absl::StatusOr<std::unique_ptr<DispatchedModel>>
  LoadCheckpointAndDispatch(torch::nn::Module& model,
                            const std::string& checkpoint,
                            const DeviceMap& device_map,
                            const DispatchOptions& options);
  DispatchedModel();

  // The offload engine (internal/offload_engine.h).
  class Engine;
  std::unique_ptr<Engine> engine_;
  // For a map over several GPUs.
  std::unique_ptr<bigmodel_internal::DeviceAligner> aligner_;
  std::vector<std::string> unexpected_keys_;
};

// The device map Accelerate's `load_checkpoint_and_dispatch` computes for a
// `device_map` strategy ("auto", "balanced", "balanced_low_0",
// "sequential"; device_map.h's PlanDeviceMap) for `model` (built under
// InitEmptyWeights: sizes from its meta tensors). Without
// `options.max_memory`, what this machine has free now on every visible GPU
// and the CPU (available_memory.h, as Accelerate's `get_max_memory()`).
// `InvalidArgument` names an unknown strategy; `Unavailable` when free
// memory cannot be read.
[[nodiscard]] absl::StatusOr<DeviceMap> InferDeviceMap(
    const torch::nn::Module& model, const std::string& strategy = "auto",
    DeviceMapOptions options = {});

// Loads `checkpoint` (a weights file, safetensors or `pytorch_model.bin`, an
// index, or a folder holding one; see ShardedCheckpoint) into `model` by
// name, placing each parameter and buffer as `device_map` says (device.h:
// module name -> "cpu", "disk" or a GPU index, as InferAutoDeviceMap
// returns; "" names the whole model). Tensors are placed one at a time:
// peak memory is the resident weights plus the largest tensor being
// converted or copied (plus up to 64 MB of disk weights on their way to the
// offload folder). Coverage, shapes and missing weights are checked from
// the headers (of `torch.save` shards, their pickles) before anything is
// placed; a later failure (writing the offload folder, memory) may leave
// part of the model placed.
// Errors: `InvalidArgument` for a weight no entry covers, a shape that
// differs from the model's, a converted disk weight without
// `offload_folder`; `NotFound` for weights the checkpoint lacks (all named,
// up to 10); `FailedPrecondition` for a GPU index without CUDA; file errors
// as ShardedCheckpoint's.
// REQUIRES: one DispatchedModel per model at a time.
[[nodiscard]] absl::StatusOr<std::unique_ptr<DispatchedModel>>
LoadCheckpointAndDispatch(torch::nn::Module& model,
                          const std::string& checkpoint,
                          const DeviceMap& device_map,
                          const DispatchOptions& options = {});

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_DISPATCH_H_
