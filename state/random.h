// Accelerate's `synchronize_rng_states`: every process takes the main
// process's random generator state, so that random draws (dropout masks,
// augmentation in the dataset) agree across processes. Prepared data loaders call it at the start of each epoch for
// their `rng_types`.
//
// clang-format off
//   absl::Status Example(const PartialState& state) {
//     return SynchronizeRngStates(state, {RngType::kTorch});
//   }
// clang-format on
//
// Collective: every process calls with the same types. Thread safety: as the
// state's collectives; the generators are LibTorch's process-wide defaults.

#ifndef ACCELERATE_STATE_RANDOM_H_
#define ACCELERATE_STATE_RANDOM_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "state/partial_state.h"

namespace accelerate::state {

// Accelerate's `RNGType` names.
enum class RngType {
  kTorch,      // LibTorch's default CPU generator.
  kCuda,       // The default generator of the process's GPU (CUDA builds).
  kGenerator,  // A loader's own generator: ours are seeded alike everywhere.
};

// "torch", "cuda" or "generator"; `InvalidArgument` naming the value and the
// valid names otherwise ("xla" and "npu" included: not supported here).
[[nodiscard]] absl::StatusOr<RngType> ParseRngType(const std::string& name);

// Broadcasts the main process's state of each generator in `types`.
// `kGenerator` needs nothing. `FailedPrecondition` for `kCuda` when the
// process does not run on a GPU.
[[nodiscard]] absl::Status SynchronizeRngStates(
    const PartialState& state, const std::vector<RngType>& types);

}  // namespace accelerate::state

#endif  // ACCELERATE_STATE_RANDOM_H_
