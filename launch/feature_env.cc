#include "launch/feature_env.h"

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "launch/launch_flags.h"
#include "state/launch_info.h"
#include "state/status_macros.h"

namespace accelerate::launch {
namespace {

std::string TrueOrFalse(bool value) { return value ? "true" : "false"; }

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
