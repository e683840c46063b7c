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
  parser.AddRest("PROG", "The program and its arguments.");
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
  ASSERT_OK_AND_ASSIGN(
      ParsedFlags flags,
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
  const std::string help = MakeParser().Help();
  for (const char* name : {"--cpu", "-q, --quiet", "--num_processes N",
                           "--mixed_precision {no,fp16}", "-t, --tee"}) {
    EXPECT_THAT(help, HasSubstr(name));
  }
  ASSERT_OK_AND_ASSIGN(ParsedFlags flags, MakeParser().Parse({"--help"}));
  EXPECT_TRUE(flags.help);
}

// A parser like a helper command's: declared positional arguments between
// the flags, as argparse takes them.
FlagParser MakeModelParser() {
  FlagParser parser("accelerate plan", "Plans a model.");
  parser.AddPositional("MODEL", "The model.");
  parser.AddValue("max_memory", "DEVICE=SIZE,...", "Memory per device.");
  parser.AddValue("device_map", "NAME", "Strategy.", {"auto", "balanced"});
  parser.AddList("dtypes", "DTYPE", "Dtypes.", {"float32", "int8"});
  parser.AddBool("even_batches", "Even batches.");
  parser.AddSwitch("offload_buffers", "Offload buffers.");
  return parser;
}

TEST(FlagParserTest, ValuesMayHoldEqualsSignsInEitherSpelling) {
  ASSERT_OK_AND_ASSIGN(ParsedFlags flags,
                       MakeModelParser().Parse({"--max_memory=cpu=1GB", "m"}));
  EXPECT_EQ(flags.Get("max_memory"), "cpu=1GB");
  ASSERT_OK_AND_ASSIGN(flags,
                       MakeModelParser().Parse({"m", "--max-memory", "0=1GB"}));
  EXPECT_EQ(flags.Get("max_memory"), "0=1GB");
  EXPECT_THAT(flags.positional, ElementsAre("m"));
}

TEST(FlagParserTest, DeclaredPositionalsComeBetweenFlagsAndAreCounted) {
  ASSERT_OK_AND_ASSIGN(
      ParsedFlags flags,
      MakeModelParser().Parse({"--offload_buffers", "model.json",
                               "--device_map", "auto"}));
  EXPECT_THAT(flags.positional, ElementsAre("model.json"));
  EXPECT_TRUE(flags.Switch("offload_buffers"));
  EXPECT_THAT(MakeModelParser().Parse({"--device_map", "auto"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("missing MODEL")));
  EXPECT_THAT(MakeModelParser().Parse({"a", "b"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unexpected argument \"b\"")));
  // --help needs no positional argument.
  ASSERT_OK_AND_ASSIGN(flags, MakeModelParser().Parse({"--help"}));
  EXPECT_TRUE(flags.help);
}

TEST(FlagParserTest, AParserWithoutPositionalsRejectsThem) {
  FlagParser parser("accelerate env", "Reports.");
  parser.AddValue("config_file", "PATH", "Config.");
  EXPECT_THAT(parser.Parse({"--config_file", "a.yaml", "extra"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unexpected argument \"extra\"")));
}

TEST(FlagParserTest, ListsTakeValuesUpToTheNextFlag) {
  ASSERT_OK_AND_ASSIGN(
      ParsedFlags flags,
      MakeModelParser().Parse({"m", "--dtypes", "float32", "int8",
                               "--offload_buffers"}));
  EXPECT_THAT(flags.GetList("dtypes"), ElementsAre("float32", "int8"));
  ASSERT_OK_AND_ASSIGN(flags, MakeModelParser().Parse({"--dtypes=int8", "m"}));
  EXPECT_THAT(flags.GetList("dtypes"), ElementsAre("int8"));
  EXPECT_THAT(flags.positional, ElementsAre("m"));
  EXPECT_THAT(MakeModelParser().Parse({"m", "--dtypes", "float32", "int3"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--dtypes \"int3\" is not one of float32, "
                                 "int8")));
  EXPECT_THAT(MakeModelParser().Parse({"m", "--dtypes"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--dtypes needs at least one value")));
}

TEST(FlagParserTest, BooleansTakeAnOptionalValue) {
  ASSERT_OK_AND_ASSIGN(ParsedFlags flags,
                       MakeModelParser().Parse({"m", "--even_batches"}));
  EXPECT_EQ(flags.Get("even_batches"), "true");
  ASSERT_OK_AND_ASSIGN(flags,
                       MakeModelParser().Parse({"m", "--even-batches=False"}));
  EXPECT_EQ(flags.Get("even_batches"), "false");
  EXPECT_THAT(MakeModelParser().Parse({"m", "--even_batches=maybe"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--even_batches \"maybe\" is not a "
                                 "boolean")));
}

TEST(FlagParserTest, CanonicalArgsPutPositionalsFirstAndSpellFlagsOneWay) {
  ASSERT_OK_AND_ASSIGN(
      ParsedFlags flags,
      MakeModelParser().Parse({"--even-batches=no", "--dtypes", "int8",
                               "float32", "--max-memory=0=1GB", "m",
                               "--offload_buffers"}));
  EXPECT_THAT(MakeModelParser().CanonicalArgs(flags),
              ElementsAre("m", "--max_memory", "0=1GB", "--dtypes", "int8",
                          "float32", "--even_batches=false",
                          "--offload_buffers"));
}

TEST(FlagParserTest, HelpHasOneFormatForEveryKind) {
  const std::string help = MakeModelParser().Help();
  for (const char* line :
       {"usage: accelerate plan [flags] MODEL", "positional arguments:",
        "  MODEL", "--max_memory DEVICE=SIZE,...",
        "--device_map {auto,balanced}", "--dtypes {float32,int8} [...]",
        "--even_batches[=BOOL]", "--offload_buffers", "-h, --help"}) {
    EXPECT_THAT(help, HasSubstr(line));
  }
}

}  // namespace
}  // namespace accelerate::launch
