// The `accelerate` subcommands that run a helper binary built beside the
// launcher, which links the libraries (and LibTorch) the launcher itself
// stays free of: `plan-shards` (//data:plan_shards), `estimate-memory`,
// `merge-weights` and `plan-device-map` (//bigmodel). The launcher parses
// their command lines with the one `FlagParser` (`--flag value` and
// `--flag=value`, hyphens or underscores, one --help format), resolves their
// positional arguments (files) against $BUILD_WORKING_DIRECTORY, and hands
// the helper the canonical arguments (`FlagParser::CanonicalArgs`).
//
// clang-format off
//   int Dispatch(const std::vector<std::string>& args,
//                const state::Environment& env) {
//     const std::vector<std::string> rest(args.begin() + 1, args.end());
//     if (IsCompanionCommand(args[0])) {
//       return RunCompanionCommand(args[0], rest, env);  // Usually no return.
//     }
//     return 2;
//   }
// clang-format on
//
// Thread safety: call from the main thread (replaces the process).

#ifndef ACCELERATE_LAUNCH_COMPANIONS_H_
#define ACCELERATE_LAUNCH_COMPANIONS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "state/environment.h"

namespace accelerate::launch {

// Whether `command` runs a helper binary.
bool IsCompanionCommand(absl::string_view command);

// Runs `accelerate COMMAND ARGS`: replaces this process with the helper
// (found beside this binary, or at the path in its ACCELERATE_* variable),
// or returns the exit code: 0 after --help, 2 for a bad invocation or a
// missing helper. REQUIRES: `IsCompanionCommand(command)`.
int RunCompanionCommand(absl::string_view command,
                        const std::vector<std::string>& args,
                        const state::Environment& env);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_COMPANIONS_H_
