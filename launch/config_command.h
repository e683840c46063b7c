// `accelerate config` (asks how to run and writes the answers as a config
// file) and `accelerate config default` (writes one for this machine
// without questions, keeping an existing file).
//
// clang-format off
//   #include <iostream>
//   int WriteDefaultConfig(const state::Environment& env) {
//     return RunConfigCommand({"default", "--mixed_precision", "bf16"}, env,
//                             std::cin, LocalHost(env));
//   }
// clang-format on
//
// Thread safety: call from the main thread (reads `input`, writes stdout).

#ifndef ACCELERATE_LAUNCH_CONFIG_COMMAND_H_
#define ACCELERATE_LAUNCH_CONFIG_COMMAND_H_

#include <istream>
#include <string>
#include <vector>

#include "launch/host.h"
#include "state/environment.h"

namespace accelerate::launch {

// Runs `accelerate config ARGS` and returns the exit code. `input` answers
// the questions; `host` decides what is asked and the defaults.
int RunConfigCommand(const std::vector<std::string>& args,
                     const state::Environment& env, std::istream& input,
                     const LaunchHost& host);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_CONFIG_COMMAND_H_
