#include "precision/mixed_precision.h"

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace accelerate::precision {
namespace {

using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::StatusIs;
using ::testing::ElementsAre;

TEST(MixedPrecisionTest, EveryNameParsesBackToItsValue) {
  for (MixedPrecision precision :
       {MixedPrecision::kNo, MixedPrecision::kFp16, MixedPrecision::kBf16,
        MixedPrecision::kFp8}) {
    EXPECT_THAT(ParseMixedPrecision(MixedPrecisionName(precision)),
                IsOkAndHolds(precision));
  }
  EXPECT_THAT(MixedPrecisionNames(), ElementsAre("no", "fp16", "bf16", "fp8"));
}

TEST(MixedPrecisionTest, AnyCaseAndOldConfigsFalseAreAccepted) {
  EXPECT_THAT(ParseMixedPrecision("BF16"), IsOkAndHolds(MixedPrecision::kBf16));
  EXPECT_THAT(ParseMixedPrecision("False"), IsOkAndHolds(MixedPrecision::kNo));
}

TEST(MixedPrecisionTest, AnUnknownNameIsNamedWithTheValidOnes) {
  EXPECT_THAT(ParseMixedPrecision("fp17"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "mixed_precision: \"fp17\" is not one of no, fp16, "
                       "bf16, fp8"));
  EXPECT_THAT(ParseMixedPrecision(""),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace accelerate::precision
