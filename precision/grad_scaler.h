// Dynamic loss scaling for fp16 training, with the semantics and defaults of
// PyTorch's `torch.amp.GradScaler`: the loss is multiplied by `scale` before
// backward; before an optimizer steps, its gradients are divided by the
// scale (once per iteration, whatever asks first: clipping or the step) and
// checked for inf/NaN in one fused pass; an optimizer whose gradients are not
// finite skips its step; once per iteration `Update` halves the scale after
// a non-finite step, or doubles it after `growth_interval` finite ones.
// With several processes the found-inf flag is all-reduced, so every rank
// skips the same steps and keeps the same scale.
//
// clang-format off
//   #include <torch/optim/optimizer.h>
//   #include "state/status_macros.h"
//   absl::Status Example(const at::Tensor& loss, torch::optim::Optimizer& optimizer,
//                        const std::vector<at::Tensor>& params) {
//     GradScaler scaler;  // one process; pass a PartialState for several
//     scaler.Scale(loss).backward();
//     ACCELERATE_ASSIGN_OR_RETURN(bool finite, scaler.Unscale(&optimizer, params));
//     if (finite) optimizer.step();
//     return scaler.Update();
//   }
// clang-format on
//
// Thread safety: one training thread. Ownership: borrows the state, which
// must outlive the scaler; keys are only compared, never dereferenced.

#ifndef ACCELERATE_PRECISION_GRAD_SCALER_H_
#define ACCELERATE_PRECISION_GRAD_SCALER_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/Tensor.h>
#include "state/partial_state.h"

namespace accelerate::precision {

struct GradScalerOptions {
  // The first scale. Default 2^16, as PyTorch.
  double init_scale = 65536.0;
  // The scale is multiplied by it after `growth_interval` finite iterations
  // (as long as it stays finite in float32). Default 2.
  double growth_factor = 2.0;
  // The scale is multiplied by it after an iteration with an inf or NaN.
  // Default 0.5.
  double backoff_factor = 0.5;
  // Finite iterations before the scale grows. Default 2000.
  int64_t growth_interval = 2000;
};

// What `torch.amp.GradScaler.state_dict()` holds (Accelerate saves it as
// `scaler.pt`).
struct GradScalerState {
  double scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  // Finite iterations since the scale last changed (`_growth_tracker`).
  int64_t growth_tracker = 0;
};

class GradScaler {
 public:
  // `state`: the processes to agree with (null or one process: alone).
  // REQUIRES: growth_factor > 1, 0 < backoff_factor < 1, growth_interval > 0.
  explicit GradScaler(const GradScalerOptions& options = {},
                      const state::PartialState* state = nullptr);

  GradScaler(const GradScaler&) = delete;
  GradScaler& operator=(const GradScaler&) = delete;

  // `loss` in float32 (float64 stays) times the scale (an fp16 loss times
  // 2^16 would overflow).
  at::Tensor Scale(const at::Tensor& loss) const;

  // Unscales the gradients of `params` (the parameters of the optimizer
  // `key`) in place, once per iteration: later calls with the same key
  // return the first answer without touching the gradients. Returns whether
  // all are finite on every process (true when no parameter has a gradient,
  // where PyTorch asserts instead). Collective with several processes:
  // every rank unscales the same keys in the same order.
  [[nodiscard]] absl::StatusOr<bool> Unscale(
      const void* key, const std::vector<at::Tensor>& params);

  // Whether `key` was unscaled in this iteration.
  bool Unscaled(const void* key) const { return found_inf_.count(key) > 0; }

  // Ends the iteration: the scale backs off if any optimizer's gradients
  // were not finite, else grows after `growth_interval` finite iterations.
  // Nothing when no optimizer was unscaled since the last update.
  [[nodiscard]] absl::Status Update();

  double scale() const { return scale_; }
  GradScalerState State() const;
  // REQUIRES: the state's factors and interval are valid (as above);
  // `InvalidArgument` otherwise, naming the value.
  [[nodiscard]] absl::Status LoadState(const GradScalerState& loaded);

 private:
  GradScalerOptions options_;
  const state::PartialState* state_;
  double scale_;
  int64_t growth_tracker_ = 0;
  // The optimizers unscaled in this iteration, and whether each found inf.
  std::map<const void*, bool> found_inf_;
};

}  // namespace accelerate::precision

#endif  // ACCELERATE_PRECISION_GRAD_SCALER_H_
