// `accelerate checkpoint`: lists and checks checkpoint folders without
// loading them (//checkpoint:folder, no LibTorch). `check FOLDER` reports
// one folder: ours (with its manifest) or Python Accelerate's, the processes
// that saved it, each file with its kind, process and size, and why it is
// not complete. `list FOLDER` lists the `checkpoint_<n>` folders of a
// project (or of a `checkpoints` folder), marks the latest complete one, and
// names the staging folders interrupted saves left. `--json` prints one JSON
// object instead (described by each subcommand's --help).
//
// clang-format off
//   int CheckThird(const state::Environment& env) {
//     // 0: complete; 1: incomplete (the problems are printed); 2: bad usage.
//     return RunCheckpointCommand(
//         {"check", "runs/checkpoints/checkpoint_3", "--json"}, env);
//   }
// clang-format on
//
// Under `bazel run`, relative folders are taken from
// $BUILD_WORKING_DIRECTORY (paths.h).
//
// Thread safety: call from the main thread (writes stdout and stderr).

#ifndef ACCELERATE_LAUNCH_CHECKPOINT_COMMAND_H_
#define ACCELERATE_LAUNCH_CHECKPOINT_COMMAND_H_

#include <string>
#include <vector>

#include "state/environment.h"

namespace accelerate::launch {

// The exit code of `accelerate checkpoint check` for a folder that is not a
// complete checkpoint (a bad invocation is `kFailureExitCode`, 2).
inline constexpr int kIncompleteCheckpointExitCode = 1;

// Runs `accelerate checkpoint ARGS` and returns the exit code: 0 after
// --help, a listing, or the check of a complete checkpoint;
// `kIncompleteCheckpointExitCode` for the check of an incomplete one; 2
// (with the usage, or a message naming the folder, on stderr) for no or an
// unknown subcommand, a missing folder argument, or a folder that does not
// exist.
int RunCheckpointCommand(const std::vector<std::string>& args,
                         const state::Environment& env);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_CHECKPOINT_COMMAND_H_
