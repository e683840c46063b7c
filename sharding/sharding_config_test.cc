#include "sharding/sharding_config.h"

#include <fstream>
#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "state/environment.h"
#include "testing/status_matchers.h"

namespace accelerate::sharding {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<ShardingConfig> Resolve(
    const std::map<std::string, std::string>& values) {
  return ResolveShardingConfig(state::MapEnvironment(values));
}

TEST(ShardingConfigTest, WithoutFsdpNothingIsSharded) {
  auto config = Resolve({});
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->strategy, ShardingStrategy::kNone);
  EXPECT_EQ(ShardingStrategyName(config->strategy), "none");
}

TEST(ShardingConfigTest, ReadsTheLaunchersStrategies) {
  auto grad_op = Resolve({{"ACCELERATE_USE_FSDP", "true"},
                          {"FSDP_SHARDING_STRATEGY", "SHARD_GRAD_OP"}});
  ASSERT_THAT(grad_op, IsOk());
  EXPECT_EQ(grad_op->strategy, ShardingStrategy::kShardGradOp);
  EXPECT_TRUE(grad_op->shards_optimizer_state());
  // Accelerate <= 0.25 numbered them from 1.
  auto no_shard = Resolve(
      {{"ACCELERATE_USE_FSDP", "1"}, {"FSDP_SHARDING_STRATEGY", "3"}});
  ASSERT_THAT(no_shard, IsOk());
  EXPECT_EQ(no_shard->strategy, ShardingStrategy::kNoShard);
  // FSDP 2: not resharding after forward is SHARD_GRAD_OP.
  auto v2 = Resolve({{"ACCELERATE_USE_FSDP", "true"},
                     {"FSDP_VERSION", "2"},
                     {"FSDP_RESHARD_AFTER_FORWARD", "false"}});
  ASSERT_THAT(v2, IsOk());
  EXPECT_EQ(v2->strategy, ShardingStrategy::kShardGradOp);
  EXPECT_EQ(v2->fsdp_version, 2);
}

TEST(ShardingConfigTest, ReadsFullShardWithItsUnitsAndPrefetch) {
  // FULL_SHARD is FSDP 1's default strategy and FSDP 2's default.
  auto v1 = Resolve({{"ACCELERATE_USE_FSDP", "true"},
                     {"FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP"},
                     {"FSDP_TRANSFORMER_CLS_TO_WRAP", "GPT2Block, Block"},
                     {"FSDP_BACKWARD_PREFETCH", "BACKWARD_POST"},
                     {"FSDP_FORWARD_PREFETCH", "true"}});
  ASSERT_THAT(v1, IsOk());
  EXPECT_EQ(v1->strategy, ShardingStrategy::kFullShard);
  EXPECT_TRUE(v1->shards_parameters());
  EXPECT_EQ(v1->auto_wrap.kind, AutoWrapKind::kTransformerLayers);
  EXPECT_THAT(v1->auto_wrap.layer_classes,
              ::testing::ElementsAre("GPT2Block", "Block"));
  EXPECT_EQ(v1->full_shard.backward_prefetch, BackwardPrefetch::kBackwardPost);
  EXPECT_TRUE(v1->full_shard.forward_prefetch);
  // Unset prefetch is none, as Accelerate passes it to FSDP 1.
  auto plain = Resolve({{"ACCELERATE_USE_FSDP", "true"},
                        {"FSDP_AUTO_WRAP_POLICY", "SIZE_BASED_WRAP"},
                        {"FSDP_MIN_NUM_PARAMS", "1000"}});
  ASSERT_THAT(plain, IsOk());
  EXPECT_EQ(plain->auto_wrap.kind, AutoWrapKind::kSize);
  EXPECT_EQ(plain->auto_wrap.min_num_params, 1000);
  EXPECT_EQ(plain->full_shard.backward_prefetch, BackwardPrefetch::kNone);
  auto offload = Resolve({{"ACCELERATE_USE_FSDP", "true"},
                          {"FSDP_OFFLOAD_PARAMS", "true"}});
  ASSERT_THAT(offload, IsOk());
  EXPECT_TRUE(offload->full_shard.offload_params);
  auto zero3 = Resolve({{"ACCELERATE_USE_DEEPSPEED", "true"},
                        {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "3"},
                        {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "cpu"}});
  ASSERT_THAT(zero3, IsOk());
  EXPECT_TRUE(zero3->full_shard.offload_params);
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_DEEPSPEED", "true"},
                       {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "3"},
                       {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "nvme"}}),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("offload_param device \"nvme\"")));
  auto hybrid = Resolve({{"ACCELERATE_USE_FSDP", "true"},
                         {"FSDP_SHARDING_STRATEGY", "HYBRID_SHARD_ZERO2"}});
  ASSERT_THAT(hybrid, IsOk());
  EXPECT_TRUE(hybrid->shards_parameters());
  EXPECT_EQ(hybrid->full_shard.shard_group_size, -1);
  EXPECT_FALSE(hybrid->full_shard.reshard_after_forward);
  auto v2 = Resolve({{"ACCELERATE_USE_FSDP", "true"}, {"FSDP_VERSION", "2"}});
  ASSERT_THAT(v2, IsOk());
  EXPECT_EQ(v2->strategy, ShardingStrategy::kFullShard);
  EXPECT_EQ(v2->auto_wrap.kind, AutoWrapKind::kNone);
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "true"},
                       {"FSDP_AUTO_WRAP_POLICY", "LAYER_WRAP"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"LAYER_WRAP\" is not one of")));
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "true"},
                       {"FSDP_AUTO_WRAP_POLICY", "SIZE_BASED_WRAP"},
                       {"FSDP_MIN_NUM_PARAMS", "many"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("FSDP_MIN_NUM_PARAMS: \"many\"")));
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "true"},
                       {"FSDP_BACKWARD_PREFETCH", "SIDEWAYS"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"SIDEWAYS\"")));
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "true"},
                       {"FSDP_STATE_DICT_TYPE", "HALF_STATE_DICT"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("HALF_STATE_DICT")));
}

TEST(ShardingConfigTest, ActivationCheckpointingAndOffloadRunOnUnits) {
  auto full = Resolve({{"ACCELERATE_USE_FSDP", "true"},
                       {"FSDP_ACTIVATION_CHECKPOINTING", "true"}});
  ASSERT_THAT(full, IsOk());
  EXPECT_EQ(full->strategy, ShardingStrategy::kFullShard);
  EXPECT_TRUE(full->full_shard.activation_checkpointing);
  EXPECT_FALSE(full->unit_engine);
  // SHARD_GRAD_OP as FSDP runs it: sharded at rest, kept from forward to
  // backward, the optimizer sharded by the units' engine.
  for (const char* asked : {"FSDP_ACTIVATION_CHECKPOINTING",
                            "FSDP_OFFLOAD_PARAMS"}) {
    auto grad_op = Resolve({{"ACCELERATE_USE_FSDP", "true"},
                            {"FSDP_SHARDING_STRATEGY", "SHARD_GRAD_OP"},
                            {asked, "true"}});
    ASSERT_THAT(grad_op, IsOk()) << asked;
    EXPECT_EQ(grad_op->strategy, ShardingStrategy::kShardGradOp) << asked;
    EXPECT_TRUE(grad_op->unit_engine) << asked;
    EXPECT_TRUE(grad_op->shards_parameters()) << asked;
    EXPECT_FALSE(grad_op->shards_optimizer_state()) << asked;
    EXPECT_FALSE(grad_op->full_shard.reshard_after_forward) << asked;
    EXPECT_EQ(grad_op->full_shard.shard_group_size, 0) << asked;
  }
  // NO_SHARD: units every process holds whole (groups of one).
  auto no_shard = Resolve({{"ACCELERATE_USE_FSDP", "true"},
                           {"FSDP_SHARDING_STRATEGY", "NO_SHARD"},
                           {"FSDP_ACTIVATION_CHECKPOINTING", "true"}});
  ASSERT_THAT(no_shard, IsOk());
  EXPECT_TRUE(no_shard->unit_engine);
  EXPECT_EQ(no_shard->full_shard.shard_group_size, 1);
  EXPECT_TRUE(no_shard->full_shard.activation_checkpointing);
  // Without them, SHARD_GRAD_OP stays on the data-parallel engine.
  auto plain = Resolve({{"ACCELERATE_USE_FSDP", "true"},
                        {"FSDP_SHARDING_STRATEGY", "SHARD_GRAD_OP"}});
  ASSERT_THAT(plain, IsOk());
  EXPECT_FALSE(plain->unit_engine);
  EXPECT_TRUE(plain->shards_optimizer_state());
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "true"},
                       {"FSDP_ACTIVATION_CHECKPOINTING", "perhaps"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("FSDP_ACTIVATION_CHECKPOINTING")));
}

// A program configured to shard never trains replicated without saying so.
TEST(ShardingConfigTest, RefusesWhatWouldTrainReplicated) {
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "true"},
                       {"FSDP_SHARDING_STRATEGY", "QUARTER_SHARD"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"QUARTER_SHARD\" is not one of")));
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "maybe"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ACCELERATE_USE_FSDP")));
}

TEST(ShardingConfigTest, MapsDeepSpeedZeroStagesOntoTheSameEngine) {
  auto stage1 = Resolve({{"ACCELERATE_USE_DEEPSPEED", "true"},
                         {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "1"}});
  ASSERT_THAT(stage1, IsOk());
  EXPECT_EQ(stage1->strategy, ShardingStrategy::kZero1);
  EXPECT_TRUE(stage1->shards_optimizer_state());
  EXPECT_FALSE(stage1->shards_gradients());
  // Accelerate's default stage is 2.
  auto stage2 = Resolve({{"ACCELERATE_USE_DEEPSPEED", "true"}});
  ASSERT_THAT(stage2, IsOk());
  EXPECT_EQ(ShardingStrategyName(stage2->strategy), "ZERO_2");
  EXPECT_TRUE(stage2->shards_gradients());
  // Stage 3: FULL_SHARD, each module holding parameters a unit.
  auto stage3 = Resolve({{"ACCELERATE_USE_DEEPSPEED", "true"},
                         {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "3"}});
  ASSERT_THAT(stage3, IsOk());
  EXPECT_EQ(ShardingStrategyName(stage3->strategy), "ZERO_3");
  EXPECT_TRUE(stage3->shards_parameters());
  EXPECT_EQ(stage3->auto_wrap.kind, AutoWrapKind::kSize);
  EXPECT_EQ(stage3->auto_wrap.min_num_params, 1);
  EXPECT_TRUE(stage3->full_shard.forward_prefetch);
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_DEEPSPEED", "true"},
                       {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "cpu"}}),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("offload_optimizer device \"cpu\"")));
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_DEEPSPEED", "true"},
                       {"ACCELERATE_USE_FSDP", "true"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("both set")));
}

TEST(ShardingConfigTest, ReadsZeroOptimizationFromADeepSpeedConfigFile) {
  const std::string dir = ::testing::TempDir();
  const auto write = [&](const std::string& name, const std::string& json) {
    std::ofstream(dir + "/" + name) << json;
    return dir + "/" + name;
  };
  auto one = Resolve(
      {{"ACCELERATE_USE_DEEPSPEED", "true"},
       {"ACCELERATE_DEEPSPEED_CONFIG_FILE",
        write("ds1.json", R"({"train_batch_size": 8,
          "zero_optimization": {"stage": 1, "overlap_comm": true,
                                "offload_optimizer": {"device": "none"}}})")}});
  ASSERT_THAT(one, IsOk());
  EXPECT_EQ(one->strategy, ShardingStrategy::kZero1);
  // Without the section DeepSpeed does not shard.
  auto none = Resolve({{"ACCELERATE_USE_DEEPSPEED", "true"},
                       {"ACCELERATE_DEEPSPEED_CONFIG_FILE",
                        write("ds0.json", R"({"train_batch_size": 8})")}});
  ASSERT_THAT(none, IsOk());
  EXPECT_EQ(none->strategy, ShardingStrategy::kNoShard);
  EXPECT_THAT(
      Resolve({{"ACCELERATE_USE_DEEPSPEED", "true"},
               {"ACCELERATE_DEEPSPEED_CONFIG_FILE",
                write("ds_offload.json",
                      R"({"zero_optimization": {"stage": 2,
                          "offload_param": {"device": "nvme"}}})")}}),
      StatusIs(absl::StatusCode::kUnimplemented,
               HasSubstr("offload_param device \"nvme\"")));
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_DEEPSPEED", "true"},
                       {"ACCELERATE_DEEPSPEED_CONFIG_FILE",
                        write("ds_auto.json",
                              R"({"zero_optimization": {"stage": "auto"}})")}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("zero_optimization.stage must be a number")));
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_DEEPSPEED", "true"},
                       {"ACCELERATE_DEEPSPEED_CONFIG_FILE",
                        write("ds_bad.json", "{not json")}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not JSON")));
}

}  // namespace
}  // namespace accelerate::sharding
