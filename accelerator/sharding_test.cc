// The Accelerator under SHARD_GRAD_OP: the same training as data parallel
// (gradient accumulation and clipping included), 1/N of the optimizer
// state per process, and what cannot be sharded refused.

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "accelerator/accelerator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sharding/sharding_config.h"
#include "state/environment.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::RunOnRankThreads;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TensorsClose;
using ::testing::Each;
using ::testing::HasSubstr;

struct Result {
  std::vector<at::Tensor> parameters;
  sharding::StateBytes bytes;
  std::string strategy;
};

// A two-layer MLP (in -> hidden -> out) with its starting values and
// `batches` inputs of `rows` rows, drawn from a generator of their own
// (thread ranks share the global one).
struct Problem {
  int64_t in, hidden, out;
  std::vector<at::Tensor> initial;
  std::vector<at::Tensor> inputs;

  torch::nn::Sequential Model() const {
    torch::nn::Sequential model(torch::nn::Linear(in, hidden),
                                torch::nn::Tanh(),
                                torch::nn::Linear(hidden, out));
    torch::NoGradGuard no_grad;
    auto params = model->parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(initial[i]);
    return model;
  }
};

Problem MakeProblem(uint64_t seed, int64_t in, int64_t hidden, int64_t out,
                    int batches, int64_t rows) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  Problem problem{in, hidden, out, {}, {}};
  for (const auto& sizes : std::vector<std::vector<int64_t>>{
           {hidden, in}, {hidden}, {out, hidden}, {out}}) {
    problem.initial.push_back(torch::randn(sizes, generator) * 0.3);
  }
  for (int i = 0; i < batches; ++i) {
    problem.inputs.push_back(torch::randn({rows, in}, generator));
  }
  return problem;
}

// Trains a small MLP with AdamW for 6 batches per process, accumulating 2,
// clipping at 1, each process on its own data; returns rank 0's result.
Result Train(int world, sharding::ShardingStrategy strategy) {
  const Problem problem = MakeProblem(11, 5, 9, 3, world * 6, 4);
  AcceleratorOptions options;
  options.gradient_accumulation_steps = 2;
  options.sharding = sharding::ShardingConfig{.strategy = strategy};
  std::mutex mu;
  Result result;
  const std::vector<absl::Status> statuses = RunOnRankThreads(
      world, {}, [&](int rank, const state::Environment& env) -> absl::Status {
        ACCELERATE_ASSIGN_OR_RETURN(auto acc, Accelerator::Create(options, env));
        torch::nn::Sequential model = problem.Model();
        auto adamw = std::make_shared<torch::optim::AdamW>(
            model->parameters(), torch::optim::AdamWOptions(0.05));
        ACCELERATE_ASSIGN_OR_RETURN(auto prepared,
                                    acc->Prepare(model.ptr(), adamw));
        auto& [module, opt] = prepared;
        for (int step = 0; step < 6; ++step) {
          auto scope = acc->Accumulate(*module);
          ACCELERATE_RETURN_IF_ERROR(scope.status());
          const at::Tensor x = problem.inputs[step * world + rank];
          ACCELERATE_RETURN_IF_ERROR(
              acc->Backward(model->forward(x).square().mean()));
          if (acc->sync_gradients()) {
            ACCELERATE_RETURN_IF_ERROR(acc->ClipGradNorm(*module, 1.0).status());
          }
          ACCELERATE_RETURN_IF_ERROR(opt->step());
          opt->zero_grad();
        }
        if (rank == 0) {
          std::lock_guard<std::mutex> lock(mu);
          for (const at::Tensor& p : model->parameters()) {
            result.parameters.push_back(p.detach().clone());
          }
          result.bytes = acc->StateBytesPerProcess();
          result.strategy = acc->sharding_strategy();
        }
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
  return result;
}

TEST(AcceleratorShardingTest, ShardGradOpTrainsAsDataParallelWithAShareOfTheState) {
  for (int world : {2, 4}) {
    const Result plain = Train(world, sharding::ShardingStrategy::kNone);
    const Result sharded = Train(world, sharding::ShardingStrategy::kShardGradOp);
    EXPECT_EQ(plain.strategy, "none");
    EXPECT_EQ(sharded.strategy, "SHARD_GRAD_OP");
    ASSERT_EQ(plain.parameters.size(), sharded.parameters.size());
    for (size_t i = 0; i < plain.parameters.size(); ++i) {
      EXPECT_TRUE(TensorsClose(sharded.parameters[i], plain.parameters[i],
                               {.rtol = 1e-5, .atol = 1e-6}))
          << world << " processes, parameter " << i;
    }
    // AdamW keeps two values per parameter value: all of them under data
    // parallel, 1/N (padded) sharded.
    EXPECT_EQ(plain.bytes.optimizer_state, 2 * plain.bytes.parameters);
    EXPECT_GE(sharded.bytes.optimizer_state,
              2 * plain.bytes.parameters / world);
    EXPECT_LE(sharded.bytes.optimizer_state,
              2 * plain.bytes.parameters / world + 8 * world);
    EXPECT_EQ(sharded.bytes.parameters, plain.bytes.parameters);
  }
}

TEST(AcceleratorShardingTest, RefusesWhatItCannotShard) {
  AcceleratorOptions options;
  options.sharding =
      sharding::ShardingConfig{.strategy = sharding::ShardingStrategy::kShardGradOp};
  options.mixed_precision = "fp16";
  EXPECT_THAT(Accelerator::Create(options, state::MapEnvironment()),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("SHARD_GRAD_OP with mixed_precision fp16")));
  options.mixed_precision = "no";
  auto acc = Accelerator::Create(options, state::MapEnvironment());
  ASSERT_THAT(acc, IsOk());
  torch::nn::Linear model(3, 2);
  auto lbfgs = std::make_shared<torch::optim::LBFGS>(model->parameters());
  EXPECT_THAT((*acc)->Prepare(model.ptr(), lbfgs).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sharding SHARD_GRAD_OP: sharding the "
                                 "optimizer state needs an elementwise")));
}

// Trains `steps` steps from `initial` (optionally loading `load` first and
// saving `save` after `save_after` steps); returns rank 0's parameters.
std::vector<at::Tensor> TrainAndCheckpoint(
    sharding::ShardingStrategy strategy, int first_step, int steps,
    const std::string& load, const std::string& save, int save_after) {
  constexpr int kWorld = 2;
  const Problem problem = MakeProblem(5, 4, 6, 2, kWorld * 10, 3);
  AcceleratorOptions options;
  options.sharding = sharding::ShardingConfig{.strategy = strategy};
  std::vector<at::Tensor> result;
  std::mutex mu;
  const std::vector<absl::Status> statuses = RunOnRankThreads(
      kWorld, {}, [&](int rank, const state::Environment& env) -> absl::Status {
        ACCELERATE_ASSIGN_OR_RETURN(auto acc, Accelerator::Create(options, env));
        torch::nn::Sequential model = problem.Model();
        auto adamw = std::make_shared<torch::optim::AdamW>(
            model->parameters(), torch::optim::AdamWOptions(0.05));
        ACCELERATE_ASSIGN_OR_RETURN(auto prepared,
                                    acc->Prepare(model.ptr(), adamw));
        auto& [module, opt] = prepared;
        if (!load.empty()) ACCELERATE_RETURN_IF_ERROR(acc->LoadState(load).status());
        for (int step = first_step; step < first_step + steps; ++step) {
          ACCELERATE_RETURN_IF_ERROR(acc->Backward(
              model->forward(problem.inputs[step * kWorld + rank]).square().mean()));
          ACCELERATE_RETURN_IF_ERROR(opt->step());
          opt->zero_grad();
          if (!save.empty() && step + 1 == save_after) {
            ACCELERATE_RETURN_IF_ERROR(acc->SaveState(save).status());
          }
        }
        if (rank == 0) {
          std::lock_guard<std::mutex> lock(mu);
          for (const at::Tensor& p : model->parameters()) {
            result.push_back(p.detach().clone());
          }
        }
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
  return result;
}

// A checkpoint of sharded training holds the whole state in Accelerate's
// layout: resumed sharded, or by data parallel, training goes on exactly.
TEST(AcceleratorShardingTest, CheckpointsHoldTheWholeStateAndResumeExactly) {
  const std::string dir = ::testing::TempDir() + "/sharded_checkpoint";
  using sharding::ShardingStrategy;
  const std::vector<at::Tensor> straight = TrainAndCheckpoint(
      ShardingStrategy::kShardGradOp, 0, 8, "", dir, 5);
  const std::vector<at::Tensor> resumed_sharded = TrainAndCheckpoint(
      ShardingStrategy::kShardGradOp, 5, 3, dir, "", 0);
  const std::vector<at::Tensor> resumed_plain = TrainAndCheckpoint(
      ShardingStrategy::kNone, 5, 3, dir, "", 0);
  ASSERT_EQ(straight.size(), 4u);
  ASSERT_EQ(resumed_sharded.size(), 4u);
  ASSERT_EQ(resumed_plain.size(), 4u);
  for (size_t i = 0; i < straight.size(); ++i) {
    EXPECT_TRUE(TensorsClose(resumed_sharded[i], straight[i],
                             {.rtol = 1e-6, .atol = 1e-7}))
        << "resumed sharded, parameter " << i;
    EXPECT_TRUE(TensorsClose(resumed_plain[i], straight[i],
                             {.rtol = 1e-5, .atol = 1e-6}))
        << "resumed by data parallel, parameter " << i;
  }
}

}  // namespace
}  // namespace accelerate
