// Uses `//state` alone: joins the job its launcher describes, splits work
// between the processes and checks the sum of every rank's share.

#include <iostream>
#include <memory>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include <ATen/ATen.h>
#include "state/collectives.h"
#include "state/partial_state.h"
#include "state/status_macros.h"

namespace {

absl::Status Run() {
  ACCELERATE_ASSIGN_OR_RETURN(auto state,
                              accelerate::state::PartialState::Create());
  std::vector<int> items(10);
  std::iota(items.begin(), items.end(), 1);
  const std::vector<int> mine = state->SplitBetweenProcesses(items);
  const int64_t my_sum = std::accumulate(mine.begin(), mine.end(), 0);
  ACCELERATE_ASSIGN_OR_RETURN(
      at::Tensor sums,
      accelerate::state::Gather(*state, at::tensor({my_sum}, at::kLong)));
  const int64_t total = sums.sum().item<int64_t>();
  if (total != 55) {
    return absl::InternalError(absl::StrCat("the shares sum to ", total));
  }
  state->Print("state_only: ", state->num_processes(),
               " processes, shares sum to ", total);
  return state->WaitForEveryone();
}

}  // namespace

int main() {
  if (absl::Status status = Run(); !status.ok()) {
    std::cerr << status << "\n";
    return 1;
  }
  return 0;
}
