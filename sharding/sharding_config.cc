#include "sharding/sharding_config.h"

#include <fstream>
#include <optional>
#include <sstream>
#include <utility>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
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

// What DeepSpeed's `zero_optimization` asks for.
struct ZeroSettings {
  int stage = 2;
  std::string offload_optimizer_device = "none";
  std::string offload_param_device = "none";
  std::string source;  // for messages
};

absl::StatusOr<ZeroSettings> ZeroFromConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ACCELERATE_DEEPSPEED_CONFIG_FILE: cannot read ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  google::protobuf::Struct root;
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(text.str(), &root);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ACCELERATE_DEEPSPEED_CONFIG_FILE: ", path, " is not JSON: ",
        parsed.message().as_string()));
  }
  ZeroSettings zero;
  zero.stage = 0;  // DeepSpeed's default without the section.
  zero.source = absl::StrCat(path, ": zero_optimization");
  const auto section = root.fields().find("zero_optimization");
  if (section == root.fields().end()) return zero;
  if (!section->second.has_struct_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(zero.source, " is not an object"));
  }
  const auto& fields = section->second.struct_value().fields();
  if (const auto stage = fields.find("stage"); stage != fields.end()) {
    const double number = stage->second.number_value();
    if (!stage->second.has_number_value() || number != static_cast<int>(number)) {
      return absl::InvalidArgumentError(absl::StrCat(
          zero.source, ".stage must be a number 0-3 (\"auto\" is filled by "
          "Accelerate's Python side, which does not run here)"));
    }
    zero.stage = static_cast<int>(number);
  }
  for (const auto& [key, target] :
       {std::pair<std::string, std::string*>{"offload_optimizer",
                                             &zero.offload_optimizer_device},
        {"offload_param", &zero.offload_param_device}}) {
    const auto found = fields.find(key);
    if (found == fields.end() || !found->second.has_struct_value()) continue;
    const auto& offload = found->second.struct_value().fields();
    if (const auto device = offload.find("device"); device != offload.end()) {
      *target = absl::AsciiStrToLower(device->second.string_value());
    }
  }
  return zero;
}

absl::StatusOr<ShardingConfig> ResolveDeepSpeed(const state::Environment& env) {
  ZeroSettings zero;
  const std::string file =
      env.Get("ACCELERATE_DEEPSPEED_CONFIG_FILE").value_or("none");
  if (file != "none" && !file.empty()) {
    auto from_file = ZeroFromConfigFile(file);
    if (!from_file.ok()) return from_file.status();
    zero = *std::move(from_file);
  } else {
    const std::string stage =
        env.Get("ACCELERATE_DEEPSPEED_ZERO_STAGE").value_or("2");
    if (!absl::SimpleAtoi(stage, &zero.stage)) zero.stage = -1;
    zero.source = "ACCELERATE_DEEPSPEED_ZERO_STAGE";
    zero.offload_optimizer_device =
        env.Get("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE").value_or("none");
    zero.offload_param_device =
        env.Get("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE").value_or("none");
  }
  if (zero.stage < 0 || zero.stage > 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        zero.source, ": stage ", zero.stage, " is not one of 0, 1, 2, 3"));
  }
  if (zero.stage == 3) {
    return NotYet(absl::StrCat("DeepSpeed ZeRO stage 3 (", zero.source, ")"));
  }
  if (zero.offload_optimizer_device != "none") {
    return FeatureNotYet(absl::StrCat("offload_optimizer device \"",
                                      zero.offload_optimizer_device, "\" (",
                                      zero.source, ")"));
  }
  if (zero.offload_param_device != "none") {
    return FeatureNotYet(absl::StrCat("offload_param device \"",
                                      zero.offload_param_device, "\" (",
                                      zero.source, ")"));
  }
  ShardingConfig config;
  config.strategy = zero.stage == 0   ? ShardingStrategy::kNoShard
                    : zero.stage == 1 ? ShardingStrategy::kZero1
                                      : ShardingStrategy::kZero2;
  return config;
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
    case ShardingStrategy::kZero1:
      return "ZERO_1";
    case ShardingStrategy::kZero2:
      return "ZERO_2";
  }
  return "none";
}

absl::StatusOr<ShardingConfig> ResolveShardingConfig(
    const state::Environment& env) {
  ShardingConfig config;
  auto use_fsdp = ParseBool(env, "ACCELERATE_USE_FSDP", false);
  if (!use_fsdp.ok()) return use_fsdp.status();
  auto use_deepspeed = ParseBool(env, "ACCELERATE_USE_DEEPSPEED", false);
  if (!use_deepspeed.ok()) return use_deepspeed.status();
  if (*use_fsdp && *use_deepspeed) {
    return absl::InvalidArgumentError(
        "ACCELERATE_USE_FSDP and ACCELERATE_USE_DEEPSPEED are both set: "
        "choose one");
  }
  if (*use_deepspeed) return ResolveDeepSpeed(env);
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
