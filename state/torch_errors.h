// The project's one conversion of exceptions thrown by LibTorch and c10d
// into `absl::Status`, used at every boundary where our API calls into
// LibTorch (no exception crosses our API).
//
// clang-format off
//   #include <ATen/core/Tensor.h>
//   absl::Status Example(at::Tensor& weights, c10::Device device) {
//     // On failure: "moving the weights to cuda:0 failed: <LibTorch's message>"
//     return RunGuarded("moving the weights to cuda:0",
//                       [&] { weights = weights.to(device); });
//   }
// clang-format on
//
// Codes, from the exception's type and then its message:
//   - `ResourceExhausted`: out of memory (`c10::OutOfMemoryError`,
//     `std::bad_alloc`, "out of memory", "can't allocate memory");
//   - `DeadlineExceeded`: time-outs ("timed out", "timeout");
//   - `Unavailable`: lost or refused peers and the network only
//     (`c10::DistNetworkError`, or a c10d message about a closed connection,
//     a reset, a refused connection, a broken pipe);
//   - `InvalidArgument`: bad shapes, sizes, dtypes and values
//     (`c10::TypeError`, `c10::ValueError`, `c10::IndexError`, or a message
//     naming a shape, size, dimension or dtype mismatch);
//   - `Unimplemented`: `c10::NotImplementedError`;
//   - `Internal`: anything else.
//
// Thread safety: the functions are pure; `RunGuarded` runs `fn` on the
// calling thread.

#ifndef ACCELERATE_STATE_TORCH_ERRORS_H_
#define ACCELERATE_STATE_TORCH_ERRORS_H_

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accelerate::state {

// The status for `error`, raised while doing `operation` (a phrase such as
// "all_reduce on rank 1"); the message is "<operation> failed: <what>",
// without LibTorch's C++ backtrace.
[[nodiscard]] absl::Status StatusFromException(absl::string_view operation,
                                               const std::exception& error);

// Runs `fn()`, turning any exception it throws into a status (OK if none).
template <typename Fn>
[[nodiscard]] absl::Status RunGuarded(absl::string_view operation, Fn&& fn) {
  try {
    std::forward<Fn>(fn)();
    return absl::OkStatus();
  } catch (const std::exception& error) {
    return StatusFromException(operation, error);
  }
}

// As `RunGuarded`, returning what `fn()` returns.
template <typename Fn, typename T = std::invoke_result_t<Fn>>
[[nodiscard]] absl::StatusOr<T> CallGuarded(absl::string_view operation,
                                            Fn&& fn) {
  std::optional<T> result;
  absl::Status status = RunGuarded(
      operation, [&] { result.emplace(std::forward<Fn>(fn)()); });
  if (!status.ok()) return status;
  return *std::move(result);
}

}  // namespace accelerate::state

#endif  // ACCELERATE_STATE_TORCH_ERRORS_H_
