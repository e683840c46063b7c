// What the launcher asked for when it exported an FSDP configuration
// (`accelerate launch` with `distributed_type: FSDP` or `--use_fsdp`:
// ACCELERATE_USE_FSDP, FSDP_VERSION, FSDP_SHARDING_STRATEGY or, for FSDP 2,
// FSDP_RESHARD_AFTER_FORWARD, and the other FSDP_* variables), resolved to
// a strategy this process can honour, or refused: a program configured
// to shard never trains replicated without saying so.
//
// What runs (see README, "Sharding"): `NO_SHARD` is data parallel;
// `SHARD_GRAD_OP` (FSDP 2: `reshard_after_forward: false`) keeps the
// parameters whole on every process and shards the gradients (after their
// average) and the optimizer state, ZeRO-2 style; `FULL_SHARD` (FSDP 2's
// default) shards the parameters too, in units picked by the auto-wrap
// policy (FSDP_AUTO_WRAP_POLICY, FSDP_TRANSFORMER_CLS_TO_WRAP,
// FSDP_MIN_NUM_PARAMS) with FSDP_FORWARD_PREFETCH and
// FSDP_BACKWARD_PREFETCH (fully_sharded_model.h); `HYBRID_SHARD` and
// `HYBRID_SHARD_ZERO2` shard within a node and replicate across nodes.
// FSDP_ACTIVATION_CHECKPOINTING and FSDP_OFFLOAD_PARAMS need units: with
// them, `SHARD_GRAD_OP` runs as FSDP runs it (parameters sharded at rest,
// each unit gathered for its forward and kept until its backward) and
// `NO_SHARD` as units every process holds whole (`unit_engine`).
// FSDP_STATE_DICT_TYPE SHARDED_STATE_DICT (and LOCAL_STATE_DICT, written
// alike) makes checkpoints of sharded parameters per-process parts that
// load on any number of processes; where the parameters stay whole it, and
// the unit keys, draw a warning: those checkpoints are whole.
//
// clang-format off
//   absl::StatusOr<ShardingStrategy> Example(const state::Environment& env) {
//     auto config = ResolveShardingConfig(env);
//     if (!config.ok()) return config.status();
//     return config->strategy;
//   }
// clang-format on
//
// Thread safety: plain values and pure functions (warnings go to the log).

#ifndef ACCELERATE_SHARDING_SHARDING_CONFIG_H_
#define ACCELERATE_SHARDING_SHARDING_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sharding/auto_wrap.h"
#include "sharding/fully_sharded_model.h"
#include "state/environment.h"

namespace accelerate::sharding {

// Accelerate's (PyTorch FSDP's) sharding strategies, and none.
enum class ShardingStrategy {
  kNone,            // no FSDP configuration: plain data parallel
  kNoShard,         // NO_SHARD: data parallel
  kShardGradOp,     // SHARD_GRAD_OP: gradients and optimizer state sharded
  kFullShard,       // FULL_SHARD: parameters too
  kHybridShard,     // HYBRID_SHARD: FULL_SHARD within a node, replicated
  kHybridShardZero2,// HYBRID_SHARD_ZERO2: SHARD_GRAD_OP within a node
  kZero1,           // DeepSpeed ZeRO stage 1: optimizer state sharded
  kZero2,           // DeepSpeed ZeRO stage 2: and gradients
  kZero3,           // DeepSpeed ZeRO stage 3: and parameters (FULL_SHARD)
};

// "none", "NO_SHARD", "SHARD_GRAD_OP", "FULL_SHARD", "HYBRID_SHARD",
// "HYBRID_SHARD_ZERO2", "ZERO_1", "ZERO_2", "ZERO_3".
std::string ShardingStrategyName(ShardingStrategy strategy);

struct ShardingConfig {
  ShardingStrategy strategy = ShardingStrategy::kNone;
  // FSDP_VERSION (1 or 2); 0 without FSDP.
  int fsdp_version = 0;
  // FULL_SHARD: which submodules are units, and the engine's options
  // (`units` left empty: filled from `auto_wrap` and the model at
  // `Prepare`).
  AutoWrapPolicy auto_wrap;
  FullyShardedOptions full_shard;
  // FULL_SHARD checkpoints: each process writes its own parts
  // (SHARDED_STATE_DICT, or LOCAL_STATE_DICT, which is written the same
  // way) instead of gathering the whole model and optimizer state
  // (FULL_STATE_DICT, the default).
  bool sharded_state_dict = false;
  // SHARD_GRAD_OP or NO_SHARD run on the units' engine
  // (`FullyShardedModel`, with `full_shard`'s options), as activation
  // checkpointing and CPU offload need.
  bool unit_engine = false;
  // Whether the optimizer state is sharded on its own (ShardedOptimizer).
  bool shards_optimizer_state() const {
    return (strategy == ShardingStrategy::kShardGradOp && !unit_engine) ||
           strategy == ShardingStrategy::kZero1 ||
           strategy == ShardingStrategy::kZero2;
  }
  // Whether the model runs on the units' engine (FullyShardedModel).
  bool shards_parameters() const {
    return unit_engine || strategy == ShardingStrategy::kFullShard ||
           strategy == ShardingStrategy::kZero3 ||
           strategy == ShardingStrategy::kHybridShard ||
           strategy == ShardingStrategy::kHybridShardZero2;
  }
  // Whether only a slice of the gradients is kept between steps (all but
  // ZeRO-1, which keeps them whole).
  bool shards_gradients() const {
    return shards_optimizer_state() && strategy != ShardingStrategy::kZero1;
  }
};

// Reads the FSDP_* variables of `env`, or DeepSpeed's as Accelerate's
// launcher exports them (ACCELERATE_USE_DEEPSPEED,
// ACCELERATE_DEEPSPEED_ZERO_STAGE, ACCELERATE_DEEPSPEED_OFFLOAD_*_DEVICE,
// or the `zero_optimization` section of ACCELERATE_DEEPSPEED_CONFIG_FILE):
// ZeRO stage 0 is data parallel, stages 1 and 2 shard the optimizer state
// (and, for 2, the gradients) on the same engine as SHARD_GRAD_OP; stage 3
// is FULL_SHARD with every module holding parameters a unit and both
// prefetches on (DeepSpeed's per-module gathering); offloading is refused. InvalidArgument names a malformed value (a
// strategy that does not exist, an unreadable config file, a stage that is
// not a number); Unimplemented names what is configured but cannot run
// here yet.
[[nodiscard]] absl::StatusOr<ShardingConfig> ResolveShardingConfig(
    const state::Environment& env);

}  // namespace accelerate::sharding

#endif  // ACCELERATE_SHARDING_SHARDING_CONFIG_H_
