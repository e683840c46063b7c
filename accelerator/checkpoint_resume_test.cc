// Real processes (checkpoint_worker) over gloo on 127.0.0.1: a run stopped
// at a checkpoint and resumed ends with the same weights, bit for bit, as
// one that never stopped (fp32, fp16 with its loss scaler, fp8 with its
// delayed-scaling histories); a process killed at any stage of a save
// leaves the previous checkpoint whole.

#include <signal.h>

#include <filesystem>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "checkpoint/inspect.h"
#include "gtest/gtest.h"
#include "testing/files.h"
#include "testing/free_port.h"
#include "testing/subprocess.h"

namespace accelerate {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::PickFreePort;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::ReadFileOrDie;
using ::accelerate::testing::RunLocalJob;
using ::accelerate::testing::Runfile;

constexpr int64_t kTotal = 26;

std::vector<ProcessResult> RunWorkers(int world, std::vector<std::string> args) {
  args.insert(args.begin(), Runfile("accelerator/checkpoint_worker"));
  absl::StatusOr<std::vector<ProcessResult>> results =
      RunLocalJob(args, world, PickFreePort(), {}, absl::Seconds(120));
  EXPECT_TRUE(results.ok()) << results.status();
  return results.ok() ? *results : std::vector<ProcessResult>();
}

void ExpectAllSucceeded(const std::vector<ProcessResult>& results) {
  for (size_t rank = 0; rank < results.size(); ++rank) {
    EXPECT_EQ(results[rank].exit_code, 0)
        << "rank " << rank << ":\n" << results[rank].output;
  }
}

// The weights every rank ended with in `out` (the same on every rank).
std::string FinalWeights(const std::string& out, int world) {
  const std::string first = ReadFileOrDie(out + "/final_0.safetensors");
  for (int rank = 1; rank < world; ++rank) {
    EXPECT_EQ(ReadFileOrDie(absl::StrCat(out, "/final_", rank, ".safetensors")),
              first)
        << "rank " << rank << " ended with other weights than rank 0";
  }
  return first;
}

// The uninterrupted run's weights, once per configuration.
std::string Reference(int world, const std::string& precision) {
  static auto* cache = new std::map<std::string, std::string>();
  const std::string key = absl::StrCat(world, precision);
  if (cache->count(key)) return (*cache)[key];
  const std::string out = FreshTestDir("full_" + key);
  ExpectAllSucceeded(RunWorkers(world, {"mode=full", absl::StrCat("total=", kTotal),
                                 "precision=" + precision, "out=" + out}));
  return (*cache)[key] = FinalWeights(out, world);
}

class CheckpointResumeTest
    : public ::testing::TestWithParam<std::tuple<int, std::string>> {};

TEST_P(CheckpointResumeTest, StoppedAndResumedEqualsUninterruptedBitForBit) {
  const auto& [world, precision] = GetParam();
  const std::string name = absl::StrCat(world, precision);
  const std::string reference = Reference(world, precision);
  ASSERT_FALSE(reference.empty());
  const std::string dir = FreshTestDir("ckpt_" + name);
  const std::string saved_out = FreshTestDir("saved_" + name);
  // 12 batches: mid-epoch on 1 and 2 processes (10 and 5 batches per
  // epoch), two batches into an accumulation cycle of 3 (restarted at each
  // epoch's end): their gradients are part of the checkpoint.
  ExpectAllSucceeded(RunWorkers(world, {"mode=save", "save_at=12",
                                 absl::StrCat("total=", kTotal),
                                 "precision=" + precision, "dir=" + dir,
                                 "out=" + saved_out}));
  // Saving does not disturb the run.
  EXPECT_EQ(FinalWeights(saved_out, world), reference);

  // Read, and mapped (the optimizer's state aliasing its file).
  for (const std::string map : {"0", "1"}) {
    const std::string resumed_out = FreshTestDir("resumed_" + name + map);
    std::vector<ProcessResult> resumed =
        RunWorkers(world, {"mode=resume", absl::StrCat("total=", kTotal),
                           "precision=" + precision, "dir=" + dir + "/first",
                           "out=" + resumed_out, "map=" + map});
    ExpectAllSucceeded(resumed);
    ASSERT_FALSE(resumed.empty());
    EXPECT_NE(resumed[0].output.find("at 12"), std::string::npos)
        << resumed[0].output;
    EXPECT_EQ(FinalWeights(resumed_out, world), reference) << "map=" << map;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Configurations, CheckpointResumeTest,
    ::testing::Values(std::make_tuple(1, std::string("no")),
                      std::make_tuple(2, std::string("no")),
                      std::make_tuple(2, std::string("fp16")),
                      std::make_tuple(2, std::string("fp8"))));

class CheckpointCrashTest
    : public ::testing::TestWithParam<std::tuple<int, std::string>> {};

TEST_P(CheckpointCrashTest, KilledSaveLeavesThePreviousCheckpointToResume) {
  const auto& [crash_rank, stage] = GetParam();
  constexpr int kWorld = 2;
  const std::string reference = Reference(kWorld, "no");
  ASSERT_FALSE(reference.empty());
  std::string name = absl::StrCat(crash_rank, stage);
  for (char& c : name) {
    if (c == ' ' || c == '.') c = '_';
  }
  const std::string project = FreshTestDir("project_" + name);
  // checkpoint_0 at batch 8; checkpoint_1 at batch 17 dies; total_limit 1
  // must not have removed checkpoint_0 for it.
  std::vector<ProcessResult> crashed =
      RunWorkers(kWorld, {"mode=save", "save_at=8", "crash_at=17",
                   absl::StrCat("crash_rank=", crash_rank),
                   "crash_stage=" + stage, absl::StrCat("total=", kTotal),
                   "project=" + project, "total_limit=1"});
  ASSERT_EQ(crashed.size(), static_cast<size_t>(kWorld));
  EXPECT_EQ(crashed[crash_rank].signal, SIGKILL)
      << crashed[crash_rank].output;
  const int other = 1 - crash_rank;
  EXPECT_FALSE(crashed[other].timed_out) << "the surviving rank hung";
  EXPECT_NE(crashed[other].exit_code, 0) << crashed[other].output;

  const std::string checkpoints = project + "/checkpoints";
  absl::StatusOr<checkpoint::CheckpointReport> first =
      checkpoint::InspectCheckpoint(checkpoints + "/checkpoint_0");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->complete) << first->problems.front();
  absl::StatusOr<checkpoint::CheckpointReport> second =
      checkpoint::InspectCheckpoint(checkpoints + "/checkpoint_1");
  EXPECT_TRUE(!second.ok() || !second->complete)
      << "checkpoint_1 is complete although its save was killed";

  const std::string out = FreshTestDir("resumed_" + name);
  std::vector<ProcessResult> resumed =
      RunWorkers(kWorld, {"mode=resume", absl::StrCat("total=", kTotal),
                   "project=" + project, "out=" + out});
  ExpectAllSucceeded(resumed);
  ASSERT_FALSE(resumed.empty());
  EXPECT_NE(resumed[0].output.find("checkpoint_0 at 8"), std::string::npos)
      << resumed[0].output;
  EXPECT_EQ(FinalWeights(out, kWorld), reference);
}

INSTANTIATE_TEST_SUITE_P(
    Stages, CheckpointCrashTest,
    ::testing::Values(std::make_tuple(1, std::string("staged")),
                      std::make_tuple(0, std::string("writing model.safetensors")),
                      std::make_tuple(1, std::string("wrote optimizer.bin")),
                      std::make_tuple(1, std::string("writing random_states_1.pkl")),
                      std::make_tuple(0, std::string("agreed")),
                      std::make_tuple(0, std::string("committing"))));

}  // namespace
}  // namespace accelerate
