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
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "state/logging.h"
#include "state/status_macros.h"

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

// FSDP_AUTO_WRAP_POLICY and its companions, as Accelerate reads them.
absl::StatusOr<AutoWrapPolicy> ResolveAutoWrap(const state::Environment& env) {
  AutoWrapPolicy policy;
  const std::string name = absl::AsciiStrToUpper(
      env.Get("FSDP_AUTO_WRAP_POLICY").value_or("NO_WRAP"));
  if (name == "NO_WRAP") return policy;
  if (name == "TRANSFORMER_BASED_WRAP") {
    policy.kind = AutoWrapKind::kTransformerLayers;
    for (absl::string_view cls : absl::StrSplit(
             env.Get("FSDP_TRANSFORMER_CLS_TO_WRAP").value_or(""), ',',
             absl::SkipWhitespace())) {
      policy.layer_classes.emplace_back(absl::StripAsciiWhitespace(cls));
    }
    return policy;
  }
  if (name == "SIZE_BASED_WRAP") {
    const std::string text = env.Get("FSDP_MIN_NUM_PARAMS").value_or("0");
    int64_t min_num_params = 0;
    if (!absl::SimpleAtoi(text, &min_num_params) || min_num_params < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "FSDP_MIN_NUM_PARAMS: \"", text,
          "\" is not a non-negative number of parameters"));
    }
    // Accelerate ignores 0: no wrapping.
    if (min_num_params == 0) return policy;
    policy.kind = AutoWrapKind::kSize;
    policy.min_num_params = min_num_params;
    return policy;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("FSDP_AUTO_WRAP_POLICY: \"", name,
                   "\" is not one of TRANSFORMER_BASED_WRAP, SIZE_BASED_WRAP, "
                   "NO_WRAP"));
}

// FSDP_BACKWARD_PREFETCH: a name or FSDP's number; unset is none, as
// Accelerate passes it (FSDP 2 always prefetches the next unit).
absl::StatusOr<BackwardPrefetch> ResolveBackwardPrefetch(
    const state::Environment& env, int fsdp_version) {
  if (fsdp_version == 2) return BackwardPrefetch::kBackwardPre;
  const std::optional<std::string> text = env.Get("FSDP_BACKWARD_PREFETCH");
  if (!text.has_value() || text->empty()) return BackwardPrefetch::kNone;
  const std::string upper = absl::AsciiStrToUpper(*text);
  if (upper == "BACKWARD_PRE" || upper == "1") {
    return BackwardPrefetch::kBackwardPre;
  }
  if (upper == "BACKWARD_POST" || upper == "2") {
    return BackwardPrefetch::kBackwardPost;
  }
  if (upper == "NO_PREFETCH") return BackwardPrefetch::kNone;
  return absl::InvalidArgumentError(absl::StrCat(
      "FSDP_BACKWARD_PREFETCH: \"", *text,
      "\" is not one of BACKWARD_PRE, BACKWARD_POST, NO_PREFETCH"));
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
  // Stage 3 offloads to CPU memory (slices, gradients and optimizer state
  // together); NVMe, and offloading below stage 3, do not run here.
  const bool offload_cpu = zero.offload_optimizer_device == "cpu" ||
                           zero.offload_param_device == "cpu";
  if (zero.offload_optimizer_device != "none" &&
      (zero.stage != 3 || zero.offload_optimizer_device != "cpu")) {
    return FeatureNotYet(absl::StrCat("offload_optimizer device \"",
                                      zero.offload_optimizer_device, "\" (",
                                      zero.source, ", stage ", zero.stage,
                                      ")"));
  }
  if (zero.offload_param_device != "none" &&
      (zero.stage != 3 || zero.offload_param_device != "cpu")) {
    return FeatureNotYet(absl::StrCat("offload_param device \"",
                                      zero.offload_param_device, "\" (",
                                      zero.source, ", stage ", zero.stage,
                                      ")"));
  }
  ShardingConfig config;
  config.strategy = zero.stage == 0   ? ShardingStrategy::kNoShard
                    : zero.stage == 1 ? ShardingStrategy::kZero1
                    : zero.stage == 2 ? ShardingStrategy::kZero2
                                      : ShardingStrategy::kZero3;
  if (zero.stage == 3) {
    // DeepSpeed gathers each module's own parameters as the module runs,
    // and prefetches the next: every module holding parameters of its own
    // is a unit, with both prefetches on.
    config.auto_wrap.kind = AutoWrapKind::kSize;
    config.auto_wrap.min_num_params = 1;
    config.full_shard.forward_prefetch = true;
    config.full_shard.backward_prefetch = BackwardPrefetch::kBackwardPre;
    config.full_shard.offload_params = offload_cpu;
  }
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
    case ShardingStrategy::kZero3:
      return "ZERO_3";
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
    config.strategy = ShardingStrategy::kFullShard;
  } else if (strategy == "HYBRID_SHARD") {
    config.strategy = ShardingStrategy::kHybridShard;
    config.full_shard.shard_group_size = -1;
  } else if (strategy == "HYBRID_SHARD_ZERO2") {
    config.strategy = ShardingStrategy::kHybridShardZero2;
    config.full_shard.shard_group_size = -1;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("FSDP_SHARDING_STRATEGY: \"", strategy,
                     "\" is not one of ", absl::StrJoin(StrategyNames(), ", ")));
  }

  auto checkpointing = ParseBool(env, "FSDP_ACTIVATION_CHECKPOINTING", false);
  if (!checkpointing.ok()) return checkpointing.status();
  auto offload = ParseBool(env, "FSDP_OFFLOAD_PARAMS", false);
  if (!offload.ok()) return offload.status();
  if ((*checkpointing || *offload) && !config.shards_parameters()) {
    // Both need units: SHARD_GRAD_OP then runs as FSDP runs it (sharded
    // at rest, gathered for the forward, kept until the backward), and
    // NO_SHARD as units every process holds whole.
    config.unit_engine = true;
    if (config.strategy == ShardingStrategy::kNoShard) {
      config.full_shard.shard_group_size = 1;
    }
    ACCELERATE_LOG(INFO)
        << source << " with "
        << (*checkpointing ? "FSDP_ACTIVATION_CHECKPOINTING" : "")
        << (*checkpointing && *offload ? " and " : "")
        << (*offload ? "FSDP_OFFLOAD_PARAMS" : "")
        << ": runs on units (the auto-wrap policy's), as FSDP does";
  }
  config.full_shard.activation_checkpointing = *checkpointing;
  config.full_shard.offload_params = *offload;
  ACCELERATE_ASSIGN_OR_RETURN(config.auto_wrap, ResolveAutoWrap(env));
  ACCELERATE_ASSIGN_OR_RETURN(
      config.full_shard.backward_prefetch,
      ResolveBackwardPrefetch(env, config.fsdp_version));
  auto forward_prefetch = ParseBool(env, "FSDP_FORWARD_PREFETCH", false);
  if (!forward_prefetch.ok()) return forward_prefetch.status();
  config.full_shard.forward_prefetch = *forward_prefetch;
  const std::string state_dict =
      absl::AsciiStrToUpper(env.Get("FSDP_STATE_DICT_TYPE").value_or(
          "FULL_STATE_DICT"));
  if (state_dict != "FULL_STATE_DICT" && state_dict != "SHARDED_STATE_DICT" &&
      state_dict != "LOCAL_STATE_DICT") {
    return absl::InvalidArgumentError(absl::StrCat(
        "FSDP_STATE_DICT_TYPE: \"", state_dict,
        "\" is not one of FULL_STATE_DICT, LOCAL_STATE_DICT, "
        "SHARDED_STATE_DICT"));
  }
  if (state_dict != "FULL_STATE_DICT" && config.shards_parameters()) {
    config.sharded_state_dict = true;
    if (state_dict == "LOCAL_STATE_DICT") {
      ACCELERATE_LOG(INFO)
          << "FSDP_STATE_DICT_TYPE=LOCAL_STATE_DICT: written as "
             "SHARDED_STATE_DICT (each process's parts, loadable on any "
             "number of processes)";
    }
  } else if (state_dict != "FULL_STATE_DICT" &&
             config.strategy != ShardingStrategy::kNoShard) {
    ACCELERATE_LOG(WARNING)
        << "FSDP_STATE_DICT_TYPE=" << state_dict << " with " << source
        << ": checkpoints are written in the unsharded layout "
           "(FULL_STATE_DICT: whole model weights and optimizer state, "
           "written by the main process), which any number of processes "
           "can load";
  }
  // Under SHARD_GRAD_OP the model is one unit whose parameters stay whole:
  // the unit keys mean nothing there (said once, then ignored). Module
  // states are always synchronized from the main process (CPU-RAM-
  // efficient loading's broadcast included).
  if (config.strategy == ShardingStrategy::kShardGradOp &&
      !config.unit_engine) {
    std::vector<std::string> ignored;
    for (const char* name :
         {"FSDP_AUTO_WRAP_POLICY", "FSDP_TRANSFORMER_CLS_TO_WRAP",
          "FSDP_MIN_NUM_PARAMS", "FSDP_BACKWARD_PREFETCH",
          "FSDP_FORWARD_PREFETCH"}) {
      if (env.Get(name).has_value()) ignored.push_back(name);
    }
    if (!ignored.empty()) {
      ACCELERATE_LOG(WARNING)
          << source << ": " << absl::StrJoin(ignored, ", ")
          << " have no effect here (the parameters stay whole, the model is "
             "one unit; only gradients and optimizer state are sharded)";
    }
  }
  // Modules FSDP would leave unsharded are sharded with the rest here; a
  // main process that should not be the source of every process's values
  // is (sync_module_states is always on). Both said, then run.
  if (const std::optional<std::string> ignored =
          env.Get("FSDP_IGNORED_MODULES");
      ignored.has_value() && !ignored->empty()) {
    ACCELERATE_LOG(WARNING)
        << "FSDP_IGNORED_MODULES=" << *ignored
        << ": not supported; those modules are sharded with the rest";
  }
  auto sync_states = ParseBool(env, "FSDP_SYNC_MODULE_STATES", true);
  if (!sync_states.ok()) return sync_states.status();
  if (!*sync_states && config.strategy != ShardingStrategy::kNoShard) {
    ACCELERATE_LOG(WARNING)
        << "FSDP_SYNC_MODULE_STATES=false: every process still starts from "
           "the main process's parameters and buffers";
  }
  // HYBRID_SHARD_ZERO2 keeps the gathered parameters from forward to
  // backward, as SHARD_GRAD_OP (and NO_SHARD) do.
  config.full_shard.reshard_after_forward =
      config.strategy != ShardingStrategy::kHybridShardZero2 &&
      config.strategy != ShardingStrategy::kShardGradOp &&
      config.strategy != ShardingStrategy::kNoShard;
  return config;
}

}  // namespace accelerate::sharding
