// Per-batch cost of reading a 20000 x 20 float dataset in batches of 256:
// plain slicing, LibTorch's own DataLoader (per-example and batched
// datasets), and our PreparedDataLoader (with and without prefetch workers);
// and skip_first_batches over 10^6 batches. benchmarks/data_loader.py runs
// it beside the Python DataLoader + DistributedSampler peer.

#include <memory>
#include <vector>

#include "benchmark/benchmark.h"
#include <torch/torch.h>
#include "data/data_loader.h"
#include "state/environment.h"
#include "state/partial_state.h"

namespace accelerate::data {
namespace {

constexpr int64_t kRows = 20000;
constexpr int64_t kColumns = 20;
constexpr int64_t kBatch = 256;

struct Tensors {
  at::Tensor data = at::randn({kRows, kColumns});
  at::Tensor target = at::randint(0, 10, {kRows}, at::kLong);
};

const Tensors& Data() {
  static const Tensors* const kTensors = new Tensors();
  return *kTensors;
}

int64_t BatchesPerEpoch() { return (kRows + kBatch - 1) / kBatch; }

void BM_Slicing(benchmark::State& state) {
  const Tensors& t = Data();
  for (auto _ : state) {
    for (int64_t begin = 0; begin < kRows; begin += kBatch) {
      at::Tensor x = t.data.slice(0, begin, begin + kBatch);
      at::Tensor y = t.target.slice(0, begin, begin + kBatch);
      benchmark::DoNotOptimize(x.data_ptr());
      benchmark::DoNotOptimize(y.data_ptr());
    }
  }
  state.SetItemsProcessed(state.iterations() * BatchesPerEpoch());
}

// LibTorch's usual map dataset: one example at a time, stacked.
class ExampleDataset : public torch::data::datasets::Dataset<ExampleDataset> {
 public:
  torch::data::Example<> get(size_t i) override {
    return {Data().data[i], Data().target[i]};
  }
  torch::optional<size_t> size() const override { return kRows; }
};

// A LibTorch batch dataset that gathers a whole batch with index_select,
// the same work our TensorDataset does.
class BatchedDataset
    : public torch::data::datasets::BatchDataset<BatchedDataset,
                                                  torch::data::Example<>> {
 public:
  torch::data::Example<> get_batch(c10::ArrayRef<size_t> indices) override {
    std::vector<int64_t> ids(indices.begin(), indices.end());
    const at::Tensor index = at::tensor(ids, at::kLong);
    return {Data().data.index_select(0, index),
            Data().target.index_select(0, index)};
  }
  torch::optional<size_t> size() const override { return kRows; }
};

void BM_LibTorchDataLoaderPerExample(benchmark::State& state) {
  auto loader = torch::data::make_data_loader<torch::data::samplers::SequentialSampler>(
      ExampleDataset().map(torch::data::transforms::Stack<>()),
      torch::data::DataLoaderOptions().batch_size(kBatch).workers(0));
  for (auto _ : state) {
    for (auto& batch : *loader) benchmark::DoNotOptimize(batch.data.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * BatchesPerEpoch());
}

void BM_LibTorchDataLoaderBatched(benchmark::State& state) {
  auto loader = torch::data::make_data_loader<torch::data::samplers::SequentialSampler>(
      BatchedDataset(),
      torch::data::DataLoaderOptions().batch_size(kBatch).workers(0));
  for (auto _ : state) {
    for (auto& batch : *loader) benchmark::DoNotOptimize(batch.data.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * BatchesPerEpoch());
}

const state::PartialState& SingleProcess() {
  static const state::PartialState* const kState =
      state::PartialState::Create({}, state::MapEnvironment())->release();
  return *kState;
}

void BM_PreparedDataLoader(benchmark::State& state) {
  DataLoaderOptions options;
  options.batch_size = kBatch;
  options.num_workers = static_cast<int>(state.range(0));
  auto loader = *PreparedDataLoader::Create(
      std::make_shared<TensorDataset>(Data().data, Data().target),
      SingleProcess(), options);
  for (auto _ : state) {
    while (true) {
      auto next = loader->Next();
      if (!next.ok() || !next->has_value()) break;
      benchmark::DoNotOptimize((**next).tensor(0).data_ptr());
    }
  }
  state.SetItemsProcessed(state.iterations() * BatchesPerEpoch());
}

// A dataset of a million one-sample batches that costs nothing to read.
class Virtual final : public MapDataset {
 public:
  int64_t size() const override { return 1000000; }
  absl::StatusOr<Batch> Get(const std::vector<int64_t>& indices) const override {
    return Batch::Of({at::zeros({static_cast<int64_t>(indices.size()), 1}),
                      at::zeros({static_cast<int64_t>(indices.size())})});
  }
};

void BM_SkipFirstBatches(benchmark::State& state) {
  DataLoaderOptions options;
  options.batch_size = 1;
  auto loader = *PreparedDataLoader::Create(std::make_shared<Virtual>(),
                                            SingleProcess(), options);
  for (auto _ : state) {
    loader->SetEpoch(0);
    loader->SkipBatches(999999);
    auto next = loader->Next();
    benchmark::DoNotOptimize(next.ok());
    state.PauseTiming();
    loader->SetEpoch(1);  // Leave epoch 0 so the next SetEpoch(0) rebuilds.
    state.ResumeTiming();
  }
}

BENCHMARK(BM_Slicing)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LibTorchDataLoaderPerExample)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LibTorchDataLoaderBatched)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PreparedDataLoader)->Arg(0)->Arg(2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SkipFirstBatches)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace accelerate::data

BENCHMARK_MAIN();
