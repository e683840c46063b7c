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

TEST(TextTest, ReplacesEachByteOfInvalidUtf8) {
  EXPECT_EQ(ValidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"),
            "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
  // A character cut in two, a stray continuation byte, an overlong form,
  // a surrogate.
  EXPECT_EQ(ValidUtf8("a\xE2\x82"), "a\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(ValidUtf8("\x80x"), "\xEF\xBF\xBDx");
  EXPECT_EQ(ValidUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(ValidUtf8("\xED\xA0\x80").size(), 9u);
  std::string json;
  AppendJsonString(json, "\xFFok");
  EXPECT_EQ(json, "\"\xEF\xBF\xBDok\"");
}

}  // namespace
}  // namespace accelerate::trackers_internal
