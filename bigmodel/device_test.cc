// Tests of Device: parsing, printing, order, and devices spelled in code.

#include "bigmodel/device.h"

#include <algorithm>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(DeviceTest, ParsesGpuIndicesCpuAndDisk) {
  EXPECT_THAT(Device::Parse("cpu"), IsOkAndHolds(Device::Cpu()));
  EXPECT_THAT(Device::Parse("disk"), IsOkAndHolds(Device::Disk()));
  EXPECT_THAT(Device::Parse("0"), IsOkAndHolds(Device::Gpu(0)));
  EXPECT_THAT(Device::Parse("12"), IsOkAndHolds(Device::Gpu(12)));
  // GPU indices are canonical: "01" is GPU 1.
  ASSERT_OK_AND_ASSIGN(const Device one, Device::Parse("01"));
  EXPECT_TRUE(one.is_gpu());
  EXPECT_EQ(one.gpu_index(), 1);
  EXPECT_EQ(one.ToString(), "1");
}

TEST(DeviceTest, RefusesOtherNamesNamingThem) {
  // "tpu" was refused by LoadCheckpointAndDispatch before device maps held
  // Devices; a map can now only hold what Parse accepts.
  for (const char* text : {"tpu", "gpu", "+1", "-1", " 1", "1 ", "", "CPU",
                           "cuda", "99999999999"}) {
    EXPECT_THAT(Device::Parse(text),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(absl::StrCat("\"", text, "\""))))
        << text;
  }
}

TEST(DeviceTest, PrintsWhatParseReadsBack) {
  for (const Device& device :
       {Device::Gpu(0), Device::Gpu(3), Device::Cpu(), Device::Disk()}) {
    EXPECT_THAT(Device::Parse(device.ToString()), IsOkAndHolds(device));
    std::ostringstream printed;
    printed << device;
    EXPECT_EQ(printed.str(), device.ToString());
  }
  EXPECT_EQ(Device::Cpu().ToString(), "cpu");
  EXPECT_EQ(Device::Disk().ToString(), "disk");
  EXPECT_EQ(Device::Gpu(2).ToString(), "2");
}

TEST(DeviceTest, OrdersGpusByIndexThenCpuThenDisk) {
  std::vector<Device> devices = {Device::Disk(), Device::Cpu(), Device::Gpu(10),
                                 Device::Gpu(2)};
  std::sort(devices.begin(), devices.end());
  EXPECT_THAT(devices, ElementsAre(Device::Gpu(2), Device::Gpu(10),
                                   Device::Cpu(), Device::Disk()));
  EXPECT_NE(Device::Gpu(0), Device::Gpu(1));
  EXPECT_NE(Device::Cpu(), Device::Disk());
}

TEST(DeviceTest, DevicesSpelledInCodeConvert) {
  const DeviceMap map = {{"embed", "0"}, {"blocks", "cpu"}, {"head", "disk"}};
  EXPECT_EQ(map[0].second, Device::Gpu(0));
  EXPECT_TRUE(map[1].second.is_cpu());
  EXPECT_TRUE(map[2].second.is_disk());
  EXPECT_EQ(map[1].second, "cpu");
  // Numbers are not devices (0 would be a null name).
  static_assert(!std::is_convertible_v<int, Device>);
  static_assert(std::is_convertible_v<const char*, Device>);
  static_assert(!std::is_convertible_v<std::string, Device>);
}

TEST(DeviceDeathTest, AMisspelledDeviceInCodeIsABug) {
  EXPECT_DEATH(Device("tpu"), "tpu");
  EXPECT_DEATH(Device::Cpu().gpu_index(), "not a GPU");
}

}  // namespace
}  // namespace accelerate::bigmodel
