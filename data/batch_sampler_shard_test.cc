#include "data/batch_sampler_shard.h"

#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "data/sampler.h"
#include "testing/status_matchers.h"

namespace accelerate::data {
namespace {

using ::accelerate::testing::StatusIs;
using ::testing::HasSubstr;

using Batches = std::vector<std::vector<int64_t>>;

// Every process's batches for a sequential dataset of `length` samples.
std::vector<Batches> Shards(int64_t length, int64_t batch_size, bool drop_last,
                            bool split, bool even, int processes = 2) {
  std::vector<Batches> shards;
  for (int p = 0; p < processes; ++p) {
    ShardOptions options;
    options.batch_size = batch_size;
    options.drop_last = drop_last;
    options.num_processes = processes;
    options.process_index = p;
    options.split_batches = split;
    options.even_batches = even;
    absl::StatusOr<BatchSamplerShard> shard =
        BatchSamplerShard::Create(IndexOrder::Create(length), options);
    EXPECT_TRUE(shard.ok()) << shard.status();
    if (!shard.ok()) return {};
    shards.push_back(shard->AllBatches());
  }
  return shards;
}

struct Case {
  int64_t length;
  int64_t batch_size;
  bool drop_last;
  std::vector<Batches> expected;
};

void ExpectCases(const std::vector<Case>& cases, bool split, bool even) {
  for (const Case& c : cases) {
    EXPECT_EQ(Shards(c.length, c.batch_size, c.drop_last, split, even),
              c.expected)
        << "length " << c.length << ", batch " << c.batch_size
        << ", drop_last " << c.drop_last << ", split " << split << ", even "
        << even;
  }
}

// Worked out from Accelerate's rules; the same lists Accelerate's own tests
// hold for BatchSampler(range(n)) on 2 processes.
TEST(BatchSamplerShardTest, WholeBatchesEvenedOnTwoProcesses) {
  const Batches round0 = {{0, 1, 2}, {6, 7, 8}, {12, 13, 14}, {18, 19, 20}};
  const Batches dropped0 = {{0, 1, 2}, {6, 7, 8}, {12, 13, 14}};
  const Batches dropped1 = {{3, 4, 5}, {9, 10, 11}, {15, 16, 17}};
  ExpectCases(
      {
          {24, 3, false, {round0, {{3, 4, 5}, {9, 10, 11}, {15, 16, 17}, {21, 22, 23}}}},
          {24, 3, true, {round0, {{3, 4, 5}, {9, 10, 11}, {15, 16, 17}, {21, 22, 23}}}},
          // 7 batches: process 1's 4th batch cycles back to the first one.
          {21, 3, false, {round0, {{3, 4, 5}, {9, 10, 11}, {15, 16, 17}, {0, 1, 2}}}},
          {21, 3, true, {dropped0, dropped1}},
          // The partial batch [21] is completed with 0, 1.
          {22, 3, false, {round0, {{3, 4, 5}, {9, 10, 11}, {15, 16, 17}, {21, 0, 1}}}},
          {22, 3, true, {dropped0, dropped1}},
          {20, 3, false,
           {{{0, 1, 2}, {6, 7, 8}, {12, 13, 14}, {18, 19, 0}},
            {{3, 4, 5}, {9, 10, 11}, {15, 16, 17}, {1, 2, 3}}}},
          {20, 3, true, {dropped0, dropped1}},
          // Fewer samples than one batch per process: cycled.
          {2, 3, false, {{{0, 1, 0}}, {{1, 0, 1}}}},
          {2, 3, true, {{}, {}}},
      },
      /*split=*/false, /*even=*/true);
}

TEST(BatchSamplerShardTest, SplitBatchesEvenedOnTwoProcesses) {
  const Batches first5_0 = {{0, 1}, {4, 5}, {8, 9}, {12, 13}, {16, 17}};
  const Batches first5_1 = {{2, 3}, {6, 7}, {10, 11}, {14, 15}, {18, 19}};
  auto with = [](Batches b, std::vector<int64_t> last) {
    b.push_back(std::move(last));
    return b;
  };
  ExpectCases(
      {
          {24, 4, false, {with(first5_0, {20, 21}), with(first5_1, {22, 23})}},
          {24, 4, true, {with(first5_0, {20, 21}), with(first5_1, {22, 23})}},
          {22, 4, false, {with(first5_0, {20, 21}), with(first5_1, {0, 1})}},
          {22, 4, true, {first5_0, first5_1}},
          {21, 4, false, {with(first5_0, {20, 0}), with(first5_1, {1, 2})}},
          {21, 4, true, {first5_0, first5_1}},
          {2, 4, false, {{{0, 1}}, {{0, 1}}}},
          {2, 4, true, {{}, {}}},
      },
      /*split=*/true, /*even=*/true);
}

TEST(BatchSamplerShardTest, WholeBatchesUnevenOnTwoProcesses) {
  const Batches round0 = {{0, 1, 2}, {6, 7, 8}, {12, 13, 14}, {18, 19, 20}};
  const Batches first3_1 = {{3, 4, 5}, {9, 10, 11}, {15, 16, 17}};
  const Batches dropped0 = {{0, 1, 2}, {6, 7, 8}, {12, 13, 14}};
  ExpectCases(
      {
          {24, 3, false, {round0, {{3, 4, 5}, {9, 10, 11}, {15, 16, 17}, {21, 22, 23}}}},
          {21, 3, false, {round0, first3_1}},
          {21, 3, true, {dropped0, first3_1}},
          {22, 3, false, {round0, {{3, 4, 5}, {9, 10, 11}, {15, 16, 17}, {21}}}},
          {20, 3, false,
           {{{0, 1, 2}, {6, 7, 8}, {12, 13, 14}, {18, 19}}, first3_1}},
          {20, 3, true, {dropped0, first3_1}},
          {2, 3, false, {{{0, 1}}, {}}},
          {2, 3, true, {{}, {}}},
      },
      /*split=*/false, /*even=*/false);
}

TEST(BatchSamplerShardTest, SplitBatchesUnevenOnTwoProcesses) {
  const Batches first5_0 = {{0, 1}, {4, 5}, {8, 9}, {12, 13}, {16, 17}};
  const Batches first5_1 = {{2, 3}, {6, 7}, {10, 11}, {14, 15}, {18, 19}};
  auto with = [](Batches b, std::vector<int64_t> last) {
    b.push_back(std::move(last));
    return b;
  };
  ExpectCases(
      {
          {24, 4, false, {with(first5_0, {20, 21}), with(first5_1, {22, 23})}},
          {22, 4, false, {with(first5_0, {20, 21}), first5_1}},
          {22, 4, true, {first5_0, first5_1}},
          {21, 4, false, {with(first5_0, {20}), first5_1}},
          {2, 4, false, {{{0, 1}}, {}}},
          {2, 4, true, {{}, {}}},
      },
      /*split=*/true, /*even=*/false);
}

TEST(BatchSamplerShardTest, ThreeProcessesCycleFromTheFirstBatches) {
  // 10 samples, batch 2, 3 processes: batches [0,1] [2,3] [4,5] | [6,7]
  // [8,9] and one more batch cycled from the start for process 2.
  EXPECT_EQ(Shards(10, 2, false, false, true, 3),
            (std::vector<Batches>{{{0, 1}, {6, 7}},
                                  {{2, 3}, {8, 9}},
                                  {{4, 5}, {0, 1}}}));
  // 7 samples, batch 2: the partial batch [6] is completed with 0, the
  // next process continues the cycle.
  EXPECT_EQ(Shards(7, 2, false, false, true, 3),
            (std::vector<Batches>{{{0, 1}, {6, 0}},
                                  {{2, 3}, {1, 2}},
                                  {{4, 5}, {3, 4}}}));
}

TEST(BatchSamplerShardTest, EveryProcessGetsTheSameCountWithEvenBatches) {
  for (int64_t length = 3; length < 60; ++length) {
    for (int64_t batch = 1; batch <= 5; ++batch) {
      for (int processes : {2, 3}) {
        for (bool split : {false, true}) {
          const int64_t bs = split ? batch * processes : batch;
          const std::vector<Batches> shards =
              Shards(length, bs, false, split, true, processes);
          ASSERT_EQ(shards.size(), static_cast<size_t>(processes));
          std::vector<bool> seen(length, false);
          for (const Batches& shard : shards) {
            EXPECT_EQ(shard.size(), shards[0].size());
            for (const auto& b : shard) {
              EXPECT_EQ(static_cast<int64_t>(b.size()), split ? batch : bs);
              for (int64_t i : b) seen[i] = true;
            }
          }
          // Padding only repeats samples: every sample is seen.
          for (int64_t i = 0; i < length; ++i) {
            EXPECT_TRUE(seen[i]) << "sample " << i << " of " << length;
          }
        }
      }
    }
  }
}

TEST(BatchSamplerShardTest, RandomAccessMatchesTheSequence) {
  ShardOptions options;
  options.batch_size = 4;
  options.num_processes = 3;
  options.process_index = 1;
  ASSERT_OK_AND_ASSIGN(
      BatchSamplerShard shard,
      BatchSamplerShard::Create(
          IndexOrder::Create(1001, {.shuffle = true, .seed = 7}), options));
  const Batches all = shard.AllBatches();
  ASSERT_EQ(static_cast<int64_t>(all.size()), shard.size());
  for (int64_t k = shard.size() - 1; k >= 0; k -= 7) {
    EXPECT_EQ(shard.Batch(k), all[k]);
  }
  // 1001 = 83 * 12 + 5 samples: the last global batch holds 5 real ones.
  EXPECT_EQ(shard.remainder(), 5);
}

TEST(BatchSamplerShardTest, BadOptionsAreNamed) {
  const auto create = [](int64_t length, ShardOptions options) {
    return BatchSamplerShard::Create(IndexOrder::Create(length), options)
        .status();
  };
  ShardOptions options;
  options.batch_size = 0;
  EXPECT_THAT(create(10, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("batch_size 0")));
  options.batch_size = 3;
  options.num_processes = 2;
  options.process_index = 2;
  EXPECT_THAT(create(10, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("process_index 2 is outside [0, 2)")));
  options.process_index = 0;
  options.split_batches = true;
  EXPECT_THAT(create(10, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("batch size (3) to be a round multiple")));
  options.split_batches = false;
  options.num_processes = 4;
  EXPECT_THAT(create(3, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("3 samples cannot give each of 4 processes")));
  options.even_batches = false;
  EXPECT_THAT(create(3, options), ::accelerate::testing::IsOk());
  EXPECT_THAT(ValidateShardOptions(-1, ShardOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("dataset length -1 is negative")));
}

// Accelerate's property for IterableDatasetShard: taking each process's
// samples in turn, one per-process batch at a time, gives back the stream
// (cycled from its start when the last global batch is completed).
TEST(IterableShardOrderTest, InterleavedShardsRebuildTheStream) {
  for (int64_t length : {0, 1, 2, 3, 7, 8, 9, 16, 23}) {
    for (bool drop_last : {false, true}) {
      for (bool split : {false, true}) {
        const int processes = 2;
        const int64_t batch = 4;
        const int64_t per = split ? batch / processes : batch;
        std::vector<std::vector<int64_t>> orders;
        for (int p = 0; p < processes; ++p) {
          ShardOptions options;
          options.batch_size = batch;
          options.drop_last = drop_last;
          options.num_processes = processes;
          options.process_index = p;
          options.split_batches = split;
          ASSERT_OK_AND_ASSIGN(std::vector<int64_t> order,
                               IterableShardOrder(length, options));
          orders.push_back(order);
        }
        ASSERT_EQ(orders[0].size(), orders[1].size());
        EXPECT_EQ(orders[0].size() % per, 0u);
        std::vector<int64_t> observed;
        for (size_t i = 0; i < orders[0].size(); i += per) {
          for (const auto& order : orders) {
            observed.insert(observed.end(), order.begin() + i,
                            order.begin() + i + per);
          }
        }
        std::vector<int64_t> reference;
        for (int64_t s = 0; s < length; ++s) reference.push_back(s);
        if (!drop_last) {
          while (!reference.empty() && reference.size() < observed.size()) {
            reference.insert(reference.end(), reference.begin(),
                             reference.end());
          }
        }
        reference.resize(observed.size());
        EXPECT_EQ(observed, reference)
            << "length " << length << " drop_last " << drop_last << " split "
            << split;
      }
    }
  }
  // A literal case: 10 samples, batch 2, 2 processes.
  ShardOptions options;
  options.batch_size = 2;
  options.num_processes = 2;
  options.process_index = 1;
  EXPECT_THAT(IterableShardOrder(10, options),
              ::accelerate::testing::IsOkAndHolds(
                  std::vector<int64_t>{2, 3, 6, 7, 0, 1}));
}

}  // namespace
}  // namespace accelerate::data
