#include "data/data_loader.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/ATen.h>
#include <torch/data/samplers/distributed.h>
#include "data/torch_dataset.h"
#include "state/environment.h"
#include "state/partial_state.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::data {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::RunOnRanks;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TensorValues;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Row i of the data is [i, i] and its target is 10 * i, so every batch says
// which samples it holds.
std::shared_ptr<TensorDataset> Numbered(int64_t n) {
  const at::Tensor ids = at::arange(n, at::kFloat);
  return std::make_shared<TensorDataset>(ids.unsqueeze(1).repeat({1, 2}),
                                         ids * 10);
}

std::vector<int64_t> Ids(const Batch& batch) {
  std::vector<int64_t> ids;
  for (double v : TensorValues(batch.tensor(1))) ids.push_back(static_cast<int64_t>(v / 10));
  return ids;
}

// Every batch of one epoch, as sample ids.
std::vector<std::vector<int64_t>> Epoch(PreparedDataLoader& loader) {
  std::vector<std::vector<int64_t>> batches;
  while (true) {
    absl::StatusOr<std::optional<Batch>> next = loader.Next();
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok() || !next->has_value()) break;
    batches.push_back(Ids(**next));
  }
  return batches;
}

std::unique_ptr<state::PartialState> SingleProcess() {
  auto state = state::PartialState::Create({}, state::MapEnvironment());
  EXPECT_TRUE(state.ok());
  return *std::move(state);
}

TEST(PreparedDataLoaderTest, SingleProcessYieldsBatchesInOrder) {
  auto state = SingleProcess();
  DataLoaderOptions options;
  options.batch_size = 4;
  ASSERT_OK_AND_ASSIGN(auto loader,
                       PreparedDataLoader::Create(Numbered(10), *state, options));
  EXPECT_EQ(loader->size(), 3);
  EXPECT_EQ(Epoch(*loader), (std::vector<std::vector<int64_t>>{
                                {0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}}));
  // The data rows match the targets.
  ASSERT_OK_AND_ASSIGN(std::optional<Batch> first, loader->Next());
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->tensor(0).sizes(), (std::vector<int64_t>{4, 2}));
  EXPECT_THAT(TensorValues(first->tensor(0)), ElementsAre(0, 0, 1, 1, 2, 2, 3, 3));
}

TEST(PreparedDataLoaderTest, EndOfEpochIsKnownAtTheLastBatch) {
  auto state = SingleProcess();
  DataLoaderOptions options;
  options.batch_size = 4;
  ASSERT_OK_AND_ASSIGN(auto loader,
                       PreparedDataLoader::Create(Numbered(8), *state, options));
  std::vector<bool> ends;
  while (true) {
    ASSERT_OK_AND_ASSIGN(std::optional<Batch> batch, loader->Next());
    if (!batch.has_value()) break;
    ends.push_back(loader->end_of_epoch());
  }
  EXPECT_THAT(ends, ElementsAre(false, true));
  EXPECT_FALSE(loader->end_of_epoch());  // The next epoch has begun.
}

TEST(PreparedDataLoaderTest, ShuffleIsSeededAndChangesWithTheEpoch) {
  auto state = SingleProcess();
  DataLoaderOptions options;
  options.batch_size = 5;
  options.shuffle = true;
  options.seed = 3;
  ASSERT_OK_AND_ASSIGN(auto a, PreparedDataLoader::Create(Numbered(20), *state, options));
  ASSERT_OK_AND_ASSIGN(auto b, PreparedDataLoader::Create(Numbered(20), *state, options));
  const auto a0 = Epoch(*a);
  const auto a1 = Epoch(*a);  // Epoch 1 follows by itself.
  EXPECT_EQ(Epoch(*b), a0);
  EXPECT_NE(a0, a1);
  b->SetEpoch(1);
  EXPECT_EQ(Epoch(*b), a1);
  std::vector<int64_t> all;
  for (const auto& batch : a0) all.insert(all.end(), batch.begin(), batch.end());
  std::sort(all.begin(), all.end());
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(all[i], i);
}

TEST(PreparedDataLoaderTest, WorkersPrefetchTheSameBatches) {
  auto state = SingleProcess();
  DataLoaderOptions options;
  options.batch_size = 7;
  options.shuffle = true;
  options.seed = 11;
  ASSERT_OK_AND_ASSIGN(auto plain, PreparedDataLoader::Create(Numbered(200), *state, options));
  options.num_workers = 3;
  options.prefetch_factor = 2;
  ASSERT_OK_AND_ASSIGN(auto prefetched,
                       PreparedDataLoader::Create(Numbered(200), *state, options));
  for (int epoch = 0; epoch < 3; ++epoch) {
    EXPECT_EQ(Epoch(*prefetched), Epoch(*plain)) << "epoch " << epoch;
  }
}

TEST(PreparedDataLoaderTest, ResumeContinuesWithTheIdenticalBatches) {
  auto state = SingleProcess();
  DataLoaderOptions options;
  options.batch_size = 3;
  options.shuffle = true;
  options.seed = 5;
  options.num_workers = 2;
  ASSERT_OK_AND_ASSIGN(auto loader, PreparedDataLoader::Create(Numbered(50), *state, options));
  loader->SetEpoch(2);
  const auto full = Epoch(*loader);
  loader->SetEpoch(2);
  for (int i = 0; i < 7; ++i) ASSERT_OK(loader->Next().status());
  const std::string saved = loader->state().Serialize();
  EXPECT_EQ(saved, "epoch=2 batches_done=7 seed=5");

  ASSERT_OK_AND_ASSIGN(auto resumed, PreparedDataLoader::Create(Numbered(50), *state, options));
  ASSERT_OK_AND_ASSIGN(LoaderState parsed, LoaderState::Parse(saved));
  ASSERT_OK(resumed->Restore(parsed));
  EXPECT_EQ(Epoch(*resumed),
            std::vector<std::vector<int64_t>>(full.begin() + 7, full.end()));

  // SetEpoch of the epoch it is in keeps a resumed loader's position.
  ASSERT_OK_AND_ASSIGN(auto again, PreparedDataLoader::Create(Numbered(50), *state, options));
  ASSERT_OK(again->Restore(parsed));
  again->SetEpoch(2);
  EXPECT_EQ(Epoch(*again),
            std::vector<std::vector<int64_t>>(full.begin() + 7, full.end()));

  // skip_first_batches: the same batches without loading the skipped ones.
  ASSERT_OK_AND_ASSIGN(auto skipper, PreparedDataLoader::Create(Numbered(50), *state, options));
  skipper->SetEpoch(2);
  skipper->SkipBatches(10);
  EXPECT_EQ(Epoch(*skipper),
            std::vector<std::vector<int64_t>>(full.begin() + 10, full.end()));
}

// A dataset whose reads fail on one batch.
class Failing final : public MapDataset {
 public:
  int64_t size() const override { return 12; }
  absl::StatusOr<Batch> Get(const std::vector<int64_t>& indices) const override {
    if (indices[0] == 8) throw std::runtime_error("disk error at sample 8");
    const at::Tensor ids = at::tensor(indices, at::kLong);
    return Batch::Of({ids.unsqueeze(1), ids});
  }
};

TEST(PreparedDataLoaderTest, AReadErrorComesBackAsAStatus) {
  auto state = SingleProcess();
  for (int workers : {0, 2}) {
    DataLoaderOptions options;
    options.batch_size = 4;
    options.num_workers = workers;
    ASSERT_OK_AND_ASSIGN(auto loader, PreparedDataLoader::Create(
                                          std::make_shared<Failing>(), *state, options));
    ASSERT_OK(loader->Next().status());
    ASSERT_OK(loader->Next().status());
    EXPECT_THAT(loader->Next().status(),
                StatusIs(absl::StatusCode::kInternal,
                         HasSubstr("disk error at sample 8")))
        << workers << " workers";
  }
}

// Dispatched, the main process's read error reaches every process, with its
// code, instead of leaving the others waiting.
TEST(PreparedDataLoaderTest, ADispatchedReadErrorReachesEveryProcess) {
  std::vector<absl::Status> statuses = RunOnRanks(
      2, [&](const state::PartialState& state) -> absl::Status {
        DataLoaderOptions options;
        options.batch_size = 2;
        options.dispatch_batches = true;
        auto loader = PreparedDataLoader::Create(std::make_shared<Failing>(),
                                                 state, options);
        if (!loader.ok()) return loader.status();
        // Global batches of 4: [0..3], [4..7], [8..11] fails.
        for (int k = 0; k < 3; ++k) {
          auto next = (*loader)->Next();
          if (!next.ok()) return next.status();
        }
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(StatusIs(absl::StatusCode::kInternal,
                                      HasSubstr("global batch 2: "))));
  EXPECT_THAT(statuses, Each(StatusIs(absl::StatusCode::kInternal,
                                      HasSubstr("disk error at sample 8"))));
}

TEST(PreparedDataLoaderTest, BadStateAndOptionsAreRejected) {
  auto state = SingleProcess();
  DataLoaderOptions options;
  options.batch_size = 0;
  EXPECT_THAT(PreparedDataLoader::Create(Numbered(5), *state, options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batch_size 0")));
  options.batch_size = 2;
  options.num_workers = -1;
  EXPECT_THAT(PreparedDataLoader::Create(Numbered(5), *state, options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_workers -1")));
  options.num_workers = 0;
  options.seed = 1;
  ASSERT_OK_AND_ASSIGN(auto loader, PreparedDataLoader::Create(Numbered(5), *state, options));
  EXPECT_THAT(loader->Restore({0, 1, 2}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("seed 2")));
  EXPECT_THAT(loader->Restore({0, 9, 1}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("9 batches done")));
  options.dispatch_batches = true;
  options.even_batches = false;
  auto two = RunOnRanks(2, [&](const state::PartialState& s) -> absl::Status {
    return PreparedDataLoader::Create(Numbered(5), s, options).status();
  });
  for (const absl::Status& status : two) {
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("dispatch_batches needs even_batches")));
  }
  EXPECT_THAT(LoaderState::Parse("epoch=1 batches=2 seed=3"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batches=2")));
  EXPECT_THAT(LoaderState::Parse("epoch=1"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs epoch, batches_done and seed")));
}

// Three thread ranks: the union of what they see is the dataset, every rank
// gets the same number of batches, dispatch mode hands out the same batches,
// and GatherForMetrics returns each sample exactly once.
TEST(PreparedDataLoaderTest, RanksShareTheDatasetAndMetricsDropPadding) {
  for (bool dispatch : {false, true}) {
    std::mutex mu;
    std::map<int, std::vector<std::vector<int64_t>>> seen;
    std::map<int, std::vector<int64_t>> gathered;
    std::vector<absl::Status> statuses = RunOnRanks(
        3, [&](const state::PartialState& state) -> absl::Status {
          DataLoaderOptions options;
          options.batch_size = 4;
          options.shuffle = true;
          options.seed = 9;
          options.dispatch_batches = dispatch;
          // 29 samples: 2 full steps of 12, then 5 real + 7 padding.
          auto loader = PreparedDataLoader::Create(Numbered(29), state, options);
          if (!loader.ok()) return loader.status();
          std::vector<std::vector<int64_t>> batches;
          std::vector<int64_t> metrics;
          while (true) {
            auto next = (*loader)->Next();
            if (!next.ok()) return next.status();
            if (!next->has_value()) break;
            batches.push_back(Ids(**next));
            auto all = GatherForMetrics(state, **loader, (**next).tensor(1));
            if (!all.ok()) return all.status();
            for (double v : TensorValues(*all)) metrics.push_back(v / 10);
          }
          std::lock_guard<std::mutex> lock(mu);
          seen[state.process_index()] = batches;
          gathered[state.process_index()] = metrics;
          return absl::OkStatus();
        });
    ASSERT_THAT(statuses, Each(IsOk())) << "dispatch " << dispatch;
    std::set<int64_t> union_of_ranks;
    for (const auto& [rank, batches] : seen) {
      EXPECT_EQ(batches.size(), 3u) << "rank " << rank;
      for (size_t k = 0; k < batches.size(); ++k) {
        // Dispatching splits the last 5 samples (completed with the first 3
        // of the epoch) 2 + 2 + 2, as Accelerate's dispatcher.
        EXPECT_EQ(batches[k].size(), dispatch && k == 2 ? 2u : 4u);
        union_of_ranks.insert(batches[k].begin(), batches[k].end());
      }
    }
    EXPECT_EQ(union_of_ranks.size(), 29u);
    for (const auto& [rank, metrics] : gathered) {
      std::vector<int64_t> sorted = metrics;
      std::sort(sorted.begin(), sorted.end());
      std::vector<int64_t> expected(29);
      for (int64_t i = 0; i < 29; ++i) expected[i] = i;
      EXPECT_EQ(sorted, expected) << "rank " << rank << " dispatch " << dispatch;
    }
  }
}

// With drop_last, Accelerate's dispatcher also drops a last group of fewer
// than num_processes batches: 16 samples, batch 3, 2 processes read 5 full
// batches, of which 4 make 2 steps.
TEST(PreparedDataLoaderTest, DispatchModeWithDropLastDropsAPartialGroup) {
  std::mutex mu;
  std::map<int, std::vector<std::vector<int64_t>>> seen;
  std::vector<absl::Status> statuses = RunOnRanks(
      2, [&](const state::PartialState& state) -> absl::Status {
        DataLoaderOptions options;
        options.batch_size = 3;
        options.drop_last = true;
        options.dispatch_batches = true;
        auto loader = PreparedDataLoader::Create(Numbered(16), state, options);
        if (!loader.ok()) return loader.status();
        std::vector<std::vector<int64_t>> batches = Epoch(**loader);
        std::lock_guard<std::mutex> lock(mu);
        seen[state.process_index()] = batches;
        return absl::OkStatus();
      });
  ASSERT_THAT(statuses, Each(IsOk()));
  using Batches = std::vector<std::vector<int64_t>>;
  EXPECT_EQ(seen[0], (Batches{{0, 1, 2}, {6, 7, 8}}));
  EXPECT_EQ(seen[1], (Batches{{3, 4, 5}, {9, 10, 11}}));
}

TEST(PreparedDataLoaderTest, DispatchModeSplitsGlobalBatchesAsAccelerateDoes) {
  std::mutex mu;
  std::map<std::pair<bool, int>, std::vector<std::vector<int64_t>>> seen;
  for (bool dispatch : {false, true}) {
    std::vector<absl::Status> statuses = RunOnRanks(
        2, [&](const state::PartialState& state) -> absl::Status {
          DataLoaderOptions options;
          options.batch_size = 3;
          options.split_batches = false;
          options.dispatch_batches = dispatch;
          auto loader = PreparedDataLoader::Create(Numbered(13), state, options);
          if (!loader.ok()) return loader.status();
          std::vector<std::vector<int64_t>> batches = Epoch(**loader);
          std::lock_guard<std::mutex> lock(mu);
          seen[{dispatch, state.process_index()}] = batches;
          return absl::OkStatus();
        });
    ASSERT_THAT(statuses, Each(IsOk()));
  }
  // 13 samples, batch 3, 2 processes. Reading locally, rank 0 gets
  // [0..2] [6..8] [12, 0, 1] (BatchSamplerShard's even batches). Dispatched,
  // the global batches are [0..5] [6..11] [12]; the last, which does not
  // divide between 2 processes, takes the epoch's first 2 samples and each
  // process keeps 1 (Accelerate's DataLoaderDispatcher).
  using Batches = std::vector<std::vector<int64_t>>;
  EXPECT_EQ((seen[{false, 0}]), (Batches{{0, 1, 2}, {6, 7, 8}, {12, 0, 1}}));
  EXPECT_EQ((seen[{false, 1}]), (Batches{{3, 4, 5}, {9, 10, 11}, {2, 3, 4}}));
  EXPECT_EQ((seen[{true, 0}]), (Batches{{0, 1, 2}, {6, 7, 8}, {12}}));
  EXPECT_EQ((seen[{true, 1}]), (Batches{{3, 4, 5}, {9, 10, 11}, {0}}));
}

}  // namespace
}  // namespace accelerate::data

namespace accelerate::data {
namespace {

// 24 samples of named, nested fields: ids [3] and a (position, weight) pair.
std::shared_ptr<TensorDataset> NamedRows() {
  const at::Tensor index = at::arange(24, at::kLong);
  return std::make_shared<TensorDataset>(Batch::Named(
      {{"input_ids", index.unsqueeze(1).repeat({1, 3})},
       {"extra", Batch::Of({index.to(at::kFloat) / 2,
                            at::ones({24, 2}) * index.unsqueeze(1)})}}));
}

// Every batch of one shuffled epoch, each gathered over the processes.
absl::StatusOr<std::vector<Batch>> GatheredEpoch(
    const state::PartialState& state, int64_t batch_size, bool dispatch) {
  DataLoaderOptions options;
  options.batch_size = batch_size;
  options.shuffle = true;
  options.seed = 5;
  options.dispatch_batches = dispatch;
  auto loader = PreparedDataLoader::Create(NamedRows(), state, options);
  if (!loader.ok()) return loader.status();
  std::vector<Batch> batches;
  while (true) {
    auto next = (*loader)->Next();
    if (!next.ok()) return next.status();
    if (!next->has_value()) return batches;
    auto all = GatherForMetrics(state, **loader, **next);
    if (!all.ok()) return all.status();
    batches.push_back(*std::move(all));
  }
}

TEST(PreparedDataLoaderTest, NamedBatchesOnTwoRanksEqualWhatOneProcessSees) {
  std::vector<Batch> single;
  ASSERT_THAT(testing::RunOnRanks(1,
                                  [&](const state::PartialState& state) {
                                    auto batches = GatheredEpoch(state, 4, false);
                                    if (batches.ok()) single = *batches;
                                    return batches.status();
                                  }),
              Each(IsOk()));
  ASSERT_EQ(single.size(), 6u);
  for (bool dispatch : {false, true}) {
    std::vector<Batch> on_rank0;
    std::vector<absl::Status> statuses = testing::RunOnRanks(
        2, [&](const state::PartialState& state) -> absl::Status {
          auto batches = GatheredEpoch(state, 2, dispatch);
          if (batches.ok() && state.process_index() == 0) on_rank0 = *batches;
          return batches.status();
        });
    ASSERT_THAT(statuses, Each(IsOk())) << "dispatch " << dispatch;
    ASSERT_EQ(on_rank0.size(), single.size());
    for (size_t k = 0; k < single.size(); ++k) {
      EXPECT_EQ(on_rank0[k].Describe(), single[k].Describe());
      single[k].ForEachTensor([&](const std::string& path, const at::Tensor& t) {
        at::Tensor other;
        on_rank0[k].ForEachTensor(
            [&](const std::string& p, const at::Tensor& o) {
              if (p == path) other = o;
            });
        EXPECT_TRUE(testing::TensorsClose(other, t, {}))
            << "batch " << k << " field " << path << " dispatch " << dispatch;
      });
    }
  }
}

}  // namespace
}  // namespace accelerate::data

namespace accelerate::data {
namespace {

// The user's sampler decides the order; Accelerate's sharding applies to it.
TEST(PreparedDataLoaderTest, ShardsTheUsersSamplerAndLibTorchsSamplers) {
  std::map<int, std::vector<std::vector<int64_t>>> seen;
  std::mutex mu;
  std::vector<absl::Status> statuses = testing::RunOnRanks(
      2, [&](const state::PartialState& state) -> absl::Status {
        DataLoaderOptions options;
        options.batch_size = 2;
        // Every other sample, backwards.
        options.sampler = [](int64_t) {
          return std::vector<int64_t>{9, 7, 5, 3, 1};
        };
        auto loader = PreparedDataLoader::Create(Numbered(10), state, options);
        if (!loader.ok()) return loader.status();
        auto batches = Epoch(**loader);
        std::lock_guard<std::mutex> lock(mu);
        seen[state.process_index()] = batches;
        return absl::OkStatus();
      });
  ASSERT_THAT(statuses, Each(IsOk()));
  // Global batches [9 7 | 5 3], then [1 9 | 7 5] completed from the start.
  EXPECT_EQ(seen[0], (std::vector<std::vector<int64_t>>{{9, 7}, {1, 9}}));
  EXPECT_EQ(seen[1], (std::vector<std::vector<int64_t>>{{5, 3}, {7, 5}}));

  // LibTorch's DistributedRandomSampler with one replica: its epoch order,
  // reshuffled by set_epoch.
  auto torch_sampler =
      std::make_shared<torch::data::samplers::DistributedRandomSampler>(
          12, /*num_replicas=*/1, /*rank=*/0);
  statuses = testing::RunOnRanks(
      1, [&](const state::PartialState& state) -> absl::Status {
        DataLoaderOptions options;
        options.batch_size = 12;
        options.sampler = TorchSamplerOrder(torch_sampler, 12);
        auto loader = PreparedDataLoader::Create(Numbered(12), state, options);
        if (!loader.ok()) return loader.status();
        const auto first = Epoch(**loader);
        (*loader)->SetEpoch(1);
        const auto second = Epoch(**loader);
        std::set<int64_t> all(first[0].begin(), first[0].end());
        if (all.size() != 12 || first == second) {
          return absl::InternalError("not a reshuffled permutation");
        }
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
}

TEST(PreparedDataLoaderTest, ASamplerIndexOutsideTheDatasetIsNamed) {
  std::vector<absl::Status> statuses = testing::RunOnRanks(
      1, [&](const state::PartialState& state) -> absl::Status {
        DataLoaderOptions options;
        options.batch_size = 2;
        options.sampler = [](int64_t epoch) {
          return epoch == 0 ? std::vector<int64_t>{0, 1}
                            : std::vector<int64_t>{0, 10};
        };
        auto loader = PreparedDataLoader::Create(Numbered(10), state, options);
        if (!loader.ok()) return loader.status();
        Epoch(**loader);
        return (*loader)->Next().status();
      });
  EXPECT_THAT(statuses[0],
              StatusIs(absl::StatusCode::kOutOfRange,
                       HasSubstr("the sampler of epoch 1 gave index 10 at "
                                 "position 1; the dataset has 10 samples")));
}

}  // namespace
}  // namespace accelerate::data
