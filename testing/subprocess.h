// Starts child processes with extra environment variables and collects their
// output and exit status; used by multi-process tests.
//
// clang-format off
//   #include "state/logging.h"
//   int Example() {
//     Subprocess child({"/bin/echo", "hi"}, {{"RANK", "0"}});
//     absl::Status started = child.Start();
//     ACCELERATE_CHECK(started.ok()) << started;
//     ProcessResult result = child.Wait(absl::Seconds(10));
//     return result.exit_code;
//   }
// clang-format on
//
// Thread safety: one thread uses a `Subprocess` at a time. Ownership: the
// object owns the child; destroying a running child kills it (SIGKILL), so a
// failing test never leaves orphans.

#ifndef ACCELERATE_TESTING_SUBPROCESS_H_
#define ACCELERATE_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace accelerate::testing {

struct ProcessResult {
  // Exit code when the child exited, -1 otherwise.
  int exit_code = -1;
  // Signal that ended the child, 0 if it exited.
  int signal = 0;
  // True when `Wait` killed the child at its deadline.
  bool timed_out = false;
  // Standard output and standard error, interleaved as written.
  std::string output;
  // Wall time from start to end.
  absl::Duration elapsed;
};

class Subprocess {
 public:
  // `argv[0]` is the program path. `env` is added to (and overrides) this
  // process's environment.
  Subprocess(std::vector<std::string> argv,
             std::map<std::string, std::string> env);
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  ~Subprocess();

  // Forks and executes the program. `Internal` when fork or pipe fail.
  [[nodiscard]] absl::Status Start();

  // Waits for the child to end, killing it (and its process group) with
  // SIGKILL `timeout` after it started. REQUIRES: `Start` succeeded; called
  // once (this or WaitUntil).
  ProcessResult Wait(absl::Duration timeout);
  // As Wait, with an absolute deadline.
  ProcessResult WaitUntil(absl::Time deadline);

  pid_t pid() const { return pid_; }

 private:
  std::vector<std::string> argv_;
  std::map<std::string, std::string> env_;
  pid_t pid_ = -1;
  int output_fd_ = -1;
  std::string output_;
  std::thread reader_;
  absl::Time start_;
};

// The path of `path` (relative to the workspace root, e.g.
// "launch/accelerate") among a Bazel test's runfiles.
std::string Runfile(const std::string& path);

// The Python of the project's `.venv` (torch 2.13, accelerate 1.15), the
// peer our tests compare with. REQUIRES: the test has
// `data = ["//third_party:python3"]`.
std::string PeerPython();

// Runs `world_size` copies of `argv` on this machine as one job, each with
// torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// GROUP_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT=`port`) plus `env`, and
// returns their results in rank order once all have ended or `timeout` passed.
absl::StatusOr<std::vector<ProcessResult>> RunLocalJob(
    const std::vector<std::string>& argv, int world_size, int port,
    const std::map<std::string, std::string>& env, absl::Duration timeout);

}  // namespace accelerate::testing

#endif  // ACCELERATE_TESTING_SUBPROCESS_H_
