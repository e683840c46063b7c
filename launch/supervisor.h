// Runs one machine's share of a job and watches over it, as torchrun's agent
// does: every rank's output is relayed line by line (prefixed `[rankN]: `),
// the first rank to fail brings the others down (SIGTERM, then SIGKILL after a
// grace period), signals sent to the launcher reach every rank, and the whole
// group is restarted up to `max_restarts` times.
//
// clang-format off
//   int EchoTwiceUnderSupervision() {
//     SupervisorOptions options;
//     options.max_restarts = 1;
//     return RunSupervised(
//         [](int attempt) {
//           std::vector<RankProcess> ranks(2);
//           for (int rank = 0; rank < 2; ++rank) {
//             ranks[rank].rank = rank;
//             ranks[rank].argv = {"echo", "attempt", std::to_string(attempt)};
//           }
//           return ranks;
//         },
//         options);
//   }
// clang-format on
//
// No orphans: each rank runs in its own process group, which is killed once
// the rank has ended, and dies with the launcher (PR_SET_PDEATHSIG).
//
// Thread safety: call from the main thread, once at a time; it installs
// signal handling for SIGINT, SIGTERM, SIGHUP and SIGQUIT while it runs.

#ifndef ACCELERATE_LAUNCH_SUPERVISOR_H_
#define ACCELERATE_LAUNCH_SUPERVISOR_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace accelerate::launch {

struct RankProcess {
  // Global rank, for the output prefix and the failure summary.
  int rank = 0;
  // argv; argv[0] is looked up in PATH when it has no slash.
  std::vector<std::string> argv;
  // Added to (and overriding) the launcher's environment.
  std::map<std::string, std::string> env;
  // The folder the rank starts in; empty for the launcher's.
  std::string working_dir;
};

struct SupervisorOptions {
  // Prefix each output line with `[rankN]: `.
  bool prefix_output = true;
  // When set, streams selected by `tee` (1 stdout, 2 stderr, 3 both) are also
  // written to `log_dir/attempt_K/rank_N/{stdout,stderr}.log`.
  std::string log_dir;
  int tee = 0;
  // Restarts of the whole group after a failure.
  int max_restarts = 0;
  // Between SIGTERM and SIGKILL when bringing ranks down.
  absl::Duration grace_period = absl::Seconds(5);
  // Upper bound between checks on the ranks (exits are noticed at once).
  absl::Duration monitor_interval = absl::Milliseconds(100);
  // Lines of a failed rank's stderr shown in the summary.
  int tail_lines = 20;
};

// Starts the ranks `make_ranks(attempt)` returns (attempt 0, 1, ...), relays
// their output, and returns the launcher's exit code: 0 when every rank of
// some attempt exited 0; otherwise the failed rank's exit code (128 + signal
// when it was killed), or 128 + the signal the launcher itself received.
int RunSupervised(
    const std::function<std::vector<RankProcess>(int attempt)>& make_ranks,
    const SupervisorOptions& options);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_SUPERVISOR_H_
