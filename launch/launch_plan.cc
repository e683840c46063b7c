#include "launch/launch_plan.h"

#include <unistd.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "launch/config.h"
#include "launch/config.pb.h"
#include "launch/feature_env.h"
#include "launch/launch_flags.h"
#include "launch/paths.h"
#include "precision/mixed_precision.h"
#include "state/status_macros.h"

namespace accelerate::launch {
namespace {

// The distributed types this launcher runs.
const std::vector<std::string>& SupportedTypes() {
  static const auto* const kTypes = new std::vector<std::string>{
      "NO", "MULTI_CPU", "MULTI_GPU", "FSDP", "DEEPSPEED"};
  return *kTypes;
}

// Accelerate's other distributed types, which this launcher cannot run.
const std::vector<std::string>& AccelerateOnlyTypes() {
  static const auto* const kTypes = new std::vector<std::string>{
      "MEGATRON_LM", "XLA",       "TPU",          "MPS",
      "MULTI_NPU",   "MULTI_MLU", "MULTI_SDAA",   "MULTI_MUSA",
      "MULTI_XPU",   "MULTI_HPU", "MULTI_NEURON", "TP"};
  return *kTypes;
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

// What the resolution steps read: the flags, the environment, the machine,
// and the config file once it is read.
struct LaunchInputs {
  const ParsedFlags& flags;
  const state::Environment& env;
  const LaunchHost& host;
  // Empty when no config file was read.
  LaunchConfig config;
  bool have_config = false;
  // The config's deepspeed_config keys as written.
  std::vector<std::string> deepspeed_config_keys;
};

// The mode flags, of which one at most is given (Accelerate's also has
// --tpu).
constexpr const char* kModeFlags[] = {"cpu", "multi_gpu", "use_deepspeed",
                                      "use_fsdp"};

// Step 1: a program is given (unless --dry_run) and at most one of the mode
// flags --cpu, --multi_gpu, --use_deepspeed, --use_fsdp.
absl::Status CheckInvocation(const ParsedFlags& flags) {
  if (flags.positional.empty() && !flags.Switch("dry_run")) {
    return absl::InvalidArgumentError(
        "accelerate launch: no program given; usage: accelerate launch "
        "[flags] PROGRAM [ARGS...]");
  }
  int mode_flags = 0;
  for (const char* name : kModeFlags) {
    mode_flags += flags.Switch(name) ? 1 : 0;
  }
  if (mode_flags > 1) {
    return absl::InvalidArgumentError(
        "You can only use one of `--cpu`, `--multi_gpu`, `--use_deepspeed`, "
        "`--use_fsdp` at a time.");
  }
  return absl::OkStatus();
}

// Step 2: the config file (--config_file, or the default one unless --cpu),
// its environment and its distributed type.
absl::Status ReadConfig(LaunchInputs& in, LaunchPlan* plan) {
  const ParsedFlags& flags = in.flags;
  const bool explicit_config = flags.Has("config_file");
  const std::string default_path = DefaultConfigPath(in.env);
  if (explicit_config ||
      (!flags.Switch("cpu") && ::access(default_path.c_str(), R_OK) == 0)) {
    plan->config_file = explicit_config
                            ? ResolveUserPath(in.env, *flags.Get("config_file"))
                            : default_path;
    ACCELERATE_ASSIGN_OR_RETURN(LoadedConfig loaded,
                                LoadConfigFile(plan->config_file));
    in.config = std::move(loaded.config);
    in.have_config = true;
    plan->unsupported_keys = std::move(loaded.unsupported_keys);
    plan->unknown_section_keys = std::move(loaded.unknown_section_keys);
    in.deepspeed_config_keys = std::move(loaded.deepspeed_config_keys);
  }
  const LaunchConfig& config = in.config;
  if (config.has_compute_environment() &&
      config.compute_environment() != "LOCAL_MACHINE") {
    return absl::InvalidArgumentError(absl::StrCat(
        plan->config_file, ": compute_environment \"",
        config.compute_environment(),
        "\" is not supported; only LOCAL_MACHINE is"));
  }
  if (config.has_distributed_type()) {
    const std::string& type = config.distributed_type();
    if (IsOneOf(type, AccelerateOnlyTypes())) {
      return absl::InvalidArgumentError(absl::StrCat(
          plan->config_file, ": distributed_type \"", type,
          "\" is not supported by accelerate-cpp (supported: ",
          absl::StrJoin(SupportedTypes(), ", "), ")"));
    }
    if (!IsOneOf(type, SupportedTypes())) {
      return NotOneOfError(
          absl::StrCat(plan->config_file, ": distributed_type"), type,
          SupportedTypes());
    }
    plan->distributed_type = type;
  }
  return absl::OkStatus();
}

// Step 3: processes in total, machines, this machine's rank and share.
absl::Status ResolveProcessCounts(const LaunchInputs& in, LaunchPlan* plan) {
  const ParsedFlags& flags = in.flags;
  const LaunchConfig& config = in.config;
  if (flags.Has("num_processes")) {
    ACCELERATE_ASSIGN_OR_RETURN(plan->num_processes,
                                FlagInt(flags, "num_processes", 1));
  } else if (in.have_config && config.has_num_processes() &&
             config.num_processes() != -1) {
    plan->num_processes = config.num_processes();
    if (plan->num_processes < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          plan->config_file, ": num_processes ", plan->num_processes,
          " is not a positive count"));
    }
  } else if (in.have_config && plan->distributed_type == "NO") {
    plan->num_processes = 1;  // As Accelerate's config loader.
  } else if (in.have_config) {
    return absl::InvalidArgumentError(absl::StrCat(
        plan->config_file, " has no num_processes for distributed_type ",
        plan->distributed_type, "; pass --num_processes"));
  } else {
    plan->num_processes =
        flags.Switch("cpu") || in.host.gpu_count == 0 ? 1 : in.host.gpu_count;
    plan->defaults_used.push_back(absl::StrCat(
        "\t`--num_processes` was set to a value of `", plan->num_processes,
        "`"));
  }
  if (flags.Has("num_machines")) {
    ACCELERATE_ASSIGN_OR_RETURN(plan->num_machines,
                                FlagInt(flags, "num_machines", 1));
  } else if (config.has_num_machines()) {
    plan->num_machines = config.num_machines();
  } else if (!in.have_config) {
    plan->defaults_used.push_back(
        "\t`--num_machines` was set to a value of `1`");
  }
  if (plan->num_machines < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_machines ", plan->num_machines, " is not a positive count"));
  }
  if (flags.Has("machine_rank")) {
    ACCELERATE_ASSIGN_OR_RETURN(plan->machine_rank,
                                FlagInt(flags, "machine_rank", 0));
  } else if (config.has_machine_rank()) {
    plan->machine_rank = config.machine_rank();
  }
  if (plan->machine_rank < 0 || plan->machine_rank >= plan->num_machines) {
    return absl::InvalidArgumentError(absl::StrCat(
        "machine_rank ", plan->machine_rank, " is outside [0, num_machines=",
        plan->num_machines, ")"));
  }
  if (plan->num_processes % plan->num_machines != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_processes ", plan->num_processes,
        " is not divisible by num_machines ", plan->num_machines,
        "; each machine runs num_processes / num_machines processes"));
  }
  plan->nproc_per_node = plan->num_processes / plan->num_machines;
  return absl::OkStatus();
}

// Step 4: CPU or GPUs, the distributed type, and which GPUs. A plan that
// needs GPUs on a machine without them is an error, or with --dry_run a
// warning (the plan is then for a machine with GPUs).
absl::Status ResolveHardware(const LaunchInputs& in, LaunchPlan* plan) {
  const ParsedFlags& flags = in.flags;
  const LaunchConfig& config = in.config;
  plan->use_cpu =
      flags.Switch("cpu") || (config.has_use_cpu() && config.use_cpu());
  // The config's distributed_type chooses the mode only when no mode flag
  // does, as in Accelerate.
  bool mode_flag = false;
  for (const char* name : kModeFlags) mode_flag |= flags.Switch(name);
  const bool multi_gpu =
      flags.Switch("multi_gpu") ||
      (!mode_flag && plan->distributed_type == "MULTI_GPU");
  plan->use_fsdp = flags.Switch("use_fsdp") ||
                   (!mode_flag && plan->distributed_type == "FSDP");
  // DeepSpeed's processes start as FSDP's do: one per GPU (or per share of
  // the CPU), torchrun's variables, our supervisor; no `deepspeed` command.
  plan->use_deepspeed = flags.Switch("use_deepspeed") ||
                        (!mode_flag && plan->distributed_type == "DEEPSPEED");
  if (multi_gpu && plan->num_processes < 2) {
    return absl::InvalidArgumentError(
        "You need to use at least 2 processes to use `--multi_gpu`.");
  }
  const bool gpus_missing = multi_gpu && in.host.gpu_count == 0;
  if (gpus_missing) {
    constexpr char kNeedsGpus[] =
        "--multi_gpu (or distributed_type MULTI_GPU) needs GPUs, and this "
        "machine has none";
    if (!plan->dry_run) {
      return absl::FailedPreconditionError(
          absl::StrCat(kNeedsGpus, "; use --cpu"));
    }
    plan->warnings.push_back(absl::StrCat(
        kNeedsGpus, ": this is the plan for a machine with GPUs (launching "
        "it here would stop)"));
  }
  if (flags.Switch("cpu")) {
    plan->distributed_type = plan->num_processes > 1 ? "MULTI_CPU" : "NO";
  } else if (multi_gpu) {
    plan->distributed_type = "MULTI_GPU";
  } else if (plan->use_fsdp) {
    plan->distributed_type = "FSDP";
  } else if (plan->use_deepspeed) {
    plan->distributed_type = "DEEPSPEED";
  } else if (!config.has_distributed_type()) {
    plan->distributed_type =
        plan->num_processes == 1
            ? "NO"
            : (in.host.gpu_count > 0 && !plan->use_cpu ? "MULTI_GPU"
                                                       : "MULTI_CPU");
  }
  if (in.host.gpu_count == 0 && !gpus_missing) plan->use_cpu = true;
  if (std::optional<std::string> ids = flags.Get("gpu_ids")) {
    plan->gpu_ids = *ids;
  } else if (config.has_gpu_ids()) {
    plan->gpu_ids = config.gpu_ids();
  }
  return absl::OkStatus();
}

// Step 5: the mixed precision mode (Accelerate <= 0.5 wrote `fp16: true`).
absl::Status ResolveMixedPrecision(const LaunchInputs& in, LaunchPlan* plan) {
  const LaunchConfig& config = in.config;
  if (std::optional<std::string> mp = in.flags.Get("mixed_precision")) {
    plan->mixed_precision = *mp;
  } else if (config.has_mixed_precision()) {
    plan->mixed_precision = config.mixed_precision();
  } else if (config.has_fp16()) {
    plan->mixed_precision = config.fp16() ? "fp16" : "no";
  } else if (!in.have_config) {
    plan->defaults_used.push_back(
        "\t`--mixed_precision` was set to a value of `'no'`");
  }
  // Any case; PyYAML reads an unquoted `no` as false, and so does yaml-cpp's
  // text "false": both mean no.
  ACCELERATE_ASSIGN_OR_RETURN(
      const precision::MixedPrecision mixed_precision,
      precision::ParseMixedPrecision(plan->mixed_precision));
  plan->mixed_precision =
      std::string(precision::MixedPrecisionName(mixed_precision));
  return absl::OkStatus();
}

// Step 6: the rendezvous address and port (a free port when none was given
// and 29500 is busy, or when 0 asks for any).
absl::Status ResolveRendezvous(const LaunchInputs& in, LaunchPlan* plan) {
  const ParsedFlags& flags = in.flags;
  const LaunchConfig& config = in.config;
  if (std::optional<std::string> ip = flags.Get("main_process_ip")) {
    plan->master_addr = *ip;
  } else if (config.has_main_process_ip() && plan->num_machines > 1) {
    // On one machine the ranks meet on 127.0.0.1, as Accelerate's launchers
    // do, whatever address a multi-machine config left behind.
    plan->master_addr = config.main_process_ip();
  } else if (plan->num_machines > 1) {
    return absl::InvalidArgumentError(
        "--main_process_ip is required with several machines: the address "
        "of machine 0");
  }
  bool port_given = true;
  if (flags.Has("main_process_port")) {
    ACCELERATE_ASSIGN_OR_RETURN(plan->master_port,
                                FlagInt(flags, "main_process_port", 0));
  } else if (config.has_main_process_port()) {
    plan->master_port = config.main_process_port();
  } else {
    port_given = false;
  }
  if (plan->master_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("main_process_port ", plan->master_port,
                     " is not a port (1 to 65535)"));
  }
  const LaunchHost& host = in.host;
  if (plan->num_machines == 1 &&
      (plan->master_port == 0 || (!port_given && host.port_is_free &&
                                  !host.port_is_free(plan->master_port)))) {
    // Accelerate's 0 means "any free port"; the default port is replaced
    // by a free one when something else holds it.
    plan->master_port = host.pick_free_port ? host.pick_free_port() : 29500;
    plan->port_picked = true;
  }
  if (plan->master_port == 0) {
    return absl::InvalidArgumentError(
        "main_process_port 0 (any free port) works on one machine only");
  }
  return absl::OkStatus();
}

// Step 7: OMP threads per process: the flag, then OMP_NUM_THREADS, then
// Accelerate's CPU default (the cores shared among this machine's ranks).
absl::Status ResolveThreads(const LaunchInputs& in, LaunchPlan* plan) {
  if (in.flags.Has("num_cpu_threads_per_process")) {
    ACCELERATE_ASSIGN_OR_RETURN(
        plan->num_cpu_threads_per_process,
        FlagInt(in.flags, "num_cpu_threads_per_process", 1));
    return absl::OkStatus();
  }
  if (std::optional<std::string> omp = in.env.Get("OMP_NUM_THREADS");
      omp.has_value() &&
      absl::SimpleAtoi(*omp, &plan->num_cpu_threads_per_process) &&
      plan->num_cpu_threads_per_process >= 1) {
    return absl::OkStatus();
  }
  plan->num_cpu_threads_per_process = 1;
  if (plan->use_cpu) {
    const int threads = in.host.cpu_cores / std::max(plan->nproc_per_node, 1);
    if (threads > 1) {
      plan->num_cpu_threads_per_process = threads;
      plan->defaults_used.push_back(absl::StrCat(
          "\t`--num_cpu_threads_per_process` was set to `", threads,
          "` to improve out-of-box performance when training on CPUs"));
    }
  }
  return absl::OkStatus();
}

// Step 8: restarts, monitoring, role, per-rank logs, rendezvous backend.
absl::Status ResolveSupervision(const LaunchInputs& in, LaunchPlan* plan) {
  const ParsedFlags& flags = in.flags;
  if (flags.Has("max_restarts")) {
    ACCELERATE_ASSIGN_OR_RETURN(plan->max_restarts,
                                FlagInt(flags, "max_restarts", 0));
  }
  if (std::optional<std::string> interval = flags.Get("monitor_interval")) {
    double seconds = 0;
    if (!absl::SimpleAtod(*interval, &seconds) || seconds <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--monitor_interval: \"", *interval,
                       "\" is not a positive number of seconds"));
    }
    plan->monitor_interval = absl::Seconds(seconds);
  }
  if (std::optional<std::string> role = flags.Get("role")) plan->role = *role;
  if (std::optional<std::string> dir = flags.Get("log_dir")) {
    plan->log_dir = ResolveUserPath(in.env, *dir);
  }
  if (std::optional<std::string> tee = flags.Get("tee")) {
    plan->tee = (*tee)[0] - '0';
  }
  if (plan->tee != 0 && plan->log_dir.empty()) {
    return absl::InvalidArgumentError(
        "--tee copies output into per-rank log files: give --log_dir too");
  }
  if (in.config.has_rdzv_backend() && in.config.rdzv_backend() != "static") {
    return absl::InvalidArgumentError(absl::StrCat(
        plan->config_file, ": rdzv_backend \"", in.config.rdzv_backend(),
        "\" is not supported; this launcher runs static rendezvous"));
  }
  return absl::OkStatus();
}

// Step 9: each rank's command line (a Python script or module gets the
// interpreter first) and where it starts. A program path with a slash, and
// a Python script, are the user's paths.
absl::Status ResolveCommand(const LaunchInputs& in, LaunchPlan* plan) {
  const ParsedFlags& flags = in.flags;
  plan->working_dir = UserWorkingDirectory(in.env);
  if (flags.positional.empty()) return absl::OkStatus();
  const bool module = flags.Switch("module");
  if (module && flags.Switch("no_python")) {
    return absl::InvalidArgumentError(
        "--module and --no_python cannot be used together");
  }
  std::string program = flags.positional[0];
  const bool python =
      module || (!flags.Switch("no_python") && absl::EndsWith(program, ".py"));
  if (!module && (python || program.find('/') != std::string::npos)) {
    program = ResolveUserPath(in.env, program);
  }
  if (python) {
    plan->command.push_back(
        in.env.Get("ACCELERATE_PYTHON").value_or("python3"));
    if (module) plan->command.push_back("-m");
  }
  if (python && !module) plan->script = program;
  plan->command.push_back(program);
  plan->command.insert(plan->command.end(), flags.positional.begin() + 1,
                       flags.positional.end());
  return absl::OkStatus();
}

// DeepSpeed's variables, as Accelerate's DeepSpeed launcher exports them,
// and the DeepSpeed config file the ranks will read.
absl::Status AddDeepSpeed(const LaunchInputs& in, LaunchPlan* plan) {
  const LaunchConfig& config = in.config;
  auto& e = plan->common_env;
  DeepSpeedLaunch launch;
  launch.config_keys = in.deepspeed_config_keys;
  launch.mixed_precision_from_config =
      in.have_config && !in.flags.Has("mixed_precision") &&
      (config.has_mixed_precision() || (config.has_fp16() && config.fp16()));
  launch.num_machines = plan->num_machines;
  ACCELERATE_RETURN_IF_ERROR(AddDeepSpeedEnvironment(
      in.flags, config.deepspeed_config(), launch, &e, &plan->warnings));
  if (auto file = e.find("ACCELERATE_DEEPSPEED_CONFIG_FILE");
      file != e.end() && file->second != "none") {
    // The ranks read it from their folder, which is the user's. A dry run
    // may plan for another machine: there, a missing file is a warning.
    plan->deepspeed_config_file = ResolveUserPath(in.env, file->second);
    if (absl::Status readable = CheckReadableFile(plan->deepspeed_config_file);
        !readable.ok()) {
      const std::string message = absl::StrCat(
          "deepspeed_config_file: cannot read ", readable.message());
      if (!plan->dry_run) return absl::Status(readable.code(), message);
      plan->warnings.push_back(message);
    }
  }
  // As Accelerate's env_var_path_add: the folder the ranks start in joins
  // PYTHONPATH, once.
  std::string folder = plan->working_dir;
  if (folder.empty()) {
    char cwd[4096] = {0};
    if (::getcwd(cwd, sizeof(cwd)) != nullptr) folder = cwd;
  }
  std::vector<std::string> paths;
  for (absl::string_view path : absl::StrSplit(
           in.env.Get("PYTHONPATH").value_or(""), ':', absl::SkipEmpty())) {
    paths.emplace_back(path);
  }
  if (!folder.empty() && !IsOneOf(folder, paths)) paths.push_back(folder);
  e["PYTHONPATH"] = absl::StrJoin(paths, ":");
  return absl::OkStatus();
}

// Step 10: what every rank sees besides torchrun's variables.
absl::Status SetCommonEnvironment(const LaunchInputs& in, LaunchPlan* plan) {
  const LaunchConfig& config = in.config;
  auto& e = plan->common_env;
  e["ACCELERATE_MIXED_PRECISION"] = plan->mixed_precision;
  e["ACCELERATE_USE_CPU"] = plan->use_cpu ? "True" : "False";
  if (plan->debug) e["ACCELERATE_DEBUG_MODE"] = "true";
  e["ACCELERATE_DYNAMO_BACKEND"] = "NO";
  e["ACCELERATE_DYNAMO_MODE"] = "default";
  e["ACCELERATE_DYNAMO_USE_FULLGRAPH"] = "False";
  e["ACCELERATE_DYNAMO_USE_DYNAMIC"] = "False";
  e["OMP_NUM_THREADS"] = absl::StrCat(plan->num_cpu_threads_per_process);
  if (plan->gpu_ids != "all" && !plan->use_cpu) {
    e["CUDA_VISIBLE_DEVICES"] = plan->gpu_ids;
  }
  if (config.has_enable_cpu_affinity() && config.enable_cpu_affinity()) {
    e["ACCELERATE_CPU_AFFINITY"] = "1";
  }
  if (in.flags.Has("gradient_accumulation_steps")) {
    ACCELERATE_ASSIGN_OR_RETURN(
        int steps, FlagInt(in.flags, "gradient_accumulation_steps", 1));
    e["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] = absl::StrCat(steps);
  }
  if (plan->use_fsdp) {
    ACCELERATE_RETURN_IF_ERROR(
        AddFsdpEnvironment(in.flags, config.fsdp_config(), &e));
  }
  if (plan->use_deepspeed) {
    ACCELERATE_RETURN_IF_ERROR(AddDeepSpeed(in, plan));
  } else if (const std::vector<std::string> unused =
                 UnusedDeepSpeedSettings(in.flags, config.deepspeed_config());
             !unused.empty()) {
    plan->warnings.push_back(absl::StrCat(
        absl::StrJoin(unused, ", "), " ha", unused.size() == 1 ? "s" : "ve",
        " no effect: this launch is ", plan->distributed_type,
        ", not DeepSpeed (--use_deepspeed or distributed_type DEEPSPEED)"));
  }
  if (plan->mixed_precision == "fp8") {
    AddFp8Environment(config.fp8_config(), &e);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LaunchPlan> ResolveLaunch(const ParsedFlags& flags,
                                         const state::Environment& env,
                                         const LaunchHost& host) {
  ACCELERATE_RETURN_IF_ERROR(CheckInvocation(flags));
  LaunchPlan plan;
  plan.quiet = flags.Switch("quiet");
  plan.dry_run = flags.Switch("dry_run");
  LaunchInputs in{flags, env, host};
  ACCELERATE_RETURN_IF_ERROR(ReadConfig(in, &plan));
  plan.debug = flags.Switch("debug") || (in.config.has_debug() &&
                                         in.config.debug());
  ACCELERATE_RETURN_IF_ERROR(ResolveProcessCounts(in, &plan));
  ACCELERATE_RETURN_IF_ERROR(ResolveHardware(in, &plan));
  ACCELERATE_RETURN_IF_ERROR(ResolveMixedPrecision(in, &plan));
  ACCELERATE_RETURN_IF_ERROR(ResolveRendezvous(in, &plan));
  ACCELERATE_RETURN_IF_ERROR(ResolveThreads(in, &plan));
  ACCELERATE_RETURN_IF_ERROR(ResolveSupervision(in, &plan));
  ACCELERATE_RETURN_IF_ERROR(ResolveCommand(in, &plan));
  ACCELERATE_RETURN_IF_ERROR(SetCommonEnvironment(in, &plan));
  return plan;
}

absl::Status CheckCommand(const LaunchPlan& plan,
                          const state::Environment& env) {
  if (plan.command.empty()) return absl::OkStatus();
  absl::StatusOr<std::string> program =
      FindExecutable(plan.command[0], env);
  if (!program.ok()) {
    return absl::Status(program.status().code(),
                        absl::StrCat("cannot execute ",
                                     program.status().message()));
  }
  if (!plan.script.empty()) {
    if (absl::Status readable = CheckReadableFile(plan.script);
        !readable.ok()) {
      return absl::Status(readable.code(),
                          absl::StrCat("cannot open the Python script ",
                                       readable.message()));
    }
  }
  return absl::OkStatus();
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
  if (!plan.deepspeed_config_file.empty()) {
    line("deepspeed_config_file", plan.deepspeed_config_file);
  }
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
  if (!plan.working_dir.empty()) line("working_dir", plan.working_dir);
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
