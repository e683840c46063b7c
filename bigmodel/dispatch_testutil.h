// A small transformer-like language model for the tests of dispatched and
// offloaded execution, and its checkpoint: embedding, residual blocks in a
// ModuleList, final norm, and an output layer tied to the embedding.

#ifndef ACCELERATE_BIGMODEL_DISPATCH_TESTUTIL_H_
#define ACCELERATE_BIGMODEL_DISPATCH_TESTUTIL_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "bigmodel/empty_weights.h"
#include "bigmodel/safetensors.h"

namespace accelerate::bigmodel {

struct TinyBlockImpl : torch::nn::Module {
  explicit TinyBlockImpl(int64_t width) {
    norm = register_module(
        "norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
    up = register_module("up", torch::nn::Linear(width, 4 * width));
    down = register_module("down", torch::nn::Linear(4 * width, width));
  }
  at::Tensor forward(const at::Tensor& x) {
    return x + down(torch::gelu(up(norm(x))));
  }
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear up{nullptr}, down{nullptr};
};
TORCH_MODULE(TinyBlock);

struct TinyLmImpl : torch::nn::Module {
  TinyLmImpl(int64_t vocab, int64_t width, int64_t depth) {
    embed = register_module("embed", torch::nn::Embedding(vocab, width));
    blocks = register_module("blocks", torch::nn::ModuleList());
    for (int64_t i = 0; i < depth; ++i) blocks->push_back(TinyBlock(width));
    norm = register_module(
        "norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  }
  at::Tensor forward(const at::Tensor& tokens) {
    at::Tensor x = embed(tokens);
    for (const auto& block : *blocks) {
      x = block->as<TinyBlockImpl>()->forward(x);
    }
    return torch::nn::functional::linear(norm(x), embed->weight);
  }
  torch::nn::Embedding embed{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(TinyLm);

// A TinyLm with random weights (norms too, so that one left at its initial
// values shows).
inline TinyLm RandomTinyLm(int64_t vocab, int64_t width, int64_t depth,
                           uint64_t seed) {
  torch::manual_seed(seed);
  TinyLm model(vocab, width, depth);
  torch::NoGradGuard no_grad;
  for (auto& parameter : model->parameters()) {
    parameter.copy_(torch::randn_like(parameter) * 0.5);
  }
  return model;
}

// The same model built under InitEmptyWeights, for dispatching.
inline TinyLm EmptyTinyLm(int64_t vocab, int64_t width, int64_t depth) {
  InitEmptyWeights scope;
  return TinyLm(vocab, width, depth);
}

// Saves `model` into the folder `dir` as a sharded safetensors checkpoint,
// the tied embedding stored once, in shards of `max_shard_bytes`.
inline absl::Status SaveTinyLm(TinyLm& model, const std::string& dir,
                               uint64_t max_shard_bytes) {
  NamedTensors state;
  for (const auto& item : model->named_parameters()) {
    if (item.key() != "embed.weight" || state.empty()) {
      state.emplace_back(item.key(), item.value().detach());
    }
  }
  return SaveShardedSafetensors(dir, state,
                                {.max_shard_bytes = max_shard_bytes});
}

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_DISPATCH_TESTUTIL_H_
