// A fresh process for host_malloc_test: creates a single-process
// `PartialState` (which tunes malloc unless told not to), then allocates,
// touches and frees what a small model's training step would (15 blocks of
// 1 MiB and 5 of 2 MiB) 20 times and counts the page faults per step after
// two warm-up steps. Prints one line:
//   applied=<0|1> faults_per_step=<n> pages_per_step=<n> reason=<text>

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <vector>

#include "state/partial_state.h"

namespace {

long MinorFaults() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

}  // namespace

int main() {
  auto state = accelerate::state::PartialState::Create();
  if (!state.ok()) {
    std::cerr << "host_malloc_probe: " << state.status() << "\n";
    return 1;
  }
  constexpr int kSteps = 20, kWarmup = 2, kBlocks = 20;
  long faults_after_warmup = 0;
  std::vector<void*> blocks(kBlocks);
  for (int step = 0; step < kSteps; ++step) {
    if (step == kWarmup) faults_after_warmup = MinorFaults();
    for (int i = 0; i < kBlocks; ++i) {
      const size_t bytes = (i % 4 == 0 ? 2 : 1) << 20;
      blocks[i] = std::malloc(bytes);
      if (blocks[i] == nullptr) return 1;
      std::memset(blocks[i], step, bytes);
    }
    for (void* block : blocks) std::free(block);
  }
  const long per_step =
      (MinorFaults() - faults_after_warmup) / (kSteps - kWarmup);
  // 15 x 1 MiB + 5 x 2 MiB, in this machine's pages.
  const long pages_per_step = (25L << 20) / ::sysconf(_SC_PAGESIZE);
  const auto& tuning = (*state)->host_malloc_tuning();
  std::printf("applied=%d faults_per_step=%ld pages_per_step=%ld reason=%s\n",
              tuning.applied ? 1 : 0, per_step, pages_per_step,
              tuning.reason.c_str());
  return 0;
}
