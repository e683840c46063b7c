// Converts exceptions thrown by LibTorch and c10d into `absl::Status` at our
// API boundary, naming the operation that failed.

#ifndef ACCELERATE_STATE_INTERNAL_ERRORS_H_
#define ACCELERATE_STATE_INTERNAL_ERRORS_H_

#include <exception>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include <c10/util/Exception.h>

namespace accelerate::state_internal {

// The status for an exception `message` raised during `operation`:
// `DeadlineExceeded` for time-outs, `Unavailable` for lost or refused peers,
// `Internal` otherwise.
absl::Status StatusFromException(absl::string_view operation,
                                 absl::string_view message);

// Runs `fn`, turning any exception it throws into a status.
template <typename Fn>
absl::Status RunGuarded(absl::string_view operation, Fn&& fn) {
  try {
    std::forward<Fn>(fn)();
    return absl::OkStatus();
  } catch (const c10::Error& e) {
    return StatusFromException(operation, e.what_without_backtrace());
  } catch (const std::exception& e) {
    return StatusFromException(operation, e.what());
  }
}

}  // namespace accelerate::state_internal

#endif  // ACCELERATE_STATE_INTERNAL_ERRORS_H_
