// Tuning of glibc's `malloc` for tensor workloads: LibTorch allocates every
// CPU tensor with `malloc`, and glibc's defaults hand blocks above 128 KiB
// (raised only as far as the largest block freed so far) straight to the
// kernel with `mmap`, and give free memory at the top of the heap back
// beyond a trim threshold (128 KiB, raised to twice the mmap threshold
// along with it). A training step that allocates and frees megabytes of
// activations then faults every page in again on each step (thousands of
// page faults a step; 10-20% of a small model's step time on CPU). Tuning
// sets the thresholds once to glibc's own ceilings (blocks up to 32 MiB
// come from the heap and are reused; up to 64 MiB free at the top of a
// heap stays mapped), which is where a long-running Python process tends
// to end up by itself.
//
// clang-format off
//   #include <iostream>
//   int Example() {
//     absl::StatusOr<HostMallocTuning> tuning =
//         TuneHostMalloc(std::nullopt, ProcessEnvironment());
//     if (!tuning.ok()) { std::cerr << tuning.status() << "\n"; return 1; }
//     if (!tuning->applied) std::cerr << "malloc left as is: " << tuning->reason << "\n";
//     return 0;
//   }
// clang-format on
//
// `PartialState::Create` calls `TuneHostMalloc`, so every program built on
// `//state` (the `Accelerator` included) is tuned unless told otherwise:
// ACCELERATE_TUNE_MALLOC=false, or the user's own choice in the
// environment, which wins: MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_,
// MALLOC_TOP_PAD_, MALLOC_MMAP_MAX_ or a `glibc.malloc.*` threshold in
// GLIBC_TUNABLES, or another allocator (jemalloc, tcmalloc, mimalloc) in
// LD_PRELOAD. (A program's own earlier `mallopt` calls are not seen: such a
// program should switch tuning off. An allocator linked into the program
// instead of glibc's ignores the settings.)
// The cost: freed memory is kept for reuse instead of going back to the
// system: up to 64 MiB at the top of each malloc arena, and blocks up to
// 32 MiB freed below blocks still in use (with glibc's defaults such large
// blocks are unmapped as soon as they are freed).
//
// Thread safety: `PlanHostMallocTuning` is a pure function of its
// arguments. `TuneHostMalloc` changes process-wide settings with `mallopt`
// (itself thread safe); a later call can repeat them but never undoes them.

#ifndef ACCELERATE_STATE_HOST_MALLOC_H_
#define ACCELERATE_STATE_HOST_MALLOC_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "state/environment.h"

namespace accelerate::state {

// Blocks up to this size come from the heap once tuned (glibc's ceiling for
// its own dynamic mmap threshold on 64-bit systems).
inline constexpr int64_t kTunedMmapThresholdBytes = int64_t{32} << 20;
// Free memory at the top of a heap stays mapped up to this size once tuned
// (twice the mmap threshold, the ratio glibc keeps itself).
inline constexpr int64_t kTunedTrimThresholdBytes = int64_t{64} << 20;

// What was (or would be) done with this process's `malloc`.
struct HostMallocTuning {
  // True when the thresholds are (to be) set.
  bool applied = false;
  // When not applied, why: the setting that decided, naming its value.
  std::string reason;
};

// Decides whether to tune. `requested` (an option) wins over
// ACCELERATE_TUNE_MALLOC, which defaults to true; with the user's own malloc
// settings in `env` (see above), or off glibc, nothing is tuned.
// Errors: `InvalidArgument` when ACCELERATE_TUNE_MALLOC is not a boolean.
[[nodiscard]] absl::StatusOr<HostMallocTuning> PlanHostMallocTuning(
    std::optional<bool> requested, const Environment& env);

// Plans as above and, when the plan says so, sets the thresholds with
// `mallopt`. Returns what was done: not applied, with the reason, when the
// plan says no or `mallopt` refuses (as sanitizers' stand-ins do).
// Errors: those of `PlanHostMallocTuning`.
[[nodiscard]] absl::StatusOr<HostMallocTuning> TuneHostMalloc(
    std::optional<bool> requested, const Environment& env);

}  // namespace accelerate::state

#endif  // ACCELERATE_STATE_HOST_MALLOC_H_
