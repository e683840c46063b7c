#include "data/collate.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/ATen.h>
#include "data/data_loader.h"
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
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A sentence of `n` tokens, all `n`.
Batch Sentence(int64_t n) {
  const at::Tensor ids = at::full({n}, n, at::kLong);
  return Batch::Named({{"input_ids", ids}, {"labels", ids}});
}

TEST(StackTest, StacksEveryFieldAlongANewDimension) {
  absl::StatusOr<Batch> batch = Stack({Sentence(3), Sentence(3)});
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->Describe(), "{input_ids: Long[2, 3], labels: Long[2, 3]}");
}

TEST(StackTest, NamesTheSampleAndFieldThatDiffer) {
  EXPECT_THAT(Stack({Sentence(3), Sentence(3), Sentence(4)}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("input_ids of sample 2 is Long[4], of sample "
                                 "0 Long[3]")));
  Batch extra = Sentence(3);
  extra.Set("mask", at::ones({3}));
  EXPECT_THAT(Stack({Sentence(3), extra}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sample 1 is {input_ids: Long[3], labels: "
                                 "Long[3], mask: Float[3]}")));
}

TEST(PadAndStackTest, PadsToTheLongestWithEachFieldsValueAndMasks) {
  absl::StatusOr<Batch> batch =
      PadAndStack({Sentence(1), Sentence(3)},
                  {.pad_values = {{"labels", -100}},
                   .pad_value = 7,
                   .attention_mask = "attention_mask"});
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_THAT(TensorValues(batch->tensor("input_ids")),
              ElementsAre(1, 7, 7, 3, 3, 3));
  EXPECT_THAT(TensorValues(batch->tensor("labels")),
              ElementsAre(1, -100, -100, 3, 3, 3));
  EXPECT_THAT(TensorValues(batch->tensor("attention_mask")),
              ElementsAre(1, 0, 0, 1, 1, 1));
}

TEST(PadAndStackTest, OnlyTheFirstDimensionMayDiffer) {
  const Batch a = Batch::Named({{"embeddings", at::zeros({3, 4})}});
  const Batch b = Batch::Named({{"embeddings", at::zeros({2, 8})}});
  EXPECT_THAT(PadAndStack({a, b}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("embeddings of sample 1 is Float[2, 8], of "
                                 "sample 0 Float[3, 4]")));
  // Equal past dimension 0: padded rows of 4.
  absl::StatusOr<Batch> padded = PadAndStack(
      {a, Batch::Named({{"embeddings", at::ones({1, 4})}})});
  ASSERT_TRUE(padded.ok()) << padded.status();
  EXPECT_EQ(padded->Describe(), "{embeddings: Float[2, 3, 4]}");
  EXPECT_EQ(padded->tensor("embeddings")[1].sum().item<float>(), 4);
}

TEST(PadAndStackTest, PadsFirstAndToAMultiple) {
  absl::StatusOr<Batch> batch =
      PadAndStack({Sentence(1), Sentence(2)},
                  {.pad_to_multiple_of = 4, .pad_first = true,
                   .attention_mask = "attention_mask"});
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_THAT(TensorValues(batch->tensor("input_ids")),
              ElementsAre(0, 0, 0, 1, 0, 0, 2, 2));
  EXPECT_THAT(TensorValues(batch->tensor("attention_mask")),
              ElementsAre(0, 0, 0, 1, 0, 0, 1, 1));
  EXPECT_THAT(PadAndStack({Sentence(1)}, {.pad_to_multiple_of = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("pad_to_multiple_of 0")));
}

// The user's own sample type, collated by the user's function, read by the
// prepared loader on two ranks.
struct Review {
  std::vector<int64_t> tokens;
  int64_t stars;
};

TEST(CollatedDatasetTest, TheLoaderReadsTheUsersSamplesThroughTheirCollate) {
  auto dataset = std::make_shared<CollatedDataset<Review>>(
      10,
      [](int64_t i) {
        return Review{std::vector<int64_t>(static_cast<size_t>(1 + i % 4), i),
                      i % 5};
      },
      [](std::vector<Review> reviews) -> absl::StatusOr<Batch> {
        std::vector<Batch> samples;
        for (const Review& r : reviews) {
          samples.push_back(Batch::Named(
              {{"input_ids", at::tensor(r.tokens, at::kLong)},
               {"stars", at::scalar_tensor(r.stars, at::kLong)}}));
        }
        return PadAndStack(samples, {.attention_mask = "attention_mask"});
      });
  std::vector<absl::Status> statuses =
      RunOnRanks(2, [&](const state::PartialState& state) -> absl::Status {
        auto loader = PreparedDataLoader::Create(dataset, state, {.batch_size = 2});
        if (!loader.ok()) return loader.status();
        auto batch = (*loader)->Next();
        if (!batch.ok()) return batch.status();
        // Rank 0 reads samples 0 and 1, rank 1 samples 2 and 3.
        const int64_t first = 2 * state.process_index();
        const at::Tensor ids = (**batch).tensor("input_ids");
        const at::Tensor mask = (**batch).tensor("attention_mask");
        if (ids.size(1) != first + 2 ||
            mask.sum().item<int64_t>() != 2 * first + 3 ||
            (**batch).tensor("stars")[1].item<int64_t>() != first + 1) {
          return absl::InternalError(
              absl::StrCat("rank ", state.process_index(), " got ",
                           (**batch).Describe()));
        }
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, ElementsAre(IsOk(), IsOk()));
}

TEST(CollatedDatasetTest, ACollateOfMismatchedSamplesIsAnErrorNamingTheField) {
  auto dataset = std::make_shared<CollatedDataset<Batch>>(
      8, [](int64_t i) -> Batch {
        return Batch::Named({{"input_ids", at::zeros({3})},
                             {"labels", at::zeros({i == 5 ? 2 : 3})}});
      });
  std::vector<absl::Status> statuses =
      RunOnRanks(1, [&](const state::PartialState& state) -> absl::Status {
        auto loader = PreparedDataLoader::Create(dataset, state, {.batch_size = 4});
        if (!loader.ok()) return loader.status();
        while (true) {
          auto batch = (*loader)->Next();
          if (!batch.ok()) return batch.status();
          if (!batch->has_value()) return absl::OkStatus();
        }
      });
  EXPECT_THAT(statuses[0],
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("loading batch 1: cannot collate: labels of "
                                 "sample 1 is Float[2], of sample 0 Float[3]")));

  // A collate whose fields disagree on the number of samples.
  auto uneven = std::make_shared<CollatedDataset<int64_t>>(
      8, [](int64_t i) { return i; },
      [](std::vector<int64_t> ids) -> absl::StatusOr<Batch> {
        const auto n = static_cast<int64_t>(ids.size());
        return Batch::Named({{"input_ids", at::zeros({n, 3})},
                             {"labels", at::zeros({n - 1})}});
      });
  statuses = RunOnRanks(1, [&](const state::PartialState& state) -> absl::Status {
    auto loader = PreparedDataLoader::Create(uneven, state, {.batch_size = 4});
    if (!loader.ok()) return loader.status();
    return (*loader)->Next().status();
  });
  EXPECT_THAT(statuses[0],
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("input_ids has 4, labels has 3")));
}

}  // namespace
}  // namespace accelerate::data
