// Waiting for c10d work. Small operations finish within a few hundred
// microseconds, less than it takes a blocked thread to be woken on a busy
// (or virtualized) machine, so the caller first polls, yielding the CPU, and
// blocks only when the operation is large or outlasts the polling budget.

#ifndef ACCELERATE_STATE_INTERNAL_WORK_H_
#define ACCELERATE_STATE_INTERNAL_WORK_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include <c10/util/intrusive_ptr.h>
#include <torch/csrc/distributed/c10d/Work.hpp>

namespace accelerate::state_internal {

// Operations moving at most this many bytes per rank are polled first.
inline constexpr int64_t kPollMaxBytes = int64_t{64} << 10;

// Waits for `work` (moving `bytes` per rank) and converts its failure into a
// status naming `operation`.
absl::Status WaitForWork(const c10::intrusive_ptr<c10d::Work>& work,
                         int64_t bytes, absl::string_view operation);

}  // namespace accelerate::state_internal

#endif  // ACCELERATE_STATE_INTERNAL_WORK_H_
