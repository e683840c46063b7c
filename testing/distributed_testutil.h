// Runs a function on N ranks as N threads of this process, each with its own
// `PartialState` joined over a TCPStore and gloo on 127.0.0.1 (c10d's own
// tests simulate ranks the same way).
//
// clang-format off
//   #include <ATen/ATen.h>
//   #include "state/collectives.h"
//   #include "state/status_macros.h"
//   bool Example() {
//     std::vector<absl::Status> statuses = RunOnRanks(
//         4, [](const state::PartialState& state) -> absl::Status {
//           return state::Gather(state, at::ones({2})).status();
//         });
//     return statuses[0].ok();
//   }
// clang-format on

#ifndef ACCELERATE_TESTING_DISTRIBUTED_TESTUTIL_H_
#define ACCELERATE_TESTING_DISTRIBUTED_TESTUTIL_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "state/environment.h"
#include "state/partial_state.h"

namespace accelerate::testing {

// Environment variables torchrun would give `rank` of `world_size` on one
// machine with its store at 127.0.0.1:`port`.
std::map<std::string, std::string> TorchrunVariables(int rank, int world_size,
                                                     int port);

// Runs `fn(rank, env)` on `world_size` threads at once; `env` holds the
// variables torchrun would give that rank (one fresh free port for all) plus
// `extra_env`. Returns each rank's status. For ranks that build something
// other than a bare `PartialState` (an `Accelerator`, say).
std::vector<absl::Status> RunOnRankThreads(
    int world_size, const std::map<std::string, std::string>& extra_env,
    const std::function<absl::Status(int rank, const state::Environment& env)>&
        fn);

// Creates `world_size` states concurrently (one thread each, a fresh free
// port) and runs `fn` on each. Returns per rank the creation error or `fn`'s
// status. `extra_env` is added to each rank's variables.
std::vector<absl::Status> RunOnRanks(
    int world_size,
    const std::function<absl::Status(const state::PartialState&)>& fn,
    const state::PartialStateOptions& options = {},
    const std::map<std::string, std::string>& extra_env = {});

}  // namespace accelerate::testing

#endif  // ACCELERATE_TESTING_DISTRIBUTED_TESTUTIL_H_
