// Per-batch cost of the prepared loader on named-tensor batches of padded
// variable-length sequences (what a language-model fine-tune reads):
// 4096 token sequences of 16 to 128 tokens, collated 32 at a time into
// {input_ids, labels (padded with -100), attention_mask}, through
// `Accelerator::Prepare`. named_batches.py runs it beside Python Accelerate's
// prepared DataLoader on the same data (named_batches_peer.py).
//
// stdout: one JSON line {"per_batch_us": best epoch / batches, "batches": n}.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <vector>

#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "benchmarks/clock.h"
#include "data/batch.h"
#include "data/collate.h"

namespace accelerate {
namespace {

constexpr int64_t kSequences = 4096;
constexpr int64_t kBatch = 32;
constexpr int kEpochs = 20;

int Main() {
  torch::set_num_threads(1);
  auto acc = Accelerator::Create();
  if (!acc.ok()) {
    std::fprintf(stderr, "%s\n", acc.status().ToString().c_str());
    return 1;
  }
  // Sequence i: 16 + (37 i mod 113) tokens, token j = (i * 131 + j) mod 50257.
  std::vector<at::Tensor> sequences;
  for (int64_t i = 0; i < kSequences; ++i) {
    const int64_t length = 16 + (37 * i) % 113;
    sequences.push_back(
        torch::remainder(torch::arange(length, torch::kLong) + i * 131, 50257));
  }
  auto dataset = std::make_shared<data::CollatedDataset<data::Batch>>(
      kSequences,
      [&](int64_t i) {
        return data::Batch::Named({{"input_ids", sequences[i]},
                                   {"labels", sequences[i]}});
      },
      [](std::vector<data::Batch> samples) {
        return data::PadAndStack(samples, {.pad_values = {{"labels", -100}},
                                           .attention_mask = "attention_mask"});
      });
  auto prepared = (*acc)->Prepare(DataLoaderSpec{dataset, {.batch_size = kBatch}});
  if (!prepared.ok()) {
    std::fprintf(stderr, "%s\n", prepared.status().ToString().c_str());
    return 1;
  }
  auto& [loader] = *prepared;
  double best = 1e30;
  int64_t batches = 0;
  int64_t tokens = 0;
  for (int epoch = 0; epoch < kEpochs; ++epoch) {
    batches = 0;
    const double start = benchmarks::Now();
    while (true) {
      auto batch = loader->Next();
      if (!batch.ok()) {
        std::fprintf(stderr, "%s\n", batch.status().ToString().c_str());
        return 1;
      }
      if (!batch->has_value()) break;
      tokens += (**batch).tensor("attention_mask").size(1);
      ++batches;
    }
    best = std::min(best, benchmarks::Now() - start);
  }
  std::printf("{\"per_batch_us\": %.3f, \"batches\": %lld, \"processes\": %d}\n",
              best / batches * 1e6, static_cast<long long>(batches),
              (*acc)->State().num_processes());
  return tokens > 0 ? 0 : 1;
}

}  // namespace
}  // namespace accelerate

int main() { return accelerate::Main(); }
