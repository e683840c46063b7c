#include "accelerator/prepared_scheduler.h"

namespace accelerate {

void PreparedScheduler::step() {
  if (!stepping_.with_optimizer) {
    scheduler_->step();
    ++scheduler_steps_;
    return;
  }
  if (!gradients_->sync_gradients()) {
    if (stepping_.adjust_scheduler) ++skipped_calls_;
    return;
  }
  if (optimizer_ != nullptr && optimizer_->step_was_skipped()) return;
  for (int i = 0; i < stepping_.steps_per_optimizer_step; ++i) {
    scheduler_->step();
    ++scheduler_steps_;
  }
}

}  // namespace accelerate
