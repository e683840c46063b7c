// The `accelerate` command line: `launch`, `config` (and `config default`),
// `env`, `test`, `checkpoint` (`list` and `check`), and the helper commands
// `plan-shards`, `estimate-memory`, `merge-weights` and `plan-device-map`,
// with Accelerate's names, flags and config files. Every subcommand parses
// its flags with the one parser (flags.h): `--flag value` or
// `--flag=value`, and `--help`.
//
// clang-format off
//   #include <iostream>
//   int Main(int argc, char** argv) {
//     return RunCli(std::vector<std::string>(argv + 1, argv + argc),
//                   state::ProcessEnvironment(), std::cin);
//   }
// clang-format on
//
// Under `bazel run`, relative paths the user gives are taken from
// $BUILD_WORKING_DIRECTORY (paths.h).
//
// Thread safety: call from the main thread (`launch` handles signals and
// the helper commands replace the process).

#ifndef ACCELERATE_LAUNCH_CLI_H_
#define ACCELERATE_LAUNCH_CLI_H_

#include <istream>
#include <string>
#include <vector>

#include "launch/host.h"
#include "state/environment.h"

namespace accelerate::launch {

inline constexpr char kVersion[] = "0.1.0";

// Runs the command in `args` (without the program name) on this machine
// (`LocalHost(env)`) and returns the exit code. `input` answers
// `accelerate config`'s questions.
int RunCli(const std::vector<std::string>& args, const state::Environment& env,
           std::istream& input);

// As above, on the machine `host` describes.
int RunCli(const std::vector<std::string>& args, const state::Environment& env,
           std::istream& input, const LaunchHost& host);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_CLI_H_
