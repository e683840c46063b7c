#include "precision/fp8_recipe.h"

#include <map>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <torch/torch.h>
#include "testing/status_matchers.h"

namespace accelerate::precision {
namespace {

using ::accelerate::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<Fp8Recipe> FromEnv(std::map<std::string, std::string> env,
                                  const Fp8Options& options = {}) {
  return ResolveFp8Recipe(options, state::MapEnvironment(env));
}

TEST(Fp8RecipeTest, DefaultsAreTorchaosTensorwiseRecipe) {
  ASSERT_OK_AND_ASSIGN(Fp8Recipe recipe, FromEnv({}));
  EXPECT_EQ(recipe.scaling, Fp8Scaling::kDynamicTensorwise);
  EXPECT_EQ(recipe.forward_format, Float8Format::kE4M3);
  EXPECT_EQ(recipe.backward_format, Float8Format::kE5M2);
  EXPECT_FALSE(recipe.round_scales_to_power_of_2);
  ASSERT_OK_AND_ASSIGN(Fp8Recipe rowwise,
                       FromEnv({{"ACCELERATE_FP8_RECIPE", "rowwise"}}));
  EXPECT_EQ(rowwise.scaling, Fp8Scaling::kDynamicRowwise);
  EXPECT_EQ(rowwise.backward_format, Float8Format::kE4M3);
  EXPECT_TRUE(rowwise.round_scales_to_power_of_2);
}

TEST(Fp8RecipeTest, TransformerEngineSettingsComeFromTheLauncher) {
  ASSERT_OK_AND_ASSIGN(
      Fp8Recipe recipe,
      FromEnv({{"ACCELERATE_FP8_BACKEND", "te"},
               {"ACCELERATE_FP8_FORMAT", "E4M3"},
               {"ACCELERATE_FP8_AMAX_HISTORY_LEN", "16"},
               {"ACCELERATE_FP8_AMAX_COMPUTE_ALGO", "max"},
               {"ACCELERATE_FP8_MARGIN", "2"},
               {"ACCELERATE_FP8_INTERVAL", "3"}}));
  EXPECT_EQ(recipe.scaling, Fp8Scaling::kDelayed);
  EXPECT_EQ(recipe.backward_format, Float8Format::kE4M3);
  EXPECT_EQ(recipe.amax_history_len, 16);
  EXPECT_TRUE(recipe.amax_max);
  EXPECT_EQ(recipe.margin, 2);
  EXPECT_EQ(recipe.interval, 3);
  // Options given win over the environment.
  Fp8Options options;
  options.margin = 0;
  ASSERT_OK_AND_ASSIGN(Fp8Recipe given,
                       FromEnv({{"ACCELERATE_FP8_BACKEND", "TE"},
                                {"ACCELERATE_FP8_MARGIN", "2"}},
                               options));
  EXPECT_EQ(given.margin, 0);
  EXPECT_EQ(given.backward_format, Float8Format::kE5M2);  // HYBRID
  EXPECT_EQ(given.amax_history_len, 1024);
}

TEST(Fp8RecipeTest, BadSettingsAreNamed) {
  EXPECT_THAT(FromEnv({{"ACCELERATE_FP8_BACKEND", "MSAMP"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "fp8 backend: \"MSAMP\" is not one of AO, TE"));
  EXPECT_THAT(FromEnv({{"ACCELERATE_FP8_BACKEND", "TE"},
                       {"ACCELERATE_FP8_FORMAT", "E5M2"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"E5M2\" is not one of HYBRID, E4M3")));
  EXPECT_THAT(FromEnv({{"ACCELERATE_FP8_BACKEND", "TE"},
                       {"ACCELERATE_FP8_AMAX_HISTORY_LEN", "lots"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ACCELERATE_FP8_AMAX_HISTORY_LEN=\"lots\"")));
  EXPECT_THAT(FromEnv({{"ACCELERATE_FP8_BACKEND", "TE"},
                       {"ACCELERATE_FP8_AMAX_COMPUTE_ALGO", "mean"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mean")));
  EXPECT_THAT(FromEnv({{"ACCELERATE_FP8_RECIPE", "columnwise"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("columnwise")));
}

// Transformer Engine's recipe step by step: the scale used at step t comes
// from the amaxes recorded up to step t-1.
TEST(DelayedScaleTest, MostRecentAmaxWithAMargin) {
  Fp8Recipe recipe;
  recipe.scaling = Fp8Scaling::kDelayed;
  recipe.amax_history_len = 4;
  recipe.margin = 1;
  DelayedScale scale(recipe, Float8Format::kE4M3);
  EXPECT_EQ(scale.scale().item<float>(), 1.0f);  // before any history
  scale.Record(torch::tensor(7.0f));
  scale.Update();
  EXPECT_FLOAT_EQ(scale.scale().item<float>(), 448.0f / 7 / 2);
  scale.Record(torch::tensor(14.0f));
  scale.Update();
  EXPECT_FLOAT_EQ(scale.scale().item<float>(), 448.0f / 14 / 2);
  // An amax of zero (a tensor of zeros) keeps the scale.
  scale.Record(torch::tensor(0.0f));
  scale.Update();
  EXPECT_FLOAT_EQ(scale.scale().item<float>(), 448.0f / 14 / 2);
  // The history rolls: the amaxes so far, oldest slot next to be written.
  EXPECT_TRUE(torch::equal(scale.history(),
                           torch::tensor({0.0f, 7.0f, 14.0f, 0.0f})));
}

TEST(DelayedScaleTest, MaxOverTheHistoryForgetsWhatRollsOut) {
  Fp8Recipe recipe;
  recipe.scaling = Fp8Scaling::kDelayed;
  recipe.amax_history_len = 2;
  recipe.amax_max = true;
  DelayedScale scale(recipe, Float8Format::kE5M2);
  scale.Record(torch::tensor(8.0f));
  scale.Update();
  EXPECT_FLOAT_EQ(scale.scale().item<float>(), 57344.0f / 8);
  scale.Record(torch::tensor(2.0f));
  scale.Update();  // max(8, 2)
  EXPECT_FLOAT_EQ(scale.scale().item<float>(), 57344.0f / 8);
  scale.Record(torch::tensor(4.0f));
  scale.Update();  // 8 has rolled out: max(2, 4)
  EXPECT_FLOAT_EQ(scale.scale().item<float>(), 57344.0f / 4);
}

TEST(DelayedScaleTest, TheScaleChangesEveryIntervalUpdates) {
  Fp8Recipe recipe;
  recipe.scaling = Fp8Scaling::kDelayed;
  recipe.amax_history_len = 1;
  recipe.interval = 2;
  DelayedScale scale(recipe, Float8Format::kE4M3);
  const float amaxes[] = {4.0f, 8.0f, 16.0f, 32.0f};
  const float expected[] = {112.0f, 112.0f, 28.0f, 28.0f};
  for (int step = 0; step < 4; ++step) {
    scale.Record(torch::tensor(amaxes[step]));
    scale.Update();
    EXPECT_FLOAT_EQ(scale.scale().item<float>(), expected[step]) << step;
  }
}

}  // namespace
}  // namespace accelerate::precision
