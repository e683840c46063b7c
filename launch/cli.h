// The `accelerate` command line: `launch`, `config` (and `config default`),
// `env` and `test`, with Accelerate's names, flags and config files.
//
//   int main(int argc, char** argv) {
//     return accelerate::launch::RunCli(
//         std::vector<std::string>(argv + 1, argv + argc),
//         accelerate::state::ProcessEnvironment(), std::cin);
//   }
//
// Thread safety: call from the main thread (`launch` handles signals and
// `plan-shards`, `merge-weights`, `estimate-memory` replace the process).

#ifndef ACCELERATE_LAUNCH_CLI_H_
#define ACCELERATE_LAUNCH_CLI_H_

#include <istream>
#include <string>
#include <vector>

#include "launch/launch_plan.h"
#include "state/environment.h"

namespace accelerate::launch {

inline constexpr char kVersion[] = "0.1.0";

// Runs the command in `args` (without the program name) and returns the exit
// code. `input` answers `accelerate config`'s questions.
int RunCli(const std::vector<std::string>& args, const state::Environment& env,
           std::istream& input, const LaunchHost& host = LocalHost());

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_CLI_H_
