#include "data/stream_loader.h"

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/ATen.h>
#include <torch/data/datasets/base.h>
#include "data/torch_dataset.h"
#include "state/environment.h"
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

using Ids = std::vector<std::vector<int64_t>>;

// Samples 0, 1, ..., n-1 (data [i], target i); counts its resets.
class NumberStream final : public SampleStream {
 public:
  explicit NumberStream(int64_t n) : n_(n) {}
  void Reset(int64_t epoch) override {
    next_ = 0;
    epochs_.push_back(epoch);
  }
  std::optional<Batch> Next() override {
    if (next_ >= n_) return std::nullopt;
    const int64_t i = next_++;
    return Batch::Of({at::full({1}, i, at::kLong), at::scalar_tensor(i, at::kLong)});
  }
  const std::vector<int64_t>& epochs() const { return epochs_; }

 private:
  int64_t n_;
  int64_t next_ = 0;
  std::vector<int64_t> epochs_;
};

std::vector<int64_t> ToIds(const at::Tensor& t) {
  std::vector<int64_t> ids;
  for (double v : TensorValues(t)) ids.push_back(static_cast<int64_t>(v));
  return ids;
}

// Each thread rank's batches and what GatherForMetrics returned.
struct RankRun {
  Ids batches;
  std::vector<int64_t> metrics;
  std::vector<bool> ends;
};

std::map<int, RankRun> RunStream(int world, int64_t n,
                                 const DataLoaderOptions& options) {
  // In dispatch mode only rank 0 gets a stream.
  std::mutex mu;
  std::map<int, RankRun> runs;
  std::vector<absl::Status> statuses = RunOnRanks(
      world, [&](const state::PartialState& state) -> absl::Status {
        std::shared_ptr<NumberStream> stream;
        if (!options.dispatch_batches || state.is_main_process()) {
          stream = std::make_shared<NumberStream>(n);
        }
        auto loader = PreparedStreamLoader::Create(stream, state, options);
        if (!loader.ok()) return loader.status();
        RankRun run;
        while (true) {
          auto next = (*loader)->Next();
          if (!next.ok()) return next.status();
          if (!next->has_value()) break;
          run.batches.push_back(ToIds((**next).tensor(1)));
          run.ends.push_back((*loader)->end_of_epoch());
          auto all = GatherForMetrics(state, **loader, (**next).tensor(1));
          if (!all.ok()) return all.status();
          for (int64_t id : ToIds(*all)) run.metrics.push_back(id);
        }
        std::lock_guard<std::mutex> lock(mu);
        runs[state.process_index()] = run;
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
  return runs;
}

TEST(PreparedStreamLoaderTest, TwoRanksTakeTheirSlicesAndCompleteTheEnd) {
  DataLoaderOptions options;
  options.batch_size = 2;
  std::map<int, RankRun> runs = RunStream(2, 10, options);
  EXPECT_EQ(runs[0].batches, (Ids{{0, 1}, {4, 5}, {8, 9}}));
  EXPECT_EQ(runs[1].batches, (Ids{{2, 3}, {6, 7}, {0, 1}}));
  EXPECT_THAT(runs[0].ends, ElementsAre(false, false, true));
  // The completing samples 0, 1 are dropped from the metrics.
  for (int rank : {0, 1}) {
    EXPECT_THAT(runs[rank].metrics, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
  }
}

TEST(PreparedStreamLoaderTest, DispatchModeSendsTheSameBatches) {
  DataLoaderOptions options;
  options.batch_size = 2;
  options.dispatch_batches = true;
  std::map<int, RankRun> runs = RunStream(2, 10, options);
  EXPECT_EQ(runs[0].batches, (Ids{{0, 1}, {4, 5}, {8, 9}}));
  EXPECT_EQ(runs[1].batches, (Ids{{2, 3}, {6, 7}, {0, 1}}));
  EXPECT_THAT(runs[1].ends, ElementsAre(false, false, true));
  EXPECT_THAT(runs[1].metrics, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
}

TEST(PreparedStreamLoaderTest, SplitBatchesAndDropLast) {
  DataLoaderOptions options;
  options.batch_size = 4;
  options.split_batches = true;
  std::map<int, RankRun> split = RunStream(2, 10, options);
  EXPECT_EQ(split[0].batches, (Ids{{0, 1}, {4, 5}, {8, 9}}));
  EXPECT_EQ(split[1].batches, (Ids{{2, 3}, {6, 7}, {0, 1}}));

  options.batch_size = 2;
  options.split_batches = false;
  options.drop_last = true;
  std::map<int, RankRun> dropped = RunStream(2, 10, options);
  EXPECT_EQ(dropped[0].batches, (Ids{{0, 1}, {4, 5}}));
  EXPECT_EQ(dropped[1].batches, (Ids{{2, 3}, {6, 7}}));
  EXPECT_THAT(dropped[0].metrics, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7));
}

TEST(PreparedStreamLoaderTest, OneProcessKeepsTheShortLastBatchAndMovesOn) {
  auto state = state::PartialState::Create({}, state::MapEnvironment());
  ASSERT_TRUE(state.ok());
  auto stream = std::make_shared<NumberStream>(10);
  DataLoaderOptions options;
  options.batch_size = 4;
  ASSERT_OK_AND_ASSIGN(auto loader,
                       PreparedStreamLoader::Create(stream, **state, options));
  for (int epoch = 0; epoch < 2; ++epoch) {
    Ids batches;
    while (true) {
      ASSERT_OK_AND_ASSIGN(std::optional<Batch> batch, loader->Next());
      if (!batch.has_value()) break;
      batches.push_back(ToIds(batch->tensor(1)));
    }
    EXPECT_EQ(batches, (Ids{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}}));
  }
  EXPECT_THAT(stream->epochs(), ElementsAre(0, 1));
  ASSERT_OK(loader->SkipBatches(2));
  ASSERT_OK_AND_ASSIGN(std::optional<Batch> third, loader->Next());
  ASSERT_TRUE(third.has_value());
  EXPECT_THAT(ToIds(third->tensor(1)), ElementsAre(8, 9));
}

TEST(PreparedStreamLoaderTest, BadOptionsAreNamed) {
  auto state = state::PartialState::Create({}, state::MapEnvironment());
  ASSERT_TRUE(state.ok());
  DataLoaderOptions options;
  options.batch_size = 0;
  EXPECT_THAT(PreparedStreamLoader::Create(std::make_shared<NumberStream>(3),
                                           **state, options)
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("batch_size 0")));
  EXPECT_THAT(PreparedStreamLoader::Create(nullptr, **state, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stream")));
}

// A LibTorch map-style dataset read through TorchMapDataset.
class SquaresDataset : public torch::data::datasets::Dataset<SquaresDataset> {
 public:
  torch::data::Example<> get(size_t i) override {
    return {at::full({2}, static_cast<double>(i)),
            at::scalar_tensor(static_cast<double>(i * i))};
  }
  torch::optional<size_t> size() const override { return 6; }
};

TEST(TorchMapDatasetTest, LibTorchDatasetsLoadThroughThePreparedLoader) {
  auto state = state::PartialState::Create({}, state::MapEnvironment());
  ASSERT_TRUE(state.ok());
  DataLoaderOptions options;
  options.batch_size = 4;
  options.num_workers = 2;
  ASSERT_OK_AND_ASSIGN(
      auto loader,
      PreparedDataLoader::Create(
          std::make_shared<TorchMapDataset<SquaresDataset>>(SquaresDataset()),
          **state, options));
  ASSERT_OK_AND_ASSIGN(std::optional<Batch> first, loader->Next());
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->tensor(0).sizes(), (std::vector<int64_t>{4, 2}));
  EXPECT_THAT(TensorValues(first->tensor(1)), ElementsAre(0, 1, 4, 9));
  ASSERT_OK_AND_ASSIGN(std::optional<Batch> second, loader->Next());
  ASSERT_TRUE(second.has_value());
  EXPECT_THAT(TensorValues(second->tensor(1)), ElementsAre(16, 25));
}

}  // namespace
}  // namespace accelerate::data
