#include "launch/cli.h"

#include <dirent.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "launch/config.h"
#include "launch/flags.h"
#include "launch/supervisor.h"
#include "state/environment.h"
#include "state/launch_info.h"
#include "third_party/torch_version.h"

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
    "  plan-shards  Print the batches each process sees under Accelerate's "
    "data sharding, as JSON (plan-shards --help).\n"
    "  estimate-memory  Accelerate's memory table for a local safetensors "
    "checkpoint.\n"
    "  merge-weights  Merge a sharded safetensors checkpoint into one file.\n"
    "  plan-device-map  Where Accelerate's automatic device map puts a model "
    "under memory limits, as JSON.\n";

int Fail(absl::string_view message) {
  std::cerr << message << std::endl;
  return 2;
}

// --- launch -----------------------------------------------------------------

int Launch(const std::vector<std::string>& args, const state::Environment& env,
           const LaunchHost& host) {
  const FlagParser parser = LaunchFlagParser();
  absl::StatusOr<ParsedFlags> flags = parser.Parse(args);
  if (!flags.ok()) return Fail(flags.status().message());
  if (flags->help) {
    std::cout << parser.Help("PROGRAM [ARGS...]");
    return 0;
  }
  absl::StatusOr<LaunchPlan> plan = ResolveLaunch(*flags, env, host);
  if (!plan.ok()) {
    return Fail(absl::StrCat("accelerate launch: ", plan.status().message()));
  }
  if (!plan->unsupported_keys.empty()) {
    std::cerr << "accelerate launch: ignoring config keys this launcher does "
                 "not support: "
              << absl::StrJoin(plan->unsupported_keys, ", ") << std::endl;
  }
  if (!plan->unknown_section_keys.empty()) {
    std::cerr << "accelerate launch: ignoring unknown config keys: "
              << absl::StrJoin(plan->unknown_section_keys, ", ") << std::endl;
  }
  if (const std::string warning = DefaultsWarning(*plan); !warning.empty()) {
    std::cerr << warning;
  }
  if (plan->port_picked) {
    std::cerr << "accelerate launch: port 29500 is busy; using free port "
              << plan->master_port << std::endl;
  }
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
          ranks.push_back(std::move(rank));
        }
        return ranks;
      },
      options);
}

// --- config -----------------------------------------------------------------

// Asks questions on `out`, reads answers from `in`; an empty answer or the
// end of input takes the default.
class Questionnaire {
 public:
  Questionnaire(std::istream& in, std::ostream& out) : in_(in), out_(out) {}

  std::string Ask(absl::string_view question, absl::string_view fallback) {
    return AskOrEnd(question, fallback).value_or(std::string(fallback));
  }

  // The answer, or nullopt at the end of the input.
  std::optional<std::string> AskOrEnd(absl::string_view question,
                                      absl::string_view fallback) {
    out_ << question << " [" << fallback << "]: " << std::flush;
    std::string line;
    if (!std::getline(in_, line)) {
      out_ << "\n";
      return std::nullopt;
    }
    const std::string answer(absl::StripAsciiWhitespace(line));
    return answer.empty() ? std::string(fallback) : answer;
  }

  // Re-asks until the answer is one of `choices` (by name or index).
  absl::StatusOr<std::string> Choose(absl::string_view question,
                                     const std::vector<std::string>& choices,
                                     int fallback) {
    std::string listing;
    for (size_t i = 0; i < choices.size(); ++i) {
      absl::StrAppend(&listing, i == 0 ? "" : ", ", "[", i, "] ", choices[i]);
    }
    for (int tries = 0; tries < 3; ++tries) {
      std::optional<std::string> read =
          AskOrEnd(absl::StrCat(question, " (", listing, ")"), choices[fallback]);
      // The end of the input takes the default, unless an answer was wrong.
      if (!read.has_value() && tries > 0) break;
      const std::string answer = read.value_or(choices[fallback]);
      int index = -1;
      if (absl::SimpleAtoi(answer, &index) && index >= 0 &&
          index < static_cast<int>(choices.size())) {
        return choices[index];
      }
      for (const std::string& choice : choices) {
        if (absl::AsciiStrToLower(answer) == absl::AsciiStrToLower(choice)) {
          return choice;
        }
      }
      out_ << "Please answer one of " << absl::StrJoin(choices, ", ")
           << " (or its number); got \"" << answer << "\"\n";
    }
    return absl::InvalidArgumentError(
        absl::StrCat("no valid answer to: ", question));
  }

  absl::StatusOr<int> Integer(absl::string_view question, int fallback,
                              int min_value) {
    for (int tries = 0; tries < 3; ++tries) {
      std::optional<std::string> read =
          AskOrEnd(question, absl::StrCat(fallback));
      if (!read.has_value() && tries > 0) break;
      const std::string answer = read.value_or(absl::StrCat(fallback));
      int value = 0;
      if (absl::SimpleAtoi(answer, &value) && value >= min_value) return value;
      out_ << "Please answer an integer of at least " << min_value
           << "; got \"" << answer << "\"\n";
    }
    return absl::InvalidArgumentError(
        absl::StrCat("no valid answer to: ", question));
  }

  absl::StatusOr<bool> YesNo(absl::string_view question, bool fallback) {
    for (int tries = 0; tries < 3; ++tries) {
      std::optional<std::string> read =
          AskOrEnd(question, fallback ? "YES/no" : "yes/NO");
      if (!read.has_value()) {
        if (tries > 0) break;
        return fallback;
      }
      const std::string& answer = *read;
      if (answer == "YES/no") return true;
      if (answer == "yes/NO") return false;
      absl::StatusOr<bool> value = state::ParseBoolFlag("answer", answer);
      if (value.ok()) return *value;
      out_ << "Please answer yes or no; got \"" << answer << "\"\n";
    }
    return absl::InvalidArgumentError(
        absl::StrCat("no valid answer to: ", question));
  }

 private:
  std::istream& in_;
  std::ostream& out_;
};

absl::StatusOr<LaunchConfig> AskConfig(std::istream& in, std::ostream& out,
                                       const LaunchHost& host) {
  Questionnaire q(in, out);
  LaunchConfig config;
  config.set_compute_environment("LOCAL_MACHINE");
  std::vector<std::string> machines = {"No distributed training", "multi-CPU"};
  if (host.gpu_count > 0) machines.push_back("multi-GPU");
  absl::StatusOr<std::string> machine =
      q.Choose("Which type of machine are you using?", machines, 0);
  if (!machine.ok()) return machine.status();
  const bool distributed = *machine != "No distributed training";
  const bool gpu = *machine == "multi-GPU";
  config.set_distributed_type(!distributed ? "NO"
                                           : (gpu ? "MULTI_GPU" : "MULTI_CPU"));
  config.set_num_machines(1);
  config.set_machine_rank(0);
  if (distributed) {
    absl::StatusOr<int> machines_count = q.Integer(
        "How many different machines will you use (use more than 1 for "
        "multi-node training)?",
        1, 1);
    if (!machines_count.ok()) return machines_count.status();
    config.set_num_machines(*machines_count);
    if (*machines_count > 1) {
      absl::StatusOr<int> rank =
          q.Integer("What is the rank of this machine?", 0, 0);
      if (!rank.ok()) return rank.status();
      if (*rank >= *machines_count) {
        return absl::InvalidArgumentError(absl::StrCat(
            "machine rank ", *rank, " is not below ", *machines_count));
      }
      config.set_machine_rank(*rank);
      config.set_main_process_ip(q.Ask(
          "What is the IP address of the machine that will host the main "
          "process?",
          "127.0.0.1"));
      absl::StatusOr<int> port = q.Integer(
          "What is the port you will use to communicate with the main "
          "process?",
          29500, 1);
      if (!port.ok()) return port.status();
      config.set_main_process_port(*port);
      absl::StatusOr<bool> same = q.YesNo(
          "Are all the machines on the same local network?", true);
      if (!same.ok()) return same.status();
      config.set_same_network(*same);
    }
  }
  absl::StatusOr<bool> debug = q.YesNo(
      "Should distributed operations be checked while running for errors? "
      "This can avoid timeout issues but will be slower.",
      false);
  if (!debug.ok()) return debug.status();
  config.set_debug(*debug);
  if (gpu) {
    absl::StatusOr<bool> fsdp =
        q.YesNo("Do you want to use FullyShardedDataParallel?", false);
    if (!fsdp.ok()) return fsdp.status();
    if (*fsdp) {
      config.set_distributed_type("FSDP");
      absl::StatusOr<std::string> strategy = q.Choose(
          "What should be your sharding strategy?",
          {"FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD",
           "HYBRID_SHARD_ZERO2"},
          0);
      if (!strategy.ok()) return strategy.status();
      config.mutable_fsdp_config()->set_fsdp_sharding_strategy(*strategy);
      absl::StatusOr<bool> offload =
          q.YesNo("Do you want to offload parameters and gradients to CPU?",
                  false);
      if (!offload.ok()) return offload.status();
      config.mutable_fsdp_config()->set_fsdp_offload_params(*offload);
    }
  }
  const int default_processes = gpu ? std::max(host.gpu_count, 2) : (distributed ? 2 : 1);
  if (distributed) {
    absl::StatusOr<int> processes = q.Integer(
        "How many processes should be used for distributed training (in "
        "total, over all machines)?",
        default_processes * config.num_machines(), 1);
    if (!processes.ok()) return processes.status();
    config.set_num_processes(*processes);
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
  bool use_cpu = *machine == "multi-CPU" || host.gpu_count == 0;
  if (!distributed && host.gpu_count > 0) {
    absl::StatusOr<bool> cpu_only =
        q.YesNo("Do you want to run your training on CPU only (even if a GPU "
                "/ Apple Silicon / Ascend NPU device is available)?",
                false);
    if (!cpu_only.ok()) return cpu_only.status();
    use_cpu = *cpu_only;
  }
  config.set_use_cpu(use_cpu);
  absl::StatusOr<std::string> precision = q.Choose(
      "Do you wish to use mixed precision?", {"no", "fp16", "bf16", "fp8"}, 0);
  if (!precision.ok()) return precision.status();
  config.set_mixed_precision(*precision);
  config.set_main_training_function("main");
  config.set_rdzv_backend("static");
  config.set_downcast_bf16(false);
  config.set_enable_cpu_affinity(false);
  return config;
}

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

int Config(const std::vector<std::string>& args, const state::Environment& env,
           std::istream& input, const LaunchHost& host) {
  const bool is_default = !args.empty() && args[0] == "default";
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
  absl::StatusOr<ParsedFlags> flags = parser.Parse(
      std::vector<std::string>(args.begin() + (is_default ? 1 : 0), args.end()));
  if (!flags.ok()) return Fail(flags.status().message());
  if (flags->help) {
    std::cout << parser.Help("");
    return 0;
  }
  if (!flags->positional.empty()) {
    return Fail(absl::StrCat("accelerate config: unexpected argument \"",
                             flags->positional[0], "\""));
  }
  const std::string path =
      flags->Get("config_file").value_or(DefaultConfigPath(env));
  LaunchConfig config;
  if (is_default) {
    if (::access(path.c_str(), F_OK) == 0) {
      std::cout << "Configuration already exists at " << path
                << ", will not override. Run `accelerate config` manually or "
                   "pass a different `--config_file`."
                << std::endl;
      return 0;
    }
    config = DefaultConfig(host, flags->Get("mixed_precision").value_or("no"));
  } else {
    absl::StatusOr<LaunchConfig> asked = AskConfig(input, std::cout, host);
    if (!asked.ok()) {
      return Fail(absl::StrCat("accelerate config: ", asked.status().message()));
    }
    config = *asked;
  }
  if (absl::Status written = WriteConfigFile(config, path); !written.ok()) {
    return Fail(absl::StrCat("accelerate config: ", written.message()));
  }
  std::cout << "accelerate configuration saved at " << path << std::endl;
  return 0;
}

// --- env --------------------------------------------------------------------

std::string ReadFirstMatch(const std::string& path, absl::string_view key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, key)) {
      return std::string(absl::StripAsciiWhitespace(
          absl::string_view(line).substr(line.find(':') + 1)));
    }
  }
  return "";
}

int Env(const std::vector<std::string>& args, const state::Environment& env,
        const LaunchHost& host) {
  FlagParser parser("accelerate env",
                    "Prints what to paste into a bug report.");
  parser.AddValue("config_file", "PATH", "Config file to report.");
  absl::StatusOr<ParsedFlags> flags = parser.Parse(args);
  if (!flags.ok()) return Fail(flags.status().message());
  if (flags->help) {
    std::cout << parser.Help("");
    return 0;
  }
  utsname uts{};
  ::uname(&uts);
  char exe[4096] = {0};
  const ssize_t exe_length = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGE_SIZE);
  std::ostringstream out;
  out << "\nCopy-and-paste the text below in your GitHub issue\n\n";
  out << "- `accelerate-cpp` version: " << kVersion << "\n";
  out << "- Platform: " << uts.sysname << "-" << uts.release << "-"
      << uts.machine << "\n";
  out << "- `accelerate` binary location: "
      << (exe_length > 0 ? std::string(exe, exe_length) : "unknown") << "\n";
  out << "- LibTorch version (built against): " << ACCELERATE_LIBTORCH_VERSION
      << "\n";
  out << "- CPU count: " << ::sysconf(_SC_NPROCESSORS_ONLN) << " ("
      << host.cpu_cores << " physical cores)\n";
  char ram[32];
  std::snprintf(ram, sizeof(ram), "%.2f GB",
                static_cast<double>(pages) * page_size / (1024.0 * 1024 * 1024));
  out << "- System RAM: " << ram << "\n";
  if (host.gpu_count > 0) {
    std::string model = ReadFirstMatch(
        "/proc/driver/nvidia/gpus/" +
            [] {
              std::string first;
              if (DIR* dir = ::opendir("/proc/driver/nvidia/gpus")) {
                while (dirent* e = ::readdir(dir)) {
                  if (e->d_name[0] != '.') first = e->d_name;
                }
                ::closedir(dir);
              }
              return first;
            }() +
            "/information",
        "Model");
    out << "- GPU type: " << (model.empty() ? "NVIDIA GPU" : model) << " (x"
        << host.gpu_count << ")\n";
  } else {
    out << "- GPU type: none\n";
  }
  const std::optional<std::string> given = flags->Get("config_file");
  const std::string path = given.value_or(DefaultConfigPath(env));
  out << (given.has_value() ? "- `Accelerate` config passed:\n"
                            : "- `Accelerate` default config:\n");
  absl::StatusOr<LoadedConfig> loaded = LoadConfigFile(path);
  if (!loaded.ok()) {
    out << (absl::IsNotFound(loaded.status())
                ? "\tNot found\n"
                : absl::StrCat("\tUnreadable: ", loaded.status().message(), "\n"));
  } else {
    for (const auto& [key, value] : ConfigEntries(loaded->config)) {
      out << "\t- " << key << ": " << value << "\n";
    }
  }
  std::cout << out.str();
  return 0;
}

// The folder of this binary (bazel-bin/launch), where the programs it runs
// are found relative to.
std::string BinaryDir() {
  char exe[4096] = {0};
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  const std::string path = n > 0 ? std::string(exe, n) : "./accelerate";
  return path.substr(0, path.rfind('/'));
}

// --- plan-shards, merge-weights ---------------------------------------------

// Replaces this process with a program built beside this one (relative to
// bazel-bin/launch), which links the libraries (and LibTorch) the launcher
// itself stays free of. `variable` overrides the path.
int ExecCompanion(absl::string_view command, const std::string& relative,
                  const std::string& target, const std::string& variable,
                  const std::vector<std::string>& args,
                  const state::Environment& env) {
  const std::string program =
      env.Get(variable).value_or(BinaryDir() + "/" + relative);
  if (::access(program.c_str(), X_OK) != 0) {
    return Fail(absl::StrCat("accelerate ", command, ": ", program,
                             " is missing; build ", target, " (or set ",
                             variable, ")"));
  }
  std::vector<std::string> argv = {program};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> pointers = state::CStringArray(argv);
  std::cout.flush();
  ::execv(program.c_str(), pointers.data());
  return Fail(absl::StrCat("accelerate ", command, ": cannot execute ", program));
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
  absl::StatusOr<ParsedFlags> flags = parser.Parse(args);
  if (!flags.ok()) return Fail(flags.status().message());
  if (flags->help) {
    std::cout << parser.Help("");
    return 0;
  }
  // The self-check ships beside this binary (bazel-bin/launch/selftest).
  const std::string selftest =
      env.Get("ACCELERATE_SELFTEST").value_or(BinaryDir() + "/selftest");
  if (::access(selftest.c_str(), X_OK) != 0) {
    return Fail(absl::StrCat("accelerate test: the self-check ", selftest,
                             " is missing; build //launch:selftest (or set "
                             "ACCELERATE_SELFTEST)"));
  }
  std::vector<std::string> launch_args;
  if (std::optional<std::string> path = flags->Get("config_file")) {
    launch_args.push_back("--config_file=" + *path);
  }
  const bool have_config =
      flags->Has("config_file") ||
      ::access(DefaultConfigPath(env).c_str(), R_OK) == 0;
  if (std::optional<std::string> n = flags->Get("num_processes")) {
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
           std::istream& input, const LaunchHost& host) {
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    std::cout << kUsage;
    return args.empty() ? 1 : 0;
  }
  const std::string& command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "launch") return Launch(rest, env, host);
  if (command == "config") return Config(rest, env, input, host);
  if (command == "env") return Env(rest, env, host);
  if (command == "test") return Test(rest, env, host);
  if (command == "plan-shards") {
    return ExecCompanion(command, "../data/plan_shards", "//data:plan_shards",
                         "ACCELERATE_PLAN_SHARDS", rest, env);
  }
  if (command == "estimate-memory") {
    return ExecCompanion(command, "../bigmodel/estimate_memory",
                         "//bigmodel:estimate_memory",
                         "ACCELERATE_ESTIMATE_MEMORY", rest, env);
  }
  if (command == "plan-device-map") {
    return ExecCompanion(command, "../bigmodel/plan_device_map",
                         "//bigmodel:plan_device_map",
                         "ACCELERATE_PLAN_DEVICE_MAP", rest, env);
  }
  if (command == "merge-weights") {
    return ExecCompanion(command, "../bigmodel/merge_weights",
                         "//bigmodel:merge_weights", "ACCELERATE_MERGE_WEIGHTS",
                         rest, env);
  }
  if (command == "--version" || command == "version") {
    std::cout << "accelerate-cpp " << kVersion << std::endl;
    return 0;
  }
  std::cerr << "accelerate: unknown command \"" << command
            << "\" (one of launch, config, env, test, plan-shards, "
               "estimate-memory, merge-weights, plan-device-map)\n\n"
            << kUsage;
  return 2;
}

}  // namespace accelerate::launch
