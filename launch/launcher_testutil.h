// Helpers for the tests that run the `accelerate` binary (launcher_test,
// cli_test): where the binary and the rank programs are among the runfiles,
// running it as a user or as `bazel run` does, and reading its output.
//
// clang-format off
//   #include "gtest/gtest.h"
//   void Example() {
//     testing::ProcessResult result = RunAccelerate(
//         {"launch", "--cpu", "--num_processes", "2", RankProgram(), "env"});
//     EXPECT_TRUE(HasLine(result.output, "[rank1]: ENV RANK=1"));
//   }
// clang-format on
//
// Thread safety: call from the test's thread.

#ifndef ACCELERATE_LAUNCH_LAUNCHER_TESTUTIL_H_
#define ACCELERATE_LAUNCH_LAUNCHER_TESTUTIL_H_

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "testing/subprocess.h"

namespace accelerate::launch {

// The `accelerate` binary among the runfiles.
std::string Accelerate();
// launch/testdata/rank_program.sh: its first argument picks what it does.
std::string RankProgram();
// //state:multiprocess_worker.
std::string Worker();

// Runs `accelerate <args>` with `env` added and a private HF_HOME (no
// default config) unless `env` names one.
testing::ProcessResult RunAccelerate(
    const std::vector<std::string>& args,
    std::map<std::string, std::string> env = {},
    absl::Duration timeout = absl::Seconds(60));

// Runs `accelerate <args>` as `bazel run` does: started in `cwd` (standing
// for the runfiles folder), with BUILD_WORKING_DIRECTORY naming the folder
// the user typed the command in.
testing::ProcessResult RunAccelerateAsBazelRun(
    const std::string& cwd, const std::string& user_folder,
    const std::vector<std::string>& args);

// Whether `output` has `line` as a whole line.
bool HasLine(const std::string& output, const std::string& line);

// How many times `part` occurs in `text` (without overlaps).
int CountOf(const std::string& text, const std::string& part);

// `path` with symbolic links resolved; `path` itself when it cannot be.
std::string RealPath(const std::string& path);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_LAUNCHER_TESTUTIL_H_
