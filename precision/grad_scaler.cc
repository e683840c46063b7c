#include "precision/grad_scaler.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include "state/collectives.h"
#include "state/logging.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::precision {
namespace {

absl::Status CheckOptions(double growth_factor, double backoff_factor,
                          int64_t growth_interval) {
  if (!(growth_factor > 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GradScaler growth_factor ", growth_factor, " is not above 1"));
  }
  if (!(backoff_factor > 0.0 && backoff_factor < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GradScaler backoff_factor ", backoff_factor, " is not in (0, 1)"));
  }
  if (growth_interval <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GradScaler growth_interval ", growth_interval, " is not positive"));
  }
  return absl::OkStatus();
}

}  // namespace

GradScaler::GradScaler(const GradScalerOptions& options,
                       const state::PartialState* state)
    : options_(options), state_(state), scale_(options.init_scale) {
  const absl::Status valid = CheckOptions(
      options.growth_factor, options.backoff_factor, options.growth_interval);
  ACCELERATE_CHECK(valid.ok()) << valid;
}

at::Tensor GradScaler::Scale(const at::Tensor& loss) const {
  // As PyTorch's float32 scale tensor promotes it: lower precisions go to
  // float32, float64 stays.
  const at::ScalarType type =
      loss.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return loss.to(type) * scale_;
}

absl::StatusOr<bool> GradScaler::Unscale(
    const void* key, const std::vector<at::Tensor>& params) {
  if (auto it = found_inf_.find(key); it != found_inf_.end()) {
    return !it->second;
  }
  // One fused check-and-unscale per (device, dtype) group, as PyTorch's
  // _unscale_grads_, into one flag; one host read for the whole step.
  using Group = std::pair<c10::Device, at::ScalarType>;
  std::vector<std::pair<Group, std::vector<at::Tensor>>> groups;
  for (const at::Tensor& param : params) {
    const at::Tensor& grad = param.grad();
    if (!grad.defined()) continue;
    if (grad.scalar_type() == at::kHalf) {
      return absl::InvalidArgumentError(
          "GradScaler cannot unscale float16 gradients: with mixed_precision "
          "fp16 the model's parameters must stay float32 (autocast computes "
          "in float16)");
    }
    const Group group = {grad.device(), grad.scalar_type()};
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == group; });
    if (it == groups.end()) {
      groups.push_back({group, {}});
      it = groups.end() - 1;
    }
    it->second.push_back(grad);
  }
  at::Tensor found;
  ACCELERATE_RETURN_IF_ERROR(state::RunGuarded("unscaling gradients", [&] {
    const c10::Device device =
        groups.empty() ? c10::Device(c10::kCPU) : groups.begin()->first.first;
    found = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(device));
    for (auto& [where, grads] : groups) {
      const at::TensorOptions options =
          at::TensorOptions().dtype(at::kFloat).device(where.first);
      at::Tensor inverse = at::full({1}, 1.0 / scale_, options);
      at::Tensor found_here = at::zeros({1}, options);
      at::_amp_foreach_non_finite_check_and_unscale_(grads, found_here,
                                                     inverse);
      found.add_(found_here.to(device));
    }
  }));
  if (state_ != nullptr && state_->use_distributed()) {
    found = found.to(state_->device());
    ACCELERATE_RETURN_IF_ERROR(state::AllReduceInPlace(
        *state_, found, {.reduction = state::Reduction::kSum}));
  }
  const bool inf = found.item<float>() > 0;
  found_inf_[key] = inf;
  return !inf;
}

absl::Status GradScaler::Update() {
  if (found_inf_.empty()) return absl::OkStatus();
  bool any_inf = false;
  for (const auto& [key, inf] : found_inf_) any_inf |= inf;
  found_inf_.clear();
  // PyTorch's _amp_update_scale_.
  if (any_inf) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (growth_tracker_ + 1 == options_.growth_interval) {
    // As PyTorch's float32 scale: it grows only while it stays finite.
    const double grown = scale_ * options_.growth_factor;
    if (std::isfinite(static_cast<float>(grown))) scale_ = grown;
    growth_tracker_ = 0;
  } else {
    ++growth_tracker_;
  }
  return absl::OkStatus();
}

GradScalerState GradScaler::State() const {
  return {.scale = scale_,
          .growth_factor = options_.growth_factor,
          .backoff_factor = options_.backoff_factor,
          .growth_interval = options_.growth_interval,
          .growth_tracker = growth_tracker_};
}

absl::Status GradScaler::LoadState(const GradScalerState& loaded) {
  ACCELERATE_RETURN_IF_ERROR(CheckOptions(
      loaded.growth_factor, loaded.backoff_factor, loaded.growth_interval));
  if (!(loaded.scale > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GradScaler scale ", loaded.scale, " is not positive"));
  }
  if (loaded.growth_tracker < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GradScaler growth_tracker ", loaded.growth_tracker, " is negative"));
  }
  options_.growth_factor = loaded.growth_factor;
  options_.backoff_factor = loaded.backoff_factor;
  options_.growth_interval = loaded.growth_interval;
  scale_ = loaded.scale;
  growth_tracker_ = loaded.growth_tracker;
  found_inf_.clear();
  return absl::OkStatus();
}

}  // namespace accelerate::precision
