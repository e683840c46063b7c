// `accelerate env`: what to paste into a bug report (versions, platform,
// this binary, CPUs, RAM, GPUs, and the config file), as Accelerate's
// `accelerate env` prints it.
//
// clang-format off
//   int Report(const state::Environment& env) {
//     return RunEnvCommand({"--config_file", "two.yaml"}, env, LocalHost(env));
//   }
// clang-format on
//
// Thread safety: call from the main thread (writes stdout).

#ifndef ACCELERATE_LAUNCH_ENV_REPORT_H_
#define ACCELERATE_LAUNCH_ENV_REPORT_H_

#include <string>
#include <vector>

#include "launch/host.h"
#include "state/environment.h"

namespace accelerate::launch {

// Runs `accelerate env ARGS` and returns the exit code.
int RunEnvCommand(const std::vector<std::string>& args,
                  const state::Environment& env, const LaunchHost& host);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_ENV_REPORT_H_
