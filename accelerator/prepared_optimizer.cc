#include "accelerator/prepared_optimizer.h"

#include <vector>

#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate {

std::vector<at::Tensor> PreparedOptimizer::Parameters() const {
  if (sharded_ != nullptr) return sharded_->parameters();
  std::vector<at::Tensor> params;
  for (const auto& group : optimizer_->param_groups()) {
    params.insert(params.end(), group.params().begin(), group.params().end());
  }
  return params;
}

absl::StatusOr<bool> PreparedOptimizer::UnscaleGradients() {
  if (scaler_ == nullptr) return true;
  return scaler_->Unscale(this, Parameters());
}

absl::Status PreparedOptimizer::step() {
  ACCELERATE_RETURN_IF_ERROR(setup_error_);
  if (!gradients_->sync_gradients()) return absl::OkStatus();
  ACCELERATE_ASSIGN_OR_RETURN(const bool finite, UnscaleGradients());
  step_was_skipped_ = !finite;
  if (finite) {
    if (sharded_ != nullptr) ACCELERATE_RETURN_IF_ERROR(sharded_->BeforeStep());
    ACCELERATE_RETURN_IF_ERROR(
        state::RunGuarded("optimizer step", [&] { optimizer_->step(); }));
    if (sharded_ != nullptr) ACCELERATE_RETURN_IF_ERROR(sharded_->AfterStep());
    ++steps_taken_;
  }
  return after_step_ ? after_step_(*this) : absl::OkStatus();
}

void PreparedOptimizer::zero_grad() {
  if (!gradients_->sync_gradients()) return;
  if (sharded_ != nullptr) {
    sharded_->ZeroGrad();
  } else {
    optimizer_->zero_grad();
  }
}

}  // namespace accelerate
