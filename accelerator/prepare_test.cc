// Prepare of any number of objects, the gradient state across loaders and
// streams, autocast around forward, and forgetting what was prepared.

#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "data/batch.h"
#include "data/data_loader.h"
#include "data/stream_loader.h"
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
using ::accelerate::testing::TensorValues;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<Accelerator> SingleProcess(AcceleratorOptions options = {}) {
  auto acc = Accelerator::Create(options, state::MapEnvironment());
  EXPECT_TRUE(acc.ok()) << acc.status();
  return *std::move(acc);
}

std::shared_ptr<data::TensorDataset> Rows(int64_t n) {
  const at::Tensor x = torch::arange(n, torch::kFloat).unsqueeze(1).repeat({1, 2});
  return std::make_shared<data::TensorDataset>(
      data::Batch::Named({{"x", x}, {"y", x.sum(1, true)}}));
}

TEST(PrepareTest, TakesAnyNumberOfObjectsInAnyOrder) {
  auto acc = SingleProcess();
  torch::nn::Linear generator(2, 2), critic(2, 1);
  auto g_opt = std::make_shared<torch::optim::Adam>(generator->parameters());
  auto d_opt = std::make_shared<torch::optim::SGD>(critic->parameters(), 0.1);
  auto g_sched = std::make_shared<torch::optim::StepLR>(*g_opt, 1);
  auto d_sched = std::make_shared<torch::optim::StepLR>(*d_opt, 1);
  // Schedulers before their optimizers, loaders between models.
  ASSERT_OK_AND_ASSIGN(
      auto prepared,
      acc->Prepare(SchedulerFor{d_sched, d_opt}, generator,
                   DataLoaderSpec{Rows(8), {.batch_size = 4}}, critic.ptr(),
                   g_opt, DataLoaderSpec{Rows(6), {.batch_size = 3}}, d_opt,
                   SchedulerFor{g_sched, g_opt}));
  auto& [d_s, g, train, d, g_o, eval, d_o, g_s] = prepared;
  static_assert(std::is_same_v<decltype(g), torch::nn::Linear>);
  static_assert(std::is_same_v<decltype(d), std::shared_ptr<torch::nn::LinearImpl>>);
  static_assert(std::is_same_v<decltype(train),
                               std::shared_ptr<data::PreparedDataLoader>>);
  EXPECT_EQ(&g_o->optimizer(), g_opt.get());
  EXPECT_EQ(&d_o->optimizer(), d_opt.get());
  EXPECT_EQ(&d_s->scheduler(), d_sched.get());
  EXPECT_EQ(train->size(), 2);
  EXPECT_EQ(eval->size(), 2);
  // Each scheduler follows its own optimizer: a skipped step of one leaves
  // the other's scheduler stepping.
  ASSERT_OK(g_o->step());
  g_s->step();
  d_s->step();
  EXPECT_EQ(g_s->scheduler_steps(), 1);
  EXPECT_EQ(d_s->scheduler_steps(), 1);
}

TEST(PrepareTest, ASchedulerWithoutItsOptimizerIsAnError) {
  auto acc = SingleProcess();
  torch::nn::Linear a(2, 2), b(2, 2);
  auto a_opt = std::make_shared<torch::optim::SGD>(a->parameters(), 0.1);
  auto b_opt = std::make_shared<torch::optim::SGD>(b->parameters(), 0.1);
  auto sched = std::make_shared<torch::optim::StepLR>(*b_opt, 1);
  EXPECT_THAT(acc->Prepare(a, b, a_opt, b_opt, sched),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("scheduler (argument 4) without its "
                                 "optimizer: 2 optimizers are prepared")));
  auto other = SingleProcess();
  auto stray = std::make_shared<torch::optim::SGD>(b->parameters(), 0.1);
  EXPECT_THAT(other->Prepare(a, a_opt, SchedulerFor{sched, stray}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("scheduler (argument 2): its optimizer was "
                                 "not prepared")));
  // One optimizer: no need to say.
  auto single = SingleProcess();
  EXPECT_OK(single->Prepare(sched, b, b_opt).status());
}

TEST(PrepareTest, AccumulationStepsGivenTwiceAreRefused) {
  AcceleratorOptions options;
  options.gradient_accumulation_steps = 2;
  options.gradient_accumulation_plugin.num_steps = 4;
  EXPECT_THAT(Accelerator::Create(options, state::MapEnvironment()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("gradient_accumulation_steps 2 and "
                                 "gradient_accumulation_plugin.num_steps 4")));
  options.gradient_accumulation_steps.reset();
  auto acc = SingleProcess(options);
  EXPECT_EQ(acc->gradient_accumulation_steps(), 4);
}

// An evaluation loop nested in the training loop is the active loader until
// it ends; then the training loader is again.
TEST(PrepareTest, TheInnermostLoaderBeingIteratedIsActive) {
  auto acc = SingleProcess();
  ASSERT_OK_AND_ASSIGN(auto loaders,
                       acc->Prepare(DataLoaderSpec{Rows(8), {.batch_size = 4}},
                                    DataLoaderSpec{Rows(5), {.batch_size = 4}}));
  auto& [train, eval] = loaders;
  const GradientState& gradients = acc->gradient_state();
  EXPECT_FALSE(gradients.in_dataloader());
  EXPECT_EQ(gradients.remainder(), -1);
  ASSERT_OK(train->Next().status());
  EXPECT_EQ(gradients.ActiveLoader().get(), train.get());
  EXPECT_FALSE(gradients.end_of_dataloader());
  ASSERT_OK(eval->Next().status());
  ASSERT_OK(eval->Next().status());
  EXPECT_EQ(gradients.ActiveLoader().get(), eval.get());
  EXPECT_TRUE(gradients.end_of_dataloader());
  ASSERT_OK_AND_ASSIGN(auto done, eval->Next());
  EXPECT_FALSE(done.has_value());
  EXPECT_EQ(gradients.ActiveLoader().get(), train.get());
  EXPECT_FALSE(gradients.end_of_dataloader());
  ASSERT_OK(train->Next().status());
  EXPECT_TRUE(gradients.end_of_dataloader());
}

// A stream through the Accelerator: its end synchronizes accumulation, and
// GatherForMetrics drops the samples that completed its last global batch.
class Numbers final : public data::SampleStream {
 public:
  void Reset(int64_t) override { next_ = 0; }
  std::optional<data::Batch> Next() override {
    if (next_ >= 7) return std::nullopt;
    const auto i = static_cast<float>(next_++);
    return data::Batch::Named({{"x", torch::full({2}, i)},
                               {"id", torch::scalar_tensor(i)}});
  }

 private:
  int64_t next_ = 0;
};

TEST(PrepareTest, AStreamEndsTheAccumulationAndItsPaddingIsDropped) {
  AcceleratorOptions options;
  options.gradient_accumulation_steps = 3;
  std::vector<absl::Status> statuses = RunOnRankThreads(
      2, {}, [&](int, const state::Environment& env) -> absl::Status {
        ACCELERATE_ASSIGN_OR_RETURN(auto acc, Accelerator::Create(options, env));
        torch::nn::Linear model(2, 1);
        ACCELERATE_ASSIGN_OR_RETURN(
            auto prepared,
            acc->Prepare(model, StreamLoaderSpec{std::make_shared<Numbers>(),
                                                 {.batch_size = 2}}));
        auto& [m, stream] = prepared;
        std::vector<bool> syncs;
        std::vector<double> ids;
        while (true) {
          ACCELERATE_ASSIGN_OR_RETURN(auto batch, stream->Next());
          if (!batch.has_value()) break;
          auto scope = acc->Accumulate(*m);
          ACCELERATE_RETURN_IF_ERROR(
              acc->Backward(m->forward(batch->tensor("x")).sum()));
          syncs.push_back(acc->sync_gradients());
          ACCELERATE_ASSIGN_OR_RETURN(data::Batch all,
                                      acc->GatherForMetrics(*batch));
          for (double id : TensorValues(all.tensor("id"))) ids.push_back(id);
        }
        // 7 samples in global batches of 4: 2 batches, the last one
        // completed with samples 0 and 1... of which 3 are real.
        if (syncs != std::vector<bool>{false, true} ||
            ids != std::vector<double>{0, 1, 2, 3, 4, 5, 6}) {
          return absl::InternalError(absl::StrCat(
              "syncs ", syncs.size(), " ids ", absl::StrJoin(ids, ",")));
        }
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
}

// Records whether autocast was on inside forward.
struct ProbeImpl : torch::nn::Module {
  ProbeImpl() { linear = register_module("linear", torch::nn::Linear(4, 3)); }
  torch::Tensor forward(const torch::Tensor& x) {
    autocast_seen = at::autocast::is_autocast_enabled(at::kCPU);
    return linear(x);
  }
  torch::nn::Linear linear{nullptr};
  bool autocast_seen = false;
};
TORCH_MODULE(Probe);

TEST(PrepareTest, ForwardRunsUnderAutocastAndGivesFloat32) {
  AcceleratorOptions options;
  options.mixed_precision = "bf16";
  auto acc = SingleProcess(options);
  Probe probe;
  ASSERT_OK(acc->PrepareModel(probe.ptr()).status());
  const at::Tensor x = torch::randn({5, 4});
  const at::Tensor out = acc->Forward(probe, x);
  EXPECT_TRUE(probe->autocast_seen);
  EXPECT_EQ(out.scalar_type(), torch::kFloat);
  // Computed in bfloat16: close to, not equal to, the float32 result.
  const at::Tensor exact = probe->forward(x);
  EXPECT_FALSE(probe->autocast_seen);
  EXPECT_TRUE(TensorsClose(out, exact, {.rtol = 0.02, .atol = 0.02}));
  EXPECT_FALSE(torch::equal(out, exact));
  {
    auto autocast = acc->Autocast();
    EXPECT_EQ(torch::mm(x, x.t()).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(torch::mm(x, x.t()).scalar_type(), torch::kFloat);

  // Without mixed precision, nothing changes.
  auto plain = SingleProcess();
  EXPECT_TRUE(torch::equal(plain->Forward(probe, x), exact));
  EXPECT_FALSE(probe->autocast_seen);
}

TEST(PrepareTest, ClearPreparedForgetsModelsOptimizersAndLoaders) {
  auto acc = SingleProcess({.gradient_accumulation_steps = 2});
  torch::nn::Linear model(2, 1);
  auto sgd = std::make_shared<torch::optim::SGD>(model->parameters(), 0.1);
  ASSERT_OK_AND_ASSIGN(
      auto prepared,
      acc->Prepare(model, sgd, DataLoaderSpec{Rows(8), {.batch_size = 4}}));
  auto& [m, opt, loader] = prepared;
  ASSERT_OK(loader->Next().status());
  {
    auto scope = acc->Accumulate(*m);
  }
  EXPECT_TRUE(acc->gradient_state().in_dataloader());
  EXPECT_EQ(acc->gradient_state().step(), 1);
  acc->ClearPrepared();
  EXPECT_FALSE(acc->gradient_state().in_dataloader());
  EXPECT_EQ(acc->gradient_state().step(), 0);
  EXPECT_DEATH({ auto scope = acc->Accumulate(*m); }, "need a model from PrepareModel");
  // The same objects can be prepared again.
  EXPECT_OK(acc->Prepare(model, sgd).status());
  acc->FreeMemory();
}

}  // namespace
}  // namespace accelerate

namespace accelerate {
namespace {

TEST(PrepareTest, GetLoggerWritesOnTheMainProcess) {
  auto acc = SingleProcess();
  ASSERT_OK_AND_ASSIGN(state::MultiProcessLogger logger,
                       acc->GetLogger("train", state::LogLevel::kInfo));
  EXPECT_EQ(logger.level(), state::LogLevel::kInfo);
  ::testing::internal::CaptureStderr();
  ASSERT_OK(logger.Log(state::LogLevel::kInfo, "epoch 1 done"));
  ASSERT_OK(logger.Log(state::LogLevel::kDebug, "dropped"));
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "INFO:train:epoch 1 done\n");
}

}  // namespace
}  // namespace accelerate
