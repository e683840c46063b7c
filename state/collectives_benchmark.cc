// Barrier latency and all-reduce sweep (4 B to 64 MiB of float32) over the
// process group. Run as one copy per rank, e.g. 2 ranks:
//
//   benchmarks/state_collectives.py   (runs this and the Python peer)
//
// or by hand with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set. Every rank
// runs the same fixed iteration counts (Google Benchmark's adaptive counts
// would differ between ranks and deadlock); only rank 0 reports.

#include <cstdint>
#include <iostream>
#include <memory>

#include "absl/status/status.h"
#include "benchmark/benchmark.h"
#include <ATen/ATen.h>
#include "state/collectives.h"
#include "state/partial_state.h"

namespace accelerate::state {
namespace {

PartialState* g_state = nullptr;

// Same formula as benchmarks/state_collectives_peer.py.
int64_t IterationsFor(int64_t bytes) {
  const int64_t by_volume = (int64_t{256} << 20) / bytes;
  return std::max<int64_t>(10, std::min<int64_t>(2000, by_volume));
}

void Check(const absl::Status& status) {
  if (!status.ok()) {
    std::cerr << status << std::endl;
    std::exit(1);
  }
}

void Sync() { Check(g_state->WaitForEveryone()); }

// The public API, as a user calls it.
void BM_Barrier(benchmark::State& state) {
  Sync();
  for (auto _ : state) {
    Check(g_state->WaitForEveryone());
  }
}

void BM_AllReduce(benchmark::State& state) {
  const int64_t bytes = state.range(0);
  at::Tensor tensor = at::ones({bytes / 4}, at::kFloat);
  // A sum, as the peer's `dist.all_reduce` (the default, a mean, would add
  // a division the peer does not do).
  const ReduceOptions sum{.reduction = Reduction::kSum};
  // One warm-up round outside the timing.
  Check(AllReduceInPlace(*g_state, tensor, sum));
  Sync();
  for (auto _ : state) {
    Check(AllReduceInPlace(*g_state, tensor, sum));
  }
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["bytes"] = static_cast<double>(bytes);
}

void RegisterAll() {
  benchmark::RegisterBenchmark("BM_Barrier", BM_Barrier)
      ->Iterations(2000)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  for (int64_t bytes = 4; bytes <= (int64_t{64} << 20); bytes *= 4) {
    benchmark::RegisterBenchmark("BM_AllReduce", BM_AllReduce)
        ->Arg(bytes)
        ->Iterations(IterationsFor(bytes))
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }
}

class NullReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace
}  // namespace accelerate::state

int main(int argc, char** argv) {
  using accelerate::state::PartialState;
  auto state = PartialState::Create();
  if (!state.ok()) {
    std::cerr << state.status() << std::endl;
    return 1;
  }
  if (!(*state)->use_distributed()) {
    std::cerr << "collectives_benchmark needs at least 2 ranks "
                 "(RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT)\n";
    return 1;
  }
  accelerate::state::g_state = state->get();
  accelerate::state::RegisterAll();
  benchmark::Initialize(&argc, argv);
  if ((*state)->is_main_process()) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    accelerate::state::NullReporter null_reporter;
    benchmark::RunSpecifiedBenchmarks(&null_reporter);
  }
  accelerate::state::Sync();
  return 0;
}
