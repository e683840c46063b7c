// Accelerate's core guarantee, on real processes started by our launcher:
// the regression example ends with the same a, b (to 1e-6) whether the
// global batch is split over processes or accumulated over steps, and where
// Python Accelerate 1.15's own Accelerator (DDP over gloo, started by its
// own `accelerate launch`) ends on the same problem.

#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/files.h"
#include "testing/free_port.h"
#include "testing/subprocess.h"

namespace accelerate {
namespace {

using ::accelerate::testing::PeerPython;
using ::accelerate::testing::PickFreePort;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::RunLocalJob;
using ::accelerate::testing::Runfile;
using ::accelerate::testing::Subprocess;
using ::accelerate::testing::TestPath;
using ::testing::HasSubstr;

struct Line {
  double a = 0;
  double b = 0;
};

// The {"a": A, "b": B} line the main process printed.
Line ParseLine(const ProcessResult& result) {
  EXPECT_EQ(result.exit_code, 0) << result.output;
  // The one line {"a": A, "b": B}.
  Line line;
  for (absl::string_view text : absl::StrSplit(result.output, '\n')) {
    if (!absl::ConsumePrefix(&text, "{\"a\": ")) continue;
    std::vector<std::string> parts = absl::StrSplit(text, ", \"b\": ");
    EXPECT_EQ(parts.size(), 2u) << text;
    if (parts.size() != 2) break;
    parts[1].pop_back();  // '}'
    EXPECT_TRUE(absl::SimpleAtod(parts[0], &line.a)) << text;
    EXPECT_TRUE(absl::SimpleAtod(parts[1], &line.b)) << text;
    return line;
  }
  ADD_FAILURE() << "no {\"a\": ..., \"b\": ...} line in:\n" << result.output;
  return line;
}

std::vector<std::string> TrainingFlags(int batch_size, int accumulation) {
  return {absl::StrCat("--batch_size=", batch_size),
          absl::StrCat("--gradient_accumulation_steps=", accumulation),
          "--epochs=3", "--lr=0.1"};
}

ProcessResult Run(std::vector<std::string> argv) {
  Subprocess child(
      std::move(argv),
      {{"HF_HOME", TestPath("hf")}});
  EXPECT_TRUE(child.Start().ok());
  return child.Wait(absl::Seconds(120));
}

// Runs the example on `processes` processes through `accelerate launch`.
Line Train(int processes, int batch_size, int accumulation) {
  std::vector<std::string> argv = {
      Runfile("launch/accelerate"), "launch", "--cpu", "-q",
      "--num_processes", absl::StrCat(processes), "--main_process_port",
      absl::StrCat(PickFreePort()), Runfile("examples/regression")};
  for (std::string& flag : TrainingFlags(batch_size, accumulation)) {
    argv.push_back(std::move(flag));
  }
  return ParseLine(Run(std::move(argv)));
}

// Runs regression_peer.py under Python Accelerate's launcher. On a machine
// without GPUs `--multi_gpu` starts torchrun's processes and the script's
// Accelerator(cpu=True) joins them over gloo (Accelerate's `--cpu` would
// start one process).
Line TrainInPython(int processes, int batch_size, int accumulation) {
  std::vector<std::string> argv = {
      PeerPython(), "-m", "accelerate.commands.launch",
      "--multi_gpu", "--num_processes", absl::StrCat(processes),
      "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
      "no", "--main_process_port", absl::StrCat(PickFreePort()),
      Runfile("examples/regression_peer.py")};
  for (std::string& flag : TrainingFlags(batch_size, accumulation)) {
    argv.push_back(std::move(flag));
  }
  return ParseLine(Run(std::move(argv)));
}

void ExpectSame(const Line& x, const Line& y) {
  EXPECT_NEAR(x.a, y.a, 1e-6);
  EXPECT_NEAR(x.b, y.b, 1e-6);
}

TEST(RegressionTest, TwoProcessesOfEightEqualOneProcessOfSixteen) {
  const Line one = Train(1, 16, 1);
  const Line two = Train(2, 8, 1);
  ExpectSame(one, two);
  // It did train: a and b moved from 0 toward 2 and 3.
  EXPECT_GT(one.a, 0.5);
  EXPECT_GT(one.b, 2.0);
}

TEST(RegressionTest, AccumulationEqualsTheLargerBatch) {
  const Line accumulated = Train(1, 16, 2);
  ExpectSame(accumulated, Train(1, 32, 1));
  ExpectSame(accumulated, Train(2, 8, 2));
  // And differs from not accumulating, so the check can fail.
  const Line plain = Train(1, 16, 1);
  EXPECT_GT(std::abs(plain.a - accumulated.a), 1e-3);
}

TEST(RegressionTest, EndsWherePythonAccelerateEnds) {
  ExpectSame(Train(2, 8, 1), TrainInPython(2, 8, 1));
  ExpectSame(Train(2, 8, 2), TrainInPython(2, 8, 2));
}

TEST(RegressionTest, ARankThatThrowsEndsTheRunOnEveryRank) {
  // Started without the launcher, so that nothing but the library stops
  // the surviving rank.
  absl::StatusOr<std::vector<ProcessResult>> results = RunLocalJob(
      {Runfile("examples/regression"), "--batch_size=8", "--epochs=50",
       "--fail_rank=1", "--fail_at_step=3"},
      2, PickFreePort(), {}, absl::Seconds(120));
  ASSERT_TRUE(results.ok()) << results.status();
  const ProcessResult& survivor = (*results)[0];
  const ProcessResult& thrower = (*results)[1];
  EXPECT_FALSE(survivor.timed_out) << survivor.output;
  EXPECT_NE(survivor.exit_code, 0) << survivor.output;
  EXPECT_THAT(survivor.output, HasSubstr("regression: rank 0"));
  EXPECT_NE(thrower.exit_code, 0);
  EXPECT_THAT(thrower.output, HasSubstr("injected failure"));
  EXPECT_LT(survivor.elapsed, absl::Seconds(60));
}

}  // namespace
}  // namespace accelerate
