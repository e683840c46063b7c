#include "accelerator/grad_scaler.h"

#include <ATen/ATen.h>

namespace accelerate {

at::Tensor GradScaler::Scale(const at::Tensor& loss) const {
  // In float32 whatever the loss's type, as PyTorch's fp32 scale tensor
  // promotes it: an fp16 loss times 65536 would overflow.
  return loss.to(at::kFloat) * scale_;
}

bool GradScaler::Unscale(const std::vector<at::Tensor>& params) {
  if (unscaled_) return !found_inf_;
  unscaled_ = true;
  found_inf_ = false;
  const double inverse = 1.0 / scale_;
  for (const at::Tensor& param : params) {
    at::Tensor grad = param.grad();
    if (!grad.defined()) continue;
    grad.mul_(inverse);
    if (!at::isfinite(grad).all().item<bool>()) found_inf_ = true;
  }
  return !found_inf_;
}

void GradScaler::Update() {
  if (found_inf_) {
    scale_ *= options_.backoff_factor;
    good_steps_ = 0;
  } else if (++good_steps_ >= options_.growth_interval) {
    scale_ *= options_.growth_factor;
    good_steps_ = 0;
  }
  unscaled_ = false;
  found_inf_ = false;
}

}  // namespace accelerate
