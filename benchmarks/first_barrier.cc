// Joins the process group, passes one barrier, and (rank 0) prints the wall
// clock in nanoseconds: the end point of the launcher-overhead benchmark
// (benchmarks/launcher_overhead.py). The peer is first_barrier.py.

#include <time.h>

#include <iostream>

#include "state/partial_state.h"

int main() {
  auto state = accelerate::state::PartialState::Create();
  if (!state.ok()) {
    std::cerr << state.status() << std::endl;
    return 1;
  }
  if (absl::Status done = (*state)->WaitForEveryone(); !done.ok()) {
    std::cerr << done << std::endl;
    return 1;
  }
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  if ((*state)->is_main_process()) {
    std::cout << "BARRIER_NS " << now.tv_sec * 1000000000LL + now.tv_nsec
              << std::endl;
  }
  return 0;
}
