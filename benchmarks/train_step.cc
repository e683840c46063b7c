// Training-step time of a 3.2M-parameter MLP (batch 64) with the
// Accelerator: forward, Backward (bucketed all-reduce overlapping the
// backward pass on 2+ processes), SGD step. Also times one all-reduce of the
// same number of gradient bytes. Rank 0 prints JSON lines for
// benchmarks/train_step.py; the peer is train_step_peer.py (Python DDP).

#include <cstdio>
#include <iostream>
#include <memory>

#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "state/collectives.h"
#include "benchmarks/clock.h"

namespace {

using ::accelerate::benchmarks::Now;

constexpr int kWarmup = 5;
constexpr int kSteps = 30;

struct MlpImpl : torch::nn::Module {
  MlpImpl() {
    l1 = register_module("l1", torch::nn::Linear(1024, 1024));
    l2 = register_module("l2", torch::nn::Linear(1024, 1024));
    l3 = register_module("l3", torch::nn::Linear(1024, 1024));
    l4 = register_module("l4", torch::nn::Linear(1024, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    return l4(torch::relu(l3(torch::relu(l2(torch::relu(l1(x)))))));
  }
  torch::nn::Linear l1{nullptr}, l2{nullptr}, l3{nullptr}, l4{nullptr};
};
TORCH_MODULE(Mlp);

int Fail(const absl::Status& status) {
  std::cerr << "train_step: " << status << std::endl;
  return 1;
}

}  // namespace

int main() {
  auto created = accelerate::Accelerator::Create();
  if (!created.ok()) return Fail(created.status());
  accelerate::Accelerator& acc = **created;
  torch::manual_seed(0);
  Mlp model;
  auto sgd = std::make_shared<torch::optim::SGD>(model->parameters(),
                                                 torch::optim::SGDOptions(0.01));
  if (auto prepared = acc.PrepareModel(model.ptr()); !prepared.ok()) {
    return Fail(prepared.status());
  }
  accelerate::PreparedOptimizer* opt = acc.PrepareOptimizer(sgd);
  const torch::Tensor x = torch::randn({64, 1024}).to(acc.Device());
  const torch::Tensor y = torch::randint(0, 10, {64}).to(acc.Device());
  int64_t parameters = 0;
  for (const auto& p : model->parameters()) parameters += p.numel();

  double start = 0;
  for (int step = 0; step < kWarmup + kSteps; ++step) {
    if (step == kWarmup) {
      if (absl::Status s = acc.WaitForEveryone(); !s.ok()) return Fail(s);
      start = Now();
    }
    auto scope = acc.Accumulate(*model);
    if (!scope.status().ok()) return Fail(scope.status());
    const torch::Tensor loss = torch::cross_entropy_loss(model->forward(x), y);
    if (absl::Status s = acc.Backward(loss); !s.ok()) return Fail(s);
    if (absl::Status s = opt->step(); !s.ok()) return Fail(s);
    opt->zero_grad();
  }
  if (absl::Status s = acc.WaitForEveryone(); !s.ok()) return Fail(s);
  const double step_seconds = (Now() - start) / kSteps;

  // One all-reduce of all gradient bytes, for comparison.
  double allreduce_seconds = 0;
  if (acc.State().use_distributed()) {
    torch::Tensor flat = torch::ones({parameters}).to(acc.Device());
    for (int i = 0; i < kWarmup + 10; ++i) {
      if (i == kWarmup) start = Now();
      if (absl::Status s = accelerate::state::AllReduceInPlace(acc.State(), flat);
          !s.ok()) {
        return Fail(s);
      }
    }
    allreduce_seconds = (Now() - start) / 10;
  }
  if (acc.IsMainProcess()) {
    std::printf(
        "{\"processes\": %d, \"parameters\": %lld, \"step_seconds\": %.6f, "
        "\"allreduce_seconds\": %.6f}\n",
        acc.State().num_processes(), static_cast<long long>(parameters),
        step_seconds, allreduce_seconds);
  }
  return 0;
}
