// The variables Accelerate's launcher sets for its features, from flags and
// the config file's sections: FSDP (`FSDP_*`, `ACCELERATE_USE_FSDP`),
// DeepSpeed (`ACCELERATE_USE_DEEPSPEED`, `ACCELERATE_DEEPSPEED_*`) and FP8
// (`ACCELERATE_FP8_*`). Part of `accelerate launch`'s resolution
// (launch_plan.h).
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status AddFeatures(const ParsedFlags& flags,
//                            const LaunchConfig& config, bool deepspeed,
//                            std::map<std::string, std::string>* env,
//                            std::vector<std::string>* warnings) {
//     if (deepspeed) {
//       ACCELERATE_RETURN_IF_ERROR(AddDeepSpeedEnvironment(
//           flags, config.deepspeed_config(), DeepSpeedLaunch{}, env,
//           warnings));
//     } else {
//       ACCELERATE_RETURN_IF_ERROR(
//           AddFsdpEnvironment(flags, config.fsdp_config(), env));
//     }
//     AddFp8Environment(config.fp8_config(), env);
//     return absl::OkStatus();
//   }
// clang-format on
//
// Thread safety: pure functions of their arguments.

#ifndef ACCELERATE_LAUNCH_FEATURE_ENV_H_
#define ACCELERATE_LAUNCH_FEATURE_ENV_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "launch/config.pb.h"
#include "launch/flags.h"

namespace accelerate::launch {

// FSDP settings: the --fsdp_* flags, then the config's fsdp_config, then
// Accelerate's defaults; added to `env` as the FSDP_* variables Accelerate's
// launcher sets. `InvalidArgument` names the bad setting and the valid
// values. REQUIRES: `env` is not null.
[[nodiscard]] absl::Status AddFsdpEnvironment(
    const ParsedFlags& flags, const FsdpConfig& config,
    std::map<std::string, std::string>* env);

// What DeepSpeed's variables depend on besides its flags and config section.
struct DeepSpeedLaunch {
  // The keys of the config file's deepspeed_config section as written
  // (`LoadedConfig::deepspeed_config_keys`); empty without a config file.
  std::vector<std::string> config_keys;
  // Whether mixed_precision came from the config file rather than a flag
  // (Accelerate then counts it among the config's DeepSpeed fields).
  bool mixed_precision_from_config = false;
  // Machines taking part (default 1).
  int num_machines = 1;
};

// DeepSpeed settings: the DeepSpeed flags, then the config's
// deepspeed_config; added to `env` as the variables Accelerate's DeepSpeed
// launcher exports: ACCELERATE_USE_DEEPSPEED, ACCELERATE_CONFIG_DS_FIELDS,
// and, for the settings given, ACCELERATE_DEEPSPEED_ZERO_STAGE, the offload
// devices, ACCELERATE_DEEPSPEED_CONFIG_FILE, ACCELERATE_DEEPSPEED_ZERO3_INIT,
// ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL,
// ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES, ACCELERATE_GRADIENT_CLIPPING and
// (from the section; the flag is every launch's)
// ACCELERATE_GRADIENT_ACCUMULATION_STEPS. Settings accelerate-cpp does not
// act on are exported as Accelerate does and named in `warnings`.
// `InvalidArgument` names a bad value and the valid ones, a multi-machine
// launcher other than standard (DeepSpeed's own runner does not run here),
// and config keys set beside deepspeed_config_file that it decides (which
// Accelerate refuses too). REQUIRES: `env` and `warnings` are not null.
[[nodiscard]] absl::Status AddDeepSpeedEnvironment(
    const ParsedFlags& flags, const DeepSpeedConfig& config,
    const DeepSpeedLaunch& launch, std::map<std::string, std::string>* env,
    std::vector<std::string>* warnings);

// The DeepSpeed flags given ("--zero_stage") and a deepspeed_config section
// that sets something ("deepspeed_config"): what a launch that does not use
// DeepSpeed leaves unused, for a warning.
std::vector<std::string> UnusedDeepSpeedSettings(const ParsedFlags& flags,
                                                 const DeepSpeedConfig& config);

// The config's fp8_config as the ACCELERATE_FP8_* variables (only the keys
// it sets). REQUIRES: `env` is not null.
void AddFp8Environment(const Fp8Config& fp8,
                       std::map<std::string, std::string>* env);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_FEATURE_ENV_H_
