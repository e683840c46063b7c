#include "accelerator/local_sgd.h"

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "state/environment.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"

namespace accelerate {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::RunOnRankThreads;
using ::testing::Each;

// Trains y = 3x on 2 thread ranks, each on its own data, with SGD; returns
// each rank's final weight. `local_sgd_steps` 0: plain data parallel.
std::vector<float> Train(int local_sgd_steps, int steps = 6) {
  std::vector<float> weights(2);
  std::mutex mu;
  std::vector<absl::Status> statuses = RunOnRankThreads(
      2, {}, [&](int rank, const state::Environment& env) -> absl::Status {
        ACCELERATE_ASSIGN_OR_RETURN(auto acc, Accelerator::Create({}, env));
        auto model =
            torch::nn::Linear(torch::nn::LinearOptions(1, 1).bias(false));
        {
          torch::NoGradGuard no_grad;
          model->weight.fill_(0.0);
        }
        ACCELERATE_RETURN_IF_ERROR(acc->PrepareModel(model.ptr()).status());
        PreparedOptimizer* opt = acc->PrepareOptimizer(
            std::make_shared<torch::optim::SGD>(model->parameters(), 0.1));
        std::optional<LocalSgd> local;
        if (local_sgd_steps > 0) local.emplace(*acc, *model, local_sgd_steps);
        const torch::Tensor x = torch::full({4, 1}, rank + 1.0);
        for (int step = 0; step < steps; ++step) {
          auto scope = acc->Accumulate(*model);
          ACCELERATE_RETURN_IF_ERROR(scope.status());
          torch::Tensor loss = torch::mse_loss(model->forward(x), 3 * x);
          ACCELERATE_RETURN_IF_ERROR(acc->Backward(loss));
          ACCELERATE_RETURN_IF_ERROR(opt->step());
          opt->zero_grad();
          if (local) ACCELERATE_RETURN_IF_ERROR(local->Step());
        }
        std::lock_guard<std::mutex> lock(mu);
        weights[rank] = model->weight.item<float>();
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
  return weights;
}

TEST(LocalSgdTest, AveragingEveryStepEqualsDataParallel) {
  const std::vector<float> ddp = Train(0);
  const std::vector<float> local = Train(1);
  EXPECT_FLOAT_EQ(ddp[0], ddp[1]);
  EXPECT_NEAR(local[0], ddp[0], 1e-6);
  EXPECT_NEAR(local[1], ddp[0], 1e-6);
}

TEST(LocalSgdTest, BetweenAveragesEachProcessFollowsItsOwnGradients) {
  // 6 steps, averaged every 4: after the last average (step 4) each rank
  // took 2 steps of its own.
  const std::vector<float> local = Train(4);
  EXPECT_GT(std::abs(local[0] - local[1]), 1e-3);
  // Averaged at exactly the last step: equal again.
  const std::vector<float> synced = Train(3);
  EXPECT_FLOAT_EQ(synced[0], synced[1]);
  EXPECT_GT(std::abs(synced[0] - Train(0)[0]), 1e-4);  // not plain DDP
}

}  // namespace
}  // namespace accelerate
