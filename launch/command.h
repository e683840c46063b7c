// What every `accelerate` subcommand does with its command line: parse it
// with its one `FlagParser` (flags.h), answer --help in the parser's format,
// and report a failure with exit code 2.
//
// clang-format off
//   int RunHello(const std::vector<std::string>& args) {
//     FlagParser parser("accelerate hello", "Says hello.");
//     parser.AddValue("name", "NAME", "Whom to greet.");
//     ParsedFlags flags;
//     if (std::optional<int> done = ParseCommandLine(parser, args, &flags)) {
//       return *done;  // --help was answered, or a bad flag reported.
//     }
//     return 0;
//   }
// clang-format on
//
// Thread safety: writes to std::cout and std::cerr.

#ifndef ACCELERATE_LAUNCH_COMMAND_H_
#define ACCELERATE_LAUNCH_COMMAND_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "launch/flags.h"

namespace accelerate::launch {

// The exit code of a bad invocation or a command that failed.
inline constexpr int kFailureExitCode = 2;

// Prints `message` on stderr; returns `kFailureExitCode`.
int Fail(absl::string_view message);

// Parses `args` with `parser` into `*flags`. Returns the exit code when the
// command is done already: 0 after printing the --help text on stdout,
// `kFailureExitCode` after printing the parse error on stderr; nullopt when
// the command goes on. REQUIRES: `flags` is not null.
std::optional<int> ParseCommandLine(const FlagParser& parser,
                                    const std::vector<std::string>& args,
                                    ParsedFlags* flags);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_COMMAND_H_
