#include "launch/flags.h"

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace accelerate::launch {
namespace {

using ::accelerate::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

FlagParser MakeParser() {
  FlagParser parser("tool", "A tool.");
  parser.AddSwitch("cpu", "CPU only.");
  parser.AddSwitch("quiet", "Quiet.", "q");
  parser.AddValue("num_processes", "N", "Processes.");
  parser.AddValue("mixed_precision", "MODE", "Precision.", {"no", "fp16"});
  parser.AddValue("tee", "T", "Tee.", {"0", "1"}, "t");
  return parser;
}

TEST(FlagParserTest, ReadsBothValueSpellingsAndHyphenatedNames) {
  ASSERT_OK_AND_ASSIGN(
      ParsedFlags flags,
      MakeParser().Parse({"--num-processes", "4", "--mixed_precision=fp16",
                          "-q", "-t", "1", "--cpu", "prog", "--cpu", "x"}));
  EXPECT_EQ(flags.Get("num_processes"), "4");
  EXPECT_EQ(flags.Get("mixed_precision"), "fp16");
  EXPECT_EQ(flags.Get("tee"), "1");
  EXPECT_TRUE(flags.Switch("quiet"));
  EXPECT_TRUE(flags.Switch("cpu"));
  // Everything from the program on belongs to the program.
  EXPECT_THAT(flags.positional, ElementsAre("prog", "--cpu", "x"));
}

TEST(FlagParserTest, DoubleDashEndsTheFlags) {
  ASSERT_OK_AND_ASSIGN(ParsedFlags flags,
                       MakeParser().Parse({"--cpu", "--", "--looks-like-a-flag"}));
  EXPECT_THAT(flags.positional, ElementsAre("--looks-like-a-flag"));
}

TEST(FlagParserTest, UnknownFlagIsNamed) {
  EXPECT_THAT(MakeParser().Parse({"--num_proceses", "2", "prog"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown flag --num_proceses")));
}

TEST(FlagParserTest, ValueOutsideChoicesListsThem) {
  EXPECT_THAT(MakeParser().Parse({"--mixed_precision", "fp17"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"fp17\" is not one of no, fp16")));
}

TEST(FlagParserTest, MissingValueAndValueOnASwitchAreErrors) {
  EXPECT_THAT(MakeParser().Parse({"--num_processes"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--num_processes needs a value")));
  EXPECT_THAT(MakeParser().Parse({"--cpu=yes"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--cpu takes no value")));
}

TEST(FlagParserTest, HelpListsEveryFlag) {
  const std::string help = MakeParser().Help("PROG");
  for (const char* name : {"--cpu", "-q, --quiet", "--num_processes N",
                           "--mixed_precision {no,fp16}", "-t, --tee"}) {
    EXPECT_THAT(help, HasSubstr(name));
  }
  ASSERT_OK_AND_ASSIGN(ParsedFlags flags, MakeParser().Parse({"--help"}));
  EXPECT_TRUE(flags.help);
}

}  // namespace
}  // namespace accelerate::launch
