#include "trackers/tensorboard/tensorboard_tracker.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "trackers/tracker.h"

namespace accelerate::trackers {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::IsOk;
using ::accelerate::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::UnorderedElementsAreArray;

// What TensorBoard's reader sees in `folder` (read_events.py): its fact
// lines, sorted.
std::vector<std::string> ReadWithTensorBoard(const std::string& folder) {
  accelerate::testing::Subprocess reader(
      {accelerate::testing::PeerPython(),
       accelerate::testing::Runfile("trackers/tensorboard/read_events.py"),
       folder},
      {});
  EXPECT_THAT(reader.Start(), IsOk());
  const accelerate::testing::ProcessResult result =
      reader.Wait(absl::Seconds(120));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  std::vector<std::string> facts;
  for (absl::string_view line : absl::StrSplit(result.output, '\n')) {
    for (absl::string_view kind : {"scalar ", "text ", "histogram ", "hparam ",
                                   "session_end ", "records "}) {
      if (absl::StartsWith(line, kind)) facts.emplace_back(line);
    }
  }
  return facts;
}

std::string ScalarFact(const std::string& tag, int64_t step, double value) {
  // TensorBoard holds scalars as float32.
  return absl::StrFormat("scalar %s %d %.9g", tag, step,
                         static_cast<double>(static_cast<float>(value)));
}

TEST(TensorBoardTrackerTest, TensorBoardReadsEveryScalarTextHistogramAndHParam) {
  const std::string dir = FreshTestDir("tb_all");
  TensorBoardTracker tracker;
  ASSERT_THAT(tracker.Start({.project_name = "run1", .logging_dir = dir}),
              IsOk());
  EXPECT_EQ(tracker.run_folder(), dir + "/run1");
  EXPECT_THAT(std::filesystem::path(tracker.event_file()).filename().string(),
              ::testing::StartsWith("events.out.tfevents."));
  ASSERT_THAT(tracker.StoreInitConfiguration({{"lr", 0.001},
                                              {"batch_size", 32},
                                              {"optimizer", "adamw"},
                                              {"use_amp", true}}),
              IsOk());
  std::vector<std::string> expected = {
      "hparam lr 0.001",       "hparam batch_size 32.0",
      "hparam optimizer \"adamw\"", "hparam use_amp true",
      "session_end 1",
  };
  int records = 1 + 1 + 1;  // version, session start, session end
  for (int64_t step = 0; step < 50; ++step) {
    const double loss = 2.0 / (1.0 + step);
    const double lr = 0.001 * std::pow(0.9, step);
    ASSERT_THAT(tracker.Log({{"loss", loss}, {"lr", lr}, {"epoch", step / 10}},
                            step),
                IsOk());
    ++records;
    expected.push_back(ScalarFact("loss", step, loss));
    expected.push_back(ScalarFact("lr", step, lr));
    expected.push_back(ScalarFact("epoch", step, step / 10));
  }
  ASSERT_THAT(tracker.Log({{"note", "warm-up done"}}, 7), IsOk());
  expected.push_back("text note/text_summary 7 warm-up done");
  Histogram histogram{.min = -1,
                      .max = 3,
                      .num = 6,
                      .sum = 4,
                      .sum_squares = 14,
                      .bucket_limits = {0, 1, 3},
                      .bucket_counts = {2, 1, 3}};
  ASSERT_THAT(tracker.Log({{"weights", histogram}}, 9), IsOk());
  expected.push_back("histogram weights 9 6 -1 3 6");
  // Non-finite values are kept as TensorBoard keeps them.
  ASSERT_THAT(
      tracker.Log({{"grad_norm", std::numeric_limits<double>::quiet_NaN()},
                   {"overflow", std::numeric_limits<double>::infinity()}},
                  60),
      IsOk());
  expected.push_back("scalar grad_norm 60 nan");
  expected.push_back("scalar overflow 60 inf");
  // Without a step: step 0, as PyTorch's SummaryWriter.
  ASSERT_THAT(tracker.Log({{"final", 1.5}}, std::nullopt), IsOk());
  expected.push_back(ScalarFact("final", 0, 1.5));
  records += 4;
  ASSERT_THAT(tracker.Finish(), IsOk());
  expected.push_back(absl::StrCat("records ", records));

  EXPECT_THAT(ReadWithTensorBoard(dir + "/run1"),
              UnorderedElementsAreArray(expected));
  // Accelerate keeps the configuration as YAML too.
  const std::string yaml =
      accelerate::testing::ReadFileOrDie(dir + "/run1/hparams.yml");
  EXPECT_THAT(yaml, HasSubstr("batch_size: 32"));
  EXPECT_THAT(yaml, HasSubstr("optimizer: adamw"));
}

TEST(TensorBoardTrackerTest, WritesOnItsTimerWithoutFlushOrFinish) {
  const std::string dir = FreshTestDir("tb_timer");
  TensorBoardTracker tracker({.flush_interval = absl::Milliseconds(100)});
  ASSERT_THAT(tracker.Start({.project_name = "run", .logging_dir = dir}),
              IsOk());
  const auto size = [&] {
    return std::filesystem::file_size(tracker.event_file());
  };
  const uintmax_t before = size();
  ASSERT_THAT(tracker.Log({{"loss", 0.5}}, 1), IsOk());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (size() == before && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GT(size(), before) << "the writer never wrote on its timer";
  EXPECT_THAT(ReadWithTensorBoard(dir + "/run"),
              IsSupersetOf({ScalarFact("loss", 1, 0.5)}));
  ASSERT_THAT(tracker.Finish(), IsOk());
}

// The launcher ends processes with SIGTERM: what was logged reaches the
// file first, and the process still ends by the signal.
TEST(TensorBoardTrackerTest, SigtermWritesWhatWasLoggedThenEndsTheProcess) {
  const std::string dir = FreshTestDir("tb_sigterm");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    TensorBoardTracker tracker({.flush_interval = absl::Hours(1)});
    if (!tracker.Start({.project_name = "run", .logging_dir = dir}).ok()) {
      ::_exit(3);
    }
    for (int step = 0; step < 20; ++step) {
      (void)tracker.Log({{"loss", 1.0 / (step + 1)}}, step);
    }
    (void)!::write(ready[1], "r", 1);
    while (true) ::pause();
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  ASSERT_EQ(::kill(child, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
  std::vector<std::string> expected;
  for (int step = 0; step < 20; ++step) {
    expected.push_back(ScalarFact("loss", step, 1.0 / (step + 1)));
  }
  EXPECT_THAT(ReadWithTensorBoard(dir + "/run"), IsSupersetOf(expected));
}

TEST(TensorBoardTrackerTest, RefusesAFolderItCannotCreateNamingIt) {
  const std::string dir = FreshTestDir("tb_unwritable");
  // A file where a folder should be (fails for root too).
  accelerate::testing::WriteFileOrDie(dir + "/taken", "x");
  TensorBoardTracker tracker;
  EXPECT_THAT(
      tracker.Start({.project_name = "run", .logging_dir = dir + "/taken"}),
      StatusIs(::testing::_, HasSubstr(dir + "/taken")));
  TensorBoardTracker no_folder;
  EXPECT_THAT(no_folder.Start({.project_name = "run"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("logging folder")));
  EXPECT_THAT(no_folder.Log({{"loss", 1.0}}, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace accelerate::trackers
