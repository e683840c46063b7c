// A 2-process tour of `//state`: join the process group, split work between
// processes, and combine the results with collectives.
//
//   bazel-bin/launch/accelerate launch --num_processes 2
//       bazel-bin/examples/state_demo --num_items=10   (one command line)
//
// Each copy is one rank; it runs the same under torchrun, mpirun or srun,
// and alone as a single process.

#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include <ATen/ATen.h>
#include "state/collectives.h"
#include "state/partial_state.h"

ABSL_FLAG(int, num_items, 10, "Work items to split between the processes.");

namespace {

using ::accelerate::state::PartialState;

int RunRank(const PartialState& state) {
  std::cout << "rank " << state.process_index() << " of "
            << state.num_processes() << " (local "
            << state.local_process_index() << ", backend "
            << accelerate::state::BackendName(state.backend()) << ", device "
            << state.device() << ")" << std::endl;

  // Split the work items between processes, as Accelerate does.
  std::vector<int> items;
  for (int i = 0; i < absl::GetFlag(FLAGS_num_items); ++i) items.push_back(i);
  const std::vector<int> mine = state.SplitBetweenProcesses(items);
  std::cout << "rank " << state.process_index() << " works on items "
            << absl::StrJoin(mine, ",") << std::endl;

  // Each rank computes the squares of its items; the sum goes over all.
  at::Tensor squares =
      at::tensor(std::vector<int64_t>(mine.begin(), mine.end())).pow(2);
  auto total = accelerate::state::Reduce(
      state, squares.sum(), {accelerate::state::Reduction::kSum});
  auto hosts = accelerate::state::GatherObject(
      state, absl::StrCat("rank ", state.process_index(), " pid ", getpid()));
  if (!total.ok() || !hosts.ok()) {
    std::cerr << "collective failed: "
              << (total.ok() ? hosts.status() : total.status()) << std::endl;
    return 1;
  }
  if (absl::Status done = state.WaitForEveryone(); !done.ok()) {
    std::cerr << done << std::endl;
    return 1;
  }
  state.Print("sum of squares over all ranks: ", total->item<int64_t>());
  state.Print("ranks: ", absl::StrJoin(*hosts, "; "));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto state = PartialState::Create();
  if (!state.ok()) {
    std::cerr << "state_demo: " << state.status() << std::endl;
    return 1;
  }
  return RunRank(**state);
}
