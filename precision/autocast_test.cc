#include "precision/autocast.h"

#include <utility>

#include "gtest/gtest.h"
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

namespace accelerate::precision {
namespace {

TEST(AutocastScopeTest, MatmulRunsInTheScopesDtypeOnCpu) {
  const torch::Tensor x = torch::randn({4, 8});
  const torch::Tensor w = torch::randn({8, 2});
  {
    AutocastScope scope(MixedPrecision::kBf16, c10::DeviceType::CPU);
    EXPECT_TRUE(scope.active());
    EXPECT_EQ(torch::matmul(x, w).scalar_type(), torch::kBFloat16);
  }
  {
    AutocastScope scope(MixedPrecision::kFp16, c10::DeviceType::CPU);
    EXPECT_EQ(torch::matmul(x, w).scalar_type(), torch::kHalf);
  }
  EXPECT_EQ(torch::matmul(x, w).scalar_type(), torch::kFloat);
  AutocastScope none(MixedPrecision::kNo, c10::DeviceType::CPU);
  EXPECT_FALSE(none.active());
  EXPECT_EQ(torch::matmul(x, w).scalar_type(), torch::kFloat);
}

TEST(AutocastScopeTest, NestedScopesRestoreTheOuterSetting) {
  const torch::Tensor x = torch::randn({4, 8});
  AutocastScope outer(MixedPrecision::kBf16, c10::DeviceType::CPU);
  {
    AutocastScope inner(MixedPrecision::kFp16, c10::DeviceType::CPU);
    EXPECT_EQ(torch::matmul(x, x.t()).scalar_type(), torch::kHalf);
  }
  EXPECT_EQ(torch::matmul(x, x.t()).scalar_type(), torch::kBFloat16);
  {
    AutocastOff off;
    EXPECT_EQ(torch::matmul(x, x.t()).scalar_type(), torch::kFloat);
  }
  EXPECT_TRUE(at::autocast::is_autocast_enabled(at::kCPU));
}

TEST(AutocastScopeTest, AMovedScopeEndsOnce) {
  {
    AutocastScope first(MixedPrecision::kBf16, c10::DeviceType::CPU);
    AutocastScope second(std::move(first));
    EXPECT_FALSE(first.active());
    EXPECT_TRUE(second.active());
    EXPECT_TRUE(at::autocast::is_autocast_enabled(at::kCPU));
  }
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
}

}  // namespace
}  // namespace accelerate::precision
