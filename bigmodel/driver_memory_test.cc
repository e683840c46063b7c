// Tests of the LibTorch-free memory readings: /proc/meminfo, and which GPUs
// CUDA_VISIBLE_DEVICES selects. (The driver's GPU figures are checked
// against LibTorch's on a GPU in available_memory_test.)

#include "bigmodel/driver_memory.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "testing/files.h"
#include "testing/status_matchers.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::StatusIs;
using ::testing::HasSubstr;

std::string WriteTestFile(const std::string& name, const std::string& text) {
  const std::string path = testing::TestPath(name);
  testing::WriteFileOrDie(path, text);
  return path;
}

TEST(DriverMemoryTest, ReadsMemAvailableInBytes) {
  const std::string path = WriteTestFile(
      "meminfo", "MemTotal:       24576000 kB\nMemFree:  1000 kB\n"
                 "MemAvailable:   12345678 kB\nBuffers: 5 kB\n");
  EXPECT_THAT(AvailableCpuMemory(path),
              testing::IsOkAndHolds(int64_t{12345678} * 1024));
}

TEST(DriverMemoryTest, NamesAMissingOrBadFile) {
  EXPECT_THAT(AvailableCpuMemory(testing::TestPath("absent")),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("absent")));
  EXPECT_THAT(
      AvailableCpuMemory(WriteTestFile("no_line", "MemFree: 1 kB\n")),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("MemAvailable")));
  EXPECT_THAT(
      AvailableCpuMemory(WriteTestFile("bad", "MemAvailable: lots\n")),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("lots")));
}

// Indices and UUIDs up to the first entry that is neither, as CUDA reads
// the variable.
std::string Describe(const std::optional<std::vector<VisibleGpu>>& gpus) {
  if (!gpus) return "all";
  std::string text;
  for (const VisibleGpu& gpu : *gpus) {
    text += (gpu.index ? std::to_string(*gpu.index) : gpu.uuid) + ";";
  }
  return text;
}

TEST(DriverMemoryTest, ReadsCudaVisibleDevicesAsCudaDoes) {
  const auto parsed = [](std::optional<std::string> value) {
    absl::StatusOr<std::optional<std::vector<VisibleGpu>>> gpus =
        ParseVisibleDevices(value);
    EXPECT_TRUE(gpus.ok()) << gpus.status();
    return gpus.ok() ? Describe(*gpus) : "error";
  };
  EXPECT_EQ(parsed(std::nullopt), "all");
  EXPECT_EQ(parsed(""), "");
  EXPECT_EQ(parsed("-1"), "");
  EXPECT_EQ(parsed("2,0"), "2;0;");
  EXPECT_EQ(parsed(" 1 , GPU-8f2e"), "1;GPU-8f2e;");
  // CUDA stops at the first entry it cannot read.
  EXPECT_EQ(parsed("1,x,0"), "1;");
  EXPECT_EQ(parsed("0,-1,1"), "0;");
  EXPECT_THAT(ParseVisibleDevices("MIG-1234"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"MIG-1234\"")));
}

TEST(DriverMemoryTest, ListsTheGpusTheDriverReportsThenTheCpu) {
  const std::string meminfo =
      WriteTestFile("meminfo", "MemAvailable:   2048 kB\n");
  // No GPU selected: the CPU alone, from the given file.
  ASSERT_OK_AND_ASSIGN(const MaxMemory none, DriverMaxMemory("", meminfo));
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].first, Device::Cpu());
  EXPECT_EQ(none[0].second, 2048 * 1024);
  // Every GPU the driver has (none on a machine without NVIDIA's driver),
  // numbered from 0, then the CPU.
  ASSERT_OK_AND_ASSIGN(const MaxMemory all,
                       DriverMaxMemory(std::nullopt, meminfo));
  for (size_t i = 0; i + 1 < all.size(); ++i) {
    EXPECT_EQ(all[i].first, Device::Gpu(static_cast<int>(i)));
    EXPECT_GT(all[i].second, 0);
  }
  EXPECT_EQ(all.back(), none[0]);
  // A GPU index past the last ends the list there.
  ASSERT_OK_AND_ASSIGN(const MaxMemory past,
                       DriverMaxMemory("999", meminfo));
  EXPECT_EQ(past.size(), 1u);
}

}  // namespace
}  // namespace accelerate::bigmodel
