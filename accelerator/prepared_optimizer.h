// An optimizer prepared by the `Accelerator`: `step` and `zero_grad` act only
// on steps that synchronize gradients, and with fp16 `step` first unscales
// the gradients (once per iteration, unless clipping already did) and is
// skipped when they hold an inf or NaN on any process (Accelerate's
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
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <torch/optim/optimizer.h>
#include "accelerator/gradient_state.h"
#include "precision/grad_scaler.h"
#include "sharding/sharded_optimizer.h"

namespace accelerate {

class PreparedOptimizer {
 public:
  // `scaler` is null unless training in fp16; `after_step` (may be empty)
  // runs after each synchronized step, taken or skipped.
  // `sharded` (may be null) holds the optimizer's state and gradients
  // sharded across processes (SHARD_GRAD_OP); `setup_error` is why
  // sharding could not be set up (returned by every `step`).
  PreparedOptimizer(const GradientState* gradients,
                    precision::GradScaler* scaler,
                    std::shared_ptr<torch::optim::Optimizer> optimizer,
                    std::function<absl::Status(const PreparedOptimizer&)>
                        after_step = {},
                    std::unique_ptr<sharding::ShardedOptimizer> sharded = {},
                    absl::Status setup_error = absl::OkStatus())
      : gradients_(gradients),
        scaler_(scaler),
        optimizer_(std::move(optimizer)),
        after_step_(std::move(after_step)),
        sharded_(std::move(sharded)),
        setup_error_(std::move(setup_error)) {}

  // Steps on synchronized steps; LibTorch's errors (out of memory, say)
  // come back as a status.
  [[nodiscard]] absl::Status step();
  void zero_grad();

  // fp16: divides this optimizer's gradients by the loss scale, once per
  // iteration; whether they are finite on every process. True without fp16.
  [[nodiscard]] absl::StatusOr<bool> UnscaleGradients();

  // Whether the last synchronized step was skipped (non-finite gradients).
  bool step_was_skipped() const { return step_was_skipped_; }
  int64_t steps_taken() const { return steps_taken_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  const torch::optim::Optimizer& optimizer() const { return *optimizer_; }
  // Puts the counters back where a checkpoint saved them.
  void RestoreCounters(int64_t steps_taken, bool step_was_skipped) {
    steps_taken_ = steps_taken;
    step_was_skipped_ = step_was_skipped;
  }
  // The parameters of every group (the whole ones when sharded).
  std::vector<at::Tensor> Parameters() const;
  // The sharded state (SHARD_GRAD_OP); null otherwise.
  const sharding::ShardedOptimizer* sharded() const { return sharded_.get(); }
  sharding::ShardedOptimizer* mutable_sharded() { return sharded_.get(); }
  // Why sharding could not be set up; OK otherwise.
  const absl::Status& setup_error() const { return setup_error_; }

 private:
  const GradientState* gradients_;
  precision::GradScaler* scaler_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  std::function<absl::Status(const PreparedOptimizer&)> after_step_;
  std::unique_ptr<sharding::ShardedOptimizer> sharded_;
  absl::Status setup_error_;
  bool step_was_skipped_ = false;
  int64_t steps_taken_ = 0;
};

}  // namespace accelerate

#endif  // ACCELERATE_ACCELERATOR_PREPARED_OPTIMIZER_H_
