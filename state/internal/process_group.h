// Builds c10d process groups. This is the one place that knows how the
// LibTorch release in use assembles a `c10d::ProcessGroup` (since LibTorch 2,
// a front over per-device `c10d::Backend`s such as `ProcessGroupGloo`); the
// rest of the project sees only `c10d::ProcessGroup`.

#ifndef ACCELERATE_STATE_INTERNAL_PROCESS_GROUP_H_
#define ACCELERATE_STATE_INTERNAL_PROCESS_GROUP_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include <c10/util/intrusive_ptr.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace accelerate::state_internal {

struct ProcessGroupOptions {
  int rank = 0;
  int world_size = 1;
  // Collective time-out.
  absl::Duration timeout = absl::Minutes(30);
  // Gloo only: the interface to bind (GLOO_SOCKET_IFNAME); empty picks
  // 127.0.0.1 for a loopback `master_addr`, else the host's default.
  std::string gloo_socket_ifname;
  // The rendezvous address (MASTER_ADDR); decides the default above.
  std::string master_addr;
};

// A gloo group (CPU tensors; CUDA tensors too in CUDA builds) over `store`.
// `InvalidArgument` for an unusable `gloo_socket_ifname`.
[[nodiscard]] absl::StatusOr<c10::intrusive_ptr<c10d::ProcessGroup>>
MakeGlooGroup(const c10::intrusive_ptr<c10d::Store>& store,
              const ProcessGroupOptions& options);

// An NCCL group (CUDA tensors) over `store`. `FailedPrecondition` in builds
// without CUDA.
[[nodiscard]] absl::StatusOr<c10::intrusive_ptr<c10d::ProcessGroup>>
MakeNcclGroup(const c10::intrusive_ptr<c10d::Store>& store,
              const ProcessGroupOptions& options);

}  // namespace accelerate::state_internal

#endif  // ACCELERATE_STATE_INTERNAL_PROCESS_GROUP_H_
