// Training-step time of a small GPT-style transformer (2 blocks, width 128,
// 4 heads, 64 tokens, batch 16) with the Accelerator in one mixed precision
// (ACCELERATE_MIXED_PRECISION: no, bf16, fp16 or fp8; fp8's recipe from
// ACCELERATE_FP8_*), one process. Every linear layer is a
// precision::Fp8Linear; under fp8 with torchao's recipes the first and the
// last stay in high precision, as Python Accelerate's torchao backend
// filters them (Transformer Engine's recipe converts all). With fp16
// it also times the loss scaler's own work (unscale, check, update). Prints
// one JSON line for benchmarks/precision_step.py; the peer is
// precision_step_peer.py.

#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <memory>
#include <string>

#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "precision/fp8_linear.h"
#include "benchmarks/clock.h"

namespace {

using ::accelerate::benchmarks::Now;

using ::accelerate::precision::Fp8Linear;

constexpr int kWarmup = 5;
constexpr int kSteps = 30;
constexpr int64_t kVocab = 256, kWidth = 128, kHeads = 4, kTokens = 64,
                  kBatch = 16, kBlocks = 2;

struct BlockImpl : torch::nn::Module {
  BlockImpl() {
    norm1 = register_module("norm1", torch::nn::LayerNorm(
                                         torch::nn::LayerNormOptions({kWidth})));
    qkv = register_module("qkv", Fp8Linear(kWidth, 3 * kWidth));
    proj = register_module("proj", Fp8Linear(kWidth, kWidth));
    norm2 = register_module("norm2", torch::nn::LayerNorm(
                                         torch::nn::LayerNormOptions({kWidth})));
    up = register_module("up", Fp8Linear(kWidth, 4 * kWidth));
    down = register_module("down", Fp8Linear(4 * kWidth, kWidth));
  }
  torch::Tensor forward(torch::Tensor x) {
    const int64_t b = x.size(0), t = x.size(1);
    auto parts = qkv->forward(norm1->forward(x))
                     .view({b, t, 3, kHeads, kWidth / kHeads})
                     .permute({2, 0, 3, 1, 4});
    torch::Tensor scores =
        torch::matmul(parts[0], parts[1].transpose(-2, -1)) /
        std::sqrt(static_cast<double>(kWidth / kHeads));
    const torch::Tensor mask =
        torch::ones({t, t}, torch::kBool).triu(1).to(x.device());
    scores = scores.masked_fill(mask, -std::numeric_limits<double>::infinity());
    torch::Tensor attended = torch::matmul(torch::softmax(scores, -1), parts[2])
                                 .transpose(1, 2)
                                 .reshape({b, t, kWidth});
    x = x + proj->forward(attended);
    return x + down->forward(torch::gelu(up->forward(norm2->forward(x))));
  }
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  Fp8Linear qkv{nullptr}, proj{nullptr}, up{nullptr}, down{nullptr};
};
TORCH_MODULE(Block);

struct GptImpl : torch::nn::Module {
  GptImpl() {
    embed = register_module("embed", torch::nn::Embedding(kVocab, kWidth));
    position = register_parameter("position",
                                  torch::randn({kTokens, kWidth}) * 0.02);
    for (int i = 0; i < kBlocks; ++i) {
      blocks->push_back(Block());
    }
    register_module("blocks", blocks);
    norm = register_module("norm", torch::nn::LayerNorm(
                                       torch::nn::LayerNormOptions({kWidth})));
    head = register_module("head", Fp8Linear(kWidth, kVocab));
  }
  torch::Tensor forward(const torch::Tensor& tokens) {
    torch::Tensor x = embed->forward(tokens) + position;
    for (const auto& block : *blocks) x = block->as<BlockImpl>()->forward(x);
    return head->forward(norm->forward(x));
  }
  torch::nn::Embedding embed{nullptr};
  torch::Tensor position;
  torch::nn::ModuleList blocks;
  torch::nn::LayerNorm norm{nullptr};
  Fp8Linear head{nullptr};
};
TORCH_MODULE(Gpt);

int Fail(const absl::Status& status) {
  std::cerr << "precision_step: " << status << std::endl;
  return 1;
}

}  // namespace

int main() {
  // Under fp8 with torchao's recipes the Accelerator keeps the first and the
  // last linear layers in high precision, as Python Accelerate does.
  auto created = accelerate::Accelerator::Create();
  if (!created.ok()) return Fail(created.status());
  accelerate::Accelerator& acc = **created;
  torch::manual_seed(0);
  Gpt model;
  auto adam = std::make_shared<torch::optim::AdamW>(
      model->parameters(), torch::optim::AdamWOptions(1e-3));
  if (auto prepared = acc.PrepareModel(model.ptr()); !prepared.ok()) {
    return Fail(prepared.status());
  }
  accelerate::PreparedOptimizer* opt = acc.PrepareOptimizer(adam);
  const torch::Tensor tokens = torch::randint(0, kVocab, {kBatch, kTokens + 1});
  const torch::Tensor inputs = tokens.narrow(1, 0, kTokens);
  const torch::Tensor targets = tokens.narrow(1, 1, kTokens).reshape({-1});

  double start = 0, scaler_seconds = 0, loss_value = 0;
  for (int step = 0; step < kWarmup + kSteps; ++step) {
    if (step == kWarmup) {
      start = Now();
      scaler_seconds = 0;
    }
    auto scope = acc.Accumulate(*model);
    if (!scope.status().ok()) return Fail(scope.status());
    const torch::Tensor logits = model->forward(inputs).to(torch::kFloat);
    const torch::Tensor loss =
        torch::cross_entropy_loss(logits.reshape({-1, kVocab}), targets);
    if (absl::Status s = acc.Backward(loss); !s.ok()) return Fail(s);
    const double before_unscale = Now();
    if (absl::Status s = acc.UnscaleGradients(); !s.ok()) return Fail(s);
    scaler_seconds += Now() - before_unscale;
    if (absl::Status s = opt->step(); !s.ok()) return Fail(s);
    opt->zero_grad();
    loss_value = loss.item<double>();
  }
  const double step_seconds = (Now() - start) / kSteps;
  std::printf(
      "{\"mixed_precision\": \"%s\", \"step_seconds\": %.6f, "
      "\"scaler_seconds\": %.6f, \"loss\": %.4f}\n",
      acc.mixed_precision().c_str(), step_seconds, scaler_seconds / kSteps,
      loss_value);
  return 0;
}
