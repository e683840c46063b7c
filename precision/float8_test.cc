#include "precision/float8.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <torch/torch.h>
#include "testing/status_matchers.h"

namespace accelerate::precision {
namespace {

using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::StatusIs;

// The value of `bits` in `format`, decoded from the formats' definitions
// (OCP 8-bit floating point): E4M3 has bias 7, no infinities, and only
// S.1111.111 as NaN; E5M2 has bias 15 and IEEE infinities and NaNs.
double Decode(uint8_t bits, Float8Format format) {
  const bool e4m3 = format == Float8Format::kE4M3;
  const int mantissa_bits = e4m3 ? 3 : 2;
  const int bias = e4m3 ? 7 : 15;
  const int exponent = (bits & 0x7f) >> mantissa_bits;
  const int mantissa = bits & ((1 << mantissa_bits) - 1);
  const double sign = (bits & 0x80) ? -1.0 : 1.0;
  const int max_exponent = (1 << (7 - mantissa_bits)) - 1;
  if (e4m3 && exponent == max_exponent && mantissa == 7) return NAN;
  if (!e4m3 && exponent == max_exponent) {
    return mantissa == 0 ? sign * INFINITY : NAN;
  }
  const double fraction = mantissa / static_cast<double>(1 << mantissa_bits);
  if (exponent == 0) return sign * fraction * std::ldexp(1.0, 1 - bias);
  return sign * (1.0 + fraction) * std::ldexp(1.0, exponent - bias);
}

// Every finite value of `format`, ascending, from the 256 bit patterns.
std::vector<double> FiniteValues(Float8Format format) {
  std::vector<double> values;
  for (int bits = 0; bits < 256; ++bits) {
    const double v = Decode(static_cast<uint8_t>(bits), format);
    if (std::isfinite(v) && !(v == 0 && bits != 0)) values.push_back(v);
  }
  std::sort(values.begin(), values.end());
  return values;
}

class Float8FormatTest : public ::testing::TestWithParam<Float8Format> {};

TEST_P(Float8FormatTest, LibTorchDecodesEveryBitPatternAsTheFormatSays) {
  const Float8Format format = GetParam();
  torch::Tensor bits = torch::arange(256, torch::kInt).to(torch::kUInt8);
  torch::Tensor values = bits.view(Float8Type(format)).to(torch::kDouble);
  for (int b = 0; b < 256; ++b) {
    const double expected = Decode(static_cast<uint8_t>(b), format);
    const double got = values[b].item<double>();
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << "bits " << b;
    } else {
      EXPECT_EQ(got, expected) << "bits " << b;
    }
  }
  EXPECT_EQ(FiniteValues(format).back(), Float8Max(format));
}

TEST_P(Float8FormatTest, CastsSaturateAtTheLargestFiniteValue) {
  const Float8Format format = GetParam();
  const double max = Float8Max(format);
  const torch::Tensor x = torch::tensor(
      {max * 4, -max * 4, 1e30, -1e30, std::numeric_limits<double>::infinity()},
      torch::kFloat);
  const torch::Tensor cast =
      CastToFloat8(x, torch::ones({1}), format).to(torch::kDouble);
  EXPECT_EQ(cast[0].item<double>(), max);
  EXPECT_EQ(cast[1].item<double>(), -max);
  EXPECT_EQ(cast[2].item<double>(), max);
  EXPECT_EQ(cast[3].item<double>(), -max);
  EXPECT_EQ(cast[4].item<double>(), max);
  EXPECT_TRUE(std::isnan(
      CastToFloat8(torch::full({1}, NAN), torch::ones({1}), format)
          .to(torch::kFloat)
          .item<float>()));
}

// Between each pair of neighbours: a value just below the midpoint goes
// down, just above goes up, and the midpoint itself goes to the one whose
// last mantissa bit is 0 (ties to even).
TEST_P(Float8FormatTest, CastsRoundToTheNearestValueTiesToEven) {
  const Float8Format format = GetParam();
  const std::vector<double> values = FiniteValues(format);
  std::vector<double> inputs, expected;
  for (size_t i = 0; i + 1 < values.size(); ++i) {
    const double lo = values[i], hi = values[i + 1];
    const double mid = (lo + hi) / 2, step = (hi - lo) / 8;
    inputs.insert(inputs.end(), {lo, mid - step, mid + step, mid});
    // The even neighbour: the one at an even index counted from 0 up.
    const double zero_index = static_cast<double>(
        std::find(values.begin(), values.end(), 0.0) - values.begin());
    const bool lo_even =
        static_cast<int64_t>(std::abs(static_cast<double>(i) - zero_index)) %
            2 == 0;
    expected.insert(expected.end(), {lo, lo, hi, lo_even ? lo : hi});
  }
  const torch::Tensor cast =
      CastToFloat8(torch::tensor(inputs, torch::kDouble).to(torch::kFloat),
                   torch::ones({1}), format)
          .to(torch::kDouble);
  for (size_t j = 0; j < inputs.size(); ++j) {
    EXPECT_EQ(cast[j].item<double>(), expected[j]) << "input " << inputs[j];
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, Float8FormatTest,
                         ::testing::Values(Float8Format::kE4M3,
                                           Float8Format::kE5M2));

TEST(Float8Test, ScalesMapTheAmaxOntoTheLargestValue) {
  const torch::Tensor amax = torch::tensor({2.0f, 0.0f, 3.0f});
  const torch::Tensor scale = AmaxToScale(amax, Float8Format::kE4M3);
  EXPECT_EQ(scale.scalar_type(), torch::kFloat);
  EXPECT_FLOAT_EQ(scale[0].item<float>(), 224.0f);
  EXPECT_FLOAT_EQ(scale[1].item<float>(), static_cast<float>(448.0 / 1e-12));
  const torch::Tensor pow2 =
      AmaxToScale(amax, Float8Format::kE4M3, /*round_to_power_of_2=*/true);
  EXPECT_EQ(pow2[2].item<float>(), 128.0f);  // 149.3 rounded down
  // Scaled by its own amax, the largest element lands on 448 exactly.
  const torch::Tensor x = torch::tensor({-3.0f, 1.0f, 0.5f});
  const torch::Tensor bits =
      CastToFloat8(x, AmaxToScale(x.abs().max(), Float8Format::kE4M3),
                   Float8Format::kE4M3);
  EXPECT_EQ(bits.to(torch::kFloat)[0].item<float>(), -448.0f);
}

TEST(Float8Test, FormatNamesParseAndBadOnesAreNamed) {
  EXPECT_THAT(ParseFloat8Format("e4m3"), IsOkAndHolds(Float8Format::kE4M3));
  EXPECT_THAT(ParseFloat8Format("E5M2"), IsOkAndHolds(Float8Format::kE5M2));
  EXPECT_THAT(ParseFloat8Format("E3M4"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "fp8 format: \"E3M4\" is not one of E4M3, E5M2"));
}

}  // namespace
}  // namespace accelerate::precision
