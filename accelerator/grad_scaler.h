// Dynamic loss scaling for fp16 training, with the semantics of
// `torch.cuda.amp.GradScaler`: the loss is multiplied by `scale` before
// backward; before the optimizer step the gradients are divided by it, and
// a step whose gradients hold an inf or NaN is skipped and halves the scale;
// after `growth_interval` good steps the scale doubles.
//
// clang-format off
//   #include <torch/optim/optimizer.h>
//   void Example(const at::Tensor& loss, const std::vector<at::Tensor>& params,
//                torch::optim::Optimizer& optimizer) {
//     GradScaler scaler;
//     scaler.Scale(loss).backward();
//     if (scaler.Unscale(params)) optimizer.step();
//     scaler.Update();
//   }
// clang-format on
//
// Thread safety: one training thread.

#ifndef ACCELERATE_ACCELERATOR_GRAD_SCALER_H_
#define ACCELERATE_ACCELERATOR_GRAD_SCALER_H_

#include <vector>

#include <ATen/core/Tensor.h>

namespace accelerate {

struct GradScalerOptions {
  double init_scale = 65536.0;  // 2^16, as PyTorch.
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int growth_interval = 2000;
};

class GradScaler {
 public:
  explicit GradScaler(const GradScalerOptions& options = {})
      : options_(options), scale_(options.init_scale) {}

  at::Tensor Scale(const at::Tensor& loss) const;

  // Divides the gradients of `params` by the scale, once per step (later
  // calls in the same step do nothing). Returns true when all are finite.
  bool Unscale(const std::vector<at::Tensor>& params);

  // Ends the step: backs off after non-finite gradients, grows after
  // `growth_interval` finite steps in a row.
  void Update();

  double scale() const { return scale_; }
  bool found_inf() const { return found_inf_; }

 private:
  GradScalerOptions options_;
  double scale_;
  int good_steps_ = 0;
  bool unscaled_ = false;
  bool found_inf_ = false;
};

}  // namespace accelerate

#endif  // ACCELERATE_ACCELERATOR_GRAD_SCALER_H_
