#include "launch/launch_flags.h"

#include "precision/mixed_precision.h"
namespace accelerate::launch {

const std::vector<std::string>& FsdpShardingStrategies() {
  static const auto* const kStrategies = new std::vector<std::string>{
      "FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD",
      "HYBRID_SHARD_ZERO2"};
  return *kStrategies;
}

const std::vector<std::string>& FsdpAutoWrapPolicies() {
  static const auto* const kPolicies = new std::vector<std::string>{
      "TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP"};
  return *kPolicies;
}

const std::vector<std::string>& FsdpBackwardPrefetchPolicies() {
  static const auto* const kPolicies = new std::vector<std::string>{
      "BACKWARD_PRE", "BACKWARD_POST", "NO_PREFETCH"};
  return *kPolicies;
}

const std::vector<std::string>& FsdpStateDictTypes() {
  static const auto* const kTypes = new std::vector<std::string>{
      "FULL_STATE_DICT", "LOCAL_STATE_DICT", "SHARDED_STATE_DICT"};
  return *kTypes;
}

const std::vector<std::string>& DeepSpeedZeroStages() {
  static const auto* const kStages =
      new std::vector<std::string>{"0", "1", "2", "3"};
  return *kStages;
}

const std::vector<std::string>& DeepSpeedOffloadDevices() {
  static const auto* const kDevices =
      new std::vector<std::string>{"none", "cpu", "nvme"};
  return *kDevices;
}

const std::vector<std::string>& DeepSpeedMultinodeLaunchers() {
  static const auto* const kLaunchers = new std::vector<std::string>{
      "pdsh", "standard", "openmpi", "mvapich", "mpich", "nossh", "slurm"};
  return *kLaunchers;
}

FlagParser LaunchFlagParser() {
  FlagParser parser(
      "accelerate launch",
      "Starts PROGRAM as a distributed job on this machine (or as this "
      "machine's share of a multi-machine job): one process per rank, each "
      "with torchrun's and Accelerate's environment variables. PROGRAM is an "
      "executable, or a Python script (*.py, or a module with -m) run with "
      "python3 ($ACCELERATE_PYTHON overrides the interpreter). Values come "
      "from the flags, then the config file, then defaults. Under `bazel "
      "run`, relative paths are taken from the folder it was typed in "
      "($BUILD_WORKING_DIRECTORY), where the ranks also start.");
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
                   "line and environment, and start nothing. What this "
                   "machine lacks (GPUs, the program) is a warning, so a plan "
                   "for another machine can be checked here.");
  parser.Group("Hardware selection");
  parser.AddSwitch("cpu", "Run on CPU only, even when GPUs are present.");
  parser.AddSwitch("multi_gpu", "One process per GPU (NCCL).");
  parser.Group("Resource selection");
  parser.AddValue("mixed_precision", "MODE", "Mixed precision mode.",
                  precision::MixedPrecisionNames());
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
                  FsdpShardingStrategies());
  parser.AddValue("fsdp_reshard_after_forward", "VALUE",
                  "Reshard after forward (FSDP2: true/false).");
  parser.AddValue("fsdp_auto_wrap_policy", "NAME", "Auto wrap policy.",
                  FsdpAutoWrapPolicies());
  parser.AddValue("fsdp_transformer_layer_cls_to_wrap", "NAMES",
                  "Comma-separated module class names to wrap.");
  parser.AddValue("fsdp_backward_prefetch", "NAME", "Backward prefetch.",
                  FsdpBackwardPrefetchPolicies());
  parser.AddValue("fsdp_state_dict_type", "NAME", "State dict type.",
                  FsdpStateDictTypes());
  parser.AddValue("fsdp_forward_prefetch", "BOOL", "Forward prefetch.");
  parser.AddValue("fsdp_use_orig_params", "BOOL",
                  "Use the original parameters.");
  parser.AddValue("fsdp_cpu_ram_efficient_loading", "BOOL",
                  "Load the checkpoint on rank 0 only.");
  parser.AddValue("fsdp_sync_module_states", "BOOL",
                  "Broadcast module states from rank 0.");
  parser.AddValue("fsdp_activation_checkpointing", "BOOL",
                  "Activation checkpointing.");
  parser.Group("DeepSpeed (ZeRO, run by accelerate-cpp's own engine)");
  parser.AddSwitch("use_deepspeed",
                   "DeepSpeed's ZeRO: the processes start as in the other "
                   "modes (no `deepspeed` command), with Accelerate's "
                   "ACCELERATE_DEEPSPEED_* variables.");
  parser.AddValue("deepspeed_config_file", "PATH",
                  "DeepSpeed JSON config; its zero_optimization section "
                  "decides the ZeRO settings.");
  parser.AddValue("zero_stage", "0-3", "ZeRO stage (default 2).");
  parser.AddValue("offload_optimizer_device", "DEVICE",
                  "Where to offload optimizer states: none, cpu, nvme "
                  "(default none).");
  parser.AddValue("offload_param_device", "DEVICE",
                  "Where to offload parameters: none, cpu, nvme (default "
                  "none).");
  parser.AddValue("offload_optimizer_nvme_path", "PATH",
                  "NVMe path for optimizer states (Accelerate's launcher "
                  "does not pass it on).");
  parser.AddValue("offload_param_nvme_path", "PATH",
                  "NVMe path for parameters (Accelerate's launcher does not "
                  "pass it on).");
  parser.AddValue("gradient_clipping", "NORM",
                  "Gradient clipping value (ACCELERATE_GRADIENT_CLIPPING; "
                  "not applied for you here: clip in the training loop).");
  parser.AddValue("zero3_init_flag", "BOOL",
                  "deepspeed.zero.Init for ZeRO 3 (not available here: each "
                  "process builds the whole model).");
  parser.AddValue("zero3_save_16bit_model", "BOOL",
                  "Save 16-bit model weights under ZeRO 3.");
  parser.AddValue("deepspeed_hostfile", "PATH",
                  "Hostfile of DeepSpeed's own multi-machine runner (not "
                  "used here).");
  parser.AddValue("deepspeed_exclusion_filter", "FILTER",
                  "Exclusion filter of DeepSpeed's own runner (not used "
                  "here).");
  parser.AddValue("deepspeed_inclusion_filter", "FILTER",
                  "Inclusion filter of DeepSpeed's own runner (not used "
                  "here).");
  parser.AddValue("deepspeed_multinode_launcher", "NAME",
                  "Multi-machine launcher; only standard (each machine runs "
                  "accelerate launch --machine_rank R) runs here.",
                  DeepSpeedMultinodeLaunchers());
  parser.AddValue("deepspeed_moe_layer_cls_names", "NAMES",
                  "Comma-separated MoE layer class names.");
  parser.AddRest("PROGRAM [ARGS...]",
                 "The program and its arguments (a path, or a name looked "
                 "up in PATH; a Python script or module).");
  return parser;
}

}  // namespace accelerate::launch
