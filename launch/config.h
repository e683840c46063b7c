// Reading and writing Accelerate's YAML config files (`accelerate config`,
// `default_config.yaml`) as a typed `LaunchConfig`.
//
// clang-format off
//   #include <iostream>
//   int Example(const std::string& path) {
//     absl::StatusOr<LoadedConfig> loaded = LoadConfigFile(path);
//     if (!loaded.ok()) return 1;
//     for (const std::string& key : loaded->unsupported_keys) {
//       std::cerr << "not supported: " << key << "\n";
//     }
//     return loaded->config.num_processes();
//   }
// clang-format on
//
// Files written by every Accelerate version since 0.11 load: old spellings
// (`fp16: true`, top-level `dynamo_backend`, `fsdp_backward_prefetch_policy`,
// numeric sharding strategies) are understood, keys Accelerate knows but we
// do not run (Megatron-LM, TPU, dynamo, mpirun, ...) are listed in
// `unsupported_keys` when they ask for something, and any other key is an
// error naming it.
//
// Thread safety: the functions keep no state; concurrent writes to one path
// each land whole (the last rename wins).

#ifndef ACCELERATE_LAUNCH_CONFIG_H_
#define ACCELERATE_LAUNCH_CONFIG_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "launch/config.pb.h"
#include "state/environment.h"

namespace accelerate::launch {

struct LoadedConfig {
  LaunchConfig config;
  // Accelerate keys this launcher ignores although they ask for something
  // (e.g. "megatron_lm_config", "tpu_name"), for a warning.
  std::vector<std::string> unsupported_keys;
  // The keys of the `deepspeed_config` section as written, unknown and null
  // ones included: Accelerate's launcher passes them on
  // (ACCELERATE_CONFIG_DS_FIELDS).
  std::vector<std::string> deepspeed_config_keys;
  // Keys inside known sections that neither we nor Accelerate define, as
  // "section.key", for a warning (Accelerate does not check them either).
  std::vector<std::string> unknown_section_keys;
};

// Parses the YAML text of a config file; `source` names it in errors.
// `InvalidArgument` for malformed YAML, an unknown top-level key, or a value
// of the wrong type (naming the key and the value).
[[nodiscard]] absl::StatusOr<LoadedConfig> ParseConfig(
    absl::string_view yaml, absl::string_view source);

// Reads and parses `path`. `NotFound` when the file does not exist.
[[nodiscard]] absl::StatusOr<LoadedConfig> LoadConfigFile(
    const std::string& path);

// The YAML text of `config`: keys sorted, strings quoted, as Python
// Accelerate writes it (so that Python Accelerate reads it back).
std::string ConfigToYaml(const LaunchConfig& config);

// The set keys of `config` and their values as plain text, sorted by key;
// sections read `{key: value, ...}`. For `accelerate env`.
std::vector<std::pair<std::string, std::string>> ConfigEntries(
    const LaunchConfig& config);

// Writes `config` to `path` atomically (a temporary file renamed over it),
// creating missing parent folders.
[[nodiscard]] absl::Status WriteConfigFile(const LaunchConfig& config,
                                           const std::string& path);

// Accelerate's default config path: $HF_HOME/accelerate/default_config.yaml,
// where HF_HOME defaults to $XDG_CACHE_HOME/huggingface and XDG_CACHE_HOME to
// ~/.cache.
std::string DefaultConfigPath(const state::Environment& env);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_CONFIG_H_
