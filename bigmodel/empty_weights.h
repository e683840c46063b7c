// Models built without allocating their weights, as Accelerate's
// `init_empty_weights` / `init_on_device`: while an `InitEmptyWeights` scope
// is alive on a thread, every CPU tensor that thread creates (module
// parameters and buffers included) is a `meta` tensor instead — shape and
// dtype, no storage — and initializers run as no-ops. Module code is not
// changed: the scope intercepts LibTorch's CPU `empty` kernels.
//
// clang-format off
//   #include <torch/nn/modules/linear.h>
//
//   absl::Status Example(const at::Tensor& real_weight) {
//     torch::nn::Linear layer{nullptr};
//     {
//       InitEmptyWeights scope;
//       layer = torch::nn::Linear(50'000, 4096);  // 800 MB, no memory used
//     }
//     // Load what is needed (dispatch.h), or fill tensors one by one:
//     absl::Status filled = ReplaceTensor(layer->weight, real_weight);
//     if (!filled.ok()) return filled;
//     const std::vector<std::string> empty = MetaTensorNames(*layer);
//     // Still empty: "bias".
//     return empty.empty() ? absl::OkStatus()
//                          : absl::FailedPreconditionError(empty[0]);
//   }
// clang-format on
//
// Every tensor created in the scope is empty, buffers too (Accelerate's
// `include_buffers=True`): LibTorch's `register_buffer` cannot be told apart
// from any other allocation, and LibTorch buffers are all saved in
// checkpoints, so loading fills them. Constants made from data in the
// scope (`torch::tensor({...})`, `from_blob(...).clone()`) come out empty
// too, their values dropped: make those that must keep their values in a
// nested `InitOnDevice(c10::kCPU)` scope.
//
// Thread safety: scopes are per thread (other threads allocate normally)
// and nest. The first scope in a process registers the interception once
// (LibTorch's warning about overriding a kernel is silenced).

#ifndef ACCELERATE_BIGMODEL_EMPTY_WEIGHTS_H_
#define ACCELERATE_BIGMODEL_EMPTY_WEIGHTS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace torch::nn {
class Module;
}

namespace accelerate::bigmodel {

// CPU tensors created on this thread while alive are created on `device`
// instead (Accelerate's `init_on_device`). `meta` gives empty weights; a
// CUDA device builds the model straight on the GPU. The innermost scope
// wins; a CPU device restores normal allocation inside an outer scope.
class InitOnDevice {
 public:
  explicit InitOnDevice(c10::Device device);
  ~InitOnDevice();
  InitOnDevice(const InitOnDevice&) = delete;
  InitOnDevice& operator=(const InitOnDevice&) = delete;

 private:
  std::optional<c10::Device> previous_;
};

// `InitOnDevice(c10::kMeta)`.
class InitEmptyWeights : public InitOnDevice {
 public:
  InitEmptyWeights() : InitOnDevice(c10::Device(c10::kMeta)) {}
};

// Makes `target` hold `value`'s data in place: every holder of `target`
// (the module's member, its parameter dictionary, tied modules) sees the
// new data, `target` keeps its autograd flags and may change device and
// dtype (a meta parameter becomes a CPU one). Unlike `set_data`, it accepts
// a meta `target`. `InvalidArgument` when the shapes differ or either is
// not a dense strided tensor.
[[nodiscard]] absl::Status ReplaceTensor(const at::Tensor& target,
                                         const at::Tensor& value);

// Full names of the parameters and buffers of `module` still on `meta`.
std::vector<std::string> MetaTensorNames(const torch::nn::Module& module);

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_EMPTY_WEIGHTS_H_
