// The one clock of the C++ benchmarks: monotonic seconds, for timing a
// span as `Now() - start`.
//
// clang-format off
//   double Example() {
//     const double start = Now();
//     return Now() - start;  // seconds elapsed
//   }
// clang-format on
//
// Thread safety: any thread.

#ifndef ACCELERATE_BENCHMARKS_CLOCK_H_
#define ACCELERATE_BENCHMARKS_CLOCK_H_

#include <time.h>

namespace accelerate::benchmarks {

// Seconds on CLOCK_MONOTONIC (not wall time: immune to clock changes).
inline double Now() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

}  // namespace accelerate::benchmarks

#endif  // ACCELERATE_BENCHMARKS_CLOCK_H_
