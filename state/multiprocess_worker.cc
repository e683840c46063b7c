// One rank of the real multi-process tests (multiprocess_test.cc): joins the
// job described by its environment and prints what each operation returned,
// one `RESULT <name> <values>` line each, for the test to check.
//
// Usage: multiprocess_worker <scenario> [timeout_seconds]
//   collectives  every collective and process-control operation
//   crash        the last rank dies after the rendezvous; the others report
//                what their next collective returned
//   debug        ranks gather tensors of different shapes (debug mode on)

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include <ATen/ATen.h>
#include "state/collectives.h"
#include "state/partial_state.h"

namespace accelerate::state {
namespace {

// `tensor` on the state's device: collectives take tensors there (NCCL
// moves only GPU tensors).
at::Tensor Here(const PartialState& state, const at::Tensor& tensor) {
  return tensor.to(state.device());
}

std::string Values(const at::Tensor& tensor) {
  const at::Tensor flat = tensor.to(at::kDouble).contiguous().flatten();
  std::vector<std::string> parts;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    parts.push_back(absl::StrCat(flat[i].item<double>()));
  }
  return absl::StrJoin(parts, ",");
}

void Report(absl::string_view name, absl::string_view value) {
  std::cout << "RESULT " << name << " " << value << std::endl;
}

// Prints a tensor result, or the error and exits.
void Report(absl::string_view name, const absl::StatusOr<at::Tensor>& value) {
  if (!value.ok()) {
    std::cerr << name << ": " << value.status() << std::endl;
    std::exit(2);
  }
  Report(name, Values(*value));
}

int RunCollectives(const PartialState& state) {
  const int rank = state.process_index();
  const int n = state.num_processes();
  Report("rank", absl::StrCat(rank, ",", n, ",", state.local_process_index(),
                              ",", state.is_main_process(), ",",
                              state.is_last_process()));
  const at::Tensor pair = at::tensor({rank * 10.0, rank * 10.0 + 1});
  Report("gather", Gather(state, Here(state, pair)));
  Report("gather_scalar", Gather(state, Here(state, at::scalar_tensor(rank))));
  auto nested = Gather(
      state, std::map<std::string, std::vector<at::Tensor>>{
                 {"a", {Here(state, at::full({1}, 2.0 * rank))}}});
  Report("gather_nested",
         nested.ok() ? absl::StatusOr<at::Tensor>(nested->at("a")[0])
                     : absl::StatusOr<at::Tensor>(nested.status()));
  auto objects = GatherObject(state, std::string(rank + 1, 'a' + rank));
  if (!objects.ok()) return 2;
  Report("gather_object", absl::StrJoin(*objects, ","));
  Report("broadcast",
         Broadcast(state, Here(state, at::full({2}, rank * 1.0)), n - 1));
  auto text = BroadcastObject(state, absl::StrCat("hello from ", rank), n - 1);
  if (!text.ok()) return 2;
  Report("broadcast_object", *text);
  ReduceOptions sum;
  sum.reduction = Reduction::kSum;
  Report("reduce_sum",
         Reduce(state, Here(state, at::full({2}, rank + 1.0)), sum));
  ReduceOptions mean;
  mean.reduction = Reduction::kMean;
  Report("reduce_mean",
         Reduce(state, Here(state, at::full({1}, rank * 1.0)), mean));
  PadOptions pad;
  pad.pad_index = -1;
  const at::Tensor ragged = Here(state, at::full({rank + 1}, rank + 1.0));
  Report("pad", PadAcrossProcesses(state, ragged, pad));
  pad.pad_first = true;
  Report("pad_first", PadAcrossProcesses(state, ragged, pad));
  std::vector<int> items;
  for (int i = 0; i < 2 * n + 1; ++i) items.push_back(i);
  Report("split", absl::StrJoin(state.SplitBetweenProcesses(items), ","));
  Report("split_padded",
         absl::StrJoin(state.SplitBetweenProcesses(items, true), ","));

  // Main process first: rank 0 writes a file that the others then read.
  const char* dir = std::getenv("WORKER_TMPDIR");
  const std::string path = absl::StrCat(dir == nullptr ? "/tmp" : dir,
                                        "/main_first_", getppid(), ".txt");
  std::string seen;
  absl::Status first = state.MainProcessFirst([&] {
    if (state.is_main_process()) {
      absl::SleepFor(absl::Milliseconds(200));
      std::ofstream(path) << "written by main";
    } else {
      std::ifstream in(path);
      std::getline(in, seen);
    }
  });
  if (!first.ok()) return 2;
  Report("main_first", state.is_main_process() ? "main" : seen);
  absl::Status barrier = state.WaitForEveryone();
  Report("barrier", barrier.ok() ? "ok" : barrier.ToString());
  return barrier.ok() ? 0 : 2;
}

int RunCrash(const PartialState& state) {
  if (state.is_last_process()) {
    std::cout << "RESULT crashing " << state.process_index() << std::endl;
    ::_exit(3);
  }
  absl::StatusOr<at::Tensor> sum = Reduce(state, Here(state, at::ones({1024})));
  Report("after_crash",
         sum.ok() ? "ok" : absl::StatusCodeToString(sum.status().code()));
  return 0;
}

int RunDebug(const PartialState& state) {
  const int rank = state.process_index();
  absl::StatusOr<at::Tensor> all =
      Gather(state, Here(state, at::zeros({1, rank + 1})));
  Report("debug", all.ok() ? "ok" : std::string(all.status().message()));
  return 0;
}

}  // namespace
}  // namespace accelerate::state

int main(int argc, char** argv) {
  using namespace accelerate::state;  // NOLINT: a small program.
  if (argc < 2) {
    std::cerr << "usage: multiprocess_worker collectives|crash|debug "
                 "[timeout_seconds]\n";
    return 64;
  }
  const std::string scenario = argv[1];
  PartialStateOptions options;
  int timeout_seconds = 60;
  if (argc > 2 && !absl::SimpleAtoi(argv[2], &timeout_seconds)) return 64;
  options.timeout = absl::Seconds(timeout_seconds);
  absl::StatusOr<std::unique_ptr<PartialState>> state =
      PartialState::Create(options);
  if (!state.ok()) {
    std::cout << "RESULT create_error "
              << absl::StatusCodeToString(state.status().code()) << " "
              << state.status().message() << std::endl;
    return 1;
  }
  if (scenario == "collectives") return RunCollectives(**state);
  if (scenario == "crash") return RunCrash(**state);
  if (scenario == "debug") return RunDebug(**state);
  std::cerr << "unknown scenario " << scenario << "\n";
  return 64;
}
