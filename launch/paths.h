// Where the paths a user types point, and which file a program name starts.
// `bazel run` starts the `accelerate` binary in its runfiles folder and says
// in $BUILD_WORKING_DIRECTORY where it was typed; relative paths are taken
// from there, so `bazel run //launch:accelerate -- launch prog` runs the
// `prog` the user sees. Programs are looked up as execvp looks them up.
//
// clang-format off
//   absl::Status CheckTrainer(const state::Environment& env) {
//     // Under `bazel run`: the user's folder + "/bin/train".
//     const std::string trainer = ResolveUserPath(env, "bin/train");
//     return FindExecutable(trainer, env).status();  // Names the path.
//   }
// clang-format on
//
// Thread safety: the functions keep no state.

#ifndef ACCELERATE_LAUNCH_PATHS_H_
#define ACCELERATE_LAUNCH_PATHS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "state/environment.h"

namespace accelerate::launch {

// The folder relative paths are relative to: $BUILD_WORKING_DIRECTORY when
// it is set and not empty; otherwise empty (this process's working folder).
std::string UserWorkingDirectory(const state::Environment& env);

// `path` under `UserWorkingDirectory(env)` when both are set and `path` is
// relative; otherwise `path` unchanged.
std::string ResolveUserPath(const state::Environment& env,
                            const std::string& path);

// The executable file `program` names, as execvp finds it: a name with a
// slash is that path; a name without one is looked up in env's PATH
// (default /bin:/usr/bin). `NotFound` for a missing file or a name in no
// PATH folder, `PermissionDenied` for a folder or a file that is not
// executable, each naming the path.
[[nodiscard]] absl::StatusOr<std::string> FindExecutable(
    const std::string& program, const state::Environment& env);

// OK when `path` is a readable regular file; otherwise `NotFound` (missing)
// or `PermissionDenied` (a folder, unreadable), naming it.
[[nodiscard]] absl::Status CheckReadableFile(const std::string& path);

// This binary's path (/proc/self/exe); empty when it cannot be read.
std::string SelfPath();

// The folder of this binary, where the programs it runs are found relative
// to; "." when unknown.
std::string SelfDirectory();

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_PATHS_H_
