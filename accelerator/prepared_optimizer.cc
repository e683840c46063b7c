#include "accelerator/prepared_optimizer.h"

#include <vector>

#include "state/torch_errors.h"

namespace accelerate {

absl::Status PreparedOptimizer::step() {
  if (!gradients_->sync_gradients()) return absl::OkStatus();
  step_was_skipped_ = false;
  return state::RunGuarded("optimizer step", [&] {
    if (scaler_ != nullptr) {
      std::vector<at::Tensor> params;
      for (const auto& group : optimizer_->param_groups()) {
        params.insert(params.end(), group.params().begin(),
                      group.params().end());
      }
      if (scaler_->Unscale(params)) {
        optimizer_->step();
        ++steps_taken_;
      } else {
        step_was_skipped_ = true;
      }
      scaler_->Update();
      return;
    }
    optimizer_->step();
    ++steps_taken_;
  });
}

void PreparedOptimizer::zero_grad() {
  if (gradients_->sync_gradients()) optimizer_->zero_grad();
}

}  // namespace accelerate
