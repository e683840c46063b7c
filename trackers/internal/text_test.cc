#include "trackers/internal/text.h"

#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace accelerate::trackers_internal {
namespace {

// Each expected text is what Python 3's `repr(float)` prints.
TEST(FormatPythonFloatTest, WritesWhatPythonsReprWrites) {
  EXPECT_EQ(FormatPythonFloat(3.0), "3.0");
  EXPECT_EQ(FormatPythonFloat(0.001), "0.001");
  EXPECT_EQ(FormatPythonFloat(1e-05), "1e-05");
  EXPECT_EQ(FormatPythonFloat(0.0001), "0.0001");
  EXPECT_EQ(FormatPythonFloat(100000.0), "100000.0");
  EXPECT_EQ(FormatPythonFloat(1e16), "1e+16");
  EXPECT_EQ(FormatPythonFloat(1234567890123456.0), "1234567890123456.0");
  EXPECT_EQ(FormatPythonFloat(-2.5e-07), "-2.5e-07");
  EXPECT_EQ(FormatPythonFloat(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(FormatPythonFloat(123.456), "123.456");
  EXPECT_EQ(FormatPythonFloat(1.5e300), "1.5e+300");
  EXPECT_EQ(FormatPythonFloat(0.0), "0.0");
  EXPECT_EQ(FormatPythonFloat(-0.0), "-0.0");
  EXPECT_EQ(FormatPythonFloat(std::numeric_limits<double>::infinity()), "inf");
}

TEST(TextTest, QuotesJsonAndCsvAsTheirFormatsWant) {
  std::string json;
  AppendJsonString(json, "a\"b\\c\nd\x01");
  EXPECT_EQ(json, "\"a\\\"b\\\\c\\nd\\u0001\"");
  std::string csv;
  AppendCsvField(csv, "plain");
  csv += ',';
  AppendCsvField(csv, "a,\"b\"");
  EXPECT_EQ(csv, "plain,\"a,\"\"b\"\"\"");
  std::string number;
  AppendJsonNumber(number, std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(number, "NaN");
}

}  // namespace
}  // namespace accelerate::trackers_internal
