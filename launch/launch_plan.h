// `accelerate launch`: its flags, and the resolution of flags, config file
// and defaults into a plan (how many processes, where they meet, what each
// one's command line and environment are). Pure computation: nothing is
// started here (see supervisor.h).
//
//   FlagParser parser = LaunchFlagParser();
//   ACCELERATE_ASSIGN_OR_RETURN(ParsedFlags flags, parser.Parse(args));
//   ACCELERATE_ASSIGN_OR_RETURN(LaunchPlan plan,
//       ResolveLaunch(flags, state::ProcessEnvironment(), LocalHost()));
//   for (int local = 0; local < plan.nproc_per_node; ++local)
//     Start(plan.command, RankEnvironment(plan, local, /*restart_count=*/0));
//
// Precedence is Accelerate's: flags, then the config file (--config_file, or
// the default file unless --cpu), then defaults; the defaults used for
// num_processes, num_machines and mixed_precision are listed in
// `defaults_used` for Accelerate's warning.
//
// Thread safety: pure functions of their arguments (and the config file).

#ifndef ACCELERATE_LAUNCH_LAUNCH_PLAN_H_
#define ACCELERATE_LAUNCH_LAUNCH_PLAN_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "launch/config.pb.h"
#include "launch/flags.h"
#include "state/environment.h"

namespace accelerate::launch {

// What the launcher needs to know about this machine; injectable for tests.
struct LaunchHost {
  // Visible NVIDIA GPUs.
  int gpu_count = 0;
  // Physical CPU cores.
  int cpu_cores = 1;
  // Whether `port` can be listened on here.
  std::function<bool(int port)> port_is_free;
  // A port that is free right now.
  std::function<int()> pick_free_port;
};

// This machine: GPUs from /proc/driver/nvidia, cores from sysconf, real
// socket checks.
LaunchHost LocalHost();

// The parser with every `accelerate launch` flag.
FlagParser LaunchFlagParser();

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
  // Variables every rank gets besides torchrun's (ACCELERATE_*, FSDP_*,
  // OMP_NUM_THREADS, CUDA_VISIBLE_DEVICES).
  std::map<std::string, std::string> common_env;
  // Accelerate's "had defaults used instead" lines.
  std::vector<std::string> defaults_used;
  // Config keys that ask for features this launcher does not provide.
  std::vector<std::string> unsupported_keys;
  // Keys inside config sections that neither we nor Accelerate know
  // ("fsdp_config.fsdp_typo").
  std::vector<std::string> unknown_section_keys;
};

// Resolves flags, config file and defaults. `InvalidArgument` names the bad
// flag or config key and the valid values; `NotFound` for a missing
// --config_file.
[[nodiscard]] absl::StatusOr<LaunchPlan> ResolveLaunch(
    const ParsedFlags& flags, const state::Environment& env,
    const LaunchHost& host);

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
