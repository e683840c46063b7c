#include "launch/feature_env.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "launch/launch_flags.h"
#include "state/launch_info.h"
#include "state/status_macros.h"

namespace accelerate::launch {
namespace {

std::string TrueOrFalse(bool value) { return value ? "true" : "false"; }

// `value` as Python's str(float) writes it ("1.0", "0.001", "1e-05",
// "1e+16"): the shortest digits that read back, positional for exponents
// from -4 to 15, scientific otherwise.
std::string PythonFloatText(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[64];
  const std::to_chars_result result = std::to_chars(
      buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  const std::string text(buffer, result.ptr);  // [-]d[.ddd]e(+|-)XX
  const size_t e = text.find('e');
  const bool negative = text[0] == '-';
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e; ++i) {
    if (text[i] != '.') digits += text[i];
  }
  const int exponent = std::atoi(text.c_str() + e + 1);
  std::string out;
  if (exponent < -4 || exponent >= 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) absl::StrAppend(&out, ".", digits.substr(1));
    absl::StrAppend(&out, absl::StrFormat("e%c%02d", exponent < 0 ? '-' : '+',
                                          std::abs(exponent)));
  } else if (exponent < 0) {
    out = absl::StrCat("0.", std::string(-exponent - 1, '0'), digits);
  } else if (static_cast<int>(digits.size()) <= exponent + 1) {
    out = absl::StrCat(digits, std::string(exponent + 1 - digits.size(), '0'),
                       ".0");
  } else {
    out = absl::StrCat(digits.substr(0, exponent + 1), ".",
                       digits.substr(exponent + 1));
  }
  return negative ? absl::StrCat("-", out) : out;
}

// A DeepSpeed setting: the flag's value, else the config section's, and
// where it came from for messages.
struct DeepSpeedSetting {
  std::optional<std::string> value;
  std::string source;  // "--zero_stage" or "deepspeed_config.zero_stage"
  bool from_flag = false;
};

DeepSpeedSetting PickDeepSpeed(const ParsedFlags& flags, const char* name,
                               std::optional<std::string> from_config) {
  if (std::optional<std::string> value = flags.Get(name)) {
    return {value, absl::StrCat("--", name), true};
  }
  return {std::move(from_config), absl::StrCat("deepspeed_config.", name),
          false};
}

std::optional<std::string> IfSet(bool has, const std::string& value) {
  return has ? std::optional<std::string>(value) : std::nullopt;
}

// The flags of Accelerate's "DeepSpeed Arguments" group but
// --gradient_accumulation_steps, which every launch here honours.
const std::vector<std::string>& DeepSpeedFlagNames() {
  static const auto* const kNames =
      new std::vector<std::string>{"deepspeed_config_file",
                                   "zero_stage",
                                   "offload_optimizer_device",
                                   "offload_param_device",
                                   "offload_optimizer_nvme_path",
                                   "offload_param_nvme_path",
                                   "gradient_clipping",
                                   "zero3_init_flag",
                                   "zero3_save_16bit_model",
                                   "deepspeed_hostfile",
                                   "deepspeed_exclusion_filter",
                                   "deepspeed_inclusion_filter",
                                   "deepspeed_multinode_launcher",
                                   "deepspeed_moe_layer_cls_names"};
  return *kNames;
}

// What Accelerate's DeepSpeedPlugin refuses beside a DeepSpeed config file
// when the Accelerate config sets it: the file decides these.
const std::vector<std::string>& DecidedByDeepSpeedFile() {
  static const auto* const kNames =
      new std::vector<std::string>{"gradient_accumulation_steps",
                                   "gradient_clipping",
                                   "zero_stage",
                                   "offload_optimizer_device",
                                   "offload_param_device",
                                   "offload_param_nvme_path",
                                   "offload_optimizer_nvme_path",
                                   "zero3_save_16bit_model",
                                   "mixed_precision"};
  return *kNames;
}

}  // namespace

absl::Status AddFsdpEnvironment(const ParsedFlags& flags,
                                const FsdpConfig& config,
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
    return has ? std::optional<std::string>(TrueOrFalse(value)) : std::nullopt;
  };

  std::string version = *pick(
      "fsdp_version",
      config.has_fsdp_version()
          ? std::optional<std::string>(absl::StrCat(config.fsdp_version()))
          : std::nullopt,
      "1");
  if (version != "1" && version != "2") {
    return NotOneOfError("fsdp_version", version, {"1", "2"});
  }
  std::string strategy = *pick(
      "fsdp_sharding_strategy",
      opt_str(config.has_fsdp_sharding_strategy(),
              config.fsdp_sharding_strategy()),
      "FULL_SHARD");
  // Accelerate <= 0.25 wrote the strategy as a number from 1.
  int number = 0;
  if (absl::SimpleAtoi(strategy, &number) && number >= 1 &&
      number <= static_cast<int>(FsdpShardingStrategies().size())) {
    strategy = FsdpShardingStrategies()[number - 1];
  }
  if (!IsOneOf(strategy, FsdpShardingStrategies())) {
    return NotOneOfError("fsdp_sharding_strategy", strategy,
                         FsdpShardingStrategies());
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
    (*env)[setting.variable] = TrueOrFalse(parsed);
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
          ? std::optional<std::string>(
                absl::StrCat(config.fsdp_min_num_params()))
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
       &FsdpAutoWrapPolicies()},
      {"fsdp_backward_prefetch", "FSDP_BACKWARD_PREFETCH",
       config.has_fsdp_backward_prefetch()
           ? opt_str(true, config.fsdp_backward_prefetch())
           : opt_str(config.has_fsdp_backward_prefetch_policy(),
                     config.fsdp_backward_prefetch_policy()),
       &FsdpBackwardPrefetchPolicies()},
      {"fsdp_state_dict_type", "FSDP_STATE_DICT_TYPE",
       opt_str(config.has_fsdp_state_dict_type(),
               config.fsdp_state_dict_type()),
       &FsdpStateDictTypes()},
      {"fsdp_transformer_layer_cls_to_wrap", "FSDP_TRANSFORMER_CLS_TO_WRAP",
       opt_str(config.has_fsdp_transformer_layer_cls_to_wrap(),
               config.fsdp_transformer_layer_cls_to_wrap()),
       nullptr},
  };
  for (const ChoiceSetting& setting : choices) {
    std::optional<std::string> value =
        pick(setting.flag, setting.from_config, std::nullopt);
    if (!value.has_value()) continue;
    if (setting.choices != nullptr && !IsOneOf(*value, *setting.choices)) {
      return NotOneOfError(setting.flag, *value, *setting.choices);
    }
    (*env)[setting.variable] = *value;
  }
  if (config.has_fsdp_ignored_modules()) {
    (*env)["FSDP_IGNORED_MODULES"] = config.fsdp_ignored_modules();
  }
  return absl::OkStatus();
}

absl::Status AddDeepSpeedEnvironment(const ParsedFlags& flags,
                                     const DeepSpeedConfig& config,
                                     const DeepSpeedLaunch& launch,
                                     std::map<std::string, std::string>* env,
                                     std::vector<std::string>* warnings) {
  (*env)["ACCELERATE_USE_DEEPSPEED"] = "true";
  // The config's DeepSpeed keys (and mixed_precision when it came from the
  // config), which Accelerate's DeepSpeedPlugin checks against a DeepSpeed
  // config file.
  std::vector<std::string> fields = launch.config_keys;
  if (launch.mixed_precision_from_config) fields.push_back("mixed_precision");
  (*env)["ACCELERATE_CONFIG_DS_FIELDS"] =
      absl::AsciiStrToLower(absl::StrJoin(fields, ","));

  const DeepSpeedSetting file =
      PickDeepSpeed(flags, "deepspeed_config_file",
                    IfSet(config.has_deepspeed_config_file(),
                          config.deepspeed_config_file()));
  bool use_file = false;
  if (file.value.has_value()) {
    if (file.value->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.source,
                       ": an empty path; give a DeepSpeed JSON file, or "
                       "\"none\" for none"));
    }
    use_file = *file.value != "none";
    (*env)["ACCELERATE_DEEPSPEED_CONFIG_FILE"] = *file.value;
  }
  if (use_file) {
    std::vector<std::string> decided;
    for (const std::string& field : fields) {
      if (IsOneOf(field, DecidedByDeepSpeedFile()) &&
          !IsOneOf(field, decided)) {
        decided.push_back(field);
      }
    }
    if (!decided.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the config file sets ", absl::StrJoin(decided, ", "),
          " beside deepspeed_config_file \"", *file.value,
          "\", which decides them (Accelerate refuses this too); remove "
          "them from the config file and set them in the DeepSpeed JSON "
          "(`accelerate config` asks only for what a JSON config leaves "
          "open)"));
    }
  }

  if (!flags.Has("gradient_accumulation_steps") &&
      config.has_gradient_accumulation_steps()) {
    if (config.gradient_accumulation_steps() < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "deepspeed_config.gradient_accumulation_steps: ",
          config.gradient_accumulation_steps(), " is not a positive count"));
    }
    (*env)["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] =
        absl::StrCat(config.gradient_accumulation_steps());
  }

  const DeepSpeedSetting stage = PickDeepSpeed(
      flags, "zero_stage",
      config.has_zero_stage()
          ? std::optional<std::string>(absl::StrCat(config.zero_stage()))
          : std::nullopt);
  if (stage.value.has_value()) {
    int number = -1;
    if (!absl::SimpleAtoi(*stage.value, &number) || number < 0 || number > 3) {
      return NotOneOfError(stage.source, *stage.value, DeepSpeedZeroStages());
    }
    (*env)["ACCELERATE_DEEPSPEED_ZERO_STAGE"] = absl::StrCat(number);
  }

  struct Device {
    const char* name;
    const char* variable;
    std::optional<std::string> from_config;
  };
  for (const Device& device :
       {Device{"offload_optimizer_device",
               "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE",
               IfSet(config.has_offload_optimizer_device(),
                     config.offload_optimizer_device())},
        Device{"offload_param_device",
               "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE",
               IfSet(config.has_offload_param_device(),
                     config.offload_param_device())}}) {
    const DeepSpeedSetting setting =
        PickDeepSpeed(flags, device.name, device.from_config);
    if (!setting.value.has_value()) continue;
    // Any case, as Accelerate lowers it; nvme is passed on (the training
    // side refuses it by name).
    const std::string lower = absl::AsciiStrToLower(*setting.value);
    if (!IsOneOf(lower, DeepSpeedOffloadDevices())) {
      return NotOneOfError(setting.source, *setting.value,
                           DeepSpeedOffloadDevices());
    }
    (*env)[device.variable] = lower;
  }

  const DeepSpeedSetting clipping = PickDeepSpeed(
      flags, "gradient_clipping",
      IfSet(config.has_gradient_clipping(), config.gradient_clipping()));
  if (clipping.value.has_value()) {
    double norm = 0;
    if (!absl::SimpleAtod(*clipping.value, &norm) || !std::isfinite(norm) ||
        norm < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(clipping.source, ": \"", *clipping.value,
                       "\" is not a gradient norm (a number, 0 or more)"));
    }
    // Accelerate passes str() of the value: a float from the flag, the
    // YAML scalar (an integer stays one) from the config.
    int64_t whole = 0;
    (*env)["ACCELERATE_GRADIENT_CLIPPING"] =
        !clipping.from_flag && absl::SimpleAtoi(*clipping.value, &whole)
            ? absl::StrCat(whole)
            : PythonFloatText(norm);
    warnings->push_back(absl::StrCat(
        clipping.source, " ", *clipping.value,
        ": exported as ACCELERATE_GRADIENT_CLIPPING, but accelerate-cpp does "
        "not clip by it (DeepSpeed clips inside its step); clip in the "
        "training loop with Accelerator::ClipGradNorm"));
  }

  bool init_flag = false;
  bool save_16bit = false;
  struct Flag {
    const char* name;
    const char* variable;
    bool has;
    bool value;
    bool* resolved;
  };
  for (const Flag& flag :
       {Flag{"zero3_init_flag", "ACCELERATE_DEEPSPEED_ZERO3_INIT",
             config.has_zero3_init_flag(), config.zero3_init_flag(),
             &init_flag},
        Flag{"zero3_save_16bit_model",
             "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL",
             config.has_zero3_save_16bit_model(),
             config.zero3_save_16bit_model(), &save_16bit}}) {
    const DeepSpeedSetting setting = PickDeepSpeed(
        flags, flag.name,
        flag.has ? std::optional<std::string>(TrueOrFalse(flag.value))
                 : std::nullopt);
    if (!setting.value.has_value()) continue;
    ACCELERATE_ASSIGN_OR_RETURN(
        const bool value, state::ParseBoolFlag(setting.source, *setting.value));
    (*env)[flag.variable] = TrueOrFalse(value);
    *flag.resolved = value;
  }
  if (init_flag) {
    warnings->push_back(
        "zero3_init_flag true: accelerate-cpp has no deepspeed.zero.Init; "
        "each process builds the whole model, which Prepare then shards");
  }
  if (save_16bit) {
    warnings->push_back(
        "zero3_save_16bit_model true: accelerate-cpp's SaveModel writes the "
        "whole model (gathered) under ZeRO 3 in every case, in the "
        "parameters' own dtype (not converted to 16 bits)");
  }

  const DeepSpeedSetting moe =
      PickDeepSpeed(flags, "deepspeed_moe_layer_cls_names",
                    IfSet(config.has_deepspeed_moe_layer_cls_names(),
                          config.deepspeed_moe_layer_cls_names()));
  if (moe.value.has_value()) {
    (*env)["ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES"] = *moe.value;
    warnings->push_back(absl::StrCat(
        moe.source, " \"", *moe.value,
        "\": exported, but accelerate-cpp does not treat MoE layers as "
        "ZeRO 3 leaf modules"));
  }

  const DeepSpeedSetting launcher =
      PickDeepSpeed(flags, "deepspeed_multinode_launcher",
                    IfSet(config.has_deepspeed_multinode_launcher(),
                          config.deepspeed_multinode_launcher()));
  if (launcher.value.has_value() &&
      !IsOneOf(*launcher.value, DeepSpeedMultinodeLaunchers())) {
    return NotOneOfError(launcher.source, *launcher.value,
                         DeepSpeedMultinodeLaunchers());
  }
  if (launch.num_machines > 1 &&
      launcher.value.value_or("pdsh") != "standard") {
    return absl::InvalidArgumentError(absl::StrCat(
        launcher.source, ": \"", launcher.value.value_or("pdsh"), "\"",
        launcher.value.has_value() ? "" : " (Accelerate's default)",
        " starts the machines through DeepSpeed's own runner (the deepspeed "
        "command), which accelerate-cpp does not use; set it to standard and "
        "run accelerate launch --machine_rank R on each machine"));
  }
  if (launch.num_machines == 1 && launcher.value.has_value() &&
      *launcher.value != "standard") {
    warnings->push_back(
        absl::StrCat(launcher.source, " \"", *launcher.value,
                     "\" has no effect on one machine (as in Accelerate)"));
  }

  // Read by DeepSpeed's own runner only, or, for the NVMe paths, not passed
  // on by Accelerate's launcher at all.
  struct Unused {
    const char* name;
    std::optional<std::string> from_config;
    const char* why;
  };
  constexpr char kRunnerOnly[] =
      "is read by DeepSpeed's own multi-machine runner, which accelerate-cpp "
      "does not use";
  constexpr char kNotPassedOn[] =
      "is not passed on by Accelerate's launcher, and accelerate-cpp does not "
      "offload to NVMe";
  for (const Unused& unused :
       {Unused{
            "deepspeed_hostfile",
            IfSet(config.has_deepspeed_hostfile(), config.deepspeed_hostfile()),
            kRunnerOnly},
        Unused{"deepspeed_exclusion_filter",
               IfSet(config.has_deepspeed_exclusion_filter(),
                     config.deepspeed_exclusion_filter()),
               kRunnerOnly},
        Unused{"deepspeed_inclusion_filter",
               IfSet(config.has_deepspeed_inclusion_filter(),
                     config.deepspeed_inclusion_filter()),
               kRunnerOnly},
        Unused{"offload_optimizer_nvme_path",
               IfSet(config.has_offload_optimizer_nvme_path(),
                     config.offload_optimizer_nvme_path()),
               kNotPassedOn},
        Unused{"offload_param_nvme_path",
               IfSet(config.has_offload_param_nvme_path(),
                     config.offload_param_nvme_path()),
               kNotPassedOn}}) {
    const DeepSpeedSetting setting =
        PickDeepSpeed(flags, unused.name, unused.from_config);
    if (!setting.value.has_value()) continue;
    warnings->push_back(absl::StrCat(setting.source, " \"", *setting.value,
                                     "\" has no effect: it ", unused.why));
  }

  // Beside a DeepSpeed config file the training side takes the ZeRO
  // settings from its zero_optimization section (Accelerate's would fill
  // the file's "auto" values from these flags; "auto" is refused here).
  if (use_file) {
    std::vector<std::string> ignored;
    for (const char* name :
         {"zero_stage", "offload_optimizer_device", "offload_param_device"}) {
      if (flags.Has(name)) ignored.push_back(absl::StrCat("--", name));
    }
    if (!ignored.empty()) {
      warnings->push_back(absl::StrCat(
          absl::StrJoin(ignored, ", "), ignored.size() == 1 ? " has" : " have",
          " no effect beside deepspeed_config_file \"", *file.value,
          "\": its zero_optimization section decides"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> UnusedDeepSpeedSettings(
    const ParsedFlags& flags, const DeepSpeedConfig& config) {
  std::vector<std::string> unused;
  for (const std::string& name : DeepSpeedFlagNames()) {
    if (flags.Has(name)) unused.push_back(absl::StrCat("--", name));
  }
  if (config.ByteSizeLong() > 0) unused.push_back("deepspeed_config");
  return unused;
}

void AddFp8Environment(const Fp8Config& fp8,
                       std::map<std::string, std::string>* env) {
  if (fp8.has_backend()) {
    (*env)["ACCELERATE_FP8_BACKEND"] = absl::AsciiStrToUpper(fp8.backend());
  }
  if (fp8.has_fp8_format()) (*env)["ACCELERATE_FP8_FORMAT"] = fp8.fp8_format();
  if (fp8.has_margin()) {
    (*env)["ACCELERATE_FP8_MARGIN"] = absl::StrCat(fp8.margin());
  }
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
    (*env)["ACCELERATE_FP8_PAD_INNER_DIM"] =
        fp8.pad_inner_dim() ? "True" : "False";
  }
  if (fp8.has_enable_fsdp_float8_all_gather()) {
    (*env)["ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER"] =
        fp8.enable_fsdp_float8_all_gather() ? "True" : "False";
  }
}

}  // namespace accelerate::launch
