// Step time, peak memory and training-state bytes per process of a
// 101M-parameter MLP (6 layers of 4096 x 4096, AdamW, batch 16) with the
// Accelerator, under whatever the launcher's variables ask (plain data
// parallel, or ACCELERATE_USE_FSDP with FSDP_SHARDING_STRATEGY
// SHARD_GRAD_OP or FULL_SHARD and its wrapping and prefetch variables). benchmarks/sharding_step.py runs it beside PyTorch's
// FSDP 2 (sharding_step_peer.py); rank 0 prints one JSON line with every
// process's figures.

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "benchmarks/clock.h"

namespace {

constexpr int kLayers = 6;
constexpr int64_t kWidth = 4096;
constexpr int kWarmup = 2;
constexpr int kSteps = 6;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "sharding_step: %s\n", status.ToString().c_str());
  return 1;
}

int64_t PeakRssBytes() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

}  // namespace

int main() {
  auto created = accelerate::Accelerator::Create();
  if (!created.ok()) return Fail(created.status());
  accelerate::Accelerator& acc = **created;
  torch::manual_seed(0);
  torch::nn::Sequential model;
  for (int i = 0; i < kLayers; ++i) {
    model->push_back(torch::nn::Linear(kWidth, kWidth));
    if (i + 1 < kLayers) model->push_back(torch::nn::GELU());
  }
  auto adamw = std::make_shared<torch::optim::AdamW>(
      model->parameters(), torch::optim::AdamWOptions(1e-4));
  auto prepared = acc.Prepare(model.ptr(), adamw);
  if (!prepared.ok()) return Fail(prepared.status());
  auto& [module, opt] = *prepared;
  const torch::Tensor x = torch::randn({16, kWidth});
  std::vector<double> times;
  for (int step = 0; step < kWarmup + kSteps; ++step) {
    const double start = accelerate::benchmarks::Now();
    absl::Status backward =
        acc.Backward(model->forward(x).square().mean());
    if (!backward.ok()) return Fail(backward);
    if (absl::Status stepped = opt->step(); !stepped.ok()) return Fail(stepped);
    // The state held between steps is measured before the gradients go.
    if (step + 1 == kWarmup + kSteps) break;
    opt->zero_grad();
    if (step >= kWarmup) times.push_back(accelerate::benchmarks::Now() - start);
  }
  const int64_t state_bytes = acc.StateBytesPerProcess().total();
  opt->zero_grad();
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  auto figures = acc.Gather(torch::tensor(
      {median, static_cast<double>(PeakRssBytes()),
       static_cast<double>(state_bytes)},
      torch::kDouble).reshape({1, 3}));
  if (!figures.ok()) return Fail(figures.status());
  if (acc.IsMainProcess()) {
    std::vector<std::string> ranks;
    for (int64_t r = 0; r < figures->size(0); ++r) {
      ranks.push_back(absl::StrFormat(
          "{\"step_seconds\": %.4f, \"peak_rss_bytes\": %.0f, "
          "\"state_bytes\": %.0f}",
          (*figures)[r][0].item<double>(), (*figures)[r][1].item<double>(),
          (*figures)[r][2].item<double>()));
    }
    std::printf("{\"sharding\": \"%s\", \"ranks\": [%s]}\n",
                acc.sharding_strategy().c_str(),
                absl::StrJoin(ranks, ", ").c_str());
  }
  return 0;
}
