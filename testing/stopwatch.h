// Elapsed time for tests that bound how long something takes, on the
// monotonic clock: a step of the wall clock (NTP, a virtual machine's clock
// sync) during a test cannot fail it, as it could with `absl::Now()`.
//
// clang-format off
//   bool Example() {
//     const accelerate::testing::Stopwatch watch;
//     // ... the work being bounded, then in a test:
//     // EXPECT_LT(watch.Elapsed(), absl::Seconds(10));
//     return watch.Elapsed() < absl::Seconds(10);
//   }
// clang-format on
//
// Thread safety: `Elapsed` may be called from any thread.

#ifndef ACCELERATE_TESTING_STOPWATCH_H_
#define ACCELERATE_TESTING_STOPWATCH_H_

#include <chrono>

#include "absl/time/time.h"

namespace accelerate::testing {

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}

  // The time since construction.
  absl::Duration Elapsed() const {
    return absl::FromChrono(std::chrono::steady_clock::now() - start_);
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

}  // namespace accelerate::testing

#endif  // ACCELERATE_TESTING_STOPWATCH_H_
