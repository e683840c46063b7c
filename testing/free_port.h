// Picks a TCP port that is free right now, for tests that start a rendezvous
// store: state/free_port.h's `PickFreePort`, CHECK-failing instead of
// returning an error. (Another process may take the port before it is used;
// the window is short.)
//
// clang-format off
//   #include <map>
//   #include <string>
//   std::map<std::string, std::string> RendezvousVariables() {
//     return {{"MASTER_ADDR", "127.0.0.1"},
//             {"MASTER_PORT", std::to_string(PickFreePort())}};
//   }
// clang-format on
//
// Thread safety: safe to call concurrently.

#ifndef ACCELERATE_TESTING_FREE_PORT_H_
#define ACCELERATE_TESTING_FREE_PORT_H_

namespace accelerate::testing {

// A free port; CHECK-fails when the system has none.
int PickFreePort();

}  // namespace accelerate::testing

#endif  // ACCELERATE_TESTING_FREE_PORT_H_
