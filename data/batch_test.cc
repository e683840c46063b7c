#include "data/batch.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/ATen.h>
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::data {
namespace {

using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TensorValues;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Four samples: ids [4, 3] (row i holds i), a mask, and a pair of tensors.
Batch Four() {
  const at::Tensor ids = at::arange(4, at::kLong).unsqueeze(1).repeat({1, 3});
  return Batch::Named({{"input_ids", ids},
                       {"attention_mask", at::ones({4, 3}, at::kLong)},
                       {"pair", Batch::Of({at::arange(4, at::kFloat),
                                           at::zeros({4, 2})})}});
}

TEST(BatchTest, NamedAndNestedFieldsAreReachable) {
  const Batch batch = Four();
  EXPECT_TRUE(batch.is_map());
  EXPECT_TRUE(batch["pair"].is_list());
  EXPECT_THAT(TensorValues(batch.tensor("input_ids").select(1, 0)),
              ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(batch["pair"].tensor(1).sizes(), (std::vector<int64_t>{4, 2}));
  EXPECT_TRUE(batch.contains("attention_mask"));
  EXPECT_FALSE(batch.contains("labels"));
  EXPECT_EQ(batch.Describe(),
            "{attention_mask: Long[4, 3], input_ids: Long[4, 3], "
            "pair: [Float[4], Float[4, 2]]}");
  EXPECT_EQ(batch.Signature(),
            "{attention_mask: Long[3], input_ids: Long[3], pair: [Float[], "
            "Float[2]]}");
  std::vector<std::string> paths;
  batch.ForEachTensor(
      [&](const std::string& path, const at::Tensor&) { paths.push_back(path); });
  EXPECT_THAT(paths,
              ElementsAre("attention_mask", "input_ids", "pair.0", "pair.1"));
}

TEST(BatchTest, AMissingFieldNamesTheFieldsThereAre) {
  const Batch batch = Four();
  EXPECT_DEATH((void)batch["labels"],
               "no field \"labels\"; its fields: attention_mask, input_ids, pair");
  EXPECT_DEATH((void)batch.tensor("pair"), "not a tensor");
}

TEST(BatchTest, BatchSizeNamesTheFieldsThatDisagree) {
  EXPECT_THAT(Four().BatchSize(), IsOkAndHolds(4));
  const Batch bad = Batch::Named(
      {{"input_ids", at::zeros({4, 3})}, {"labels", at::zeros({3})}});
  EXPECT_THAT(bad.BatchSize(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("input_ids has 4, labels has 3")));
  const Batch scalar = Batch::Of({at::zeros({2}), at::scalar_tensor(1.0)});
  EXPECT_THAT(scalar.BatchSize(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("1 has no batch dimension")));
  EXPECT_THAT(Batch().BatchSize(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("holds no tensor")));
}

TEST(BatchTest, SlicesConcatenateBackToTheBatch) {
  const Batch batch = Four();
  absl::StatusOr<Batch> joined =
      Concat({Slice(batch, 0, 1), Slice(batch, 1, 4)});
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->Describe(), batch.Describe());
  EXPECT_TRUE(at::equal(joined->tensor("input_ids"), batch.tensor("input_ids")));
  EXPECT_TRUE(at::equal(joined->operator[]("pair").tensor(0),
                        batch["pair"].tensor(0)));
}

TEST(BatchTest, ConcatNamesTheBatchWhoseStructureDiffers) {
  Batch other = Four();
  other.Set("labels", at::zeros({4}));
  EXPECT_THAT(Concat({Four(), other}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("batch 1 has the structure {attention_mask")));
}

TEST(BatchTest, MapStopsAtTheFirstErrorAndKnowsThePath) {
  std::vector<std::string> visited;
  absl::StatusOr<Batch> mapped = Four().Map(
      [&](const std::string& path,
          const at::Tensor& t) -> absl::StatusOr<at::Tensor> {
        visited.push_back(path);
        if (path == "pair.0") return absl::InternalError(path);
        return t * 2;
      });
  EXPECT_THAT(mapped, StatusIs(absl::StatusCode::kInternal, "pair.0"));
  EXPECT_THAT(visited, ElementsAre("attention_mask", "input_ids", "pair.0"));
}

}  // namespace
}  // namespace accelerate::data
