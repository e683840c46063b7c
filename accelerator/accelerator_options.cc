#include "accelerator/accelerator_options.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "precision/mixed_precision.h"
#include "state/status_macros.h"
#include "trackers/trackers.h"

namespace accelerate {

absl::StatusOr<AcceleratorOptions> ResolveAcceleratorOptions(
    const AcceleratorOptions& options, const state::Environment& env) {
  AcceleratorOptions resolved = options;
  if (!resolved.mixed_precision.has_value()) {
    resolved.mixed_precision =
        env.Get("ACCELERATE_MIXED_PRECISION").value_or("no");
  }
  ACCELERATE_ASSIGN_OR_RETURN(
      const precision::MixedPrecision mixed_precision,
      precision::ParseMixedPrecision(*resolved.mixed_precision));
  resolved.mixed_precision =
      std::string(precision::MixedPrecisionName(mixed_precision));
  std::optional<int>& plugin_steps =
      resolved.gradient_accumulation_plugin.num_steps;
  if (plugin_steps.has_value() &&
      resolved.gradient_accumulation_steps.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gradient_accumulation_steps ", *resolved.gradient_accumulation_steps,
        " and gradient_accumulation_plugin.num_steps ", *plugin_steps,
        ": give only one of them"));
  }
  if (plugin_steps.has_value()) {
    resolved.gradient_accumulation_steps = plugin_steps;
  }
  if (!resolved.gradient_accumulation_steps.has_value()) {
    int steps = 1;
    if (std::optional<std::string> value =
            env.Get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")) {
      if (!absl::SimpleAtoi(*value, &steps)) {
        return absl::InvalidArgumentError(
            absl::StrCat("ACCELERATE_GRADIENT_ACCUMULATION_STEPS=\"", *value,
                         "\" is not an integer"));
      }
    }
    resolved.gradient_accumulation_steps = steps;
  }
  if (*resolved.gradient_accumulation_steps < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        plugin_steps.has_value() ? "gradient_accumulation_plugin.num_steps "
                                 : "gradient_accumulation_steps ",
        *resolved.gradient_accumulation_steps, " is not a positive count"));
  }
  plugin_steps = resolved.gradient_accumulation_steps;
  if (resolved.bucket_cap_mb < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bucket_cap_mb ", resolved.bucket_cap_mb, " is not a positive size"));
  }
  const precision::GradScalerOptions& scaler = resolved.grad_scaler;
  if (!(scaler.init_scale > 0) || !(scaler.growth_factor > 1) ||
      !(scaler.backoff_factor > 0 && scaler.backoff_factor < 1) ||
      scaler.growth_interval < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "grad_scaler: init_scale ", scaler.init_scale, ", growth_factor ",
        scaler.growth_factor, ", backoff_factor ", scaler.backoff_factor,
        ", growth_interval ", scaler.growth_interval,
        ": need init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1 "
        "and growth_interval >= 1"));
  }
  checkpoint::ProjectConfiguration& project = resolved.project_config;
  if (project.project_dir.empty()) {
    project.project_dir = env.Get("ACCELERATE_PROJECT_DIR").value_or("");
  }
  if (project.logging_dir.empty()) project.logging_dir = project.project_dir;
  std::vector<std::string>& log_with = resolved.trackers.log_with;
  if (log_with.empty()) {
    if (const std::optional<std::string> text = env.Get("ACCELERATE_LOG_WITH")) {
      auto names = trackers::ParseLogWith(*text);
      if (!names.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "ACCELERATE_LOG_WITH: ", names.status().message()));
      }
      log_with = *std::move(names);
    }
  }
  ACCELERATE_ASSIGN_OR_RETURN(
      resolved.trackers, trackers::ResolveTrackersOptions(resolved.trackers, env));
  if (!resolved.sharding.has_value()) {
    ACCELERATE_ASSIGN_OR_RETURN(resolved.sharding,
                                sharding::ResolveShardingConfig(env));
  }
  if (resolved.sharding->shards_optimizer_state() &&
      *resolved.mixed_precision == "fp16") {
    return absl::UnimplementedError(absl::StrCat(
        "sharding ", sharding::ShardingStrategyName(resolved.sharding->strategy),
        " with mixed_precision fp16 is not supported yet (the loss scaler "
        "would see only this process's gradient slice); use bf16 or no"));
  }
  if (project.automatic_checkpoint_naming && project.project_dir.empty()) {
    return absl::InvalidArgumentError(
        "project_config.automatic_checkpoint_naming needs a project_dir");
  }
  if (project.total_limit.has_value() && *project.total_limit < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("project_config.total_limit ", *project.total_limit,
                     " is not a positive count"));
  }
  if (project.save_on_each_node) {
    return absl::InvalidArgumentError(
        "project_config.save_on_each_node is not supported: checkpoints are "
        "written into one folder on a file system every process shares");
  }
  if (project.iteration < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "project_config.iteration ", project.iteration, " is negative"));
  }
  return resolved;
}

}  // namespace accelerate
