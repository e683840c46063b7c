#include "launch/config_command.h"

#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "launch/command.h"
#include "launch/config.h"
#include "launch/config.pb.h"
#include "launch/flags.h"
#include "launch/launch_flags.h"
#include "launch/paths.h"
#include "launch/questionnaire.h"
#include "precision/mixed_precision.h"
#include "state/status_macros.h"

namespace accelerate::launch {
namespace {

// Accelerate's questions, in its order, for a local machine.
absl::StatusOr<LaunchConfig> AskConfig(std::istream& in, std::ostream& out,
                                       const LaunchHost& host) {
  Questionnaire q(in, out);
  LaunchConfig config;
  config.set_compute_environment("LOCAL_MACHINE");
  std::vector<std::string> machines = {"No distributed training", "multi-CPU"};
  if (host.gpu_count > 0) machines.push_back("multi-GPU");
  ACCELERATE_ASSIGN_OR_RETURN(
      const std::string machine,
      q.Choose("Which type of machine are you using?", machines, 0));
  const bool distributed = machine != "No distributed training";
  const bool gpu = machine == "multi-GPU";
  config.set_distributed_type(!distributed ? "NO"
                                           : (gpu ? "MULTI_GPU" : "MULTI_CPU"));
  config.set_num_machines(1);
  config.set_machine_rank(0);
  if (distributed) {
    ACCELERATE_ASSIGN_OR_RETURN(
        const int machines_count,
        q.Integer("How many different machines will you use (use more than 1 "
                  "for multi-node training)?",
                  1, 1));
    config.set_num_machines(machines_count);
    if (machines_count > 1) {
      ACCELERATE_ASSIGN_OR_RETURN(
          const int rank, q.Integer("What is the rank of this machine?", 0, 0));
      if (rank >= machines_count) {
        return absl::InvalidArgumentError(absl::StrCat(
            "machine rank ", rank, " is not below ", machines_count));
      }
      config.set_machine_rank(rank);
      config.set_main_process_ip(q.Ask(
          "What is the IP address of the machine that will host the main "
          "process?",
          "127.0.0.1"));
      ACCELERATE_ASSIGN_OR_RETURN(
          const int port,
          q.Integer("What is the port you will use to communicate with the "
                    "main process?",
                    29500, 1));
      config.set_main_process_port(port);
      ACCELERATE_ASSIGN_OR_RETURN(
          const bool same,
          q.YesNo("Are all the machines on the same local network?", true));
      config.set_same_network(same);
    }
  }
  ACCELERATE_ASSIGN_OR_RETURN(
      const bool debug,
      q.YesNo("Should distributed operations be checked while running for "
              "errors? This can avoid timeout issues but will be slower.",
              false));
  config.set_debug(debug);
  if (gpu) {
    ACCELERATE_ASSIGN_OR_RETURN(
        const bool fsdp,
        q.YesNo("Do you want to use FullyShardedDataParallel?", false));
    if (fsdp) {
      config.set_distributed_type("FSDP");
      ACCELERATE_ASSIGN_OR_RETURN(
          const std::string strategy,
          q.Choose("What should be your sharding strategy?",
                   FsdpShardingStrategies(), 0));
      config.mutable_fsdp_config()->set_fsdp_sharding_strategy(strategy);
      ACCELERATE_ASSIGN_OR_RETURN(
          const bool offload,
          q.YesNo("Do you want to offload parameters and gradients to CPU?",
                  false));
      config.mutable_fsdp_config()->set_fsdp_offload_params(offload);
    }
  }
  const int default_processes =
      gpu ? std::max(host.gpu_count, 2) : (distributed ? 2 : 1);
  if (distributed) {
    ACCELERATE_ASSIGN_OR_RETURN(
        const int processes,
        q.Integer("How many processes should be used for distributed training "
                  "(in total, over all machines)?",
                  default_processes * config.num_machines(), 1));
    config.set_num_processes(processes);
  } else {
    config.set_num_processes(1);
  }
  if (gpu) {
    config.set_gpu_ids(q.Ask(
        "What GPU(s) (by id) should be used for training on this machine as "
        "a comma-separated list?",
        "all"));
  }
  // Accelerate asks about CPU-only training on a machine with GPUs that is
  // not set up for multi-GPU; multi-CPU is CPU by definition.
  bool use_cpu = machine == "multi-CPU" || host.gpu_count == 0;
  if (!distributed && host.gpu_count > 0) {
    ACCELERATE_ASSIGN_OR_RETURN(
        use_cpu,
        q.YesNo("Do you want to run your training on CPU only (even if a GPU "
                "/ Apple Silicon / Ascend NPU device is available)?",
                false));
  }
  config.set_use_cpu(use_cpu);
  ACCELERATE_ASSIGN_OR_RETURN(
      const std::string precision,
      q.Choose("Do you wish to use mixed precision?", precision::MixedPrecisionNames(),
               0));
  config.set_mixed_precision(precision);
  config.set_main_training_function("main");
  config.set_rdzv_backend("static");
  config.set_downcast_bf16(false);
  config.set_enable_cpu_affinity(false);
  return config;
}

// `accelerate config default`'s file: one process on CPU, one per GPU.
LaunchConfig DefaultConfig(const LaunchHost& host,
                           const std::string& mixed_precision) {
  LaunchConfig config;
  config.set_compute_environment("LOCAL_MACHINE");
  config.set_debug(false);
  config.set_downcast_bf16(false);
  config.set_enable_cpu_affinity(false);
  config.set_machine_rank(0);
  config.set_main_training_function("main");
  config.set_mixed_precision(mixed_precision);
  config.set_num_machines(1);
  config.set_rdzv_backend("static");
  config.set_same_network(false);
  if (host.gpu_count > 0) {
    config.set_num_processes(host.gpu_count);
    config.set_use_cpu(false);
    config.set_distributed_type(host.gpu_count > 1 ? "MULTI_GPU" : "NO");
  } else {
    config.set_num_processes(1);
    config.set_use_cpu(true);
    config.set_distributed_type("NO");
  }
  return config;
}

FlagParser ConfigFlagParser(bool is_default) {
  FlagParser parser(
      is_default ? "accelerate config default" : "accelerate config",
      is_default
          ? "Writes a config file for this machine without questions (CPU: "
            "one process; GPUs: one process per GPU). An existing file is "
            "kept."
          : "Asks how you want to run, and writes the answers as a config "
            "file that `accelerate launch` (ours or Python's) reads.");
  parser.AddValue("config_file", "PATH",
                  "Where to write (default: "
                  "$HF_HOME/accelerate/default_config.yaml).");
  if (is_default) {
    parser.AddValue("mixed_precision", "MODE", "Mixed precision mode.",
                    {"no", "fp16", "bf16"});
  }
  return parser;
}

}  // namespace

int RunConfigCommand(const std::vector<std::string>& args,
                     const state::Environment& env, std::istream& input,
                     const LaunchHost& host) {
  const bool is_default = !args.empty() && args[0] == "default";
  ParsedFlags flags;
  if (std::optional<int> done = ParseCommandLine(
          ConfigFlagParser(is_default),
          std::vector<std::string>(args.begin() + (is_default ? 1 : 0),
                                   args.end()),
          &flags)) {
    return *done;
  }
  const std::optional<std::string> given = flags.Get("config_file");
  const std::string path = given.has_value() ? ResolveUserPath(env, *given)
                                             : DefaultConfigPath(env);
  LaunchConfig config;
  if (is_default) {
    if (::access(path.c_str(), F_OK) == 0) {
      std::cout << "Configuration already exists at " << path
                << ", will not override. Run `accelerate config` manually or "
                   "pass a different `--config_file`."
                << std::endl;
      return 0;
    }
    config = DefaultConfig(host, flags.Get("mixed_precision").value_or("no"));
  } else {
    absl::StatusOr<LaunchConfig> asked = AskConfig(input, std::cout, host);
    if (!asked.ok()) {
      return Fail(
          absl::StrCat("accelerate config: ", asked.status().message()));
    }
    config = *std::move(asked);
  }
  if (absl::Status written = WriteConfigFile(config, path); !written.ok()) {
    return Fail(absl::StrCat("accelerate config: ", written.message()));
  }
  std::cout << "accelerate configuration saved at " << path << std::endl;
  return 0;
}

}  // namespace accelerate::launch
