// Rendezvous over a c10d TCPStore: rank 0 serves the store, every rank checks
// in, and nobody goes on until all have arrived or the deadline has passed.

#ifndef ACCELERATE_STATE_INTERNAL_RENDEZVOUS_H_
#define ACCELERATE_STATE_INTERNAL_RENDEZVOUS_H_

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include <c10/util/intrusive_ptr.h>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include "state/launch_info.h"

namespace accelerate::state_internal {

// Connects to (rank 0: serves) the store at `info.master_addr:master_port`
// and waits until all `info.world_size` ranks have checked in.
// `DeadlineExceeded` names the ranks that did not arrive within `timeout`;
// `Unavailable` when rank 0 cannot listen on the port; `InvalidArgument` when
// two processes claim the same rank.
// REQUIRES: info.world_size > 1.
absl::StatusOr<c10::intrusive_ptr<c10d::Store>> Rendezvous(
    const state::LaunchInfo& info, absl::Duration timeout);

}  // namespace accelerate::state_internal

#endif  // ACCELERATE_STATE_INTERNAL_RENDEZVOUS_H_
