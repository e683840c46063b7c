// The variables Accelerate's launcher sets for its features, from flags and
// the config file's sections: FSDP (`FSDP_*`, `ACCELERATE_USE_FSDP`) and FP8
// (`ACCELERATE_FP8_*`). Part of `accelerate launch`'s resolution
// (launch_plan.h).
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status AddFeatures(const ParsedFlags& flags,
//                            const LaunchConfig& config,
//                            std::map<std::string, std::string>* env) {
//     ACCELERATE_RETURN_IF_ERROR(
//         AddFsdpEnvironment(flags, config.fsdp_config(), env));
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

// The config's fp8_config as the ACCELERATE_FP8_* variables (only the keys
// it sets). REQUIRES: `env` is not null.
void AddFp8Environment(const Fp8Config& fp8,
                       std::map<std::string, std::string>* env);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_FEATURE_ENV_H_
