#include "checkpoint/optimizer_state.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <torch/torch.h>
#include "bigmodel/torch_file.h"
#include "checkpoint/scheduler_state.h"
#include "checkpoint/torch_file.h"
#include "testing/files.h"
#include "testing/status_matchers.h"

namespace accelerate::checkpoint {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::StatusIs;
using ::testing::HasSubstr;

std::vector<at::Tensor> Params(int64_t seed) {
  torch::manual_seed(seed);
  return {torch::randn({3, 4}).requires_grad_(),
          torch::randn({4}).requires_grad_()};
}

template <typename Optimizer>
void Train(Optimizer& optimizer, const std::vector<at::Tensor>& params,
           int steps) {
  for (int i = 0; i < steps; ++i) {
    optimizer.zero_grad();
    at::Tensor loss = (params[0].sum(1) * params[1].narrow(0, 0, 3)).pow(2).sum();
    loss.backward();
    optimizer.step();
  }
}

// Saved through a file, loaded into an optimizer over copies of the
// parameters: the next steps agree bit for bit.
template <typename Optimizer, typename Options>
void ExpectRoundTrip(const Options& options, const std::string& name) {
  std::vector<at::Tensor> a = Params(1);
  Optimizer first(a, options);
  Train(first, a, 3);
  const std::string path = FreshTestDir(name) + "/optimizer.bin";
  ASSERT_OK_AND_ASSIGN(c10::IValue saved, OptimizerStateDict(first));
  ASSERT_OK(SaveTorchFile(path, saved));

  std::vector<at::Tensor> b;
  for (const at::Tensor& p : a) b.push_back(p.detach().clone().requires_grad_());
  Optimizer second(b, Options(123.0));  // Hyperparameters come from the file.
  ASSERT_OK_AND_ASSIGN(c10::IValue loaded, bigmodel::LoadTorchFile(path));
  ASSERT_OK(LoadOptimizerStateDict(second, loaded, "optimizer.bin"));
  Train(first, a, 2);
  Train(second, b, 2);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], b[i])) << name << " parameter " << i;
  }
}

TEST(OptimizerStateTest, AdamAdamWAndSgdResumeExactly) {
  ExpectRoundTrip<torch::optim::Adam>(
      torch::optim::AdamOptions(0.01).amsgrad(true).weight_decay(0.1), "adam");
  ExpectRoundTrip<torch::optim::AdamW>(torch::optim::AdamWOptions(0.02),
                                       "adamw");
  ExpectRoundTrip<torch::optim::SGD>(
      torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true), "sgd");
}

TEST(OptimizerStateTest, HasPythonsStructure) {
  std::vector<at::Tensor> params = Params(2);
  torch::optim::Adam adam(params, torch::optim::AdamOptions(0.01));
  Train(adam, params, 2);
  ASSERT_OK_AND_ASSIGN(c10::IValue saved, OptimizerStateDict(adam));
  auto top = saved.toGenericDict();
  auto state = top.at("state").toGenericDict();
  ASSERT_EQ(state.size(), 2u);
  auto first = state.at(int64_t{0}).toGenericDict();
  // Python keeps `step` as a float32 scalar tensor.
  EXPECT_EQ(first.at("step").toTensor().scalar_type(), at::kFloat);
  EXPECT_EQ(first.at("step").toTensor().item<float>(), 2.0f);
  EXPECT_TRUE(torch::equal(first.at("exp_avg").toTensor(),
                           static_cast<torch::optim::AdamParamState&>(
                               *adam.state().at(params[0].unsafeGetTensorImpl()))
                               .exp_avg()));
  auto group = top.at("param_groups").toList().get(0).toGenericDict();
  EXPECT_EQ(group.at("lr").toDouble(), 0.01);
  EXPECT_EQ(group.at("decoupled_weight_decay").toBool(), false);
  auto ids = group.at("params").toList();
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids.get(1).toInt(), 1);
}

TEST(OptimizerStateTest, MismatchesAreNamed) {
  std::vector<at::Tensor> params = Params(3);
  torch::optim::Adam adam(params, torch::optim::AdamOptions(0.01));
  Train(adam, params, 1);
  ASSERT_OK_AND_ASSIGN(c10::IValue saved, OptimizerStateDict(adam));

  std::vector<at::Tensor> fewer = {Params(3)[0]};
  torch::optim::Adam small(fewer, torch::optim::AdamOptions(0.01));
  EXPECT_THAT(LoadOptimizerStateDict(small, saved, "optimizer.bin"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("optimizer.bin: param_groups[0] has 2 "
                                 "parameters; the optimizer's group has 1")));

  std::vector<at::Tensor> other = {torch::randn({4, 3}).requires_grad_(),
                                   torch::randn({4}).requires_grad_()};
  torch::optim::Adam reshaped(other, torch::optim::AdamOptions(0.01));
  EXPECT_THAT(LoadOptimizerStateDict(reshaped, saved, "optimizer.bin"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("state.0.exp_avg has shape [3, 4]")));

  torch::optim::SGD sgd(Params(3), torch::optim::SGDOptions(0.1));
  EXPECT_THAT(LoadOptimizerStateDict(sgd, saved, "optimizer.bin"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("an Adam-like optimizer; the optimizer is SGD")));

  auto group = saved.toGenericDict().at("param_groups").toList().get(0);
  group.toGenericDict().insert_or_assign("amsgrad", true);
  EXPECT_THAT(LoadOptimizerStateDict(adam, saved, "optimizer.bin"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("state.0.max_exp_avg_sq is missing")));
  group.toGenericDict().insert_or_assign("amsgrad", false);
  group.toGenericDict().insert_or_assign("maximize", true);
  EXPECT_THAT(LoadOptimizerStateDict(adam, saved, "optimizer.bin"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("param_groups[0].maximize is True")));
}

class Constant : public torch::optim::LRScheduler {
 public:
  using LRScheduler::LRScheduler;
  std::vector<double> get_lrs() override { return get_current_lrs(); }
};

TEST(SchedulerStateTest, StepCountsRoundTripInPythonsKeys) {
  std::vector<at::Tensor> params = Params(4);
  torch::optim::SGD sgd(params, torch::optim::SGDOptions(0.1));
  torch::optim::StepLR step_lr(sgd, 2, 0.5);
  for (int i = 0; i < 5; ++i) step_lr.step();
  c10::IValue saved =
      SchedulerStateDict(step_lr, sgd, {.skipped_calls = 4, .base_lrs = {0.1}});
  auto dict = saved.toGenericDict();
  EXPECT_EQ(dict.at("last_epoch").toInt(), 5);
  EXPECT_EQ(dict.at("_step_count").toInt(), 10);
  EXPECT_EQ(dict.at("base_lrs").toList().get(0).toDouble(), 0.1);
  EXPECT_EQ(dict.at("_last_lr").toList().get(0).toDouble(), 0.025);

  torch::optim::SGD other(Params(4), torch::optim::SGDOptions(0.025));
  torch::optim::StepLR resumed(other, 2, 0.5);
  ASSERT_OK_AND_ASSIGN(SchedulerCounts counts,
                       LoadSchedulerStateDict(resumed, saved, "scheduler.bin"));
  EXPECT_EQ(counts.skipped_calls, 4);
  EXPECT_EQ(SchedulerSteps(resumed), 5);
  // The next steps follow the uninterrupted schedule (the seventh halves).
  for (int i = 0; i < 2; ++i) {
    step_lr.step();
    resumed.step();
  }
  EXPECT_EQ(sgd.param_groups()[0].options().get_lr(), 0.0125);
  EXPECT_EQ(other.param_groups()[0].options().get_lr(), 0.0125);

  auto bad = saved.toGenericDict().copy();
  bad.insert_or_assign("last_epoch", int64_t{-3});
  EXPECT_THAT(LoadSchedulerStateDict(resumed, bad, "scheduler.bin"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("scheduler.bin: last_epoch is -3")));
}

}  // namespace
}  // namespace accelerate::checkpoint
