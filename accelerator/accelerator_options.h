// The Accelerator's options, and their resolution against the launcher's
// environment: what is not given comes from the variables `accelerate launch`
// sets (ACCELERATE_MIXED_PRECISION, ACCELERATE_GRADIENT_ACCUMULATION_STEPS,
// ACCELERATE_LOG_WITH, ACCELERATE_PROJECT_DIR); `cpu` is resolved by
// //state (ACCELERATE_USE_CPU).
//
// clang-format off
//   absl::StatusOr<AcceleratorOptions> Example() {
//     AcceleratorOptions options;
//     options.gradient_accumulation_steps = 4;
//     // mixed_precision is filled from ACCELERATE_MIXED_PRECISION, else "no".
//     return ResolveAcceleratorOptions(options, state::ProcessEnvironment());
//   }
// clang-format on
//
// Thread safety: plain values and a pure function.

#ifndef ACCELERATE_ACCELERATOR_ACCELERATOR_OPTIONS_H_
#define ACCELERATE_ACCELERATOR_ACCELERATOR_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "accelerator/gradient_state.h"
#include "checkpoint/project.h"
#include "precision/fp8_recipe.h"
#include "precision/grad_scaler.h"
#include "sharding/sharding_config.h"
#include "trackers/trackers.h"
#include "state/environment.h"

namespace accelerate {

struct AcceleratorOptions {
  // "no", "fp16" (autocast to float16 with dynamic loss scaling), "bf16"
  // (autocast to bfloat16) or "fp8" (the model's `precision::Fp8Linear`
  // layers compute in float8 as `fp8` says, the rest autocasts to bfloat16),
  // in any case, on CPU or GPU; autocast covers `Accumulate` scopes.
  // Default: ACCELERATE_MIXED_PRECISION, else no.
  std::optional<std::string> mixed_precision;
  // The FP8 recipe (Accelerate's fp8_config), for "fp8"; what is not given
  // comes from ACCELERATE_FP8_*.
  precision::Fp8Options fp8;
  // Which `Fp8Linear` layers (by their name in the model) compute in float8
  // under "fp8". Default: as Accelerate's, every one with Transformer
  // Engine's delayed scaling; with torchao's recipes all but the model's
  // first and last linear layers and those whose sizes are not multiples of
  // 16.
  std::function<bool(const std::string& name)> fp8_module_filter;
  // The fp16 loss scaler's settings (Accelerate's `GradScalerKwargs`):
  // initial scale, growth and backoff factors, growth interval; PyTorch's
  // defaults.
  precision::GradScalerOptions grad_scaler;
  // Batches per optimizer step. Default: `gradient_accumulation_plugin`'s
  // `num_steps`, else ACCELERATE_GRADIENT_ACCUMULATION_STEPS, else 1.
  std::optional<int> gradient_accumulation_steps;
  // Accelerate's GradientAccumulationPlugin: how accumulation meets the end
  // of the data, per-batch all-reduce, scheduler counting. Resolved, its
  // `num_steps` equals `gradient_accumulation_steps`.
  GradientAccumulationPlugin gradient_accumulation_plugin;
  // Run on CPU even with GPUs. Default: ACCELERATE_USE_CPU.
  std::optional<bool> cpu;
  // The scheduler steps with the optimizer (only on synchronized steps).
  bool step_scheduler_with_optimizer = true;
  // Data-loader configuration (Accelerate's DataLoaderConfiguration).
  bool split_batches = false;
  bool even_batches = true;
  bool dispatch_batches = false;
  // Seed of the seedable sampler when a loader shuffles.
  uint64_t data_seed = 0;
  // Data parallel: bucket size, unused parameters, buffer broadcast.
  int64_t bucket_cap_mb = 25;
  bool find_unused_parameters = false;
  bool broadcast_buffers = true;
  // Where checkpoints go and how they are named and kept (Accelerate's
  // ProjectConfiguration; see checkpoint/project.h). Default: no project
  // folder, `SaveState` needs a folder.
  checkpoint::ProjectConfiguration project_config;
  // Trackers (Accelerate's `log_with` and the trackers' `init_kwargs`):
  // `trackers.log_with` names built-in ones ("tensorboard", "mlflow",
  // "jsonl", "csv", "all"; from ACCELERATE_LOG_WITH, comma-separated, when
  // empty), `trackers.custom` adds users' own. Their logs go to
  // `project_config.logging_dir` (its `project_dir` from
  // ACCELERATE_PROJECT_DIR when empty). Default none.
  trackers::TrackersOptions trackers;
  // Sharding (Accelerate's FSDP plugin): from the launcher's FSDP_*
  // variables when not given (sharding/sharding_config.h says what runs and
  // what is refused). Default: from the environment.
  std::optional<sharding::ShardingConfig> sharding;
  // Process-group timeout (rendezvous and collectives).
  absl::Duration timeout = absl::Minutes(30);
};

// `options` with `mixed_precision` (in lower case) and
// `gradient_accumulation_steps` (and the plugin's `num_steps`) filled (from
// `env` where not given) and every value checked. `InvalidArgument` names a
// bad value and what would be valid (both `gradient_accumulation_steps` and
// the plugin's `num_steps` given, say).
[[nodiscard]] absl::StatusOr<AcceleratorOptions> ResolveAcceleratorOptions(
    const AcceleratorOptions& options, const state::Environment& env);

}  // namespace accelerate

#endif  // ACCELERATE_ACCELERATOR_ACCELERATOR_OPTIONS_H_
