// Tests of ParseMaxMemory: Accelerate's units, devices, placement order.

#include "bigmodel/max_memory.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "bigmodel/device.h"
#include "testing/status_matchers.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(MaxMemoryTest, ParsesMaxMemoryWithAcceleratesUnits) {
  EXPECT_THAT(
      ParseMaxMemory("cpu=30GB,1=10GiB,0=512MiB,disk=1TB"),
      IsOkAndHolds(ElementsAre(Pair("0", 512LL << 20), Pair("1", 10LL << 30),
                               Pair("cpu", 30'000'000'000LL),
                               Pair("disk", 1'000'000'000'000LL))));
  EXPECT_THAT(ParseMaxMemory("0=1000"),
              IsOkAndHolds(ElementsAre(Pair("0", 1000))));
  EXPECT_THAT(
      ParseMaxMemory("gpu=1GB").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"gpu\"")));
  EXPECT_THAT(
      ParseMaxMemory("cpu=lots").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"lots\"")));
  // Lowercase b after a decimal unit means bits, as in Accelerate.
  EXPECT_THAT(ParseMaxMemory("cpu=8Kb"),
              IsOkAndHolds(ElementsAre(Pair("cpu", 1000))));
  // GPU indices are canonical and named once.
  EXPECT_THAT(ParseMaxMemory("01=5"), IsOkAndHolds(ElementsAre(Pair("1", 5))));
  EXPECT_THAT(ParseMaxMemory("0=5,00=6").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("device 0 twice")));
  EXPECT_THAT(
      ParseMaxMemory("+1=5").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"+1\"")));
  for (const char* size : {"inf", "nan", "1e19", "-1"}) {
    EXPECT_THAT(ParseMaxMemory(absl::StrCat("cpu=", size)).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(size)));
  }
  EXPECT_THAT(
      ParseMaxMemory("cpu").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("DEVICE=SIZE")));
}

}  // namespace
}  // namespace accelerate::bigmodel
