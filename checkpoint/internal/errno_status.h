// The status of a failed system call on a file, with the canonical code
// that fits its errno: `NotFound`, `PermissionDenied`, `ResourceExhausted`
// (a full disk or quota), `Internal` otherwise; the message is
// "<what> <path>: <strerror>".
//
// Thread safety: a pure function.

#ifndef ACCELERATE_CHECKPOINT_INTERNAL_ERRNO_STATUS_H_
#define ACCELERATE_CHECKPOINT_INTERNAL_ERRNO_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace accelerate::checkpoint_internal {

absl::Status ErrnoStatus(int error, absl::string_view what,
                         const std::string& path);

}  // namespace accelerate::checkpoint_internal

#endif  // ACCELERATE_CHECKPOINT_INTERNAL_ERRNO_STATUS_H_
