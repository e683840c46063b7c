// A linear layer that computes its three matrix products (output, input
// gradient, weight gradient) from float8 operands, with the scaling of an
// `Fp8Recipe` (torchao's `Float8Linear` for dynamic scaling, Transformer
// Engine's `Linear` for delayed scaling). Its parameters are `weight` and
// `bias`, as `torch::nn::Linear`'s, so checkpoints are interchangeable.
//
// The products run on dequantized float8 values in float32 (what torchao
// calls emulation): LibTorch's `_scaled_mm` exists only for recent GPUs, and
// this path gives the same numbers on every device.
//
// Until `EnableFp8` it is a plain linear layer; the `Accelerator` enables it
// under `mixed_precision: fp8`. Under autocast its input is first cast to the
// autocast dtype and the output has that dtype, as torchao's.
//
// clang-format off
//   #include <torch/torch.h>
//   at::Tensor Example(const at::Tensor& x) {
//     Fp8Linear layer(torch::nn::LinearOptions(64, 32));
//     layer->EnableFp8(Fp8Recipe{});  // torchao's tensorwise recipe
//     return layer->forward(x);       // x: [..., 64]
//   }
// clang-format on
//
// Errors: LibTorch's, thrown from `forward` as by any LibTorch module (the
// Accelerator's steps turn them into statuses); a failed amax reduction
// under delayed scaling too.
//
// Thread safety: one training thread (delayed scales change every step).

#ifndef ACCELERATE_PRECISION_FP8_LINEAR_H_
#define ACCELERATE_PRECISION_FP8_LINEAR_H_

#include <memory>
#include <optional>

#include "absl/status/status.h"
#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/options/linear.h>
#include <torch/nn/pimpl.h>
#include "precision/fp8_recipe.h"
#include "state/partial_state.h"

namespace accelerate::precision {

// The scales one layer keeps under delayed scaling: input, weight, gradient.
// Reference-counted, so that a backward pass keeps them alive however long
// the graph lives.
struct Fp8LayerScales : torch::CustomClassHolder {
  explicit Fp8LayerScales(const Fp8Recipe& recipe)
      : input(recipe, recipe.forward_format),
        weight(recipe, recipe.forward_format),
        grad_output(recipe, recipe.backward_format) {}
  // A copy with its own histories (for `clone()`d layers).
  c10::intrusive_ptr<Fp8LayerScales> Clone() const {
    auto copy = c10::make_intrusive<Fp8LayerScales>(*this);
    copy->input = input.Clone();
    copy->weight = weight.Clone();
    copy->grad_output = grad_output.Clone();
    return copy;
  }
  DelayedScale input;
  DelayedScale weight;
  DelayedScale grad_output;
};

// `input [..., K] x weight [N, K]^T` computed from float8 operands as
// `recipe` says; differentiable in `input` and `weight`.
// REQUIRES: input.size(-1) == weight.size(1); `scales` set for delayed
// scaling (and updated by it), ignored otherwise.
at::Tensor Fp8Matmul(const at::Tensor& input, const at::Tensor& weight,
                     const Fp8Recipe& recipe,
                     const c10::intrusive_ptr<Fp8LayerScales>& scales = {});

class Fp8LinearImpl : public torch::nn::Cloneable<Fp8LinearImpl> {
 public:
  explicit Fp8LinearImpl(const torch::nn::LinearOptions& options);
  Fp8LinearImpl(int64_t in_features, int64_t out_features)
      : Fp8LinearImpl(torch::nn::LinearOptions(in_features, out_features)) {}

  void reset() override;
  void reset_parameters();
  at::Tensor forward(const at::Tensor& input);

  // Computes in float8 from now on. `state` (may be null): the processes
  // whose delayed-scaling amaxes are max-reduced before each update, a
  // collective inside `forward`: REQUIRES every process to run the same
  // forwards of the layer, and `state` to outlive them or be detached first
  // (`DetachProcesses`; the Accelerator does so when it goes).
  void EnableFp8(const Fp8Recipe& recipe,
                 const state::PartialState* state = nullptr);
  // From now on the delayed-scaling amaxes are this process's own.
  void DetachProcesses() { state_ = nullptr; }
  bool fp8_enabled() const { return recipe_.has_value(); }
  // Delayed scaling only (else null).
  const Fp8LayerScales* scales() const { return scales_.get(); }
  Fp8LayerScales* mutable_scales() { return scales_.get(); }

  torch::nn::LinearOptions options;
  at::Tensor weight;
  at::Tensor bias;

 private:
  // Delayed scaling: folds the amaxes recorded by the last step into new
  // scales (max-reduced across processes first).
  absl::Status UpdateDelayedScales();

  std::optional<Fp8Recipe> recipe_;
  c10::intrusive_ptr<Fp8LayerScales> scales_;
  const state::PartialState* state_ = nullptr;
};

TORCH_MODULE(Fp8Linear);

}  // namespace accelerate::precision

#endif  // ACCELERATE_PRECISION_FP8_LINEAR_H_
