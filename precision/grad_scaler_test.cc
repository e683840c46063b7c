#include "precision/grad_scaler.h"

#include <cmath>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <torch/torch.h>
#include "state/partial_state.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"

namespace accelerate::precision {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::RunOnRanks;
using ::accelerate::testing::StatusIs;
using ::testing::Each;

// A parameter whose gradient is `grad`.
torch::Tensor WithGrad(torch::Tensor grad) {
  torch::Tensor param = torch::zeros_like(grad).requires_grad_(true);
  param.mutable_grad() = grad;
  return param;
}

TEST(GradScalerTest, ScalesLossesInFloat32) {
  GradScaler scaler;
  const torch::Tensor scaled = scaler.Scale(torch::full({}, 2.0, torch::kHalf));
  EXPECT_EQ(scaled.scalar_type(), torch::kFloat);
  EXPECT_EQ(scaled.item<float>(), 131072.0f);  // 2 * 2^16: fp16 would overflow
}

TEST(GradScalerTest, UnscalesEachOptimizerOnceAndUpdatesOncePerIteration) {
  GradScaler scaler({.init_scale = 8.0});
  std::vector<torch::Tensor> first = {WithGrad(torch::full({3}, 8.0))};
  std::vector<torch::Tensor> second = {WithGrad(torch::full({2}, 16.0))};
  int a = 0, b = 0;  // Two optimizers' keys.
  EXPECT_THAT(scaler.Unscale(&a, first), IsOkAndHolds(true));
  EXPECT_THAT(scaler.Unscale(&a, first), IsOkAndHolds(true));  // not again
  EXPECT_THAT(scaler.Unscale(&b, second), IsOkAndHolds(true));
  EXPECT_TRUE(torch::equal(first[0].grad(), torch::ones({3})));
  EXPECT_TRUE(torch::equal(second[0].grad(), torch::full({2}, 2.0)));
  ASSERT_OK(scaler.Update());
  EXPECT_EQ(scaler.State().growth_tracker, 1);  // one iteration, not two
  EXPECT_FALSE(scaler.Unscaled(&a));
}

TEST(GradScalerTest, ANonFiniteGradientSkipsAndHalvesTheScale) {
  GradScaler scaler({.init_scale = 1024.0, .growth_interval = 3});
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<torch::Tensor> params = {
      WithGrad(torch::tensor({1.0f, inf})), WithGrad(torch::ones({2}))};
  int key = 0;
  EXPECT_THAT(scaler.Unscale(&key, params), IsOkAndHolds(false));
  ASSERT_OK(scaler.Update());
  EXPECT_EQ(scaler.scale(), 512.0);
  EXPECT_EQ(scaler.State().growth_tracker, 0);
  // NaN counts too.
  params[0].mutable_grad() = torch::tensor({NAN, 1.0f});
  EXPECT_THAT(scaler.Unscale(&key, params), IsOkAndHolds(false));
  ASSERT_OK(scaler.Update());
  EXPECT_EQ(scaler.scale(), 256.0);
}

TEST(GradScalerTest, TheScaleGrowsAfterTheIntervalOfFiniteSteps) {
  GradScaler scaler({.init_scale = 4.0, .growth_interval = 3});
  int key = 0;
  for (int step = 1; step <= 7; ++step) {
    std::vector<torch::Tensor> params = {WithGrad(torch::ones({2}))};
    ASSERT_THAT(scaler.Unscale(&key, params), IsOkAndHolds(true));
    ASSERT_OK(scaler.Update());
    // PyTorch's _amp_update_scale_: doubles on the 3rd, 6th, ... step.
    EXPECT_EQ(scaler.scale(), step < 3 ? 4.0 : step < 6 ? 8.0 : 16.0) << step;
  }
  // An iteration where nothing was unscaled changes nothing.
  ASSERT_OK(scaler.Update());
  EXPECT_EQ(scaler.State().growth_tracker, 1);
}

TEST(GradScalerTest, TheScaleStopsGrowingBeforeFloat32Overflows) {
  GradScaler scaler({.init_scale = std::ldexp(1.0, 127), .growth_interval = 1});
  int key = 0;
  std::vector<torch::Tensor> params = {WithGrad(torch::ones({1}))};
  ASSERT_THAT(scaler.Unscale(&key, params), IsOkAndHolds(true));
  ASSERT_OK(scaler.Update());
  EXPECT_EQ(scaler.scale(), std::ldexp(1.0, 127));  // 2^128 is inf in float32
  EXPECT_EQ(scaler.Scale(torch::ones({}, torch::kDouble)).scalar_type(),
            torch::kDouble);
}

TEST(GradScalerTest, StateRoundTripsAndBadStateIsRefused) {
  GradScaler scaler({.init_scale = 32.0, .growth_interval = 5});
  int key = 0;
  std::vector<torch::Tensor> params = {WithGrad(torch::ones({1}))};
  ASSERT_THAT(scaler.Unscale(&key, params), IsOk());
  ASSERT_OK(scaler.Update());
  GradScaler restored;
  ASSERT_OK(restored.LoadState(scaler.State()));
  EXPECT_EQ(restored.scale(), 32.0);
  EXPECT_EQ(restored.State().growth_tracker, 1);
  EXPECT_EQ(restored.State().growth_interval, 5);
  GradScalerState bad = scaler.State();
  bad.backoff_factor = 2.0;
  EXPECT_THAT(restored.LoadState(bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("backoff_factor 2")));
}

TEST(GradScalerTest, HalfPrecisionGradientsAreRefused) {
  GradScaler scaler;
  int key = 0;
  std::vector<torch::Tensor> params = {
      WithGrad(torch::ones({2}, torch::kHalf))};
  EXPECT_THAT(scaler.Unscale(&key, params),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("float16 gradients")));
}

TEST(GradScalerTest, SkipsNonFiniteStepsAndAdjustsTheScale) {
  GradScalerOptions options;
  options.init_scale = 8;
  options.growth_interval = 2;
  GradScaler scaler(options);
  torch::Tensor w = torch::ones({2}, torch::requires_grad());
  scaler.Scale((w * 3).sum()).backward();
  int key = 0;
  EXPECT_THAT(scaler.Unscale(&key, {w}), IsOkAndHolds(true));
  EXPECT_TRUE(torch::allclose(w.grad(), torch::full({2}, 3.0), 0, 1e-6));
  // A second call does not divide again.
  EXPECT_THAT(scaler.Unscale(&key, {w}), IsOkAndHolds(true));
  EXPECT_TRUE(torch::allclose(w.grad(), torch::full({2}, 3.0), 0, 1e-6));
  ASSERT_OK(scaler.Update());
  EXPECT_EQ(scaler.scale(), 8);
  w.grad().fill_(std::numeric_limits<float>::infinity());
  EXPECT_THAT(scaler.Unscale(&key, {w}), IsOkAndHolds(false));
  ASSERT_OK(scaler.Update());
  EXPECT_EQ(scaler.scale(), 4);  // Backed off.
  for (int i = 0; i < 2; ++i) {
    w.grad().fill_(1);
    EXPECT_THAT(scaler.Unscale(&key, {w}), IsOkAndHolds(true));
    ASSERT_OK(scaler.Update());
  }
  EXPECT_EQ(scaler.scale(), 8);  // Grew after 2 good steps.
}

// Rank 1 alone sees an inf; both ranks skip and back off alike.
TEST(GradScalerTest, AnInfOnOneRankSkipsTheStepOnEveryRank) {
  std::vector<absl::Status> statuses =
      RunOnRanks(2, [](const state::PartialState& state) -> absl::Status {
        GradScaler scaler({.init_scale = 64.0}, &state);
        int key = 0;
        const float bad = state.process_index() == 1
                              ? std::numeric_limits<float>::infinity()
                              : 1.0f;
        std::vector<torch::Tensor> params = {
            WithGrad(torch::tensor({1.0f, bad}))};
        ACCELERATE_ASSIGN_OR_RETURN(bool finite, scaler.Unscale(&key, params));
        if (finite) return absl::InternalError("the step was not skipped");
        ACCELERATE_RETURN_IF_ERROR(scaler.Update());
        if (scaler.scale() != 32.0) {
          return absl::InternalError(absl::StrCat("scale ", scaler.scale()));
        }
        // The next, finite step goes ahead on both.
        params[0].mutable_grad() = torch::ones({2});
        ACCELERATE_ASSIGN_OR_RETURN(finite, scaler.Unscale(&key, params));
        if (!finite) return absl::InternalError("a finite step was skipped");
        return scaler.Update();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
}

}  // namespace
}  // namespace accelerate::precision
