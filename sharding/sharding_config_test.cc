#include "sharding/sharding_config.h"

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

// A program configured to shard never trains replicated without saying so.
TEST(ShardingConfigTest, RefusesWhatWouldTrainReplicated) {
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "true"}}),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("FSDP_SHARDING_STRATEGY=FULL_SHARD")));
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "true"},
                       {"FSDP_SHARDING_STRATEGY", "HYBRID_SHARD"}}),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("HYBRID_SHARD")));
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "true"},
                       {"FSDP_VERSION", "2"}}),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("FSDP_RESHARD_AFTER_FORWARD=true")));
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "true"},
                       {"FSDP_SHARDING_STRATEGY", "SHARD_GRAD_OP"},
                       {"FSDP_OFFLOAD_PARAMS", "true"}}),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("FSDP_OFFLOAD_PARAMS=true")));
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "true"},
                       {"FSDP_SHARDING_STRATEGY", "QUARTER_SHARD"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"QUARTER_SHARD\" is not one of")));
  EXPECT_THAT(Resolve({{"ACCELERATE_USE_FSDP", "maybe"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ACCELERATE_USE_FSDP")));
}

}  // namespace
}  // namespace accelerate::sharding
