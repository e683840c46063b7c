#include "testing/distributed_testutil.h"

#include <algorithm>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "state/environment.h"
#include "testing/free_port.h"

namespace accelerate::testing {

std::map<std::string, std::string> TorchrunVariables(int rank, int world_size,
                                                     int port) {
  return {{"RANK", absl::StrCat(rank)},
          {"WORLD_SIZE", absl::StrCat(world_size)},
          {"LOCAL_RANK", absl::StrCat(rank)},
          {"LOCAL_WORLD_SIZE", absl::StrCat(world_size)},
          {"GROUP_RANK", "0"},
          {"MASTER_ADDR", "127.0.0.1"},
          {"MASTER_PORT", absl::StrCat(port)}};
}

std::vector<absl::Status> RunOnRankThreads(
    int world_size, const std::map<std::string, std::string>& extra_env,
    const std::function<absl::Status(int rank, const state::Environment& env)>&
        fn) {
  const int port = PickFreePort();
  std::vector<absl::Status> statuses(world_size);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world_size; ++rank) {
    threads.emplace_back([&, rank] {
      std::map<std::string, std::string> vars =
          TorchrunVariables(rank, world_size, port);
      for (const auto& [name, value] : extra_env) vars[name] = value;
      statuses[rank] = fn(rank, state::MapEnvironment(vars));
    });
  }
  for (std::thread& thread : threads) thread.join();
  return statuses;
}

std::vector<absl::Status> RunOnRanks(
    int world_size,
    const std::function<absl::Status(const state::PartialState&)>& fn,
    const state::PartialStateOptions& options,
    const std::map<std::string, std::string>& extra_env) {
  // A failed rank must not leave the others waiting for half an hour.
  state::PartialStateOptions bounded = options;
  bounded.timeout = std::min(options.timeout, absl::Seconds(120));
  return RunOnRankThreads(
      world_size, extra_env,
      [&](int rank, const state::Environment& env) -> absl::Status {
        absl::StatusOr<std::unique_ptr<state::PartialState>> created =
            state::PartialState::Create(bounded, env);
        if (!created.ok()) return created.status();
        return fn(**created);
      });
}

}  // namespace accelerate::testing
