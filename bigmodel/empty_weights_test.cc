// Tests of InitEmptyWeights, InitOnDevice, ReplaceTensor and
// MetaTensorNames.

#include "bigmodel/empty_weights.h"

#include <torch/torch.h>

#include <fstream>
#include <thread>

#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TensorsClose;

int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * 4096;
}

TEST(InitEmptyWeightsTest, BuildsAHugeLinearWithoutAllocating) {
  const int64_t before = ResidentBytes();
  torch::nn::Linear linear{nullptr};
  {
    InitEmptyWeights scope;
    linear = torch::nn::Linear(100000, 100000);  // 40 GB in float32.
  }
  EXPECT_LT(ResidentBytes() - before, 64 << 20);
  EXPECT_TRUE(linear->weight.is_meta());
  EXPECT_TRUE(linear->bias.is_meta());
  EXPECT_EQ(linear->weight.sizes(), (std::vector<int64_t>{100000, 100000}));
  EXPECT_TRUE(linear->weight.requires_grad());
  // Allocation is back to normal after the scope.
  EXPECT_TRUE(torch::ones({2}).is_cpu());
}

TEST(InitEmptyWeightsTest, BuffersAreEmptyToo) {
  torch::nn::Sequential net{nullptr};
  {
    InitEmptyWeights scope;
    net = torch::nn::Sequential(torch::nn::Linear(4, 3),
                                torch::nn::BatchNorm1d(3));
  }
  // (`num_batches_tracked` comes from `scalar_tensor`, which allocates
  // without dispatching: a real 0-dim tensor, as cheap as it gets.)
  EXPECT_EQ(
      MetaTensorNames(*net),
      (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias",
                                "1.running_mean", "1.running_var"}));
}

TEST(InitEmptyWeightsTest, OtherThreadsAllocateNormally) {
  InitEmptyWeights scope;
  EXPECT_TRUE(torch::zeros({3}).is_meta());
  at::Tensor elsewhere;
  std::thread([&] { elsewhere = torch::ones({3}); }).join();
  ASSERT_TRUE(elsewhere.is_cpu());
  EXPECT_EQ(elsewhere.sum().item<float>(), 3.0f);
}

TEST(InitEmptyWeightsTest, DataConstantsKeepTheirValuesOnlyInACpuScope) {
  InitEmptyWeights scope;
  float values[] = {1.0f, 2.0f};
  EXPECT_TRUE(torch::tensor({1.0f, 2.0f}).is_meta());
  EXPECT_TRUE(torch::from_blob(values, {2}).clone().is_meta());
  InitOnDevice cpu(c10::kCPU);
  EXPECT_EQ(torch::tensor({1.0f, 2.0f}).sum().item<float>(), 3.0f);
  EXPECT_EQ(torch::from_blob(values, {2}).clone().sum().item<float>(), 3.0f);
}

TEST(InitEmptyWeightsTest, ScopesNestAndRestore) {
  {
    InitEmptyWeights outer;
    {
      InitOnDevice inner(c10::kCPU);
      at::Tensor real = torch::arange(4);
      ASSERT_TRUE(real.is_cpu());
      EXPECT_EQ(real.sum().item<int64_t>(), 6);
    }
    EXPECT_TRUE(torch::empty({2, 2}).is_meta());
    EXPECT_TRUE(torch::empty_strided({2, 2}, {1, 2}).is_meta());
  }
  EXPECT_TRUE(torch::empty({2, 2}).is_cpu());
  EXPECT_TRUE(torch::empty_strided({2, 2}, {1, 2}).is_cpu());
}

TEST(ReplaceTensorTest, MaterializesAMetaModuleInPlace) {
  torch::manual_seed(0);
  torch::nn::Linear reference(5, 3);
  torch::nn::Linear linear{nullptr};
  {
    InitEmptyWeights scope;
    linear = torch::nn::Linear(5, 3);
  }
  ASSERT_OK(ReplaceTensor(linear->weight, reference->weight.detach().clone()));
  ASSERT_OK(ReplaceTensor(linear->bias, reference->bias.detach().clone()));
  EXPECT_TRUE(MetaTensorNames(*linear).empty());
  // The module's dictionary holds the same tensor as its member.
  EXPECT_TRUE(linear->named_parameters()["weight"].is_cpu());
  EXPECT_TRUE(linear->weight.requires_grad());

  at::Tensor input = torch::randn({2, 5});
  EXPECT_TRUE(
      TensorsClose(linear(input), reference(input), {.rtol = 0, .atol = 0}));
  linear(input).sum().backward();
  ASSERT_TRUE(linear->weight.grad().defined());
  EXPECT_TRUE(TensorsClose(linear->weight.grad(), input.sum(0).expand({3, 5}),
                           {.rtol = 0, .atol = 1e-6}));
}

TEST(ReplaceTensorTest, TiedHoldersSeeTheNewData) {
  struct Head : torch::nn::Module {
    explicit Head(const at::Tensor& tied) {
      weight = register_parameter("weight", tied);
    }
    at::Tensor weight;
  };
  struct Tied : torch::nn::Module {
    Tied() {
      embed = register_module("embed", torch::nn::Embedding(6, 2));
      head = register_module("head", std::make_shared<Head>(embed->weight));
    }
    torch::nn::Embedding embed{nullptr};
    std::shared_ptr<Head> head;
  };
  std::shared_ptr<Tied> tied;
  {
    InitEmptyWeights scope;
    tied = std::make_shared<Tied>();
  }
  at::Tensor weights = torch::arange(12, torch::kFloat).reshape({6, 2});
  ASSERT_OK(ReplaceTensor(tied->embed->weight, weights));
  EXPECT_TRUE(tied->head->weight.is_cpu());
  EXPECT_TRUE(
      TensorsClose(tied->head->weight, weights, {.rtol = 0, .atol = 0}));
}

TEST(ReplaceTensorTest, RejectsAnotherShape) {
  at::Tensor target;
  {
    InitEmptyWeights scope;
    target = torch::empty({4, 3});
  }
  EXPECT_THAT(ReplaceTensor(target, torch::zeros({3, 4})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("[3, 4]")));
  EXPECT_TRUE(target.is_meta());
  EXPECT_THAT(ReplaceTensor(target, at::Tensor()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace accelerate::bigmodel
