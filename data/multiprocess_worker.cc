// One rank of data's real multi-process test (multiprocess_test.cc): reads
// its shard of a numbered dataset through the prepared loader (shuffled,
// with prefetch workers) and prints `RESULT batches <ids;ids;...>` and the
// samples GatherForMetrics returned, `RESULT metrics <sorted ids>`.
//
// Usage: multiprocess_worker <dataset_length> <batch_size> [dispatch]
//
// With `rng <sync|nosync>` instead: each rank seeds LibTorch differently,
// iterates two epochs of a loader whose sampler draws from the global
// generator, with (or without) `rng_types` torch, and prints the first
// random draw of each epoch, `RESULT draws a,b`, and the sorted ids every
// process read in the first epoch, `RESULT epoch ids`.

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include <ATen/ATen.h>
#include "data/data_loader.h"
#include "state/partial_state.h"

namespace {

int Draws(const accelerate::state::PartialState& state, bool synchronize) {
  using namespace accelerate;  // NOLINT: a small program.
  at::manual_seed(100 + state.process_index());
  const at::Tensor ids = at::arange(8, at::kLong);
  data::DataLoaderOptions options;
  options.batch_size = 2;
  if (synchronize) options.rng_types = {state::RngType::kTorch};
  // A sampler drawing from the global generator, as LibTorch's
  // RandomSampler does: alike on every process only once synchronized.
  options.sampler = [](int64_t) {
    const at::Tensor order = at::randperm(8, at::kLong);
    return std::vector<int64_t>(order.data_ptr<int64_t>(),
                                order.data_ptr<int64_t>() + 8);
  };
  auto loader = data::PreparedDataLoader::Create(
      std::make_shared<data::TensorDataset>(ids.unsqueeze(1), ids), state,
      options);
  if (!loader.ok()) {
    std::cerr << loader.status() << std::endl;
    return 1;
  }
  std::vector<double> draws;
  std::vector<int64_t> seen;
  for (int epoch = 0; epoch < 2; ++epoch) {
    bool first = true;
    while (true) {
      auto next = (*loader)->Next();
      if (!next.ok()) {
        std::cerr << next.status() << std::endl;
        return 1;
      }
      if (!next->has_value()) break;
      if (first) draws.push_back(at::rand({1}).item<double>());
      first = false;
      // Every process's samples: one permutation when the samplers agree.
      auto gathered = data::GatherForMetrics(state, **loader, (**next).tensor(1));
      if (!gathered.ok()) {
        std::cerr << gathered.status() << std::endl;
        return 1;
      }
      if (epoch == 0) {
        seen.insert(seen.end(), gathered->data_ptr<int64_t>(),
                    gathered->data_ptr<int64_t>() + gathered->numel());
      }
    }
  }
  std::sort(seen.begin(), seen.end());
  std::cout << "RESULT draws " << absl::StrJoin(draws, ",") << std::endl;
  std::cout << "RESULT epoch " << absl::StrJoin(seen, ",") << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace accelerate;  // NOLINT: a small program.
  if (argc == 3 && std::string(argv[1]) == "rng") {
    auto state = state::PartialState::Create();
    if (!state.ok()) {
      std::cerr << state.status() << std::endl;
      return 1;
    }
    return Draws(**state, std::string(argv[2]) == "sync");
  }
  int64_t length = 0, batch_size = 0;
  if (argc < 3 || !absl::SimpleAtoi(argv[1], &length) ||
      !absl::SimpleAtoi(argv[2], &batch_size)) {
    std::cerr << "usage: multiprocess_worker LENGTH BATCH [dispatch]\n";
    return 64;
  }
  auto state = state::PartialState::Create();
  if (!state.ok()) {
    std::cerr << state.status() << std::endl;
    return 1;
  }
  const at::Tensor ids = at::arange(length, at::kLong);
  auto dataset = std::make_shared<data::TensorDataset>(ids.unsqueeze(1), ids);
  data::DataLoaderOptions options;
  options.batch_size = batch_size;
  options.shuffle = true;
  options.seed = 1234;
  options.num_workers = 2;
  options.dispatch_batches = argc > 3 && std::string(argv[3]) == "dispatch";
  auto loader = data::PreparedDataLoader::Create(dataset, **state, options);
  if (!loader.ok()) {
    std::cerr << loader.status() << std::endl;
    return 1;
  }
  std::vector<std::string> batches;
  std::vector<int64_t> metrics;
  while (true) {
    auto next = (*loader)->Next();
    if (!next.ok()) {
      std::cerr << next.status() << std::endl;
      return 1;
    }
    if (!next->has_value()) break;
    const at::Tensor target = (**next).tensor(1);
    batches.push_back(absl::StrJoin(
        std::vector<int64_t>(target.data_ptr<int64_t>(),
                             target.data_ptr<int64_t>() + target.numel()),
        ","));
    auto gathered = data::GatherForMetrics(**state, **loader, target);
    if (!gathered.ok()) {
      std::cerr << gathered.status() << std::endl;
      return 1;
    }
    metrics.insert(metrics.end(), gathered->data_ptr<int64_t>(),
                   gathered->data_ptr<int64_t>() + gathered->numel());
  }
  std::sort(metrics.begin(), metrics.end());
  std::cout << "RESULT batches " << absl::StrJoin(batches, ";") << std::endl;
  std::cout << "RESULT metrics " << absl::StrJoin(metrics, ",") << std::endl;
  return 0;
}
