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

std::vector<absl::Status> RunOnRanks(
    int world_size,
    const std::function<absl::Status(const state::PartialState&)>& fn,
    const state::PartialStateOptions& options,
    const std::map<std::string, std::string>& extra_env) {
  const int port = PickFreePort();
  // A failed rank must not leave the others waiting for half an hour.
  state::PartialStateOptions bounded = options;
  bounded.timeout = std::min(options.timeout, absl::Seconds(120));
  std::vector<absl::Status> statuses(world_size);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world_size; ++rank) {
    threads.emplace_back([&, rank] {
      std::map<std::string, std::string> vars =
          TorchrunVariables(rank, world_size, port);
      for (const auto& [name, value] : extra_env) vars[name] = value;
      absl::StatusOr<std::unique_ptr<state::PartialState>> created =
          state::PartialState::Create(bounded, state::MapEnvironment(vars));
      if (!created.ok()) {
        statuses[rank] = created.status();
        return;
      }
      statuses[rank] = fn(**created);
    });
  }
  for (std::thread& thread : threads) thread.join();
  return statuses;
}

}  // namespace accelerate::testing
