#include "accelerator/accelerator.h"

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <torch/torch.h>
#include "precision/autocast.h"
#include "precision/fp8_linear.h"
#include "state/environment.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TensorsClose;
using ::accelerate::testing::RunOnRankThreads;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Runs `fn` on `world` thread ranks, each with its own Accelerator.
std::vector<absl::Status> OnRanks(
    int world, const AcceleratorOptions& options,
    const std::function<absl::Status(Accelerator&)>& fn,
    const std::map<std::string, std::string>& extra = {}) {
  return RunOnRankThreads(
      world, extra, [&](int, const state::Environment& env) -> absl::Status {
        auto accelerator = Accelerator::Create(options, env);
        if (!accelerator.ok()) return accelerator.status();
        return fn(**accelerator);
      });
}

// Two 1.4 MiB layers among small ones (several 1 MiB buckets) and one layer
// the loss never uses.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    a = register_module("a", torch::nn::Linear(16, 600));
    b = register_module("b", torch::nn::Linear(600, 600));
    d = register_module("d", torch::nn::Linear(600, 600));
    c = register_module("c", torch::nn::Linear(600, 4));
    unused = register_module("unused", torch::nn::Linear(4, 4));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return c(torch::relu(d(torch::relu(b(torch::relu(a(x)))))));
  }
  torch::nn::Linear a{nullptr}, b{nullptr}, d{nullptr}, c{nullptr},
      unused{nullptr};
};
TORCH_MODULE(Net);

// Copies `from`'s parameters into `to` (same architecture).
void CopyWeights(const Net& from, Net& to) {
  torch::NoGradGuard no_grad;
  auto source = from->parameters();
  auto target = to->parameters();
  for (size_t i = 0; i < source.size(); ++i) target[i].copy_(source[i]);
}

TEST(AcceleratorTest, BucketedGradientsEqualAPlainAverage) {
  const int world = 2;
  // Everything random is drawn here, before the rank threads start (the
  // generator is global).
  torch::manual_seed(0);
  Net reference;
  std::vector<torch::Tensor> inputs = {torch::randn({8, 16}),
                                       torch::randn({8, 16})};
  // Reference: each rank's gradients computed alone, averaged by hand.
  std::vector<std::vector<torch::Tensor>> per_rank;
  for (int rank = 0; rank < world; ++rank) {
    reference->zero_grad();
    reference->forward(inputs[rank]).sum().backward();
    std::vector<torch::Tensor> grads;
    for (const auto& p : reference->parameters()) {
      grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
    }
    per_rank.push_back(grads);
  }
  std::mutex mu;
  std::vector<std::vector<torch::Tensor>> got(world);
  AcceleratorOptions options;
  options.bucket_cap_mb = 1;
  options.find_unused_parameters = true;
  std::vector<absl::Status> statuses = OnRanks(
      world, options, [&](Accelerator& acc) -> absl::Status {
        const int rank = acc.State().process_index();
        Net net;
        if (rank == 0) {
          CopyWeights(reference, net);
        } else {
          // Other weights: preparing must replace them with rank 0's.
          torch::NoGradGuard no_grad;
          for (auto& p : net->parameters()) p.fill_(0.5);
        }
        ACCELERATE_RETURN_IF_ERROR(acc.PrepareModel(net.ptr()).status());
        {
          auto scope = acc.Accumulate(*net);
          ACCELERATE_RETURN_IF_ERROR(scope.status());
          torch::Tensor loss = net->forward(inputs[rank]).sum();
          ACCELERATE_RETURN_IF_ERROR(acc.Backward(loss));
        }
        EXPECT_GE(acc.buckets_reduced(), 3);
        std::vector<torch::Tensor> grads;
        for (const auto& p : net->parameters()) {
          grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
        }
        std::lock_guard<std::mutex> lock(mu);
        got[acc.State().process_index()] = grads;
        return absl::OkStatus();
      });
  ASSERT_THAT(statuses, Each(IsOk()));
  for (size_t i = 0; i < per_rank[0].size(); ++i) {
    if (!per_rank[0][i].defined()) continue;  // The unused layer.
    const torch::Tensor average = (per_rank[0][i] + per_rank[1][i]) / 2;
    for (int rank = 0; rank < world; ++rank) {
      EXPECT_TRUE(TensorsClose(got[rank][i], average, {1e-5, 1e-6}))
          << "parameter " << i << " on rank " << rank;
    }
  }
}

TEST(AcceleratorTest, AccumulationStepsSendNothingUntilTheyEnd) {
  AcceleratorOptions options;
  options.gradient_accumulation_steps = 3;
  std::vector<absl::Status> statuses = OnRanks(
      2, options, [&](Accelerator& acc) -> absl::Status {
        auto linear = torch::nn::Linear(4, 2);
        ACCELERATE_RETURN_IF_ERROR(acc.PrepareModel(linear.ptr()).status());
        std::vector<int64_t> sent;
        std::vector<bool> sync;
        for (int step = 0; step < 6; ++step) {
          auto scope = acc.Accumulate(*linear);
          ACCELERATE_RETURN_IF_ERROR(scope.status());
          ACCELERATE_RETURN_IF_ERROR(
              acc.Backward(linear->forward(torch::ones({2, 4})).sum()));
          sync.push_back(acc.sync_gradients());
          sent.push_back(acc.buckets_reduced());
        }
        EXPECT_THAT(sync, ElementsAre(false, false, true, false, false, true));
        EXPECT_THAT(sent, ElementsAre(0, 0, 1, 1, 1, 2));
        {
          auto quiet = acc.NoSync(*linear);
          ACCELERATE_RETURN_IF_ERROR(
              acc.Backward(linear->forward(torch::ones({2, 4})).sum()));
        }
        EXPECT_EQ(acc.buckets_reduced(), 2);
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
}

// A 20-sample dataset, batch 2 per process: 5 batches per process.
std::shared_ptr<data::TensorDataset> Twenty() {
  return std::make_shared<data::TensorDataset>(torch::randn({20, 4}),
                                               torch::randn({20, 2}));
}

TEST(AcceleratorTest, OptimizerAndSchedulerStepOnSynchronizedStepsOnly) {
  for (bool split : {false, true}) {
    AcceleratorOptions options;
    options.gradient_accumulation_steps = 2;
    options.split_batches = split;
    std::mutex mu;
    std::map<int, std::vector<int64_t>> counts;
    std::vector<absl::Status> statuses = OnRanks(
        2, options, [&](Accelerator& acc) -> absl::Status {
          torch::manual_seed(1);
          auto linear = torch::nn::Linear(4, 2);
          auto sgd = std::make_shared<torch::optim::SGD>(
              linear->parameters(), torch::optim::SGDOptions(0.1));
          auto schedule = std::make_shared<torch::optim::StepLR>(*sgd, 1000);
          data::DataLoaderOptions loader_options;
          loader_options.batch_size = split ? 4 : 2;
          ACCELERATE_ASSIGN_OR_RETURN(
              auto prepared, acc.Prepare(linear.ptr(), sgd,
                                         DataLoaderSpec{Twenty(), loader_options},
                                         schedule));
          auto& [model, opt, loader, sched] = prepared;
          std::vector<bool> syncs;
          while (true) {
            ACCELERATE_ASSIGN_OR_RETURN(auto batch, loader->Next());
            if (!batch.has_value()) break;
            auto scope = acc.Accumulate(*model);
            ACCELERATE_RETURN_IF_ERROR(scope.status());
            ACCELERATE_RETURN_IF_ERROR(acc.Backward(torch::mse_loss(
                linear->forward(batch->tensor(0)), batch->tensor(1))));
            ACCELERATE_RETURN_IF_ERROR(opt->step());
            sched->step();
            opt->zero_grad();
            syncs.push_back(acc.sync_gradients());
          }
          // 5 batches, accumulation 2: steps 2 and 4 sync, and 5 because the
          // loader ends there.
          EXPECT_THAT(syncs, ElementsAre(false, true, false, true, true));
          std::lock_guard<std::mutex> lock(mu);
          counts[acc.State().process_index()] = {opt->steps_taken(),
                                                 sched->scheduler_steps()};
          return absl::OkStatus();
        });
    ASSERT_THAT(statuses, Each(IsOk())) << "split " << split;
    for (int rank : {0, 1}) {
      // 3 optimizer steps; the scheduler steps once per process per step
      // unless batches are split.
      EXPECT_THAT(counts[rank], ElementsAre(3, split ? 3 : 6))
          << "rank " << rank << " split " << split;
    }
  }
}

TEST(AcceleratorTest, SeveralBackwardPassesAndModelsPerStep) {
  std::mutex mu;
  std::map<int, std::vector<torch::Tensor>> grads;
  std::vector<absl::Status> statuses = OnRanks(
      2, {}, [&](Accelerator& acc) -> absl::Status {
        const int rank = acc.State().process_index();
        auto a = torch::nn::Linear(3, 3);
        auto b = torch::nn::Linear(3, 1);
        ACCELERATE_RETURN_IF_ERROR(acc.PrepareModel(a.ptr()).status());
        ACCELERATE_RETURN_IF_ERROR(acc.PrepareModel(b.ptr()).status());
        for (int step = 0; step < 4; ++step) {
          auto scope = acc.Accumulate({a.get(), b.get()});
          ACCELERATE_RETURN_IF_ERROR(scope.status());
          const torch::Tensor x = torch::full({2, 3}, rank + 1.0 + step);
          // Two backward passes in one synchronized step.
          ACCELERATE_RETURN_IF_ERROR(acc.Backward(b->forward(a->forward(x)).sum()));
          ACCELERATE_RETURN_IF_ERROR(
              acc.Backward(b->forward(a->forward(x * 2)).sum()));
          a->zero_grad();
          b->zero_grad();
        }
        {
          auto scope = acc.Accumulate({a.get(), b.get()});
          ACCELERATE_RETURN_IF_ERROR(scope.status());
          ACCELERATE_RETURN_IF_ERROR(acc.Backward(
              b->forward(a->forward(torch::full({2, 3}, rank + 1.0))).sum()));
        }
        std::lock_guard<std::mutex> lock(mu);
        grads[rank] = {a->weight.grad().clone(), b->weight.grad().clone()};
        return absl::OkStatus();
      });
  ASSERT_THAT(statuses, Each(IsOk()));
  // Both models were averaged: the ranks hold the same gradients.
  EXPECT_TRUE(TensorsClose(grads[0][0], grads[1][0], {1e-6, 1e-6}));
  EXPECT_TRUE(TensorsClose(grads[0][1], grads[1][1], {1e-6, 1e-6}));
}

TEST(AcceleratorTest, TheLoaderBeingIteratedEndsTheAccumulation) {
  AcceleratorOptions options;
  options.gradient_accumulation_steps = 2;
  ASSERT_OK_AND_ASSIGN(auto acc, Accelerator::Create(options, state::MapEnvironment()));
  auto linear = torch::nn::Linear(4, 2);
  ASSERT_OK(acc->PrepareModel(linear.ptr()).status());
  data::DataLoaderOptions loader_options;
  loader_options.batch_size = 4;
  ASSERT_OK_AND_ASSIGN(auto train, acc->PrepareDataLoader(Twenty(), loader_options));
  // Prepared after the training loader, and never iterated during training.
  ASSERT_OK_AND_ASSIGN(auto eval, acc->PrepareDataLoader(Twenty(), loader_options));
  std::vector<bool> syncs;
  while (true) {
    ASSERT_OK_AND_ASSIGN(auto batch, train->Next());
    if (!batch.has_value()) break;
    auto scope = acc->Accumulate(*linear);
    ASSERT_OK(acc->Backward(linear->forward(batch->tensor(0)).sum()));
    syncs.push_back(acc->sync_gradients());
  }
  EXPECT_THAT(syncs, ElementsAre(false, true, false, true, true));
}

TEST(AcceleratorTest, OptionsComeFromTheLauncherEnvironment) {
  auto from_env = Accelerator::Create(
      {}, state::MapEnvironment(std::map<std::string, std::string>{
              {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4"},
              {"ACCELERATE_MIXED_PRECISION", "bf16"}}));
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ((*from_env)->gradient_accumulation_steps(), 4);
  EXPECT_EQ((*from_env)->mixed_precision(), "bf16");
  AcceleratorOptions options;
  options.gradient_accumulation_steps = 2;
  auto given = Accelerator::Create(
      options, state::MapEnvironment(std::map<std::string, std::string>{
                   {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4"}}));
  ASSERT_TRUE(given.ok());
  EXPECT_EQ((*given)->gradient_accumulation_steps(), 2);
}

TEST(AcceleratorTest, BadOptionsAreNamed) {
  const auto create = [](AcceleratorOptions options,
                         std::map<std::string, std::string> env = {}) {
    return Accelerator::Create(options, state::MapEnvironment(env)).status();
  };
  AcceleratorOptions options;
  options.mixed_precision = "fp17";
  EXPECT_THAT(create(options), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("\"fp17\" is not one of")));
  options.mixed_precision = "fp8";
  options.fp8.backend = "MSAMP";
  EXPECT_THAT(create(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("fp8 backend: \"MSAMP\" is not one of")));
  options.fp8 = {};
  EXPECT_THAT(create(options, {{"ACCELERATE_FP8_FORMAT", "E5M2"},
                               {"ACCELERATE_FP8_BACKEND", "TE"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("E5M2")));
  // fp16 runs on CPU too (with a warning where float16 matrix products are
  // slow there), but not with a model already in float16.
  options.mixed_precision = "FP16";
  ::testing::internal::CaptureStderr();
  ASSERT_OK_AND_ASSIGN(auto fp16,
                       Accelerator::Create(options, state::MapEnvironment()));
  const std::string warned = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(fp16->mixed_precision(), "fp16");
  EXPECT_EQ(absl::StrContains(warned, "bf16 is the fast mixed precision"),
            fp16->Device().is_cpu() && !precision::CpuHasFastFloat16Matmul())
      << warned;
  auto half = torch::nn::Linear(2, 2);
  half->to(torch::kHalf);
  EXPECT_THAT(fp16->PrepareModel(half.ptr()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("parameter \"weight\" is already float16")));
  options.mixed_precision.reset();
  options.gradient_accumulation_steps = 0;
  EXPECT_THAT(create(options), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("gradient_accumulation_steps 0")));
  EXPECT_THAT(create({}, {{"ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "x"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ACCELERATE_GRADIENT_ACCUMULATION_STEPS=\"x\"")));
}

TEST(AcceleratorTest, Bf16AutocastsInsideTheStepOnly) {
  AcceleratorOptions options;
  options.mixed_precision = "bf16";
  ASSERT_OK_AND_ASSIGN(auto acc, Accelerator::Create(options, state::MapEnvironment()));
  auto linear = torch::nn::Linear(4, 2);
  ASSERT_OK(acc->PrepareModel(linear.ptr()).status());
  {
    auto scope = acc->Accumulate(*linear);
    torch::Tensor out = linear->forward(torch::ones({3, 4}));
    EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
    ASSERT_OK(acc->Backward(out.to(torch::kFloat).sum()));
    EXPECT_EQ(linear->weight.grad().scalar_type(), torch::kFloat);
  }
  EXPECT_EQ(linear->forward(torch::ones({3, 4})).scalar_type(), torch::kFloat);
}

TEST(AcceleratorTest, ClipGradNormReturnsTheNormAndClips) {
  ASSERT_OK_AND_ASSIGN(auto acc, Accelerator::Create({}, state::MapEnvironment()));
  auto linear = torch::nn::Linear(torch::nn::LinearOptions(2, 1).bias(false));
  {
    torch::NoGradGuard no_grad;
    linear->weight.fill_(1);
  }
  ASSERT_OK(acc->PrepareModel(linear.ptr()).status());
  ASSERT_OK(acc->Backward(linear->forward(torch::tensor({{3.0f, 4.0f}})).sum()));
  ASSERT_OK_AND_ASSIGN(double norm, acc->ClipGradNorm(*linear, 1.0));
  EXPECT_NEAR(norm, 5.0, 1e-6);
  EXPECT_NEAR(linear->weight.grad().norm().item<double>(), 1.0, 1e-4);
}

// Two models, two optimizers, fp16 on CPU: small integers keep float16
// exact, so each optimizer's gradients must come out unscaled exactly once,
// and the scale must count one iteration, not one per optimizer.
TEST(AcceleratorTest, Fp16UnscalesEachOptimizerOnceAndUpdatesOncePerStep) {
  AcceleratorOptions options;
  options.mixed_precision = "fp16";
  ASSERT_OK_AND_ASSIGN(auto acc,
                       Accelerator::Create(options, state::MapEnvironment()));
  auto first = torch::nn::Linear(torch::nn::LinearOptions(2, 1).bias(false));
  auto second = torch::nn::Linear(torch::nn::LinearOptions(2, 1).bias(false));
  {
    torch::NoGradGuard no_grad;
    first->weight.copy_(torch::tensor({{1.0f, 2.0f}}));
    second->weight.copy_(torch::tensor({{3.0f, -1.0f}}));
  }
  ASSERT_OK(acc->PrepareModel(first.ptr()).status());
  ASSERT_OK(acc->PrepareModel(second.ptr()).status());
  PreparedOptimizer* first_opt = acc->PrepareOptimizer(
      std::make_shared<torch::optim::SGD>(first->parameters(), 0.0));
  PreparedOptimizer* second_opt = acc->PrepareOptimizer(
      std::make_shared<torch::optim::SGD>(second->parameters(), 0.0));
  {
    auto step = acc->Accumulate({first.get(), second.get()});
    ASSERT_OK(step.status());
    const torch::Tensor x = torch::tensor({{2.0f, 3.0f}});
    torch::Tensor out = first->forward(x) + second->forward(x);
    EXPECT_EQ(out.scalar_type(), torch::kHalf);
    // The loss in float32 (as autocast computes losses), divided by 1024 so
    // that the scaled gradient reaching the float16 output (2^16 / 2^10)
    // stays finite, as it would not at 2^16.
    ASSERT_OK(acc->Backward(out.to(torch::kFloat).sum() / 1024));
    EXPECT_EQ(first->weight.grad()[0][0].item<float>(), 2.0f * 64.0f);
    ASSERT_OK_AND_ASSIGN(double norm, acc->ClipGradNorm(*first, 100.0));
    EXPECT_NEAR(norm, std::sqrt(13.0) / 1024, 1e-9);  // unscaled by clipping
    ASSERT_OK(first_opt->step());
    ASSERT_OK(second_opt->step());
  }
  const torch::Tensor expected = torch::tensor({{2.0f, 3.0f}}) / 1024;
  EXPECT_TRUE(torch::equal(first->weight.grad(), expected));
  EXPECT_TRUE(torch::equal(second->weight.grad(), expected))
      << second->weight.grad();
  EXPECT_FALSE(first_opt->step_was_skipped());
  EXPECT_EQ(acc->scaler()->State().growth_tracker, 1);
  EXPECT_EQ(acc->scaler()->scale(), 65536.0);
}

TEST(AcceleratorTest, Fp16SkipsAStepWithAnInfAndBacksOff) {
  AcceleratorOptions options;
  options.mixed_precision = "fp16";
  ASSERT_OK_AND_ASSIGN(auto acc,
                       Accelerator::Create(options, state::MapEnvironment()));
  auto linear = torch::nn::Linear(2, 1);
  ASSERT_OK(acc->PrepareModel(linear.ptr()).status());
  PreparedOptimizer* opt = acc->PrepareOptimizer(
      std::make_shared<torch::optim::SGD>(linear->parameters(), 0.1));
  const torch::Tensor before = linear->weight.detach().clone();
  {
    auto step = acc->Accumulate(*linear);
    // 1e5 overflows float16 (max 65504): the scaled gradients are inf.
    ASSERT_OK(acc->Backward(linear->forward(torch::full({1, 2}, 1e5f)).sum()));
    ASSERT_OK(opt->step());
  }
  EXPECT_TRUE(opt->step_was_skipped());
  EXPECT_EQ(opt->steps_taken(), 0);
  EXPECT_TRUE(torch::equal(linear->weight, before));
  EXPECT_EQ(acc->scaler()->scale(), 32768.0);
}

// A small regression fitted in fp16 (CPU autocast, loss scaling) ends where
// fp32 ends, to fp16's precision.
TEST(AcceleratorTest, Fp16AndBf16TrainingEndNearFp32) {
  const auto fit = [](const std::string& precision) -> std::vector<float> {
    AcceleratorOptions options;
    options.mixed_precision = precision;
    auto acc = Accelerator::Create(options, state::MapEnvironment());
    EXPECT_TRUE(acc.ok()) << acc.status();
    torch::manual_seed(3);
    auto model = torch::nn::Linear(3, 1);
    const torch::Tensor x = torch::rand({64, 3});
    const torch::Tensor y = x.matmul(torch::tensor({{1.5f}, {-2.0f}, {0.5f}})) + 0.25;
    EXPECT_TRUE((*acc)->PrepareModel(model.ptr()).ok());
    PreparedOptimizer* opt = (*acc)->PrepareOptimizer(
        std::make_shared<torch::optim::SGD>(model->parameters(), 0.3));
    for (int step = 0; step < 300; ++step) {
      auto scope = (*acc)->Accumulate(*model);
      torch::Tensor loss = torch::mse_loss(
          model->forward(x).to(torch::kFloat), y);
      EXPECT_TRUE((*acc)->Backward(loss).ok());
      EXPECT_TRUE(opt->step().ok());
      opt->zero_grad();
    }
    std::vector<float> weights(model->weight.data_ptr<float>(),
                               model->weight.data_ptr<float>() + 3);
    weights.push_back(model->bias.item<float>());
    return weights;
  };
  const std::vector<float> fp32 = fit("no");
  const std::vector<float> fp16 = fit("fp16");
  const std::vector<float> bf16 = fit("bf16");
  for (size_t i = 0; i < fp32.size(); ++i) {
    EXPECT_NEAR(fp16[i], fp32[i], 0.02) << i;
    EXPECT_NEAR(bf16[i], fp32[i], 0.05) << i;
  }
}

// Accelerate's default for torchao's recipes: the first and the last linear
// layers, and sizes that are not multiples of 16, stay in high precision.
TEST(AcceleratorTest, Fp8ByDefaultKeepsTheFirstAndLastLayersInHighPrecision) {
  struct Layers : torch::nn::Module {
    Layers() {
      first = register_module("first", precision::Fp8Linear(16, 32));
      middle = register_module("middle", precision::Fp8Linear(32, 32));
      odd = register_module("odd", precision::Fp8Linear(32, 24));
      last = register_module("last", precision::Fp8Linear(24, 16));
    }
    precision::Fp8Linear first{nullptr}, middle{nullptr}, odd{nullptr},
        last{nullptr};
  };
  AcceleratorOptions options;
  options.mixed_precision = "fp8";
  auto model = std::make_shared<Layers>();
  {
    ASSERT_OK_AND_ASSIGN(auto acc,
                         Accelerator::Create(options, state::MapEnvironment()));
    ASSERT_OK(acc->PrepareModel(model).status());
    EXPECT_FALSE(model->first->fp8_enabled());
    EXPECT_TRUE(model->middle->fp8_enabled());
    EXPECT_FALSE(model->odd->fp8_enabled());
    EXPECT_FALSE(model->last->fp8_enabled());
  }
  // The model outlives its Accelerator and still runs.
  EXPECT_EQ(model->middle->forward(torch::ones({2, 32})).sizes(),
            (std::vector<int64_t>{2, 32}));
}

// Under fp8 the model's Fp8Linear layers that the filter keeps compute in
// float8 with the recipe from the launcher's variables.
TEST(AcceleratorTest, Fp8SwitchesTheFilteredFp8LinearLayers) {
  struct TwoLayers : torch::nn::Module {
    TwoLayers() {
      body = register_module("body", precision::Fp8Linear(8, 8));
      head = register_module("head", precision::Fp8Linear(8, 2));
    }
    precision::Fp8Linear body{nullptr}, head{nullptr};
  };
  AcceleratorOptions options;
  options.mixed_precision = "fp8";
  options.fp8_module_filter = [](const std::string& name) {
    return name != "head";
  };
  ASSERT_OK_AND_ASSIGN(
      auto acc, Accelerator::Create(
                    options, state::MapEnvironment(
                                 std::map<std::string, std::string>{
                                     {"ACCELERATE_FP8_BACKEND", "TE"},
                                     {"ACCELERATE_FP8_AMAX_HISTORY_LEN", "8"}})));
  auto model = std::make_shared<TwoLayers>();
  ASSERT_OK(acc->PrepareModel(model).status());
  EXPECT_TRUE(model->body->fp8_enabled());
  EXPECT_FALSE(model->head->fp8_enabled());
  ASSERT_NE(model->body->scales(), nullptr);  // delayed scaling (TE)
  EXPECT_EQ(model->body->scales()->input.history().numel(), 8);
  {
    auto step = acc->Accumulate(*model);
    // bf16 autocast around the float8 layers.
    torch::Tensor out = model->head->forward(
        model->body->forward(torch::randn({4, 8})));
    EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
    ASSERT_OK(acc->Backward(out.to(torch::kFloat).sum()));
  }
  EXPECT_TRUE(model->body->weight.grad().defined());
}

// Two optimizers under fp16: the first's gradients overflow, the second's
// do not; each scheduler follows its own optimizer's skip.
TEST(AcceleratorTest, EachSchedulerFollowsItsOwnOptimizer) {
  AcceleratorOptions options;
  options.mixed_precision = "fp16";
  ASSERT_OK_AND_ASSIGN(auto acc,
                       Accelerator::Create(options, state::MapEnvironment()));
  auto overflowing = torch::nn::Linear(2, 1);
  auto finite = torch::nn::Linear(2, 1);
  ASSERT_OK(acc->PrepareModel(overflowing.ptr()).status());
  ASSERT_OK(acc->PrepareModel(finite.ptr()).status());
  auto sgd_a = std::make_shared<torch::optim::SGD>(overflowing->parameters(),
                                                   0.1);
  auto sgd_b = std::make_shared<torch::optim::SGD>(finite->parameters(), 0.1);
  PreparedOptimizer* a = acc->PrepareOptimizer(sgd_a);
  PreparedOptimizer* b = acc->PrepareOptimizer(sgd_b);
  PreparedScheduler* follows_a = acc->PrepareScheduler(
      std::make_shared<torch::optim::StepLR>(*sgd_a, 10), a);
  // Two optimizers: a scheduler must say which one it follows.
  EXPECT_THAT(acc->PrepareScheduler(
                  std::make_shared<torch::optim::StepLR>(*sgd_b, 10)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("2 optimizers are prepared")));
  PreparedScheduler* follows_b = acc->PrepareScheduler(
      std::make_shared<torch::optim::StepLR>(*sgd_b, 10), b);
  {
    auto step = acc->Accumulate({overflowing.get(), finite.get()});
    // 1e5 overflows float16: only the first model's gradients are inf.
    torch::Tensor loss =
        overflowing->forward(torch::full({1, 2}, 1e5f)).to(torch::kFloat) +
        finite->forward(torch::ones({1, 2})).to(torch::kFloat);
    // Divided by 1024 so that the scaled gradient reaching the float16
    // outputs stays finite (2^16 would not).
    ASSERT_OK(acc->Backward(loss.sum() / 1024));
    ASSERT_OK(a->step());
    ASSERT_OK(b->step());
    follows_a->step();
    follows_b->step();
  }
  EXPECT_TRUE(a->step_was_skipped());
  EXPECT_FALSE(b->step_was_skipped());
  EXPECT_EQ(follows_a->scheduler_steps(), 0);
  EXPECT_EQ(follows_b->scheduler_steps(), 1);
}

}  // namespace
}  // namespace accelerate
