#include "state/internal/work.h"

#include <sched.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "state/torch_errors.h"

namespace accelerate::state_internal {

using ::accelerate::state::RunGuarded;
namespace {

// How long a small operation is polled before the caller blocks.
constexpr absl::Duration kPollBudget = absl::Milliseconds(2);

}  // namespace

absl::Status WaitForWork(const c10::intrusive_ptr<c10d::Work>& work,
                         int64_t bytes, absl::string_view operation) {
  return RunGuarded(operation, [&] {
    if (bytes <= kPollMaxBytes) {
      const absl::Time give_up = absl::Now() + kPollBudget;
      while (!work->isCompleted() && absl::Now() < give_up) sched_yield();
    }
    work->wait();  // Returns at once when done; throws the work's error.
  });
}

}  // namespace accelerate::state_internal
