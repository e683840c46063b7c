#include "trackers/mlflow/internal/validation.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace accelerate::trackers_internal {
namespace {

using ::accelerate::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Names MLflow 3.17's `_validate_metric_name` accepts (checked against
// mlflow/utils/validation.py).
TEST(CheckKeyTest, AcceptsWhatMlflowAccepts) {
  for (const std::string& name : std::vector<std::string>{
           "loss", "train/loss", "eval loss", "lr:group0", "a-b_c.d", "a..b",
           "x.", "Ünïcödé", "損失", "٣", "x/y/z", std::string(250, 'a')}) {
    EXPECT_OK(CheckKey("metric", name)) << name;
  }
}

TEST(CheckKeyTest, RefusesCharactersOutsideTheRule) {
  for (const std::string name : {"a!", "a\tb", "a—b", "a,b", "a=b", "€"}) {
    EXPECT_THAT(CheckKey("metric", name),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("metric name \"" + name + "\""),
                               HasSubstr("may only contain"))))
        << name;
  }
}

TEST(CheckKeyTest, RefusesNamesThatAreNotNormalizedRelativePaths) {
  for (const std::string name : {"", "/loss", "..", "../x", "..x", "a/../b",
                                 "a/./b", "a//b", "a/", ".", "./a", "a/.."}) {
    EXPECT_THAT(CheckKey("param", name),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("param name \"" + name + "\""),
                               HasSubstr("relative file paths"))))
        << name;
  }
}

TEST(CheckKeyTest, CountsTheLengthInCharacters) {
  EXPECT_OK(CheckKey("tag", std::string(250, 'a')));
  EXPECT_THAT(
      CheckKey("tag", std::string(251, 'a')),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 250")));
  std::string wide;
  for (int i = 0; i < 250; ++i) wide += "é";  // 500 bytes, 250 characters
  EXPECT_OK(CheckKey("tag", wide));
  EXPECT_THAT(CheckKey("tag", wide + "é"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("251 characters long")));
}

TEST(CheckKeyTest, RefusesInvalidUtf8) {
  EXPECT_THAT(CheckKey("metric", "a\xff"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not valid UTF-8")));
}

TEST(ValidationTest, RunIds) {
  EXPECT_TRUE(IsValidRunId("0123abcdef"));
  EXPECT_TRUE(IsValidRunId("a_b-c"));
  EXPECT_FALSE(IsValidRunId(""));
  EXPECT_FALSE(IsValidRunId("_abc"));
  EXPECT_FALSE(IsValidRunId("abc/def"));
  EXPECT_FALSE(IsValidRunId("abc?x=1"));
  EXPECT_TRUE(IsValidRunId(std::string(256, 'a')));
  EXPECT_FALSE(IsValidRunId(std::string(257, 'a')));
}

TEST(ValidationTest, Utf8) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("é損😀"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong "/"
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // beyond U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe6\x90"));          // cut short
  EXPECT_EQ(CountCharacters("é損😀a"), 4u);
}

}  // namespace
}  // namespace accelerate::trackers_internal
