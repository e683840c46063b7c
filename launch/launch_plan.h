// `accelerate launch`'s plan: the resolution of flags (launch_flags.h),
// config file and defaults on a machine (host.h) into how many processes
// there are, where they meet, and what each one's command line and
// environment are. Computation only, apart from reading the config file
// (and checking that a DeepSpeed config file is readable): nothing is
// started here (see supervisor.h). A DEEPSPEED launch is run as
// FSDP's: our processes, Accelerate's DeepSpeed variables (feature_env.h).
//
// clang-format off
//   #include "launch/launch_flags.h"
//   #include "state/status_macros.h"
//   using RankVariables = std::map<std::string, std::string>;
//   absl::StatusOr<std::vector<RankVariables>> Ranks(
//       const std::vector<std::string>& args) {
//     const state::Environment& env = state::ProcessEnvironment();
//     ACCELERATE_ASSIGN_OR_RETURN(ParsedFlags flags,
//                                 LaunchFlagParser().Parse(args));
//     ACCELERATE_ASSIGN_OR_RETURN(LaunchPlan plan,
//                                 ResolveLaunch(flags, env, LocalHost(env)));
//     ACCELERATE_RETURN_IF_ERROR(CheckCommand(plan, env));
//     std::vector<RankVariables> ranks;
//     for (int local = 0; local < plan.nproc_per_node; ++local) {
//       ranks.push_back(RankEnvironment(plan, local, /*restart_count=*/0));
//     }
//     return ranks;  // Each rank runs plan.command with its variables.
//   }
// clang-format on
//
// Precedence is Accelerate's: flags, then the config file (--config_file, or
// the default file unless --cpu), then defaults; the defaults used for
// num_processes, num_machines and mixed_precision are listed in
// `defaults_used` for Accelerate's warning. Relative paths are taken from
// $BUILD_WORKING_DIRECTORY when set (paths.h).
//
// Thread safety: pure functions of their arguments (and the config file).

#ifndef ACCELERATE_LAUNCH_LAUNCH_PLAN_H_
#define ACCELERATE_LAUNCH_LAUNCH_PLAN_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "launch/flags.h"
#include "launch/host.h"
#include "state/environment.h"

namespace accelerate::launch {

struct LaunchPlan {
  // The config file that was read, empty if none.
  std::string config_file;
  int num_processes = 1;  // In total, over all machines.
  int num_machines = 1;
  int machine_rank = 0;
  int nproc_per_node = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // True when the port was picked because none was given and 29500 was busy.
  bool port_picked = false;
  std::string mixed_precision = "no";
  std::string distributed_type = "NO";
  bool use_cpu = false;
  bool debug = false;
  bool use_fsdp = false;
  // DeepSpeed's ZeRO (distributed_type DEEPSPEED): started as FSDP is, with
  // Accelerate's ACCELERATE_DEEPSPEED_* variables.
  bool use_deepspeed = false;
  // The DeepSpeed JSON config the ranks read (a user's path, resolved);
  // empty when none.
  std::string deepspeed_config_file;
  std::string gpu_ids = "all";
  int num_cpu_threads_per_process = 1;
  int max_restarts = 0;
  absl::Duration monitor_interval = absl::Milliseconds(100);
  std::string role = "default";
  bool quiet = false;
  bool dry_run = false;
  std::string log_dir;
  // 0 none, 1 stdout, 2 stderr, 3 both: streams copied into `log_dir`.
  int tee = 0;
  // The argv each rank runs (a Python script gets the interpreter first).
  std::vector<std::string> command;
  // The Python script `command` runs; empty for a program run directly or a
  // module (-m).
  std::string script;
  // Where the ranks start: $BUILD_WORKING_DIRECTORY under `bazel run`;
  // empty for the launcher's own working folder.
  std::string working_dir;
  // Variables every rank gets besides torchrun's (ACCELERATE_*, FSDP_*,
  // OMP_NUM_THREADS, CUDA_VISIBLE_DEVICES; with DeepSpeed, PYTHONPATH with
  // the ranks' folder, as Accelerate's DeepSpeed launcher sets it).
  std::map<std::string, std::string> common_env;
  // Accelerate's "had defaults used instead" lines.
  std::vector<std::string> defaults_used;
  // Config keys that ask for features this launcher does not provide.
  std::vector<std::string> unsupported_keys;
  // Keys inside config sections that neither we nor Accelerate know
  // ("fsdp_config.fsdp_typo").
  std::vector<std::string> unknown_section_keys;
  // For warnings: what a dry run found this machine lacking for the plan
  // (it is then a plan for another machine), and settings that are passed
  // on but not acted on, or have no effect in this launch (naming them).
  std::vector<std::string> warnings;
};

// Resolves flags, config file and defaults. `InvalidArgument` names the bad
// flag or config key and the valid values; `NotFound` for a missing
// --config_file; `FailedPrecondition` when the plan needs GPUs this machine
// lacks, `NotFound` or `PermissionDenied` for a DeepSpeed config file it
// cannot read (with --dry_run, each a warning in `warnings` instead).
[[nodiscard]] absl::StatusOr<LaunchPlan> ResolveLaunch(
    const ParsedFlags& flags, const state::Environment& env,
    const LaunchHost& host);

// Checks that `plan.command` can start here: its program is an executable
// file, found as execvp finds it, and a Python script is a readable file.
// `NotFound` or `PermissionDenied` reading "cannot execute PATH: why" (or
// "cannot open the Python script PATH: why") with the resolved path. OK for
// an empty command.
[[nodiscard]] absl::Status CheckCommand(const LaunchPlan& plan,
                                        const state::Environment& env);

// The full environment additions for local process `local_rank` of this
// machine: torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE, ...,
// TORCHELASTIC_RESTART_COUNT) plus `plan.common_env`.
std::map<std::string, std::string> RankEnvironment(const LaunchPlan& plan,
                                                   int local_rank,
                                                   int restart_count);

// Human-readable resolved configuration and each local rank's command line
// and environment, for --dry_run and --debug.
std::string DescribePlan(const LaunchPlan& plan);

// Accelerate's warning for `plan.defaults_used`; empty when none.
std::string DefaultsWarning(const LaunchPlan& plan);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_LAUNCH_PLAN_H_
