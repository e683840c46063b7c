#include "sharding/fully_sharded_model.h"

#include <memory>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sharding/auto_wrap.h"
#include "state/partial_state.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::sharding {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TensorsClose;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kVocab = 11;
constexpr int64_t kWidth = 6;

// A small transformer-like model whose code knows nothing of sharding.
struct BlockImpl : torch::nn::Module {
  BlockImpl()
      : norm(register_module(
            "norm", torch::nn::LayerNorm(
                        torch::nn::LayerNormOptions({kWidth})))),
        up(register_module("up", torch::nn::Linear(kWidth, 2 * kWidth))),
        down(register_module("down", torch::nn::Linear(2 * kWidth, kWidth))) {}
  at::Tensor forward(const at::Tensor& x) {
    return x + down(torch::gelu(up(norm(x))));
  }
  torch::nn::LayerNorm norm;
  torch::nn::Linear up, down;
};
TORCH_MODULE(Block);

struct NetImpl : torch::nn::Module {
  NetImpl()
      : embed(register_module("embed", torch::nn::Embedding(kVocab, kWidth))),
        blocks(register_module("blocks",
                               torch::nn::ModuleList(Block(), Block()))),
        head(register_module("head", torch::nn::Linear(kWidth, kVocab))) {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(7);
    torch::NoGradGuard no_grad;
    for (at::Tensor& p : parameters()) {
      p.copy_(torch::randn(p.sizes(), generator) * 0.3);
    }
  }
  at::Tensor forward(const at::Tensor& tokens) {
    at::Tensor x = embed(tokens);
    for (const auto& block : *blocks) x = block->as<BlockImpl>()->forward(x);
    return head(x);
  }
  torch::nn::Embedding embed;
  torch::nn::ModuleList blocks;
  torch::nn::Linear head;
};
TORCH_MODULE(Net);

// Each rank's batch differs; the reference sees every rank's.
std::pair<at::Tensor, at::Tensor> Batch(int rank, int step) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(100 * step + rank);
  return {torch::randint(kVocab, {3, 5}, generator),
          torch::randint(kVocab, {3, 5}, generator)};
}

at::Tensor Loss(Net& model, int rank, int step) {
  auto [tokens, targets] = Batch(rank, step);
  return torch::nn::functional::cross_entropy(
      model->forward(tokens).reshape({-1, kVocab}), targets.reshape({-1}));
}

std::shared_ptr<torch::optim::AdamW> MakeOptimizer(
    std::vector<at::Tensor> params) {
  return std::make_shared<torch::optim::AdamW>(
      params, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
}

int64_t TotalBytes(Net& model) {
  int64_t bytes = 0;
  for (const at::Tensor& p : model->parameters()) bytes += p.nbytes();
  return bytes;
}

// The unsharded reference: the mean of every rank's loss, `steps` steps,
// clipping to `max_norm` when positive.
Net TrainReference(int world, int steps, double max_norm = 0) {
  Net model;
  auto optimizer = MakeOptimizer(model->parameters());
  for (int step = 0; step < steps; ++step) {
    optimizer->zero_grad();
    at::Tensor loss = torch::zeros({});
    for (int rank = 0; rank < world; ++rank) loss = loss + Loss(model, rank, step);
    (loss / world).backward();
    if (max_norm > 0) {
      torch::nn::utils::clip_grad_norm_(model->parameters(), max_norm);
    }
    optimizer->step();
  }
  return model;
}

// Empties a model's parameters (the meta device, as bigmodel's
// InitEmptyWeights leaves them): values must come from elsewhere.
void EmptyParameters(Net& model) {
  for (at::Tensor& p : model->parameters()) {
    p.unsafeGetTensorImpl()->shallow_copy_from(
        at::empty(p.sizes(), p.options().device(at::kMeta)).getIntrusivePtr());
  }
}

struct RankResult {
  std::vector<at::Tensor> params;
  StateBytes bytes_at_rest;
  StateBytes bytes_after_forward;
  FullyShardedStats stats;
  std::vector<std::string> units;
  double norm = 0;
};

std::vector<RankResult> TrainSharded(int world, int steps,
                                     const FullyShardedOptions& base,
                                     double max_norm = 0,
                                     bool empty_others = false,
                                     bool bf16_autocast = false) {
  std::vector<RankResult> results(world);
  const std::vector<absl::Status> statuses = accelerate::testing::RunOnRanks(
      world, [&](const state::PartialState& state) -> absl::Status {
        RankResult& out = results[state.process_index()];
        Net model;
        if (empty_others && state.process_index() != 0) EmptyParameters(model);
        FullyShardedOptions options = base;
        if (options.units.empty()) {
          AutoWrapPolicy policy;
          policy.kind = AutoWrapKind::kTransformerLayers;
          policy.layer_classes = {"Block"};
          ACCELERATE_ASSIGN_OR_RETURN(options.units,
                                      UnitModules(*model, policy));
        }
        ACCELERATE_ASSIGN_OR_RETURN(
            auto sharded, FullyShardedModel::Create(model.ptr(), state, options));
        auto optimizer = MakeOptimizer(model->parameters());
        ACCELERATE_RETURN_IF_ERROR(sharded->ShardOptimizer(*optimizer));
        out.units = sharded->unit_names();
        for (int step = 0; step < steps; ++step) {
          optimizer->zero_grad();
          if (bf16_autocast) {
            at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
            at::autocast::set_autocast_enabled(at::kCPU, true);
          }
          at::Tensor loss = Loss(model, state.process_index(), step);
          if (bf16_autocast) {
            at::autocast::set_autocast_enabled(at::kCPU, false);
            at::autocast::clear_cache();
          }
          if (step == 0) out.bytes_after_forward = sharded->Bytes();
          loss.backward();
          if (max_norm > 0) {
            ACCELERATE_ASSIGN_OR_RETURN(out.norm,
                                        sharded->ClipGradNorm(max_norm));
          }
          optimizer->step();
        }
        out.bytes_at_rest = sharded->Bytes();
        out.stats = sharded->stats();
        ACCELERATE_RETURN_IF_ERROR(sharded->Unshard());
        for (const at::Tensor& p : model->parameters()) {
          out.params.push_back(p.detach().clone());
        }
        return sharded->Reshard();
      });
  for (const absl::Status& status : statuses) EXPECT_THAT(status, IsOk());
  return results;
}

void ExpectMatchesReference(const std::vector<RankResult>& results,
                            Net& reference, const std::string& what) {
  const std::vector<at::Tensor> expected = reference->parameters();
  for (size_t rank = 0; rank < results.size(); ++rank) {
    ASSERT_EQ(results[rank].params.size(), expected.size()) << what;
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_TRUE(TensorsClose(results[rank].params[i], expected[i],
                               {.rtol = 1e-4, .atol = 1e-5}))
          << what << ": rank " << rank << ", parameter " << i;
    }
  }
}

TEST(FullyShardedModelTest, TrainsAsUnshardedOnTwoAndThreeRanks) {
  for (int world : {1, 2, 3}) {
    Net reference = TrainReference(world, 3);
    std::vector<RankResult> results = TrainSharded(world, 3, {});
    ExpectMatchesReference(results, reference,
                           absl::StrCat(world, " ranks"));
    const int64_t total = TotalBytes(reference);
    for (const RankResult& r : results) {
      EXPECT_THAT(r.units, ElementsAre("", "blocks.0", "blocks.1"));
      // At rest: this rank's slices only (padding aside), and parts of
      // the gradients.
      EXPECT_GE(r.bytes_at_rest.parameters * world, total);
      EXPECT_LE(r.bytes_at_rest.parameters * world, total + 3 * world * 4);
      EXPECT_LE(r.bytes_at_rest.gradients * world, total + 3 * world * 4);
      EXPECT_GT(r.bytes_at_rest.gradients, 0);
      // Three units reduced per step.
      EXPECT_EQ(r.stats.reduce_scatters, 9);
    }
  }
}

TEST(FullyShardedModelTest, ForwardFreesEachBlockOnceTheNextUnitStarts) {
  const int world = 2;
  std::vector<RankResult> results = TrainSharded(world, 1, {});
  Net model;
  int64_t root = 0;
  int64_t block = 0;
  for (const auto& item : model->named_parameters()) {
    if (!absl::StartsWith(item.key(), "blocks.")) {
      root += item.value().nbytes();
    } else if (absl::StartsWith(item.key(), "blocks.1.")) {
      block += item.value().nbytes();
    }
  }
  const int64_t total = TotalBytes(model);
  for (const RankResult& r : results) {
    // After forward: the slices, the root (the head ran last) and the last
    // block (whose backward comes first); the first block was freed when
    // the second started.
    EXPECT_LE(r.bytes_after_forward.parameters,
              r.bytes_at_rest.parameters + root + block + 3 * world * 4);
    EXPECT_LT(r.bytes_after_forward.parameters,
              r.bytes_at_rest.parameters + total);
  }
}

TEST(FullyShardedModelTest, PrefetchAndKeepingUnitsGiveTheSameResult) {
  const int world = 2;
  Net reference = TrainReference(world, 2);
  FullyShardedOptions options;
  options.forward_prefetch = true;
  options.backward_prefetch = BackwardPrefetch::kBackwardPost;
  std::vector<RankResult> prefetched = TrainSharded(world, 2, options);
  ExpectMatchesReference(prefetched, reference, "prefetch");
  for (const RankResult& r : prefetched) EXPECT_GT(r.stats.prefetched, 0);

  options = {};
  options.reshard_after_forward = false;
  options.backward_prefetch = BackwardPrefetch::kNone;
  std::vector<RankResult> kept = TrainSharded(world, 2, options);
  ExpectMatchesReference(kept, reference, "reshard_after_forward=false");
  for (const RankResult& r : kept) EXPECT_EQ(r.stats.prefetched, 0);

  // CPU offload of a CPU model: the same path, nothing moves.
  options = {};
  options.offload_params = true;
  ExpectMatchesReference(TrainSharded(world, 2, options), reference,
                         "offload_params");
}

TEST(FullyShardedModelTest, ActivationCheckpointingTrainsAsWithout) {
  // Each block's forward is replayed in its backward: the same training
  // as the unsharded reference on 1 to 3 ranks, with prefetch, with units
  // kept after forward, and under bf16 autocast (replayed in bf16) the
  // same as without checkpointing.
  for (int world : {1, 2, 3}) {
    Net reference = TrainReference(world, 3);
    FullyShardedOptions options;
    options.activation_checkpointing = true;
    std::vector<RankResult> results = TrainSharded(world, 3, options);
    ExpectMatchesReference(results, reference,
                           absl::StrCat("checkpointed, ", world, " ranks"));
    for (const RankResult& r : results) {
      // Two blocks (the root is not checkpointed), three steps.
      EXPECT_EQ(r.stats.checkpointed, 6);
      EXPECT_EQ(r.stats.recomputed, 6);
      EXPECT_EQ(r.stats.not_checkpointed, 0);
    }
  }
  const int world = 2;
  Net reference = TrainReference(world, 2);
  FullyShardedOptions options;
  options.activation_checkpointing = true;
  options.forward_prefetch = true;
  options.backward_prefetch = BackwardPrefetch::kBackwardPost;
  ExpectMatchesReference(TrainSharded(world, 2, options), reference,
                         "checkpointed with prefetch");
  options = {};
  options.activation_checkpointing = true;
  options.reshard_after_forward = false;
  ExpectMatchesReference(TrainSharded(world, 2, options), reference,
                         "checkpointed, reshard_after_forward=false");

  options = {};
  options.param_dtype = at::kBFloat16;
  options.reduce_dtype = at::kBFloat16;
  std::vector<RankResult> plain =
      TrainSharded(world, 2, options, 0, false, /*bf16_autocast=*/true);
  options.activation_checkpointing = true;
  std::vector<RankResult> checkpointed =
      TrainSharded(world, 2, options, 0, false, /*bf16_autocast=*/true);
  for (int rank = 0; rank < world; ++rank) {
    ASSERT_EQ(checkpointed[rank].params.size(), plain[rank].params.size());
    EXPECT_EQ(checkpointed[rank].stats.recomputed, 4);
    for (size_t i = 0; i < plain[rank].params.size(); ++i) {
      EXPECT_TRUE(TensorsClose(checkpointed[rank].params[i],
                               plain[rank].params[i],
                               {.rtol = 1e-5, .atol = 1e-6}))
          << "bf16, rank " << rank << ", parameter " << i;
    }
  }
}

TEST(FullyShardedModelTest, HybridShardsWithinGroupsAndReplicatesAcross) {
  // 4 processes as 2 "nodes" of 2: slices shared by each pair, the pairs
  // replicas; and blocks of 1 (every process a replica, data parallel).
  const int world = 4;
  Net reference = TrainReference(world, 3);
  for (int group : {2, 1}) {
    FullyShardedOptions options;
    options.shard_group_size = group;
    std::vector<RankResult> results = TrainSharded(world, 3, options);
    ExpectMatchesReference(results, reference,
                           absl::StrCat("groups of ", group));
    const int64_t total = TotalBytes(reference);
    for (const RankResult& r : results) {
      EXPECT_GE(r.bytes_at_rest.parameters * group, total);
      EXPECT_LE(r.bytes_at_rest.parameters * group, total + 3 * group * 4);
    }
  }
}

TEST(FullyShardedModelTest, MixedPrecisionGathersAndReducesInBf16) {
  // Inside bf16 autocast, units gathered and gradients reduced in bf16,
  // slices and optimizer in float32: close to the float32 run, half the
  // gathered bytes; outside autocast, gathered in float32.
  const int world = 2;
  Net reference = TrainReference(world, 3);
  FullyShardedOptions options;
  options.param_dtype = at::kBFloat16;
  options.reduce_dtype = at::kBFloat16;
  std::vector<RankResult> mixed =
      TrainSharded(world, 3, options, 0, false, /*bf16_autocast=*/true);
  std::vector<RankResult> plain =
      TrainSharded(world, 3, {}, 0, false, /*bf16_autocast=*/true);
  std::vector<RankResult> outside = TrainSharded(world, 1, options);
  const std::vector<at::Tensor> expected = reference->parameters();
  for (int rank = 0; rank < world; ++rank) {
    ASSERT_EQ(mixed[rank].params.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      // The checkpoint view is float32.
      EXPECT_EQ(mixed[rank].params[i].scalar_type(), at::kFloat);
      EXPECT_TRUE(TensorsClose(mixed[rank].params[i], expected[i],
                               {.rtol = 2e-2, .atol = 2e-3}))
          << "rank " << rank << ", parameter " << i;
    }
    // After forward: the root and the last block gathered in bf16.
    const int64_t gathered_mixed = mixed[rank].bytes_after_forward.parameters -
                                   mixed[rank].bytes_at_rest.parameters;
    const int64_t gathered_plain = plain[rank].bytes_after_forward.parameters -
                                   plain[rank].bytes_at_rest.parameters;
    EXPECT_EQ(2 * gathered_mixed, gathered_plain);
    EXPECT_EQ(outside[rank].bytes_after_forward.parameters -
                  outside[rank].bytes_at_rest.parameters,
              gathered_plain);
  }
}

// A model with a floating-point buffer it reads in its forward, and a
// counter buffer.
struct ScaledImpl : torch::nn::Module {
  ScaledImpl()
      : linear(register_module("linear", torch::nn::Linear(4, 4))),
        scale(register_buffer("scale", torch::full({4}, 1.5))),
        count(register_buffer("count", torch::zeros({}, torch::kLong))) {}
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor y = linear(x);
    seen = scale.scalar_type();  // as the product below reads it
    return y * scale;
  }
  torch::nn::Linear linear;
  at::Tensor scale, count;
  at::ScalarType seen = at::kFloat;
};
TORCH_MODULE(Scaled);

TEST(FullyShardedModelTest, BufferDtypeCastsBuffersForTheForwardOnly) {
  const std::vector<absl::Status> statuses = accelerate::testing::RunOnRanks(
      1, [](const state::PartialState& state) -> absl::Status {
        Scaled model;
        FullyShardedOptions options;
        options.param_dtype = at::kBFloat16;
        options.buffer_dtype = at::kBFloat16;
        ACCELERATE_ASSIGN_OR_RETURN(
            auto sharded, FullyShardedModel::Create(model.ptr(), state, options));
        at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
        at::autocast::set_autocast_enabled(at::kCPU, true);
        at::Tensor loss = model->forward(torch::ones({2, 4})).sum();
        at::autocast::set_autocast_enabled(at::kCPU, false);
        at::autocast::clear_cache();
        EXPECT_EQ(model->seen, at::kBFloat16);
        EXPECT_EQ(model->scale.scalar_type(), at::kBFloat16);
        EXPECT_EQ(model->count.scalar_type(), at::kLong);  // not floating
        loss.backward();
        // Back in its own dtype once the backward ends, the same values.
        EXPECT_EQ(model->scale.scalar_type(), at::kFloat);
        EXPECT_TRUE(TensorsClose(model->scale, torch::full({4}, 1.5),
                                 {.rtol = 0, .atol = 0}));
        // Outside autocast nothing is cast.
        at::Tensor plain = model->forward(torch::ones({2, 4})).sum();
        EXPECT_EQ(model->seen, at::kFloat);
        plain.backward();
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses[0], IsOk());
}

TEST(FullyShardedModelTest, OtherProcessesMayStartFromEmptyWeights) {
  // CPU-RAM-efficient loading: only the main process has values; the
  // others' parameters are on the meta device and receive their slices.
  const int world = 3;
  Net reference = TrainReference(world, 2);
  ExpectMatchesReference(TrainSharded(world, 2, {}, 0, /*empty_others=*/true),
                         reference, "empty weights on processes 1 and 2");
  // Without the main process's values nothing can start: every process
  // says so at once (none waits in the scatter).
  const std::vector<absl::Status> refused = accelerate::testing::RunOnRanks(
      2, [&](const state::PartialState& state) -> absl::Status {
        Net model;
        EmptyParameters(model);
        EXPECT_THAT(FullyShardedModel::Create(model.ptr(), state).status(),
                    StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("process 0: FULL_SHARD: parameter "
                                       "embed.weight is on the meta device")));
        return absl::OkStatus();
      });
  for (const absl::Status& status : refused) ASSERT_THAT(status, IsOk());
  const std::vector<absl::Status> statuses = accelerate::testing::RunOnRanks(
      1, [&](const state::PartialState& state) -> absl::Status {
        Net model;
        EmptyParameters(model);
        EXPECT_THAT(FullyShardedModel::Create(model.ptr(), state).status(),
                    StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("embed.weight is on the meta device")));
        return absl::OkStatus();
      });
  for (const absl::Status& status : statuses) ASSERT_THAT(status, IsOk());
}

TEST(FullyShardedModelTest, ClipsByTheNormOfTheWholeGradients) {
  const int world = 2;
  Net reference = TrainReference(world, 2, /*max_norm=*/0.1);
  std::vector<RankResult> results = TrainSharded(world, 2, {}, 0.1);
  ExpectMatchesReference(results, reference, "clipped");
  EXPECT_GT(results[0].norm, 0.1);
  EXPECT_DOUBLE_EQ(results[0].norm, results[1].norm);
}

TEST(FullyShardedModelTest, OptimizerStateGathersToTheUnshardedLayout) {
  const int world = 2;
  Net reference = TrainReference(world, 2);
  auto reference_optimizer = MakeOptimizer(reference->parameters());
  // The reference optimizer's state after the same two steps.
  {
    Net again;
    reference_optimizer = MakeOptimizer(again->parameters());
    for (int step = 0; step < 2; ++step) {
      reference_optimizer->zero_grad();
      at::Tensor loss = torch::zeros({});
      for (int rank = 0; rank < world; ++rank) loss = loss + Loss(again, rank, step);
      (loss / world).backward();
      reference_optimizer->step();
    }
    reference = again;
  }
  std::vector<std::vector<at::Tensor>> exp_avg(world);
  std::vector<std::vector<at::Tensor>> after(world);
  const std::vector<absl::Status> statuses = accelerate::testing::RunOnRanks(
      world, [&](const state::PartialState& state) -> absl::Status {
        const int rank = state.process_index();
        Net model;
        ACCELERATE_ASSIGN_OR_RETURN(
            auto sharded,
            FullyShardedModel::Create(model.ptr(), state,
                                      {.units = {"blocks.0", "blocks.1"}}));
        auto optimizer = MakeOptimizer(model->parameters());
        ACCELERATE_RETURN_IF_ERROR(sharded->ShardOptimizer(*optimizer));
        for (int step = 0; step < 3; ++step) {
          if (step == 2) {
            // A checkpoint round trip before the third step.
            ACCELERATE_RETURN_IF_ERROR(sharded->Unshard());
            ACCELERATE_RETURN_IF_ERROR(sharded->UnshardOptimizer(*optimizer));
            for (const at::Tensor& p : model->parameters()) {
              const auto& s = static_cast<const torch::optim::AdamWParamState&>(
                  *optimizer->state().at(p.unsafeGetTensorImpl()));
              exp_avg[rank].push_back(s.exp_avg().clone());
            }
            ACCELERATE_RETURN_IF_ERROR(sharded->ReshardOptimizer(*optimizer));
            ACCELERATE_RETURN_IF_ERROR(sharded->Reshard());
          }
          optimizer->zero_grad();
          Loss(model, rank, step).backward();
          optimizer->step();
        }
        ACCELERATE_RETURN_IF_ERROR(sharded->Unshard());
        for (const at::Tensor& p : model->parameters()) {
          after[rank].push_back(p.detach().clone());
        }
        return sharded->Reshard();
      });
  for (const absl::Status& status : statuses) ASSERT_THAT(status, IsOk());
  const std::vector<at::Tensor> params = reference->parameters();
  for (int rank = 0; rank < world; ++rank) {
    ASSERT_EQ(exp_avg[rank].size(), params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(
          *reference_optimizer->state().at(params[i].unsafeGetTensorImpl()));
      EXPECT_TRUE(TensorsClose(exp_avg[rank][i], s.exp_avg(),
                               {.rtol = 1e-4, .atol = 1e-6}))
          << "rank " << rank << ", parameter " << i;
    }
  }
  // The round trip changed nothing: three steps as the reference's.
  Net three = TrainReference(world, 3);
  const std::vector<at::Tensor> expected = three->parameters();
  for (int rank = 0; rank < world; ++rank) {
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_TRUE(TensorsClose(after[rank][i], expected[i],
                               {.rtol = 1e-4, .atol = 1e-5}))
          << "rank " << rank << ", parameter " << i;
    }
  }
}

TEST(FullyShardedModelTest, RefusesUnknownUnitsAndOptimizers) {
  const std::vector<absl::Status> statuses = accelerate::testing::RunOnRanks(
      1, [&](const state::PartialState& state) -> absl::Status {
        Net model;
        auto bad = FullyShardedModel::Create(model.ptr(), state,
                                             {.units = {"blocks.7"}});
        EXPECT_THAT(bad.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("\"blocks.7\"")));
        ACCELERATE_ASSIGN_OR_RETURN(auto sharded,
                                    FullyShardedModel::Create(model.ptr(), state));
        torch::optim::LBFGS lbfgs(model->parameters());
        EXPECT_THAT(sharded->ShardOptimizer(lbfgs),
                    StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("elementwise")));
        return absl::OkStatus();
      });
  for (const absl::Status& status : statuses) ASSERT_THAT(status, IsOk());
}

TEST(AutoWrapTest, PicksLayersByClassOrSize) {
  Net model;
  AutoWrapPolicy policy;
  policy.kind = AutoWrapKind::kTransformerLayers;
  policy.layer_classes = {"Bl.ck"};
  EXPECT_THAT(UnitModules(*model, policy),
              IsOkAndHolds(ElementsAre("blocks.0", "blocks.1")));
  policy.layer_classes = {"GPT2Block"};
  EXPECT_THAT(UnitModules(*model, policy),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("its classes: Block, Embedding, LayerNorm, Linear, ModuleList")));
  policy.layer_classes = {"("};
  EXPECT_THAT(UnitModules(*model, policy),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RE2")));
  // By size, bottom-up: `up` (6x12+12 = 84 parameters), then what its
  // block has left (norm 12 + down 78 = 90); the embedding (66) and the
  // head (77) stay with the root.
  policy.kind = AutoWrapKind::kSize;
  policy.min_num_params = 80;
  EXPECT_THAT(UnitModules(*model, policy),
              IsOkAndHolds(ElementsAre("blocks.0.up", "blocks.0",
                                       "blocks.1.up", "blocks.1")));
  policy.min_num_params = 0;
  EXPECT_THAT(UnitModules(*model, policy),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace accelerate::sharding
