#include "launch/launch_plan.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "launch/config.h"
#include "state/launch_info.h"
#include "state/status_macros.h"

namespace accelerate::launch {
namespace {

const std::vector<std::string> kMixedPrecision = {"no", "fp16", "bf16", "fp8"};
const std::vector<std::string> kSupportedTypes = {"NO", "MULTI_CPU",
                                                  "MULTI_GPU", "FSDP"};
// Accelerate's other distributed types, which this launcher cannot run.
const std::vector<std::string> kAccelerateOnlyTypes = {
    "DEEPSPEED", "MEGATRON_LM", "XLA",        "TPU",        "MPS",
    "MULTI_NPU", "MULTI_MLU",   "MULTI_SDAA", "MULTI_MUSA", "MULTI_XPU",
    "MULTI_HPU", "MULTI_NEURON", "TP"};
const std::vector<std::string> kShardingStrategies = {
    "FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD",
    "HYBRID_SHARD_ZERO2"};
const std::vector<std::string> kAutoWrapPolicies = {
    "TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP"};
const std::vector<std::string> kBackwardPrefetch = {
    "BACKWARD_PRE", "BACKWARD_POST", "NO_PREFETCH"};
const std::vector<std::string> kStateDictTypes = {
    "FULL_STATE_DICT", "LOCAL_STATE_DICT", "SHARDED_STATE_DICT"};

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

absl::Status NotOneOf(absl::string_view what, absl::string_view value,
                      const std::vector<std::string>& valid) {
  return absl::InvalidArgumentError(absl::StrCat(
      what, ": \"", value, "\" is not one of ", absl::StrJoin(valid, ", ")));
}

absl::StatusOr<int> FlagInt(const ParsedFlags& flags, const char* name,
                            int min_value) {
  const std::string text = *flags.Get(name);
  int value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": \"", text, "\" is not an integer"));
  }
  if (value < min_value) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", name, ": ", value, " is below the minimum ", min_value));
  }
  return value;
}

std::string Lower(bool value) { return value ? "true" : "false"; }

bool DefaultPortIsFree(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool free =
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return free;
}

int DefaultPickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 29500;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  socklen_t length = sizeof(addr);
  int port = 29500;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

int CountNvidiaGpus() {
  DIR* dir = ::opendir("/proc/driver/nvidia/gpus");
  if (dir == nullptr) return 0;
  int count = 0;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count;
}

int CountPhysicalCores() {
  // Distinct (physical id, core id) pairs of /proc/cpuinfo; the logical CPU
  // count when those fields are missing.
  std::ifstream in("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, physical = "0";
  while (std::getline(in, line)) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 1));
    if (parts.size() != 2) continue;
    const std::string key(absl::StripAsciiWhitespace(parts[0]));
    const std::string value(absl::StripAsciiWhitespace(parts[1]));
    if (key == "physical id") physical = value;
    if (key == "core id") cores.insert({physical, value});
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  const long logical = ::sysconf(_SC_NPROCESSORS_ONLN);
  return logical > 0 ? static_cast<int>(logical) : 1;
}

// FSDP settings: flags, then the config's fsdp_config, then Accelerate's
// defaults; into the FSDP_* variables Accelerate's launcher sets.
absl::Status ResolveFsdp(const ParsedFlags& flags, const FsdpConfig& config,
                         std::map<std::string, std::string>* env) {
  const auto pick = [&](const char* name,
                        std::optional<std::string> from_config,
                        std::optional<std::string> fallback)
      -> std::optional<std::string> {
    if (std::optional<std::string> value = flags.Get(name)) return value;
    if (from_config.has_value()) return from_config;
    return fallback;
  };
  const auto opt_str = [](bool has, const std::string& value) {
    return has ? std::optional<std::string>(value) : std::nullopt;
  };
  const auto opt_bool = [](bool has, bool value) {
    return has ? std::optional<std::string>(Lower(value)) : std::nullopt;
  };

  std::string version = *pick(
      "fsdp_version",
      config.has_fsdp_version()
          ? std::optional<std::string>(absl::StrCat(config.fsdp_version()))
          : std::nullopt,
      "1");
  if (version != "1" && version != "2") {
    return NotOneOf("fsdp_version", version, {"1", "2"});
  }
  std::string strategy = *pick(
      "fsdp_sharding_strategy",
      opt_str(config.has_fsdp_sharding_strategy(),
              config.fsdp_sharding_strategy()),
      "FULL_SHARD");
  // Accelerate <= 0.25 wrote the strategy as a number from 1.
  int number = 0;
  if (absl::SimpleAtoi(strategy, &number) && number >= 1 &&
      number <= static_cast<int>(kShardingStrategies.size())) {
    strategy = kShardingStrategies[number - 1];
  }
  if (!Contains(kShardingStrategies, strategy)) {
    return NotOneOf("fsdp_sharding_strategy", strategy, kShardingStrategies);
  }
  (*env)["ACCELERATE_USE_FSDP"] = "true";
  (*env)["FSDP_VERSION"] = version;
  (*env)["FSDP_SHARDING_STRATEGY"] = strategy;

  struct BoolSetting {
    const char* flag;
    const char* variable;
    bool has;
    bool value;
    const char* fallback;
  };
  const BoolSetting bools[] = {
      {"fsdp_offload_params", "FSDP_OFFLOAD_PARAMS",
       config.has_fsdp_offload_params(), config.fsdp_offload_params(),
       "false"},
      {"fsdp_forward_prefetch", "FSDP_FORWARD_PREFETCH",
       config.has_fsdp_forward_prefetch(), config.fsdp_forward_prefetch(),
       "false"},
      {"fsdp_use_orig_params", "FSDP_USE_ORIG_PARAMS",
       config.has_fsdp_use_orig_params(), config.fsdp_use_orig_params(),
       "true"},
      {"fsdp_cpu_ram_efficient_loading", "FSDP_CPU_RAM_EFFICIENT_LOADING",
       config.has_fsdp_cpu_ram_efficient_loading(),
       config.fsdp_cpu_ram_efficient_loading(), "true"},
      {"fsdp_sync_module_states", "FSDP_SYNC_MODULE_STATES",
       config.has_fsdp_sync_module_states(), config.fsdp_sync_module_states(),
       "true"},
      {"fsdp_activation_checkpointing", "FSDP_ACTIVATION_CHECKPOINTING",
       config.has_fsdp_activation_checkpointing(),
       config.fsdp_activation_checkpointing(), "false"},
  };
  for (const BoolSetting& setting : bools) {
    std::string value =
        *pick(setting.flag, opt_bool(setting.has, setting.value),
              setting.fallback);
    ACCELERATE_ASSIGN_OR_RETURN(
        bool parsed,
        state::ParseBoolFlag(absl::StrCat("fsdp: ", setting.flag), value));
    (*env)[setting.variable] = Lower(parsed);
  }
  if ((*env)["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true" &&
      (*env)["FSDP_SYNC_MODULE_STATES"] == "false") {
    return absl::InvalidArgumentError(
        "fsdp: fsdp_cpu_ram_efficient_loading needs fsdp_sync_module_states "
        "true");
  }
  (*env)["FSDP_RESHARD_AFTER_FORWARD"] = absl::AsciiStrToLower(*pick(
      "fsdp_reshard_after_forward",
      opt_str(config.has_fsdp_reshard_after_forward(),
              config.fsdp_reshard_after_forward()),
      "true"));
  const std::string min_params = *pick(
      "fsdp_min_num_params",
      config.has_fsdp_min_num_params()
          ? std::optional<std::string>(absl::StrCat(config.fsdp_min_num_params()))
          : std::nullopt,
      "100000000");
  int64_t min_params_value = 0;
  if (!absl::SimpleAtoi(min_params, &min_params_value) ||
      min_params_value < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fsdp_min_num_params: \"", min_params,
        "\" is not a non-negative integer"));
  }
  (*env)["FSDP_MIN_NUM_PARAMS"] = absl::StrCat(min_params_value);

  struct ChoiceSetting {
    const char* flag;
    const char* variable;
    std::optional<std::string> from_config;
    const std::vector<std::string>* choices;
  };
  const ChoiceSetting choices[] = {
      {"fsdp_auto_wrap_policy", "FSDP_AUTO_WRAP_POLICY",
       opt_str(config.has_fsdp_auto_wrap_policy(),
               config.fsdp_auto_wrap_policy()),
       &kAutoWrapPolicies},
      {"fsdp_backward_prefetch", "FSDP_BACKWARD_PREFETCH",
       config.has_fsdp_backward_prefetch()
           ? opt_str(true, config.fsdp_backward_prefetch())
           : opt_str(config.has_fsdp_backward_prefetch_policy(),
                     config.fsdp_backward_prefetch_policy()),
       &kBackwardPrefetch},
      {"fsdp_state_dict_type", "FSDP_STATE_DICT_TYPE",
       opt_str(config.has_fsdp_state_dict_type(),
               config.fsdp_state_dict_type()),
       &kStateDictTypes},
      {"fsdp_transformer_layer_cls_to_wrap", "FSDP_TRANSFORMER_CLS_TO_WRAP",
       opt_str(config.has_fsdp_transformer_layer_cls_to_wrap(),
               config.fsdp_transformer_layer_cls_to_wrap()),
       nullptr},
  };
  for (const ChoiceSetting& setting : choices) {
    std::optional<std::string> value =
        pick(setting.flag, setting.from_config, std::nullopt);
    if (!value.has_value()) continue;
    if (setting.choices != nullptr && !Contains(*setting.choices, *value)) {
      return NotOneOf(setting.flag, *value, *setting.choices);
    }
    (*env)[setting.variable] = *value;
  }
  if (config.has_fsdp_ignored_modules()) {
    (*env)["FSDP_IGNORED_MODULES"] = config.fsdp_ignored_modules();
  }
  return absl::OkStatus();
}

void AddFp8Environment(const Fp8Config& fp8,
                       std::map<std::string, std::string>* env) {
  if (fp8.has_backend()) {
    (*env)["ACCELERATE_FP8_BACKEND"] = absl::AsciiStrToUpper(fp8.backend());
  }
  if (fp8.has_fp8_format()) (*env)["ACCELERATE_FP8_FORMAT"] = fp8.fp8_format();
  if (fp8.has_margin()) (*env)["ACCELERATE_FP8_MARGIN"] = absl::StrCat(fp8.margin());
  if (fp8.has_interval()) {
    (*env)["ACCELERATE_FP8_INTERVAL"] = absl::StrCat(fp8.interval());
  }
  if (fp8.has_amax_history_length()) {
    (*env)["ACCELERATE_FP8_AMAX_HISTORY_LEN"] =
        absl::StrCat(fp8.amax_history_length());
  }
  if (fp8.has_amax_compute_algorithm()) {
    (*env)["ACCELERATE_FP8_AMAX_COMPUTE_ALGO"] = fp8.amax_compute_algorithm();
  }
  if (fp8.has_use_autocast_during_eval()) {
    (*env)["ACCELERATE_FP8_USE_AUTOCAST_DURING_EVAL"] =
        fp8.use_autocast_during_eval() ? "True" : "False";
  }
  if (fp8.has_optimization_level()) {
    (*env)["ACCELERATE_FP8_OPT_LEVEL"] = fp8.optimization_level();
  }
  if (fp8.has_pad_inner_dim()) {
    (*env)["ACCELERATE_FP8_PAD_INNER_DIM"] = fp8.pad_inner_dim() ? "True" : "False";
  }
  if (fp8.has_enable_fsdp_float8_all_gather()) {
    (*env)["ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER"] =
        fp8.enable_fsdp_float8_all_gather() ? "True" : "False";
  }
}

}  // namespace

LaunchHost LocalHost() {
  LaunchHost host;
  host.gpu_count = CountNvidiaGpus();
  // As torch.cuda.device_count(): only the GPUs CUDA_VISIBLE_DEVICES lets
  // through (an empty value hides them all).
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES")) {
    const std::string text(absl::StripAsciiWhitespace(visible));
    const int listed =
        text.empty() ? 0
                     : static_cast<int>(std::count(text.begin(), text.end(), ',')) + 1;
    host.gpu_count = std::min(host.gpu_count, listed);
  }
  host.cpu_cores = CountPhysicalCores();
  host.port_is_free = DefaultPortIsFree;
  host.pick_free_port = DefaultPickFreePort;
  return host;
}

FlagParser LaunchFlagParser() {
  FlagParser parser(
      "accelerate launch",
      "Starts PROGRAM as a distributed job on this machine (or as this "
      "machine's share of a multi-machine job): one process per rank, each "
      "with torchrun's and Accelerate's environment variables. PROGRAM is an "
      "executable, or a Python script (*.py, or a module with -m) run with "
      "python3 ($ACCELERATE_PYTHON overrides the interpreter). Values come "
      "from the flags, then the config file, then defaults.");
  parser.AddValue("config_file", "PATH",
                  "Config file to read (default: "
                  "$HF_HOME/accelerate/default_config.yaml, when it exists "
                  "and --cpu is not given).");
  parser.AddSwitch("quiet",
                   "Do not prefix the ranks' output lines with [rankN]:.", "q");
  parser.AddSwitch("module", "Run PROGRAM as a Python module (python3 -m).",
                   "m");
  parser.AddSwitch("no_python",
                   "Run PROGRAM directly even if it ends in .py.");
  parser.AddSwitch("debug",
                   "Check collectives across ranks (ACCELERATE_DEBUG_MODE) "
                   "and print the resolved launch before starting.");
  parser.AddSwitch("dry_run",
                   "Print the resolved configuration and each rank's command "
                   "line and environment, and start nothing.");
  parser.Group("Hardware selection");
  parser.AddSwitch("cpu", "Run on CPU only, even when GPUs are present.");
  parser.AddSwitch("multi_gpu", "One process per GPU (NCCL).");
  parser.Group("Resource selection");
  parser.AddValue("mixed_precision", "MODE", "Mixed precision mode.",
                  kMixedPrecision);
  parser.AddValue("num_processes", "N",
                  "Processes in total, over all machines.");
  parser.AddValue("num_machines", "N", "Machines taking part.");
  parser.AddValue("num_cpu_threads_per_process", "N",
                  "OMP_NUM_THREADS of each process.");
  parser.AddValue("gradient_accumulation_steps", "N",
                  "Steps to accumulate gradients over "
                  "(ACCELERATE_GRADIENT_ACCUMULATION_STEPS).");
  parser.Group("Distributed processes");
  parser.AddValue("gpu_ids", "IDS",
                  "GPUs to use on this machine, e.g. 0,1 (default all).");
  parser.AddSwitch("same_network", "All machines share a local network.");
  parser.AddValue("machine_rank", "R", "Rank of this machine (0-based).");
  parser.AddValue("main_process_ip", "ADDR",
                  "Address of machine 0 (required with several machines).");
  parser.AddValue("main_process_port", "PORT",
                  "Port of the rendezvous on machine 0 (default 29500, or a "
                  "free port when 29500 is busy on a single machine).");
  parser.AddValue("tee", "0-3",
                  "With --log_dir, which streams also go to per-rank log "
                  "files: 0 none, 1 stdout, 2 stderr, 3 both.",
                  {"0", "1", "2", "3"}, "t");
  parser.AddValue("log_dir", "DIR",
                  "Folder for per-rank logs (DIR/attempt_K/rank_N/"
                  "{stdout,stderr}.log).");
  parser.AddValue("role", "NAME", "Role name of the workers (ROLE_NAME).");
  parser.AddValue("rdzv_backend", "NAME",
                  "Rendezvous backend; this launcher runs static rendezvous "
                  "only.",
                  {"static"});
  parser.AddValue("rdzv_conf", "K=V,...",
                  "Extra rendezvous settings (accepted for compatibility).");
  parser.AddValue("max_restarts", "N",
                  "Restart the whole group up to N times when a rank fails.");
  parser.AddValue("monitor_interval", "SECONDS",
                  "How often to check on the ranks (they are also noticed "
                  "the moment they exit).");
  parser.Group("FSDP");
  parser.AddSwitch("use_fsdp", "Fully sharded data parallel.");
  parser.AddValue("fsdp_version", "V", "FSDP version.", {"1", "2"});
  parser.AddValue("fsdp_offload_params", "BOOL",
                  "Offload parameters and gradients to CPU.");
  parser.AddValue("fsdp_min_num_params", "N",
                  "Minimum parameters for size-based auto wrapping.");
  parser.AddValue("fsdp_sharding_strategy", "NAME", "Sharding strategy.",
                  kShardingStrategies);
  parser.AddValue("fsdp_reshard_after_forward", "VALUE",
                  "Reshard after forward (FSDP2: true/false).");
  parser.AddValue("fsdp_auto_wrap_policy", "NAME", "Auto wrap policy.",
                  kAutoWrapPolicies);
  parser.AddValue("fsdp_transformer_layer_cls_to_wrap", "NAMES",
                  "Comma-separated module class names to wrap.");
  parser.AddValue("fsdp_backward_prefetch", "NAME", "Backward prefetch.",
                  kBackwardPrefetch);
  parser.AddValue("fsdp_state_dict_type", "NAME", "State dict type.",
                  kStateDictTypes);
  parser.AddValue("fsdp_forward_prefetch", "BOOL", "Forward prefetch.");
  parser.AddValue("fsdp_use_orig_params", "BOOL",
                  "Use the original parameters.");
  parser.AddValue("fsdp_cpu_ram_efficient_loading", "BOOL",
                  "Load the checkpoint on rank 0 only.");
  parser.AddValue("fsdp_sync_module_states", "BOOL",
                  "Broadcast module states from rank 0.");
  parser.AddValue("fsdp_activation_checkpointing", "BOOL",
                  "Activation checkpointing.");
  return parser;
}

absl::StatusOr<LaunchPlan> ResolveLaunch(const ParsedFlags& flags,
                                         const state::Environment& env,
                                         const LaunchHost& host) {
  LaunchPlan plan;
  if (flags.positional.empty() && !flags.Switch("dry_run")) {
    return absl::InvalidArgumentError(
        "accelerate launch: no program given; usage: accelerate launch "
        "[flags] PROGRAM [ARGS...]");
  }
  int exclusive = 0;
  for (const char* name : {"cpu", "multi_gpu", "use_fsdp"}) {
    exclusive += flags.Switch(name) ? 1 : 0;
  }
  if (exclusive > 1) {
    return absl::InvalidArgumentError(
        "You can only use one of `--cpu`, `--multi_gpu`, `--use_fsdp` at a "
        "time.");
  }

  // The config file: --config_file, or the default one unless --cpu.
  LaunchConfig config;
  const bool explicit_config = flags.Has("config_file");
  const std::string default_path = DefaultConfigPath(env);
  if (explicit_config ||
      (!flags.Switch("cpu") && ::access(default_path.c_str(), R_OK) == 0)) {
    plan.config_file = explicit_config ? *flags.Get("config_file")
                                       : default_path;
    ACCELERATE_ASSIGN_OR_RETURN(LoadedConfig loaded,
                                LoadConfigFile(plan.config_file));
    config = loaded.config;
    plan.unsupported_keys = loaded.unsupported_keys;
    plan.unknown_section_keys = loaded.unknown_section_keys;
  }
  const bool have_config = !plan.config_file.empty();
  if (config.has_compute_environment() &&
      config.compute_environment() != "LOCAL_MACHINE") {
    return absl::InvalidArgumentError(absl::StrCat(
        plan.config_file, ": compute_environment \"",
        config.compute_environment(),
        "\" is not supported; only LOCAL_MACHINE is"));
  }
  if (config.has_distributed_type()) {
    const std::string& type = config.distributed_type();
    if (Contains(kAccelerateOnlyTypes, type)) {
      return absl::InvalidArgumentError(absl::StrCat(
          plan.config_file, ": distributed_type \"", type,
          "\" is not supported by accelerate-cpp (supported: ",
          absl::StrJoin(kSupportedTypes, ", "), ")"));
    }
    if (!Contains(kSupportedTypes, type)) {
      return NotOneOf(absl::StrCat(plan.config_file, ": distributed_type"),
                      type, kSupportedTypes);
    }
    plan.distributed_type = type;
  }

  // Number of processes and machines.
  if (flags.Has("num_processes")) {
    ACCELERATE_ASSIGN_OR_RETURN(plan.num_processes,
                                FlagInt(flags, "num_processes", 1));
  } else if (have_config && config.has_num_processes() &&
             config.num_processes() != -1) {
    plan.num_processes = config.num_processes();
    if (plan.num_processes < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          plan.config_file, ": num_processes ", plan.num_processes,
          " is not a positive count"));
    }
  } else if (have_config && plan.distributed_type == "NO") {
    plan.num_processes = 1;  // As Accelerate's config loader.
  } else if (have_config) {
    return absl::InvalidArgumentError(absl::StrCat(
        plan.config_file,
        " has no num_processes for distributed_type ", plan.distributed_type,
        "; pass --num_processes"));
  } else {
    plan.num_processes =
        flags.Switch("cpu") || host.gpu_count == 0 ? 1 : host.gpu_count;
    if (!have_config) {
      plan.defaults_used.push_back(absl::StrCat(
          "\t`--num_processes` was set to a value of `", plan.num_processes,
          "`"));
    }
  }
  if (flags.Has("num_machines")) {
    ACCELERATE_ASSIGN_OR_RETURN(plan.num_machines,
                                FlagInt(flags, "num_machines", 1));
  } else if (config.has_num_machines()) {
    plan.num_machines = config.num_machines();
  } else if (!have_config) {
    plan.defaults_used.push_back("\t`--num_machines` was set to a value of `1`");
  }
  if (plan.num_machines < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_machines ", plan.num_machines, " is not a positive count"));
  }
  if (flags.Has("machine_rank")) {
    ACCELERATE_ASSIGN_OR_RETURN(plan.machine_rank,
                                FlagInt(flags, "machine_rank", 0));
  } else if (config.has_machine_rank()) {
    plan.machine_rank = config.machine_rank();
  }
  if (plan.machine_rank < 0 || plan.machine_rank >= plan.num_machines) {
    return absl::InvalidArgumentError(absl::StrCat(
        "machine_rank ", plan.machine_rank, " is outside [0, num_machines=",
        plan.num_machines, ")"));
  }
  if (plan.num_processes % plan.num_machines != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_processes ", plan.num_processes,
        " is not divisible by num_machines ", plan.num_machines,
        "; each machine runs num_processes / num_machines processes"));
  }
  plan.nproc_per_node = plan.num_processes / plan.num_machines;

  // Hardware.
  plan.use_cpu = flags.Switch("cpu") || (config.has_use_cpu() && config.use_cpu());
  // The config's distributed_type chooses the mode only when no mode flag
  // does, as in Accelerate.
  const bool mode_flag = exclusive > 0;
  const bool multi_gpu =
      flags.Switch("multi_gpu") ||
      (!mode_flag && plan.distributed_type == "MULTI_GPU");
  plan.use_fsdp = flags.Switch("use_fsdp") ||
                  (!mode_flag && plan.distributed_type == "FSDP");
  if (multi_gpu && plan.num_processes < 2) {
    return absl::InvalidArgumentError(
        "You need to use at least 2 processes to use `--multi_gpu`.");
  }
  if (multi_gpu && host.gpu_count == 0) {
    return absl::FailedPreconditionError(
        "--multi_gpu (or distributed_type MULTI_GPU) needs GPUs, and this "
        "machine has none; use --cpu");
  }
  if (flags.Switch("cpu")) {
    plan.distributed_type = plan.num_processes > 1 ? "MULTI_CPU" : "NO";
  } else if (multi_gpu) {
    plan.distributed_type = "MULTI_GPU";
  } else if (plan.use_fsdp) {
    plan.distributed_type = "FSDP";
  } else if (!config.has_distributed_type()) {
    plan.distributed_type =
        plan.num_processes == 1
            ? "NO"
            : (host.gpu_count > 0 && !plan.use_cpu ? "MULTI_GPU"
                                                   : "MULTI_CPU");
  }
  if (host.gpu_count == 0) plan.use_cpu = true;
  if (std::optional<std::string> ids = flags.Get("gpu_ids")) {
    plan.gpu_ids = *ids;
  } else if (config.has_gpu_ids()) {
    plan.gpu_ids = config.gpu_ids();
  }

  // Mixed precision (Accelerate <= 0.5 wrote `fp16: true`).
  if (std::optional<std::string> mp = flags.Get("mixed_precision")) {
    plan.mixed_precision = *mp;
  } else if (config.has_mixed_precision()) {
    plan.mixed_precision = config.mixed_precision();
  } else if (config.has_fp16()) {
    plan.mixed_precision = config.fp16() ? "fp16" : "no";
  } else if (!have_config) {
    plan.defaults_used.push_back(
        "\t`--mixed_precision` was set to a value of `'no'`");
  }
  plan.mixed_precision = absl::AsciiStrToLower(plan.mixed_precision);
  // PyYAML reads an unquoted `no` as false; so does yaml-cpp's text "false".
  if (plan.mixed_precision == "false") plan.mixed_precision = "no";
  if (!Contains(kMixedPrecision, plan.mixed_precision)) {
    return NotOneOf("mixed_precision", plan.mixed_precision, kMixedPrecision);
  }
  plan.debug = flags.Switch("debug") || (config.has_debug() && config.debug());
  plan.quiet = flags.Switch("quiet");
  plan.dry_run = flags.Switch("dry_run");

  // Rendezvous address.
  if (std::optional<std::string> ip = flags.Get("main_process_ip")) {
    plan.master_addr = *ip;
  } else if (config.has_main_process_ip() && plan.num_machines > 1) {
    // On one machine the ranks meet on 127.0.0.1, as Accelerate's launchers
    // do, whatever address a multi-machine config left behind.
    plan.master_addr = config.main_process_ip();
  } else if (plan.num_machines > 1) {
    return absl::InvalidArgumentError(
        "--main_process_ip is required with several machines: the address "
        "of machine 0");
  }
  bool port_given = true;
  if (flags.Has("main_process_port")) {
    ACCELERATE_ASSIGN_OR_RETURN(plan.master_port,
                                FlagInt(flags, "main_process_port", 0));
  } else if (config.has_main_process_port()) {
    plan.master_port = config.main_process_port();
  } else {
    port_given = false;
  }
  if (plan.master_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "main_process_port ", plan.master_port, " is not a port (1 to 65535)"));
  }
  if (plan.num_machines == 1 &&
      (plan.master_port == 0 ||
       (!port_given && host.port_is_free && !host.port_is_free(plan.master_port)))) {
    // Accelerate's 0 means "any free port"; the default port is replaced
    // by a free one when something else holds it.
    plan.master_port = host.pick_free_port ? host.pick_free_port() : 29500;
    plan.port_picked = true;
  }
  if (plan.master_port == 0) {
    return absl::InvalidArgumentError(
        "main_process_port 0 (any free port) works on one machine only");
  }

  // Threads per process.
  if (flags.Has("num_cpu_threads_per_process")) {
    ACCELERATE_ASSIGN_OR_RETURN(
        plan.num_cpu_threads_per_process,
        FlagInt(flags, "num_cpu_threads_per_process", 1));
  } else if (std::optional<std::string> omp = env.Get("OMP_NUM_THREADS");
             omp.has_value() && absl::SimpleAtoi(*omp, &plan.num_cpu_threads_per_process) &&
             plan.num_cpu_threads_per_process >= 1) {
  } else {
    plan.num_cpu_threads_per_process = 1;
    if (plan.use_cpu) {
      const int threads = host.cpu_cores / std::max(plan.nproc_per_node, 1);
      if (threads > 1) {
        plan.num_cpu_threads_per_process = threads;
        plan.defaults_used.push_back(absl::StrCat(
            "\t`--num_cpu_threads_per_process` was set to `", threads,
            "` to improve out-of-box performance when training on CPUs"));
      }
    }
  }

  // Supervision.
  if (flags.Has("max_restarts")) {
    ACCELERATE_ASSIGN_OR_RETURN(plan.max_restarts,
                                FlagInt(flags, "max_restarts", 0));
  }
  if (std::optional<std::string> interval = flags.Get("monitor_interval")) {
    double seconds = 0;
    if (!absl::SimpleAtod(*interval, &seconds) || seconds <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--monitor_interval: \"", *interval,
          "\" is not a positive number of seconds"));
    }
    plan.monitor_interval = absl::Seconds(seconds);
  }
  if (std::optional<std::string> role = flags.Get("role")) plan.role = *role;
  if (std::optional<std::string> dir = flags.Get("log_dir")) plan.log_dir = *dir;
  if (std::optional<std::string> tee = flags.Get("tee")) {
    plan.tee = (*tee)[0] - '0';
  }
  if (plan.tee != 0 && plan.log_dir.empty()) {
    return absl::InvalidArgumentError(
        "--tee copies output into per-rank log files: give --log_dir too");
  }
  if (config.has_rdzv_backend() && config.rdzv_backend() != "static") {
    return absl::InvalidArgumentError(absl::StrCat(
        plan.config_file, ": rdzv_backend \"", config.rdzv_backend(),
        "\" is not supported; this launcher runs static rendezvous"));
  }

  // The command line.
  if (!flags.positional.empty()) {
    const std::string& program = flags.positional[0];
    const bool module = flags.Switch("module");
    if (module && flags.Switch("no_python")) {
      return absl::InvalidArgumentError(
          "--module and --no_python cannot be used together");
    }
    const bool python = module || (!flags.Switch("no_python") &&
                                   absl::EndsWith(program, ".py"));
    if (python) {
      plan.command.push_back(env.Get("ACCELERATE_PYTHON").value_or("python3"));
      if (module) plan.command.push_back("-m");
    }
    plan.command.insert(plan.command.end(), flags.positional.begin(),
                        flags.positional.end());
  }

  // What every rank sees besides torchrun's variables.
  auto& e = plan.common_env;
  e["ACCELERATE_MIXED_PRECISION"] = plan.mixed_precision;
  e["ACCELERATE_USE_CPU"] = plan.use_cpu ? "True" : "False";
  if (plan.debug) e["ACCELERATE_DEBUG_MODE"] = "true";
  e["ACCELERATE_DYNAMO_BACKEND"] = "NO";
  e["ACCELERATE_DYNAMO_MODE"] = "default";
  e["ACCELERATE_DYNAMO_USE_FULLGRAPH"] = "False";
  e["ACCELERATE_DYNAMO_USE_DYNAMIC"] = "False";
  e["OMP_NUM_THREADS"] = absl::StrCat(plan.num_cpu_threads_per_process);
  if (plan.gpu_ids != "all" && !plan.use_cpu) {
    e["CUDA_VISIBLE_DEVICES"] = plan.gpu_ids;
  }
  if (config.has_enable_cpu_affinity() && config.enable_cpu_affinity()) {
    e["ACCELERATE_CPU_AFFINITY"] = "1";
  }
  if (flags.Has("gradient_accumulation_steps")) {
    ACCELERATE_ASSIGN_OR_RETURN(int steps,
                                FlagInt(flags, "gradient_accumulation_steps", 1));
    e["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] = absl::StrCat(steps);
  }
  if (plan.use_fsdp) {
    ACCELERATE_RETURN_IF_ERROR(ResolveFsdp(flags, config.fsdp_config(), &e));
  }
  if (plan.mixed_precision == "fp8") AddFp8Environment(config.fp8_config(), &e);
  return plan;
}

std::map<std::string, std::string> RankEnvironment(const LaunchPlan& plan,
                                                   int local_rank,
                                                   int restart_count) {
  std::map<std::string, std::string> env = plan.common_env;
  const int rank = plan.machine_rank * plan.nproc_per_node + local_rank;
  env["RANK"] = absl::StrCat(rank);
  env["LOCAL_RANK"] = absl::StrCat(local_rank);
  env["WORLD_SIZE"] = absl::StrCat(plan.num_processes);
  env["LOCAL_WORLD_SIZE"] = absl::StrCat(plan.nproc_per_node);
  env["GROUP_RANK"] = absl::StrCat(plan.machine_rank);
  env["GROUP_WORLD_SIZE"] = absl::StrCat(plan.num_machines);
  env["ROLE_RANK"] = absl::StrCat(rank);
  env["ROLE_WORLD_SIZE"] = absl::StrCat(plan.num_processes);
  env["ROLE_NAME"] = plan.role;
  env["MASTER_ADDR"] = plan.master_addr;
  env["MASTER_PORT"] = absl::StrCat(plan.master_port);
  env["TORCHELASTIC_RESTART_COUNT"] = absl::StrCat(restart_count);
  env["TORCHELASTIC_MAX_RESTARTS"] = absl::StrCat(plan.max_restarts);
  env["TORCHELASTIC_RUN_ID"] = "none";
  // No agent store: rank 0 serves the rendezvous (ours and torch's env://).
  env["TORCHELASTIC_USE_AGENT_STORE"] = "False";
  // As torchrun 1.13: NCCL errors end the collective instead of hanging.
  env["NCCL_ASYNC_ERROR_HANDLING"] = "1";
  return env;
}

std::string DescribePlan(const LaunchPlan& plan) {
  std::string out = "accelerate launch: resolved configuration\n";
  const auto line = [&](absl::string_view key, const auto& value) {
    absl::StrAppend(&out, "  ", key, ": ", value, "\n");
  };
  line("config_file", plan.config_file.empty() ? "(none)" : plan.config_file);
  line("distributed_type", plan.distributed_type);
  line("num_processes", plan.num_processes);
  line("num_machines", plan.num_machines);
  line("machine_rank", plan.machine_rank);
  line("processes_on_this_machine", plan.nproc_per_node);
  line("main_process", absl::StrCat(plan.master_addr, ":", plan.master_port,
                                    plan.port_picked ? " (picked: 29500 busy)"
                                                     : ""));
  line("mixed_precision", plan.mixed_precision);
  line("use_cpu", plan.use_cpu ? "true" : "false");
  line("debug", plan.debug ? "true" : "false");
  line("max_restarts", plan.max_restarts);
  if (!plan.log_dir.empty()) line("log_dir", plan.log_dir);
  for (int local = 0; local < plan.nproc_per_node; ++local) {
    const auto env = RankEnvironment(plan, local, 0);
    absl::StrAppend(&out, "rank ", env.at("RANK"), ": ",
                    absl::StrJoin(plan.command, " "), "\n");
    for (const auto& [name, value] : env) {
      absl::StrAppend(&out, "    ", name, "=", value, "\n");
    }
  }
  return out;
}

std::string DefaultsWarning(const LaunchPlan& plan) {
  if (plan.defaults_used.empty()) return "";
  return absl::StrCat(
      "The following values were not passed to `accelerate launch` and had "
      "defaults used instead:\n",
      absl::StrJoin(plan.defaults_used, "\n"),
      "\nTo avoid this warning pass in values for each of the problematic "
      "parameters or run `accelerate config`.\n");
}

}  // namespace accelerate::launch
