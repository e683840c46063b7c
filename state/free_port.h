// TCP ports that are free right now: the one place that asks the kernel, for
// the launcher (rendezvous port) and for tests that start a store. Another
// process may take a port between the check and its use; the window is short.
//
// clang-format off
//   int RendezvousPort() {
//     if (PortIsFree(29500)) return 29500;
//     absl::StatusOr<int> port = PickFreePort();
//     return port.ok() ? *port : 29500;
//   }
// clang-format on
//
// Thread safety: the functions keep no state.

#ifndef ACCELERATE_STATE_FREE_PORT_H_
#define ACCELERATE_STATE_FREE_PORT_H_

#include "absl/status/statusor.h"

namespace accelerate::state {

// Whether a TCP listener could bind `port` on every interface now (a port in
// TIME_WAIT counts as free, as SO_REUSEADDR allows).
bool PortIsFree(int port);

// A TCP port that is free on every interface now, picked by the kernel.
// `Unavailable` when no socket can be bound.
[[nodiscard]] absl::StatusOr<int> PickFreePort();

}  // namespace accelerate::state

#endif  // ACCELERATE_STATE_FREE_PORT_H_
