#include "launch/cli.h"

#include <unistd.h>

#include <iostream>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "launch/checkpoint_command.h"
#include "launch/command.h"
#include "launch/companions.h"
#include "launch/config.h"
#include "launch/config_command.h"
#include "launch/env_report.h"
#include "launch/flags.h"
#include "launch/launch_flags.h"
#include "launch/launch_plan.h"
#include "launch/paths.h"
#include "launch/supervisor.h"

namespace accelerate::launch {
namespace {

constexpr char kUsage[] =
    "usage: accelerate <command> [<args>]\n"
    "\n"
    "commands:\n"
    "  launch   Start a program as a distributed job (accelerate launch "
    "--help).\n"
    "  config   Write a config file by answering questions; `config default` "
    "writes one without questions.\n"
    "  env      Print the environment report for bug reports.\n"
    "  test     Run the bundled distributed self-check under the current "
    "config.\n"
    "  checkpoint  List a project's checkpoints (`checkpoint list`) or check "
    "one folder (`checkpoint check`).\n"
    "  plan-shards  Print the batches each process sees under Accelerate's "
    "data sharding, as JSON (plan-shards --help).\n"
    "  estimate-memory  Accelerate's memory table for a local safetensors "
    "checkpoint.\n"
    "  merge-weights  Merge a sharded checkpoint (safetensors or "
    "pytorch_model.bin) into one safetensors file.\n"
    "  plan-device-map  Where Accelerate's automatic device map puts a model "
    "under memory limits, as JSON.\n"
    "\n"
    "Every command takes --help, and flags as --flag value or --flag=value.\n";

// The exit code of a program that cannot be started (as a shell's).
constexpr int kCannotExecuteExitCode = 127;

// Prints what the plan's resolution left to say: ignored config keys,
// Accelerate's defaults warning, a picked port, what a dry run lacks here.
void PrintPlanWarnings(const LaunchPlan& plan) {
  if (!plan.unsupported_keys.empty()) {
    std::cerr << "accelerate launch: ignoring config keys this launcher does "
                 "not support: "
              << absl::StrJoin(plan.unsupported_keys, ", ") << std::endl;
  }
  if (!plan.unknown_section_keys.empty()) {
    std::cerr << "accelerate launch: ignoring unknown config keys: "
              << absl::StrJoin(plan.unknown_section_keys, ", ") << std::endl;
  }
  if (const std::string warning = DefaultsWarning(plan); !warning.empty()) {
    std::cerr << warning;
  }
  if (plan.port_picked) {
    std::cerr << "accelerate launch: port 29500 is busy; using free port "
              << plan.master_port << std::endl;
  }
  for (const std::string& warning : plan.warnings) {
    std::cerr << "accelerate launch: warning: " << warning << std::endl;
  }
}

// --- launch -----------------------------------------------------------------

int Launch(const std::vector<std::string>& args, const state::Environment& env,
           const LaunchHost& host) {
  ParsedFlags flags;
  if (std::optional<int> done =
          ParseCommandLine(LaunchFlagParser(), args, &flags)) {
    return *done;
  }
  absl::StatusOr<LaunchPlan> plan = ResolveLaunch(flags, env, host);
  if (!plan.ok()) {
    return Fail(absl::StrCat("accelerate launch: ", plan.status().message()));
  }
  // The program is checked once, here, rather than by every rank.
  if (absl::Status runnable = CheckCommand(*plan, env); !runnable.ok()) {
    if (!plan->dry_run) {
      PrintPlanWarnings(*plan);
      std::cerr << "accelerate launch: " << runnable.message() << std::endl;
      return kCannotExecuteExitCode;
    }
    plan->warnings.push_back(std::string(runnable.message()));
  }
  PrintPlanWarnings(*plan);
  if (plan->dry_run || plan->debug) std::cout << DescribePlan(*plan);
  if (plan->dry_run) return 0;

  SupervisorOptions options;
  options.prefix_output = !plan->quiet;
  options.log_dir = plan->log_dir;
  options.tee = plan->tee;
  options.max_restarts = plan->max_restarts;
  options.monitor_interval = plan->monitor_interval;
  const bool pick_new_port = plan->port_picked;
  LaunchPlan current = *plan;
  return RunSupervised(
      [&](int attempt) {
        // A restarted single-machine group that picked its own port takes a
        // fresh one: the old one may linger in TIME_WAIT.
        if (attempt > 0 && pick_new_port && host.pick_free_port) {
          current.master_port = host.pick_free_port();
        }
        std::vector<RankProcess> ranks;
        for (int local = 0; local < current.nproc_per_node; ++local) {
          RankProcess rank;
          rank.rank = current.machine_rank * current.nproc_per_node + local;
          rank.argv = current.command;
          rank.env = RankEnvironment(current, local, attempt);
          rank.working_dir = current.working_dir;
          ranks.push_back(std::move(rank));
        }
        return ranks;
      },
      options);
}

// --- test -------------------------------------------------------------------

int Test(const std::vector<std::string>& args, const state::Environment& env,
         const LaunchHost& host) {
  FlagParser parser("accelerate test",
                    "Runs the bundled distributed self-check (process state "
                    "and every collective) through `accelerate launch` under "
                    "the current config, and says what passed or failed.");
  parser.AddValue("config_file", "PATH", "Config file to test.");
  parser.AddValue("num_processes", "N",
                  "Processes to test with (default: the config's, else 2).");
  ParsedFlags flags;
  if (std::optional<int> done = ParseCommandLine(parser, args, &flags)) {
    return *done;
  }
  // The self-check ships beside this binary (bazel-bin/launch/selftest).
  const std::string selftest = env.Get("ACCELERATE_SELFTEST")
                                   .value_or(SelfDirectory() + "/selftest");
  if (::access(selftest.c_str(), X_OK) != 0) {
    return Fail(absl::StrCat("accelerate test: the self-check ", selftest,
                             " is missing; build //launch:selftest (or set "
                             "ACCELERATE_SELFTEST)"));
  }
  std::vector<std::string> launch_args;
  if (std::optional<std::string> path = flags.Get("config_file")) {
    launch_args.push_back("--config_file=" + ResolveUserPath(env, *path));
  }
  const bool have_config = flags.Has("config_file") ||
                           ::access(DefaultConfigPath(env).c_str(), R_OK) == 0;
  if (std::optional<std::string> n = flags.Get("num_processes")) {
    launch_args.push_back("--num_processes=" + *n);
  } else if (!have_config) {
    launch_args.push_back("--num_processes=2");
    launch_args.push_back("--cpu");
  }
  if (!have_config) {
    // Any free port: a self-check must not meet another job at 29500.
    launch_args.push_back("--main_process_port=0");
  }
  launch_args.push_back(selftest);
  std::cout << "Running: accelerate launch " << absl::StrJoin(launch_args, " ")
            << std::endl;
  const int code = Launch(launch_args, env, host);
  if (code == 0) {
    std::cout << "Test is a success! You are ready for your distributed "
                 "training!"
              << std::endl;
  } else {
    std::cout << "Test failed (exit code " << code
              << "); the lines above say which check." << std::endl;
  }
  return code;
}

}  // namespace

int RunCli(const std::vector<std::string>& args, const state::Environment& env,
           std::istream& input) {
  return RunCli(args, env, input, LocalHost(env));
}

int RunCli(const std::vector<std::string>& args, const state::Environment& env,
           std::istream& input, const LaunchHost& host) {
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    std::cout << kUsage;
    return args.empty() ? 1 : 0;
  }
  const std::string& command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "launch") return Launch(rest, env, host);
  if (command == "config") return RunConfigCommand(rest, env, input, host);
  if (command == "env") return RunEnvCommand(rest, env, host);
  if (command == "test") return Test(rest, env, host);
  if (command == "checkpoint") return RunCheckpointCommand(rest, env);
  if (IsCompanionCommand(command)) {
    return RunCompanionCommand(command, rest, env);
  }
  if (command == "--version" || command == "version") {
    std::cout << "accelerate-cpp " << kVersion << std::endl;
    return 0;
  }
  std::cerr << "accelerate: unknown command \"" << command
            << "\" (one of launch, config, env, test, checkpoint, "
               "plan-shards, estimate-memory, merge-weights, "
               "plan-device-map)\n\n"
            << kUsage;
  return kFailureExitCode;
}

}  // namespace accelerate::launch
