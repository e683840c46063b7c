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
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include <ATen/ATen.h>
#include "data/data_loader.h"
#include "state/partial_state.h"
#include "state/status_macros.h"

namespace accelerate {
namespace {

std::vector<int64_t> Values(const at::Tensor& ids) {
  return std::vector<int64_t>(ids.data_ptr<int64_t>(),
                              ids.data_ptr<int64_t>() + ids.numel());
}

// Reads one epoch of `loader`; for each batch calls `fn` with its ids (the
// second tensor) and the ids GatherForMetrics returned for them.
absl::Status ReadEpoch(
    const state::PartialState& state, data::PreparedDataLoader& loader,
    const std::function<void(const std::vector<int64_t>& mine,
                             const std::vector<int64_t>& gathered)>& fn) {
  while (true) {
    ACCELERATE_ASSIGN_OR_RETURN(std::optional<data::Batch> next, loader.Next());
    if (!next.has_value()) return absl::OkStatus();
    ACCELERATE_ASSIGN_OR_RETURN(
        at::Tensor gathered,
        data::GatherForMetrics(state, loader, next->tensor(1)));
    fn(Values(next->tensor(1)), Values(gathered));
  }
}

// The `rng` mode (see the top of the file).
absl::Status Draws(const state::PartialState& state, bool synchronize) {
  at::manual_seed(100 + state.process_index());
  const at::Tensor ids = at::arange(8, at::kLong);
  data::DataLoaderOptions options;
  options.batch_size = 2;
  if (synchronize) options.rng_types = {state::RngType::kTorch};
  // A sampler drawing from the global generator, as LibTorch's
  // RandomSampler does: alike on every process only once synchronized.
  options.sampler = [](int64_t) { return Values(at::randperm(8, at::kLong)); };
  ACCELERATE_ASSIGN_OR_RETURN(
      auto loader,
      data::PreparedDataLoader::Create(
          std::make_shared<data::TensorDataset>(ids.unsqueeze(1), ids), state,
          options));
  std::vector<double> draws;
  std::vector<int64_t> seen;
  for (int epoch = 0; epoch < 2; ++epoch) {
    bool first = true;
    ACCELERATE_RETURN_IF_ERROR(ReadEpoch(
        state, *loader,
        [&](const std::vector<int64_t>&, const std::vector<int64_t>& all) {
          if (first) draws.push_back(at::rand({1}).item<double>());
          first = false;
          // Every process's samples: one permutation when the samplers
          // agree.
          if (epoch == 0) seen.insert(seen.end(), all.begin(), all.end());
        }));
  }
  std::sort(seen.begin(), seen.end());
  std::cout << "RESULT draws " << absl::StrJoin(draws, ",") << std::endl;
  std::cout << "RESULT epoch " << absl::StrJoin(seen, ",") << std::endl;
  return absl::OkStatus();
}

// The default mode (see the top of the file).
absl::Status Shards(const state::PartialState& state, int64_t length,
                    int64_t batch_size, bool dispatch) {
  const at::Tensor ids = at::arange(length, at::kLong);
  data::DataLoaderOptions options;
  options.batch_size = batch_size;
  options.shuffle = true;
  options.seed = 1234;
  options.num_workers = 2;
  options.dispatch_batches = dispatch;
  ACCELERATE_ASSIGN_OR_RETURN(
      auto loader,
      data::PreparedDataLoader::Create(
          std::make_shared<data::TensorDataset>(ids.unsqueeze(1), ids), state,
          options));
  std::vector<std::string> batches;
  std::vector<int64_t> metrics;
  ACCELERATE_RETURN_IF_ERROR(ReadEpoch(
      state, *loader,
      [&](const std::vector<int64_t>& mine, const std::vector<int64_t>& all) {
        batches.push_back(absl::StrJoin(mine, ","));
        metrics.insert(metrics.end(), all.begin(), all.end());
      }));
  std::sort(metrics.begin(), metrics.end());
  std::cout << "RESULT batches " << absl::StrJoin(batches, ";") << std::endl;
  std::cout << "RESULT metrics " << absl::StrJoin(metrics, ",") << std::endl;
  return absl::OkStatus();
}

}  // namespace
}  // namespace accelerate

int main(int argc, char** argv) {
  using accelerate::state::PartialState;
  const bool rng = argc == 3 && std::string(argv[1]) == "rng";
  int64_t length = 0, batch_size = 0;
  if (!rng && (argc < 3 || !absl::SimpleAtoi(argv[1], &length) ||
               !absl::SimpleAtoi(argv[2], &batch_size))) {
    std::cerr << "usage: multiprocess_worker LENGTH BATCH [dispatch]\n"
                 "       multiprocess_worker rng sync|nosync\n";
    return 64;
  }
  auto state = PartialState::Create();
  absl::Status status = state.status();
  if (status.ok()) {
    status = rng ? accelerate::Draws(**state, std::string(argv[2]) == "sync")
                 : accelerate::Shards(**state, length, batch_size,
                                      argc > 3 && std::string(argv[3]) ==
                                                      "dispatch");
  }
  if (!status.ok()) {
    std::cerr << status << std::endl;
    return 1;
  }
  return 0;
}
