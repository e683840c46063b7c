// An optimizer prepared by the `Accelerator`: `step` and `zero_grad` act only
// on steps that synchronize gradients, and with fp16 `step` first unscales
// the gradients and is skipped when they hold an inf or NaN (Accelerate's
// `AcceleratedOptimizer`). The names follow LibTorch's optimizer.
//
// clang-format off
//   absl::Status Example(PreparedOptimizer& optimizer) {
//     absl::Status stepped = optimizer.step();  // no-op while accumulating
//     optimizer.zero_grad();
//     return stepped;
//   }
// clang-format on
//
// Thread safety: one training thread. Ownership: shares the optimizer; the
// gradient state and the scaler belong to the Accelerator, which must
// outlive this wrapper.

#ifndef ACCELERATE_ACCELERATOR_PREPARED_OPTIMIZER_H_
#define ACCELERATE_ACCELERATOR_PREPARED_OPTIMIZER_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include <torch/optim/optimizer.h>
#include "accelerator/grad_scaler.h"
#include "accelerator/gradient_state.h"

namespace accelerate {

class PreparedOptimizer {
 public:
  // `scaler` is null unless training in fp16.
  PreparedOptimizer(const GradientState* gradients, GradScaler* scaler,
                    std::shared_ptr<torch::optim::Optimizer> optimizer)
      : gradients_(gradients), scaler_(scaler), optimizer_(std::move(optimizer)) {}

  // Steps on synchronized steps; LibTorch's errors (out of memory, say)
  // come back as a status.
  [[nodiscard]] absl::Status step();
  void zero_grad();
  // Whether the last synchronized step was skipped (non-finite gradients).
  bool step_was_skipped() const { return step_was_skipped_; }
  int64_t steps_taken() const { return steps_taken_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }

 private:
  const GradientState* gradients_;
  GradScaler* scaler_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  bool step_was_skipped_ = false;
  int64_t steps_taken_ = 0;
};

}  // namespace accelerate

#endif  // ACCELERATE_ACCELERATOR_PREPARED_OPTIMIZER_H_
