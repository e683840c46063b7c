#include "bigmodel/available_memory.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include <ATen/ATen.h>
#include <torch/cuda.h>
#include "gtest/gtest.h"
#include "testing/cuda_testutil.h"
#include "testing/files.h"
#include "testing/status_matchers.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::StatusIs;
using ::testing::HasSubstr;

// The machine's own figures: GPUs first (none without CUDA), then the CPU's
// available memory as /proc/meminfo says it now.
TEST(AvailableMemoryTest, ListsVisibleGpusThenTheCpu) {
  ASSERT_OK_AND_ASSIGN(const MaxMemory memory, AvailableMaxMemory());
  const int gpus = static_cast<int>(torch::cuda::device_count());
  ASSERT_EQ(memory.size(), static_cast<size_t>(gpus) + 1);
  for (int i = 0; i < gpus; ++i) {
    EXPECT_EQ(memory[i].first, Device::Gpu(i));
    EXPECT_GT(memory[i].second, 0);
  }
  EXPECT_EQ(memory.back().first, Device::Cpu());
  ASSERT_OK_AND_ASSIGN(const int64_t now, AvailableCpuMemory());
  EXPECT_GT(memory.back().second, 0);
  EXPECT_NEAR(static_cast<double>(memory.back().second),
              static_cast<double>(now), 2.0 * (int64_t{1} << 30));
}

// The driver's figures (NVML, no LibTorch; what plan-device-map plans with)
// name the same GPUs, with about the same free memory.
// (A CUDA build: otherwise LibTorch sees no GPU where the driver may.)
TEST(AvailableMemoryTest, TheDriverSeesTheSameGpus) {
  ACCELERATE_SKIP_WITHOUT_CUDA();
  ASSERT_OK_AND_ASSIGN(const MaxMemory torch_view, AvailableMaxMemory());
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  ASSERT_OK_AND_ASSIGN(
      const MaxMemory driver_view,
      DriverMaxMemory(visible ? std::optional<std::string>(visible)
                              : std::nullopt));
  ASSERT_EQ(driver_view.size(), torch_view.size());
  // The free figures in order (CUDA may order GPUs of different speeds
  // differently from the driver's PCI order).
  const auto gpu_free = [](const MaxMemory& memory) {
    std::vector<double> free;
    for (size_t i = 0; i + 1 < memory.size(); ++i) {
      free.push_back(static_cast<double>(memory[i].second));
    }
    std::sort(free.begin(), free.end());
    return free;
  };
  const std::vector<double> driver_free = gpu_free(driver_view);
  const std::vector<double> torch_free = gpu_free(torch_view);
  for (size_t i = 0; i < torch_free.size(); ++i) {
    EXPECT_NEAR(driver_free[i], torch_free[i], 2.0 * (int64_t{1} << 30));
  }
}

// On a GPU (tag `gpu` in the gpu suite): a 4 GiB allocation shows.
TEST(AvailableMemoryGpuTest, FreeGpuMemoryFallsByAnAllocation) {
  ACCELERATE_SKIP_WITHOUT_CUDA();
  ASSERT_OK_AND_ASSIGN(const MaxMemory before, AvailableMaxMemory());
  const at::Tensor block =
      at::empty({int64_t{4} << 30},
                at::TensorOptions().dtype(at::kByte).device(at::kCUDA, 0));
  ASSERT_OK_AND_ASSIGN(const MaxMemory after, AvailableMaxMemory());
  EXPECT_GE(before[0].second - after[0].second, int64_t{4} << 30);
}

}  // namespace
}  // namespace accelerate::bigmodel
