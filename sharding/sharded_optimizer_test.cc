#include "sharding/sharded_optimizer.h"

#include <memory>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "state/collectives.h"
#include "state/partial_state.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::sharding {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TensorsClose;
using ::testing::HasSubstr;

// Uneven sizes, so that slices cut through parameters and padding exists.
// Thread ranks share the global generator: values come from generators of
// their own.
torch::nn::Sequential MakeModel() {
  torch::nn::Sequential model(torch::nn::Linear(7, 13), torch::nn::Tanh(),
                              torch::nn::Linear(13, 5));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(3);
  torch::NoGradGuard no_grad;
  for (at::Tensor& p : model->parameters()) {
    p.copy_(torch::randn(p.sizes(), generator) * 0.3);
  }
  return model;
}

std::shared_ptr<torch::optim::Optimizer> MakeOptimizer(
    const std::string& kind, std::vector<at::Tensor> params) {
  if (kind == "adamw") {
    return std::make_shared<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  }
  return std::make_shared<torch::optim::SGD>(
      params, torch::optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
}

// Each rank's batch differs; the reference sees the average gradient.
at::Tensor Batch(int rank, int step) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(100 * step + rank);
  return torch::randn({4, 7}, generator);
}

// Sharded training on `world` thread ranks equals the unsharded optimizer
// stepping on the averaged gradients, step after step.
void ExpectEqualsUnsharded(int world, const std::string& kind) {
  // The reference: one process, the mean of every rank's loss.
  torch::nn::Sequential reference = MakeModel();
  auto reference_optimizer = MakeOptimizer(kind, reference->parameters());
  constexpr int kSteps = 4;
  for (int step = 0; step < kSteps; ++step) {
    reference_optimizer->zero_grad();
    at::Tensor loss = torch::zeros({});
    for (int rank = 0; rank < world; ++rank) {
      loss = loss + reference->forward(Batch(rank, step)).square().mean();
    }
    (loss / world).backward();
    reference_optimizer->step();
  }
  std::vector<std::vector<at::Tensor>> results(world);
  std::vector<StateBytes> bytes(world);
  const std::vector<absl::Status> statuses = accelerate::testing::RunOnRanks(
      world, [&](const state::PartialState& state) -> absl::Status {
        torch::nn::Sequential model = MakeModel();
        auto optimizer = MakeOptimizer(kind, model->parameters());
        auto sharded = ShardedOptimizer::Create(optimizer, state);
        if (!sharded.ok()) return sharded.status();
        for (int step = 0; step < kSteps; ++step) {
          (*sharded)->ZeroGrad();
          model->forward(Batch(state.process_index(), step))
              .square()
              .mean()
              .backward();
          // The data-parallel average (DDP's all-reduce).
          for (at::Tensor& p : model->parameters()) {
            at::Tensor grad = p.mutable_grad();
            absl::Status reduced = state::AllReduceInPlace(state, grad);
            if (!reduced.ok()) return reduced;
          }
          ACCELERATE_RETURN_IF_ERROR((*sharded)->BeforeStep());
          optimizer->step();
          ACCELERATE_RETURN_IF_ERROR((*sharded)->AfterStep());
        }
        for (const at::Tensor& p : model->parameters()) {
          results[state.process_index()].push_back(p.detach().clone());
        }
        bytes[state.process_index()] = (*sharded)->Bytes();
        return absl::OkStatus();
      });
  for (const absl::Status& status : statuses) ASSERT_THAT(status, IsOk());
  const std::vector<at::Tensor> expected = reference->parameters();
  int64_t state_bytes = 0;
  for (const at::Tensor& p : expected) state_bytes += p.nbytes();
  for (int rank = 0; rank < world; ++rank) {
    ASSERT_EQ(results[rank].size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_TRUE(TensorsClose(results[rank][i], expected[i],
                               {.rtol = 1e-5, .atol = 1e-6}))
          << kind << " on " << world << " ranks: rank " << rank
          << ", parameter " << i;
    }
    // Optimizer state: 1/world of the unsharded (padding aside); AdamW
    // keeps two tensors per value, SGD one.
    const int64_t per_value = kind == "adamw" ? 2 : 1;
    const int64_t unsharded = per_value * state_bytes;
    EXPECT_LE(bytes[rank].optimizer_state, unsharded / world + 4 * per_value * world)
        << kind << " on " << world << " ranks";
    EXPECT_GE(bytes[rank].optimizer_state, unsharded / world);
    // After the step only the slice's gradient is kept.
    EXPECT_LE(bytes[rank].gradients, state_bytes / world + 4 * world);
  }
}

TEST(ShardedOptimizerTest, AdamWOnTwoAndFourRanksEqualsUnsharded) {
  ExpectEqualsUnsharded(2, "adamw");
  ExpectEqualsUnsharded(4, "adamw");
}

TEST(ShardedOptimizerTest, SgdWithMomentumOnThreeRanksEqualsUnsharded) {
  ExpectEqualsUnsharded(3, "sgd");
}

// Unshard gathers exactly the unsharded optimizer's state (what a
// checkpoint saves); Reshard cuts it back and training goes on unchanged.
TEST(ShardedOptimizerTest, UnshardGathersTheWholeStateAndReshardResumes) {
  constexpr int kWorld = 3;
  torch::nn::Sequential reference = MakeModel();
  auto reference_optimizer = MakeOptimizer("adamw", reference->parameters());
  std::vector<at::Tensor> reference_exp_avg;
  for (int step = 0; step < 4; ++step) {
    reference_optimizer->zero_grad();
    at::Tensor loss = torch::zeros({});
    for (int rank = 0; rank < kWorld; ++rank) {
      loss = loss + reference->forward(Batch(rank, step)).square().mean();
    }
    (loss / kWorld).backward();
    reference_optimizer->step();
    if (step == 2) {
      for (const at::Tensor& p : reference->parameters()) {
        const auto& state = static_cast<const torch::optim::AdamWParamState&>(
            *reference_optimizer->state().at(p.unsafeGetTensorImpl()));
        reference_exp_avg.push_back(state.exp_avg().clone());
      }
    }
  }
  std::vector<std::vector<at::Tensor>> exp_avgs(kWorld), params(kWorld);
  const std::vector<absl::Status> statuses = accelerate::testing::RunOnRanks(
      kWorld, [&](const state::PartialState& state) -> absl::Status {
        const int rank = state.process_index();
        torch::nn::Sequential model = MakeModel();
        auto optimizer = MakeOptimizer("adamw", model->parameters());
        ACCELERATE_ASSIGN_OR_RETURN(auto sharded,
                                    ShardedOptimizer::Create(optimizer, state));
        for (int step = 0; step < 4; ++step) {
          sharded->ZeroGrad();
          model->forward(Batch(rank, step)).square().mean().backward();
          for (at::Tensor& p : model->parameters()) {
            at::Tensor grad = p.mutable_grad();
            ACCELERATE_RETURN_IF_ERROR(state::AllReduceInPlace(state, grad));
          }
          ACCELERATE_RETURN_IF_ERROR(sharded->BeforeStep());
          optimizer->step();
          ACCELERATE_RETURN_IF_ERROR(sharded->AfterStep());
          if (step != 2) continue;
          ACCELERATE_RETURN_IF_ERROR(sharded->Unshard());
          if (optimizer->param_groups()[0].params().size() != 4) {
            return absl::InternalError("the whole parameters are not back");
          }
          for (const at::Tensor& p : model->parameters()) {
            const auto& s = static_cast<const torch::optim::AdamWParamState&>(
                *optimizer->state().at(p.unsafeGetTensorImpl()));
            exp_avgs[rank].push_back(s.exp_avg().clone());
          }
          ACCELERATE_RETURN_IF_ERROR(sharded->Reshard());
        }
        for (const at::Tensor& p : model->parameters()) {
          params[rank].push_back(p.detach().clone());
        }
        return absl::OkStatus();
      });
  for (const absl::Status& status : statuses) ASSERT_THAT(status, IsOk());
  const std::vector<at::Tensor> expected = reference->parameters();
  for (int rank = 0; rank < kWorld; ++rank) {
    ASSERT_EQ(exp_avgs[rank].size(), reference_exp_avg.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_TRUE(TensorsClose(exp_avgs[rank][i], reference_exp_avg[i],
                               {.rtol = 1e-5, .atol = 1e-7}))
          << "rank " << rank << ", exp_avg of parameter " << i;
      EXPECT_TRUE(TensorsClose(params[rank][i], expected[i],
                               {.rtol = 1e-5, .atol = 1e-6}))
          << "rank " << rank << ", parameter " << i;
    }
  }
}

// ZeRO stage 1: the whole gradients stay until ZeroGrad.
TEST(ShardedOptimizerTest, KeepsWholeGradientsWhenAsked) {
  const std::vector<absl::Status> statuses = accelerate::testing::RunOnRanks(
      2, [&](const state::PartialState& state) -> absl::Status {
        torch::nn::Sequential model = MakeModel();
        auto optimizer = MakeOptimizer("sgd", model->parameters());
        ACCELERATE_ASSIGN_OR_RETURN(
            auto sharded, ShardedOptimizer::Create(
                              optimizer, state, {.keep_whole_gradients = true}));
        model->forward(Batch(0, 0)).square().mean().backward();
        ACCELERATE_RETURN_IF_ERROR(sharded->BeforeStep());
        for (const at::Tensor& p : model->parameters()) {
          if (!p.grad().defined()) {
            return absl::InternalError("a whole gradient was freed");
          }
        }
        sharded->ZeroGrad();
        for (const at::Tensor& p : model->parameters()) {
          if (p.grad().defined()) {
            return absl::InternalError("ZeroGrad left a gradient");
          }
        }
        return absl::OkStatus();
      });
  for (const absl::Status& status : statuses) ASSERT_THAT(status, IsOk());
}

TEST(ShardedOptimizerTest, RefusesWhatCannotBeSharded) {
  const std::vector<absl::Status> statuses = accelerate::testing::RunOnRanks(
      1, [&](const state::PartialState& state) -> absl::Status {
        torch::nn::Linear model(3, 2);
        auto lbfgs = std::make_shared<torch::optim::LBFGS>(model->parameters());
        EXPECT_THAT(ShardedOptimizer::Create(lbfgs, state),
                    StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("elementwise")));
        auto adam = std::make_shared<torch::optim::Adam>(model->parameters());
        model->forward(torch::ones({1, 3})).sum().backward();
        adam->step();
        EXPECT_THAT(ShardedOptimizer::Create(adam, state),
                    StatusIs(absl::StatusCode::kFailedPrecondition));
        torch::nn::Linear mixed(3, 2);
        mixed->bias.set_data(mixed->bias.to(torch::kDouble));
        auto sgd = std::make_shared<torch::optim::SGD>(
            mixed->parameters(), torch::optim::SGDOptions(0.1));
        EXPECT_THAT(ShardedOptimizer::Create(sgd, state),
                    StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("mixes")));
        torch::nn::Linear frozen(3, 2);
        frozen->bias.set_requires_grad(false);
        auto adamw = std::make_shared<torch::optim::AdamW>(frozen->parameters());
        EXPECT_THAT(ShardedOptimizer::Create(adamw, state),
                    StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("parameter 1 does not require")));
        return absl::OkStatus();
      });
  for (const absl::Status& status : statuses) ASSERT_THAT(status, IsOk());
}

}  // namespace
}  // namespace accelerate::sharding
