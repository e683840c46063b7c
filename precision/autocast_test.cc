#include "precision/autocast.h"

#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

namespace accelerate::precision {
namespace {

// The kernel's own view of the CPU: it lists avx512_fp16 only when the
// CPU has it and the kernel enabled AVX-512's registers. (It never lists
// AMX-FP16; a CPU without AMX at all, no amx_tile, cannot have it.)
TEST(CpuHasFastFloat16MatmulTest, AgreesWithTheKernelsCpuFlags) {
#if defined(__x86_64__)
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  bool flags_seen = false, avx512_fp16 = false, amx_tile = false;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    flags_seen = true;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string flag; words >> flag;) {
      avx512_fp16 = avx512_fp16 || flag == "avx512_fp16";
      amx_tile = amx_tile || flag == "amx_tile";
    }
    break;
  }
  if (!flags_seen) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  if (avx512_fp16) {
    EXPECT_TRUE(CpuHasFastFloat16Matmul());
  } else if (!amx_tile) {
    EXPECT_FALSE(CpuHasFastFloat16Matmul());
  } else {
    GTEST_SKIP() << "AMX without avx512_fp16: /proc/cpuinfo cannot say "
                    "whether AMX-FP16 is there";
  }
#else
  GTEST_SKIP() << "x86-64 only; other architectures are assumed fast";
#endif
}

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
