// A LibTorch learning-rate scheduler's state as Python's
// `LRScheduler.state_dict()` holds it, and back. A LibTorch scheduler's only
// state is its step count (its learning rates live in the optimizer, whose
// state carries them), so every scheduler maps: `last_epoch` is the steps
// taken, `_step_count` one more plus the calls Accelerate counted as
// skipped while accumulating, `base_lrs` and `_last_lr` the group learning
// rates, `lr_lambdas` a None per group (what Python's `LambdaLR` writes for
// plain functions, so it loads ours).
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status Example(torch::optim::LRScheduler& scheduler,
//                        const torch::optim::Optimizer& optimizer) {
//     c10::IValue saved = SchedulerStateDict(scheduler, optimizer, {});
//     ACCELERATE_ASSIGN_OR_RETURN(SchedulerCounts counts,
//                                 LoadSchedulerStateDict(scheduler, saved, "scheduler.bin"));
//     return absl::OkStatus();
//   }
// clang-format on
//
// Thread safety: not while the scheduler steps.

#ifndef ACCELERATE_CHECKPOINT_SCHEDULER_STATE_H_
#define ACCELERATE_CHECKPOINT_SCHEDULER_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <ATen/core/ivalue.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/schedulers/lr_scheduler.h>

namespace accelerate::checkpoint {

struct SchedulerCounts {
  // Calls counted as skipped while accumulating (Accelerate's
  // `adjust_scheduler`).
  int64_t skipped_calls = 0;
  // The learning rates the schedule started from; empty: the optimizer's
  // current ones.
  std::vector<double> base_lrs;
};

// The number of steps `scheduler` took.
int64_t SchedulerSteps(const torch::optim::LRScheduler& scheduler);

c10::IValue SchedulerStateDict(const torch::optim::LRScheduler& scheduler,
                               const torch::optim::Optimizer& optimizer,
                               const SchedulerCounts& counts);

// Sets `scheduler`'s step count from `saved` (`source` names it in errors)
// and returns the rest. `InvalidArgument` naming the field when
// `last_epoch` is missing or negative.
[[nodiscard]] absl::StatusOr<SchedulerCounts> LoadSchedulerStateDict(
    torch::optim::LRScheduler& scheduler, const c10::IValue& saved,
    const std::string& source);

}  // namespace accelerate::checkpoint

#endif  // ACCELERATE_CHECKPOINT_SCHEDULER_STATE_H_
