// Cost of `Accelerator::Log` with 10 scalars per step, on every process of
// a job (trackers_log.py runs it beside Python Accelerate's `log`). The
// trackers come from ACCELERATE_LOG_WITH (and MLFLOW_TRACKING_URI), the
// folder from ACCELERATE_PROJECT_DIR. Rank 0 prints one JSON line: the
// seconds per call on each rank, and how long `EndTraining` took (what the
// background work left to do at the end).
//
//   ACCELERATE_LOG_WITH=tensorboard ACCELERATE_PROJECT_DIR=/tmp/tb \
//     bazel-bin/benchmarks/trackers_log --calls 20000

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "benchmarks/clock.h"
#include "trackers/tracker.h"

ABSL_FLAG(int64_t, calls, 20000, "Log calls timed on every process.");

namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "trackers_log: %s\n", status.ToString().c_str());
  return 1;
}

int Run() {
  auto created = accelerate::Accelerator::Create();
  if (!created.ok()) return Fail(created.status());
  accelerate::Accelerator& acc = **created;
  absl::Status init = acc.InitTrackers("trackers_log", {{"calls", 1}});
  if (!init.ok()) return Fail(init);
  const int64_t calls = absl::GetFlag(FLAGS_calls);
  // The values change every step, as a training loop's do.
  const std::vector<std::string> names = {
      "train/loss", "train/lr",    "train/grad_norm", "train/tokens",
      "train/acc",  "eval/loss",   "eval/acc",        "scaler/scale",
      "epoch",      "step_seconds"};
  // Warm-up (first allocations, the event file's first pages).
  for (int64_t step = 0; step < 100; ++step) {
    (void)acc.Log({{names[0], 1.0 / (step + 1)}, {names[1], 1e-3}}, step);
  }
  const double start = accelerate::benchmarks::Now();
  for (int64_t step = 0; step < calls; ++step) {
    const double x = static_cast<double>(step);
    absl::Status logged = acc.Log({{names[0], 1.0 / (x + 1)},
                                   {names[1], 1e-3 * (1 - x / calls)},
                                   {names[2], 0.5 + x * 1e-6},
                                   {names[3], x * 512},
                                   {names[4], 0.9},
                                   {names[5], 2.0 - x * 1e-5},
                                   {names[6], 0.8},
                                   {names[7], 65536.0},
                                   {names[8], x / 1000},
                                   {names[9], 0.01}},
                                  step + 100);
    if (!logged.ok()) return Fail(logged);
  }
  const double per_call = (accelerate::benchmarks::Now() - start) / calls;
  auto gathered = acc.Gather(torch::tensor({per_call}, torch::kDouble));
  if (!gathered.ok()) return Fail(gathered.status());
  const double end_start = accelerate::benchmarks::Now();
  absl::Status ended = acc.EndTraining();
  if (!ended.ok()) return Fail(ended);
  const double end_seconds = accelerate::benchmarks::Now() - end_start;
  if (acc.IsMainProcess()) {
    std::vector<std::string> ranks;
    for (int64_t i = 0; i < gathered->numel(); ++i) {
      ranks.push_back(absl::StrFormat("%.4g", (*gathered)[i].item<double>()));
    }
    std::printf(
        "{\"seconds_per_call\": [%s], \"calls\": %lld, "
        "\"end_training_seconds\": %.6f}\n",
        absl::StrJoin(ranks, ", ").c_str(), static_cast<long long>(calls),
        end_seconds);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run();
}
