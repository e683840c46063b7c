#include "trackers/trackers.h"

#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <torch/torch.h>
#include "state/environment.h"
#include "state/partial_state.h"
#include "testing/distributed_testutil.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "trackers/histogram.h"
#include "trackers/jsonl_tracker.h"
#include "trackers/tracker.h"

namespace accelerate::trackers {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::IsOk;
using ::accelerate::testing::ReadFileOrDie;
using ::accelerate::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Runs a Python snippet with .venv's interpreter; returns its output.
std::string RunPython(const std::string& code, const std::string& arg) {
  accelerate::testing::Subprocess python(
      {accelerate::testing::PeerPython(), "-c", code, arg}, {});
  EXPECT_THAT(python.Start(), IsOk());
  const accelerate::testing::ProcessResult result =
      python.Wait(absl::Seconds(60));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return result.output;
}

// Records what it is given; fails `Log` when told to.
class RecordingTracker : public Tracker {
 public:
  explicit RecordingTracker(bool main_process_only = true,
                            absl::Status log_status = absl::OkStatus())
      : main_process_only_(main_process_only), log_status_(log_status) {}
  std::string name() const override { return "recording"; }
  bool main_process_only() const override { return main_process_only_; }
  absl::Status Start(const RunInfo& run) override {
    calls.push_back(absl::StrCat("start ", run.project_name, " ",
                                 run.process_index, "/", run.num_processes));
    return absl::OkStatus();
  }
  absl::Status StoreInitConfiguration(const Config& config) override {
    for (const auto& [key, value] : config) {
      calls.push_back(absl::StrCat("config ", key, "=", value.ToString()));
    }
    return absl::OkStatus();
  }
  absl::Status Log(const LogValues& values,
                   std::optional<int64_t> step) override {
    for (const auto& [key, value] : values) {
      calls.push_back(absl::StrCat("log ", key, "@", step.value_or(-1)));
    }
    return log_status_;
  }
  absl::Status Finish() override {
    calls.push_back("finish");
    return absl::OkStatus();
  }
  std::vector<std::string> calls;

 private:
  bool main_process_only_;
  absl::Status log_status_;
};

TEST(ParseLogWithTest, AcceptsNamesAndAllAndNamesWhatItRefuses) {
  EXPECT_THAT(ParseLogWith("tensorboard,jsonl"),
              ::accelerate::testing::IsOkAndHolds(
                  ElementsAre("tensorboard", "jsonl")));
  EXPECT_THAT(ParseLogWith("all"),
              ::accelerate::testing::IsOkAndHolds(ElementsAre("all")));
  EXPECT_THAT(ParseLogWith(""),
              ::accelerate::testing::IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(ParseLogWith("tensorboard,wandbb"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"wandbb\" is not one of tensorboard, "
                                 "mlflow, jsonl, csv, all")));
}

TEST(JsonlTrackerTest, PythonReadsEveryLineWithItsValues) {
  const std::string dir = FreshTestDir("jsonl");
  JsonlTracker tracker;
  ASSERT_THAT(tracker.Start({.project_name = "run", .logging_dir = dir}),
              IsOk());
  ASSERT_THAT(tracker.StoreInitConfiguration(
                  {{"lr", 0.001}, {"name", "a \"quoted\"\nname"}, {"amp", true}}),
              IsOk());
  for (int step = 0; step < 5; ++step) {
    ASSERT_THAT(tracker.Log({{"loss", 1.0 / (step + 1)}, {"epoch", step}},
                            step),
                IsOk());
  }
  ASSERT_THAT(
      tracker.Log({{"note", "tab\there, \"quotes\", \\ and \x01"},
                   {"bad", std::numeric_limits<double>::quiet_NaN()},
                   {"big", -std::numeric_limits<double>::infinity()}},
                  std::nullopt),
      IsOk());
  ASSERT_THAT(tracker.Log({{"w", HistogramOf(at::arange(10))}}, 9), IsOk());
  ASSERT_THAT(tracker.Finish(), IsOk());
  const std::string output = RunPython(R"(
import json, math, sys
folder = sys.argv[1]
config = json.load(open(folder + "/config.json"))
print("config", config["lr"], repr(config["name"]), config["amp"])
for line in open(folder + "/metrics.jsonl"):
    row = json.loads(line)
    assert row["time"] > 1.7e9, row
    if "loss" in row:
        print("loss", row["step"], row["loss"], row["epoch"])
    elif "note" in row:
        print("note", row["step"], repr(row["note"]), math.isnan(row["bad"]), row["big"])
    else:
        h = row["w"]
        print("hist", row["step"], h["num"], h["min"], h["max"], sum(h["bucket_counts"]), len(h["bucket_limits"]))
)",
                                       dir + "/run");
  EXPECT_EQ(output,
            "config 0.001 'a \"quoted\"\\nname' True\n"
            "loss 0 1 0\n"
            "loss 1 0.5 1\n"
            "loss 2 0.3333333333333333 2\n"
            "loss 3 0.25 3\n"
            "loss 4 0.2 4\n"
            "note None 'tab\\there, \"quotes\", \\\\ and \\x01' True -inf\n"
            "hist 9 10 0 9 10 30\n");
}

// A run killed mid-line, then resumed: the new lines start on their own.
TEST(JsonlTrackerTest, AResumedRunAppendsAfterATornLine) {
  const std::string dir = FreshTestDir("jsonl_torn");
  std::filesystem::create_directories(dir + "/run");
  accelerate::testing::WriteFileOrDie(dir + "/run/metrics.jsonl",
                                      "{\"step\": 1, \"loss\": 0.5}\n{\"step\": 2, \"lo");
  JsonlTracker tracker;
  ASSERT_THAT(tracker.Start({.project_name = "run", .logging_dir = dir}),
              IsOk());
  ASSERT_THAT(tracker.Log({{"loss", 0.25}}, 3), IsOk());
  ASSERT_THAT(tracker.Finish(), IsOk());
  const std::vector<std::string> lines = absl::StrSplit(
      ReadFileOrDie(dir + "/run/metrics.jsonl"), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1], "{\"step\": 2, \"lo");
  EXPECT_THAT(lines[2], ::testing::StartsWith("{\"step\": 3, \"time\": "));
}

TEST(CsvTrackerTest, PythonsCsvReaderReadsEveryRow) {
  const std::string dir = FreshTestDir("csv");
  CsvTracker tracker;
  ASSERT_THAT(tracker.Start({.project_name = "run", .logging_dir = dir}),
              IsOk());
  ASSERT_THAT(tracker.StoreInitConfiguration({{"lr", 0.001}, {"bs", 8}}),
              IsOk());
  ASSERT_THAT(tracker.Log({{"loss", 0.5}, {"acc", 0.75}}, 3), IsOk());
  ASSERT_THAT(tracker.Log({{"note", "a, \"b\"\nc"},
                           {"w", HistogramOf(at::ones({3}))}},
                          4),
              IsOk());
  ASSERT_THAT(tracker.Finish(), IsOk());
  const std::string output = RunPython(R"(
import csv, sys
folder = sys.argv[1]
for row in csv.reader(open(folder + "/config.csv", newline="")):
    print("config", row)
for row in csv.DictReader(open(folder + "/metrics.csv", newline="")):
    assert float(row["time"]) > 1.7e9, row
    print(row["step"], row["name"], repr(row["value"]))
)",
                                       dir + "/run");
  EXPECT_EQ(output,
            "config ['name', 'value']\n"
            "config ['lr', '0.001']\n"
            "config ['bs', '8']\n"
            "3 loss '0.5'\n"
            "3 acc '0.75'\n"
            "4 note 'a, \"b\"\\nc'\n");
}

TEST(TrackersTest, OnlyTheMainProcessRunsThemUnlessATrackerAsks) {
  const std::string dir = FreshTestDir("trackers_ranks");
  std::vector<std::shared_ptr<RecordingTracker>> everywhere(2);
  std::vector<std::vector<std::string>> names(2);
  const std::vector<absl::Status> statuses = accelerate::testing::RunOnRanks(
      2, [&](const state::PartialState& state) -> absl::Status {
        const int rank = state.process_index();
        everywhere[rank] = std::make_shared<RecordingTracker>(false);
        TrackersOptions options;
        options.log_with = {"tensorboard", "csv", "jsonl"};
        options.jsonl.every_process = true;
        options.custom = {everywhere[rank],
                          std::make_shared<RecordingTracker>(true)};
        auto trackers = Trackers::Start(
            options, {.project_name = "run", .logging_dir = dir},
            {{"lr", 0.5}}, &state, state::MapEnvironment());
        if (!trackers.ok()) return trackers.status();
        names[rank] = (*trackers)->names();
        absl::Status logged = (*trackers)->Log({{"loss", 1.0 * rank}}, 7);
        if (!logged.ok()) return logged;
        return (*trackers)->Finish();
      });
  for (const absl::Status& status : statuses) ASSERT_THAT(status, IsOk());
  EXPECT_THAT(names[0], ElementsAre("tensorboard", "csv", "jsonl",
                                    "recording", "recording"));
  EXPECT_THAT(names[1], ElementsAre("jsonl", "recording"));
  EXPECT_THAT(everywhere[1]->calls,
              ElementsAre("start run 1/2", "config lr=0.5", "log loss@7",
                          "finish"));
  // One CSV (the main process's), a JSON Lines file per process.
  EXPECT_THAT(ReadFileOrDie(dir + "/run/metrics.csv"),
              HasSubstr("7,"));
  EXPECT_THAT(ReadFileOrDie(dir + "/run/metrics.0.jsonl"),
              HasSubstr("\"loss\": 0"));
  EXPECT_THAT(ReadFileOrDie(dir + "/run/metrics.1.jsonl"),
              HasSubstr("\"loss\": 1"));
}

TEST(TrackersTest, ATrackersTroubleWarnsAndTrainingGoesOnUnlessAsked) {
  const std::string dir = FreshTestDir("trackers_errors");
  auto broken = std::make_shared<RecordingTracker>(
      true, absl::UnavailableError("server gone"));
  auto healthy = std::make_shared<RecordingTracker>();
  TrackersOptions options;
  options.custom = {broken, healthy};
  auto trackers =
      Trackers::Start(options, {.project_name = "p"}, {}, nullptr,
                      state::MapEnvironment());
  ASSERT_THAT(trackers, IsOk());
  EXPECT_THAT((*trackers)->Log({{"loss", 1.0}}, 1), IsOk());
  EXPECT_THAT((*trackers)->Log({{"loss", 2.0}}, 2), IsOk());
  EXPECT_THAT(healthy->calls, ElementsAre("start p 0/1", "log loss@1",
                                          "log loss@2"));
  ASSERT_THAT((*trackers)->Finish(), IsOk());
  EXPECT_THAT((*trackers)->Log({{"loss", 3.0}}, 3),
              StatusIs(absl::StatusCode::kFailedPrecondition));

  options.fail_on_error = true;
  auto strict = Trackers::Start(options, {.project_name = "p"}, {}, nullptr,
                                state::MapEnvironment());
  ASSERT_THAT(strict, IsOk());
  EXPECT_THAT((*strict)->Log({{"loss", 1.0}}, 1),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("the recording tracker: server gone")));
}

TEST(TrackersTest, RefusesWhatCannotStartNamingIt) {
  const std::string dir = FreshTestDir("trackers_refused");
  accelerate::testing::WriteFileOrDie(dir + "/file", "x");
  TrackersOptions options;
  options.log_with = {"jsonl"};
  EXPECT_THAT(Trackers::Start(options, {.project_name = "p"}, {}, nullptr,
                              state::MapEnvironment()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("the jsonl tracker needs a logging folder")));
  EXPECT_THAT(
      Trackers::Start(options,
                      {.project_name = "p", .logging_dir = dir + "/file"}, {},
                      nullptr, state::MapEnvironment()),
      StatusIs(::testing::_, HasSubstr("the jsonl tracker cannot start")));
  options.log_with = {"mlflow"};
  EXPECT_THAT(Trackers::Start(options, {.project_name = "p"}, {}, nullptr,
                              state::MapEnvironment()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("MLFLOW_TRACKING_URI")));
  options.log_with = {"tensorbord"};
  EXPECT_THAT(Trackers::Start(options, {.project_name = "p"}, {}, nullptr,
                              state::MapEnvironment()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"tensorbord\"")));
}

TEST(HistogramTest, CountsFiniteValuesInEqualBuckets) {
  const Histogram h =
      HistogramOf(at::tensor({0.0, 1.0, 1.0, 2.0, 4.0,
                              std::numeric_limits<double>::quiet_NaN()}),
                  4);
  EXPECT_EQ(h.num, 5);
  EXPECT_EQ(h.min, 0);
  EXPECT_EQ(h.max, 4);
  EXPECT_EQ(h.sum, 8);
  EXPECT_EQ(h.sum_squares, 22);
  EXPECT_THAT(h.bucket_limits, ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(h.bucket_counts, ElementsAre(1, 2, 1, 1));
}

}  // namespace
}  // namespace accelerate::trackers
