// Accelerate's `find_executable_batch_size`: runs a training function with a
// starting batch size and, while it runs out of memory (`ResourceExhausted`,
// which LibTorch's out-of-memory errors become through `state::RunGuarded`),
// again with half the batch size.
//
// clang-format off
//   absl::StatusOr<double> Example() {
//     return FindExecutableBatchSize<double>(
//         [](int64_t batch_size) -> absl::StatusOr<double> {
//           if (batch_size > 32) {
//             return absl::ResourceExhaustedError("out of memory");
//           }
//           return 0.5;  // the final loss, say
//         },
//         /*starting_batch_size=*/128);  // runs with 128, 64, then 32
//   }
// clang-format on
//
// Thread safety: calls `fn` on the calling thread.

#ifndef ACCELERATE_ACCELERATOR_FIND_EXECUTABLE_BATCH_SIZE_H_
#define ACCELERATE_ACCELERATOR_FIND_EXECUTABLE_BATCH_SIZE_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace accelerate {

// `fn(batch_size)`'s result for the first batch size (starting at
// `starting_batch_size`, halved after each `ResourceExhausted`) where it
// does not run out of memory. Other errors return at once. When the batch
// size reaches zero: `ResourceExhausted` naming the last error.
// REQUIRES: starting_batch_size > 0.
template <typename T>
[[nodiscard]] absl::StatusOr<T> FindExecutableBatchSize(
    const std::function<absl::StatusOr<T>(int64_t batch_size)>& fn,
    int64_t starting_batch_size = 128) {
  absl::Status last;
  for (int64_t batch_size = starting_batch_size; batch_size > 0;
       batch_size /= 2) {
    absl::StatusOr<T> result = fn(batch_size);
    if (result.ok() || !absl::IsResourceExhausted(result.status())) {
      return result;
    }
    last = result.status();
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "find_executable_batch_size: no executable batch size found, reached "
      "zero from ",
      starting_batch_size, "; last error: ", last.message()));
}

}  // namespace accelerate

#endif  // ACCELERATE_ACCELERATOR_FIND_EXECUTABLE_BATCH_SIZE_H_
