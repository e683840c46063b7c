#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "accelerator/accelerator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "state/environment.h"
#include "testing/distributed_testutil.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "trackers/tracker.h"

namespace accelerate {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::IsOk;
using ::accelerate::testing::ReadFileOrDie;
using ::accelerate::testing::RunOnRankThreads;
using ::accelerate::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Counts the steps it is given.
class CountingTracker : public trackers::Tracker {
 public:
  std::string name() const override { return "counting"; }
  absl::Status Start(const trackers::RunInfo&) override {
    return absl::OkStatus();
  }
  absl::Status StoreInitConfiguration(const trackers::Config&) override {
    return absl::OkStatus();
  }
  absl::Status Log(const trackers::LogValues&,
                   std::optional<int64_t> step) override {
    steps.push_back(step.value_or(-1));
    return absl::OkStatus();
  }
  absl::Status Finish() override {
    finished = true;
    return absl::OkStatus();
  }
  std::vector<int64_t> steps;
  bool finished = false;
};

TEST(AcceleratorTrackingTest, LauncherEnvironmentPicksTrackersAndFolder) {
  const std::string dir = FreshTestDir("accelerator_tracking");
  std::vector<std::shared_ptr<CountingTracker>> custom = {
      std::make_shared<CountingTracker>(), std::make_shared<CountingTracker>()};
  std::vector<bool> has_jsonl(2);
  const std::vector<absl::Status> statuses = RunOnRankThreads(
      2,
      {{"ACCELERATE_LOG_WITH", "jsonl,csv"},
       {"ACCELERATE_PROJECT_DIR", dir}},
      [&](int rank, const state::Environment& env) -> absl::Status {
        AcceleratorOptions options;
        options.trackers.custom = {custom[rank]};
        auto accelerator = Accelerator::Create(options, env);
        if (!accelerator.ok()) return accelerator.status();
        Accelerator& acc = **accelerator;
        if (absl::Status early = acc.Log({{"loss", 1.0}}, 0);
            early.code() != absl::StatusCode::kFailedPrecondition) {
          return absl::InternalError(
              absl::StrCat("Log before InitTrackers: ", early.ToString()));
        }
        absl::Status init = acc.InitTrackers("run", {{"lr", 0.5}});
        if (!init.ok()) return init;
        has_jsonl[rank] = acc.GetTracker("jsonl") != nullptr;
        for (int step = 0; step < 3; ++step) {
          absl::Status logged =
              acc.Log({{"loss", 1.0 / (step + 1)}, {"rank", rank}}, step);
          if (!logged.ok()) return logged;
        }
        return acc.EndTraining();
      });
  for (const absl::Status& status : statuses) ASSERT_THAT(status, IsOk());
  EXPECT_THAT(has_jsonl, ElementsAre(true, false));
  EXPECT_THAT(custom[0]->steps, ElementsAre(0, 1, 2));
  EXPECT_TRUE(custom[0]->finished);
  EXPECT_TRUE(custom[1]->steps.empty()) << "only the main process logs";
  const std::string jsonl = ReadFileOrDie(dir + "/run/metrics.jsonl");
  EXPECT_THAT(jsonl, HasSubstr("\"rank\": 0"));
  EXPECT_THAT(jsonl, ::testing::Not(HasSubstr("\"rank\": 1")));
  EXPECT_THAT(ReadFileOrDie(dir + "/run/config.csv"), HasSubstr("lr,0.5"));
}

TEST(AcceleratorTrackingTest, RefusesUnknownTrackerNames) {
  state::MapEnvironment env(std::map<std::string, std::string>{
      {"ACCELERATE_LOG_WITH", "tensorboard,wandbb"}});
  EXPECT_THAT(Accelerator::Create({}, env),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ACCELERATE_LOG_WITH: log_with: \"wandbb\"")));
  AcceleratorOptions options;
  options.trackers.log_with = {"tensorbaord"};
  EXPECT_THAT(Accelerator::Create(options, state::MapEnvironment()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"tensorbaord\"")));
}

TEST(AcceleratorTrackingTest, WithoutTrackersLogIsANoOp) {
  auto accelerator = Accelerator::Create({}, state::MapEnvironment());
  ASSERT_THAT(accelerator, IsOk());
  EXPECT_THAT((*accelerator)->Log({{"loss", 1.0}}, 0), IsOk());
  EXPECT_EQ((*accelerator)->GetTracker("tensorboard"), nullptr);
  EXPECT_THAT((*accelerator)->EndTraining(), IsOk());
}

}  // namespace
}  // namespace accelerate
