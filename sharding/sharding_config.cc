#include "sharding/sharding_config.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "state/logging.h"

namespace accelerate::sharding {
namespace {

const std::vector<std::string>& StrategyNames() {
  // In FSDP's numbering (Accelerate <= 0.25 wrote the number, from 1).
  static const auto* names = new std::vector<std::string>{
      "FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD",
      "HYBRID_SHARD_ZERO2"};
  return *names;
}

absl::StatusOr<bool> ParseBool(const state::Environment& env,
                               const char* name, bool fallback) {
  const std::optional<std::string> text = env.Get(name);
  if (!text.has_value() || text->empty()) return fallback;
  const std::string lower = absl::AsciiStrToLower(*text);
  if (lower == "true" || lower == "1" || lower == "yes") return true;
  if (lower == "false" || lower == "0" || lower == "no") return false;
  return absl::InvalidArgumentError(absl::StrCat(
      name, ": \"", *text, "\" is not one of true, false, 1, 0"));
}

absl::Status NotYet(const std::string& what) {
  return absl::UnimplementedError(absl::StrCat(
      what,
      " is not supported by accelerate-cpp yet: the model would train "
      "replicated on every process, so the run is refused. Supported: "
      "NO_SHARD (data parallel) and SHARD_GRAD_OP (gradients and optimizer "
      "state sharded, parameters whole)"));
}

absl::Status FeatureNotYet(const std::string& what) {
  return absl::UnimplementedError(absl::StrCat(
      what,
      " is not supported by accelerate-cpp yet; the run is refused rather "
      "than run without it"));
}

}  // namespace

std::string ShardingStrategyName(ShardingStrategy strategy) {
  switch (strategy) {
    case ShardingStrategy::kNone:
      return "none";
    case ShardingStrategy::kNoShard:
      return "NO_SHARD";
    case ShardingStrategy::kShardGradOp:
      return "SHARD_GRAD_OP";
    case ShardingStrategy::kFullShard:
      return "FULL_SHARD";
    case ShardingStrategy::kHybridShard:
      return "HYBRID_SHARD";
    case ShardingStrategy::kHybridShardZero2:
      return "HYBRID_SHARD_ZERO2";
  }
  return "none";
}

absl::StatusOr<ShardingConfig> ResolveShardingConfig(
    const state::Environment& env) {
  ShardingConfig config;
  auto use_fsdp = ParseBool(env, "ACCELERATE_USE_FSDP", false);
  if (!use_fsdp.ok()) return use_fsdp.status();
  if (!*use_fsdp) return config;

  const std::string version = env.Get("FSDP_VERSION").value_or("1");
  if (version != "1" && version != "2") {
    return absl::InvalidArgumentError(absl::StrCat(
        "FSDP_VERSION: \"", version, "\" is not one of 1, 2"));
  }
  config.fsdp_version = version == "1" ? 1 : 2;

  std::string strategy;
  std::string source;
  if (config.fsdp_version == 2) {
    // FSDP 2 has no strategies: resharding after forward or not.
    auto reshard = ParseBool(env, "FSDP_RESHARD_AFTER_FORWARD", true);
    if (!reshard.ok()) return reshard.status();
    strategy = *reshard ? "FULL_SHARD" : "SHARD_GRAD_OP";
    source = absl::StrCat("FSDP_VERSION=2 with FSDP_RESHARD_AFTER_FORWARD=",
                          *reshard ? "true" : "false", " (", strategy, ")");
  } else {
    strategy = env.Get("FSDP_SHARDING_STRATEGY").value_or("FULL_SHARD");
    int number = 0;
    if (absl::SimpleAtoi(strategy, &number) && number >= 1 &&
        number <= static_cast<int>(StrategyNames().size())) {
      strategy = StrategyNames()[number - 1];
    }
    source = absl::StrCat("FSDP_SHARDING_STRATEGY=", strategy);
  }
  if (strategy == "NO_SHARD") {
    config.strategy = ShardingStrategy::kNoShard;
  } else if (strategy == "SHARD_GRAD_OP") {
    config.strategy = ShardingStrategy::kShardGradOp;
  } else if (strategy == "FULL_SHARD") {
    return NotYet(source);
  } else if (strategy == "HYBRID_SHARD" || strategy == "HYBRID_SHARD_ZERO2") {
    return NotYet(source);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("FSDP_SHARDING_STRATEGY: \"", strategy,
                     "\" is not one of ", absl::StrJoin(StrategyNames(), ", ")));
  }

  // What would change the numbers or the memory and cannot run here.
  for (const char* name :
       {"FSDP_OFFLOAD_PARAMS", "FSDP_ACTIVATION_CHECKPOINTING"}) {
    auto on = ParseBool(env, name, false);
    if (!on.ok()) return on.status();
    if (*on) return FeatureNotYet(absl::StrCat(name, "=true"));
  }
  // What means nothing when the whole model is one unit whose parameters
  // stay whole: said once, then ignored. (CPU-RAM-efficient loading,
  // Accelerate's default, is what `Prepare` does anyway: the main
  // process's weights are broadcast to the others.)
  std::vector<std::string> ignored;
  for (const char* name :
       {"FSDP_AUTO_WRAP_POLICY", "FSDP_TRANSFORMER_CLS_TO_WRAP",
        "FSDP_MIN_NUM_PARAMS", "FSDP_BACKWARD_PREFETCH",
        "FSDP_STATE_DICT_TYPE", "FSDP_USE_ORIG_PARAMS",
        "FSDP_IGNORED_MODULES", "FSDP_SYNC_MODULE_STATES",
        "FSDP_CPU_RAM_EFFICIENT_LOADING"}) {
    if (env.Get(name).has_value()) ignored.push_back(name);
  }
  auto forward_prefetch = ParseBool(env, "FSDP_FORWARD_PREFETCH", false);
  if (!forward_prefetch.ok()) return forward_prefetch.status();
  if (*forward_prefetch) ignored.push_back("FSDP_FORWARD_PREFETCH");
  if (!ignored.empty() && config.strategy != ShardingStrategy::kNoShard) {
    ACCELERATE_LOG(WARNING)
        << source << ": " << absl::StrJoin(ignored, ", ")
        << " have no effect here (the parameters stay whole, the model is "
           "one unit; only gradients and optimizer state are sharded)";
  }
  return config;
}

}  // namespace accelerate::sharding
