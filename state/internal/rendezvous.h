// Rendezvous over a c10d TCPStore: rank 0 serves the store, every rank checks
// in, and nobody goes on until all have arrived or the deadline has passed.

#ifndef ACCELERATE_STATE_INTERNAL_RENDEZVOUS_H_
#define ACCELERATE_STATE_INTERNAL_RENDEZVOUS_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include <c10/util/intrusive_ptr.h>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include "state/launch_info.h"

namespace accelerate::state_internal {

// A device a process claims for itself alone at the rendezvous (NCCL's
// GPU: NCCL cannot put two ranks on one).
struct DeviceClaim {
  // What makes the device itself unique across machines (a GPU's UUID), so
  // that two processes seeing one GPU under different indexes (their own
  // CUDA_VISIBLE_DEVICES) still collide.
  std::string id;
  // The device as the messages name it, e.g. "cuda:0 on host n1".
  std::string description;
  // What the error says to do when two processes claim the device.
  std::string remedy;
};

// Connects to (rank 0: serves) the store at `info.master_addr:master_port`
// and waits until all `info.world_size` ranks have checked in, each claiming
// `device` when given. Every rank returns the same outcome:
// `DeadlineExceeded` names the ranks that did not arrive within `timeout`;
// `Unavailable` when rank 0 cannot listen on the port; `InvalidArgument` when
// two processes claim the same rank; `FailedPrecondition` naming both ranks
// and the device when two claim the same device.
// REQUIRES: info.world_size > 1.
absl::StatusOr<c10::intrusive_ptr<c10d::Store>> Rendezvous(
    const state::LaunchInfo& info, absl::Duration timeout,
    const std::optional<DeviceClaim>& device = std::nullopt);

}  // namespace accelerate::state_internal

#endif  // ACCELERATE_STATE_INTERNAL_RENDEZVOUS_H_
