// A learning-rate scheduler prepared by the `Accelerator` (Accelerate's
// `AcceleratedScheduler`): stepping with the optimizer, it steps only on
// synchronized steps whose optimizer step was not skipped, and then
// `steps_per_optimizer_step` times (the number of processes unless batches
// are split), so that a schedule written for one process keeps its length
// in samples.
//
// clang-format off
//   void Example(PreparedScheduler& scheduler) {
//     scheduler.step();  // after the prepared optimizer's step
//   }
// clang-format on
//
// Thread safety: one training thread. Ownership: shares the scheduler; the
// gradient state and the optimizer wrapper belong to the Accelerator, which
// must outlive this wrapper.

#ifndef ACCELERATE_ACCELERATOR_PREPARED_SCHEDULER_H_
#define ACCELERATE_ACCELERATOR_PREPARED_SCHEDULER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/optim/schedulers/lr_scheduler.h>
#include "accelerator/gradient_state.h"
#include "accelerator/prepared_optimizer.h"

namespace accelerate {

struct SchedulerStepping {
  // Step only with the optimizer (Accelerate's
  // `step_scheduler_with_optimizer`); otherwise every call steps once.
  bool with_optimizer = true;
  // Underlying steps per optimizer step.
  int steps_per_optimizer_step = 1;
  // Count calls on accumulating batches as skipped (Accelerate's
  // `adjust_scheduler`).
  bool adjust_scheduler = true;
};

class PreparedScheduler {
 public:
  // `optimizer` may be null (no skipped steps are then seen).
  PreparedScheduler(const GradientState* gradients, SchedulerStepping stepping,
                    std::shared_ptr<torch::optim::LRScheduler> scheduler,
                    const PreparedOptimizer* optimizer)
      : gradients_(gradients),
        stepping_(stepping),
        scheduler_(std::move(scheduler)),
        optimizer_(optimizer) {
    if (optimizer_ != nullptr) {
      for (const auto& group : optimizer_->optimizer().param_groups()) {
        base_lrs_.push_back(group.options().get_lr());
      }
    }
  }

  void step();
  // Steps of the underlying scheduler so far.
  int64_t scheduler_steps() const { return scheduler_steps_; }
  // Calls on batches that only accumulated, with `adjust_scheduler`
  // (Accelerate adds them to the scheduler's `_step_count`; no learning rate
  // moves).
  int64_t skipped_calls() const { return skipped_calls_; }
  torch::optim::LRScheduler& scheduler() { return *scheduler_; }
  const torch::optim::LRScheduler& scheduler() const { return *scheduler_; }
  // The optimizer it follows (may be null).
  const PreparedOptimizer* optimizer() const { return optimizer_; }
  // The learning rates of the optimizer's groups when it was prepared
  // (Python's `base_lrs`).
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  // Puts the counters back where a checkpoint saved them (the underlying
  // scheduler's own count is restored separately).
  void RestoreCounters(int64_t scheduler_steps, int64_t skipped_calls,
                       std::vector<double> base_lrs) {
    scheduler_steps_ = scheduler_steps;
    skipped_calls_ = skipped_calls;
    if (!base_lrs.empty()) base_lrs_ = std::move(base_lrs);
  }

 private:
  const GradientState* gradients_;
  SchedulerStepping stepping_;
  std::shared_ptr<torch::optim::LRScheduler> scheduler_;
  const PreparedOptimizer* optimizer_;
  int64_t scheduler_steps_ = 0;
  int64_t skipped_calls_ = 0;
  std::vector<double> base_lrs_;
};

}  // namespace accelerate

#endif  // ACCELERATE_ACCELERATOR_PREPARED_SCHEDULER_H_
