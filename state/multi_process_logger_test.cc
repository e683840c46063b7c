#include "state/multi_process_logger.h"

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"

namespace accelerate::state {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::RunOnRanks;
using ::accelerate::testing::StatusIs;
using ::testing::Each;
using ::testing::HasSubstr;

TEST(MultiProcessLoggerTest, OnlyTheMainProcessWritesByDefault) {
  std::vector<std::ostringstream> outputs(2);
  std::vector<absl::Status> statuses =
      RunOnRanks(2, [&](const PartialState& state) -> absl::Status {
        std::ostringstream& out = outputs[state.process_index()];
        ACCELERATE_ASSIGN_OR_RETURN(
            MultiProcessLogger logger,
            MultiProcessLogger::Create("train", state, LogLevel::kInfo,
                                       MapEnvironment(), &out));
        ACCELERATE_RETURN_IF_ERROR(logger.Log(LogLevel::kInfo, "main only"));
        ACCELERATE_RETURN_IF_ERROR(logger.Log(LogLevel::kDebug, "too low"));
        return logger.Log(LogLevel::kWarning, "everyone",
                          {.main_process_only = false, .in_order = true});
      });
  EXPECT_THAT(statuses, Each(IsOk()));
  EXPECT_EQ(outputs[0].str(), "INFO:train:main only\nWARNING:train:everyone\n");
  EXPECT_EQ(outputs[1].str(), "WARNING:train:everyone\n");
}

TEST(MultiProcessLoggerTest, TheLevelComesFromAccelerateLogLevel) {
  ASSERT_OK_AND_ASSIGN(auto state, PartialState::Create({}, MapEnvironment()));
  std::ostringstream out;
  ASSERT_OK_AND_ASSIGN(
      MultiProcessLogger logger,
      MultiProcessLogger::Create(
          "eval", *state, std::nullopt,
          MapEnvironment(std::map<std::string, std::string>{
              {"ACCELERATE_LOG_LEVEL", "debug"}}), &out));
  EXPECT_EQ(logger.level(), LogLevel::kDebug);
  ASSERT_OK(logger.Log(LogLevel::kDebug, "shown"));
  EXPECT_EQ(out.str(), "DEBUG:eval:shown\n");
  // Without it, WARNING as in Python logging.
  ASSERT_OK_AND_ASSIGN(MultiProcessLogger quiet,
                       MultiProcessLogger::Create("eval", *state, std::nullopt,
                                                  MapEnvironment(), &out));
  EXPECT_EQ(quiet.level(), LogLevel::kWarning);
  EXPECT_THAT(MultiProcessLogger::Create(
                  "eval", *state, std::nullopt,
                  MapEnvironment(std::map<std::string, std::string>{
                      {"ACCELERATE_LOG_LEVEL", "loud"}}), &out)
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ACCELERATE_LOG_LEVEL: log level \"loud\"")));
}

}  // namespace
}  // namespace accelerate::state
