#include "precision/fp8_linear.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include "precision/autocast.h"
#include "state/partial_state.h"
#include "testing/distributed_testutil.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace accelerate::precision {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::IsOk;
using ::accelerate::testing::PeerPython;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::ReadFileOrDie;
using ::accelerate::testing::RunOnRanks;
using ::accelerate::testing::Runfile;
using ::accelerate::testing::Subprocess;
using ::testing::Each;

torch::Tensor ReadFloats(const std::string& path, std::vector<int64_t> shape) {
  const std::string bytes = ReadFileOrDie(path);
  std::vector<float> values(bytes.size() / sizeof(float));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  return torch::tensor(values).reshape(shape);
}

// Our layer against torchao's Float8Linear (emulated) on the same data.
class Fp8LinearPeerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(Fp8LinearPeerTest, OutputsAndGradientsEqualTorchaos) {
  const std::string recipe_name = GetParam();
  const std::string dir = FreshTestDir("torchao_" + recipe_name);
  Subprocess peer({PeerPython(), Runfile("precision/fp8_linear_peer.py"), dir,
                   recipe_name},
                  {});
  ASSERT_OK(peer.Start());
  const ProcessResult result = peer.Wait(absl::Seconds(240));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const int64_t m = 24, k = 64, n = 32;
  const auto read = [&](const std::string& name,
                        std::vector<int64_t> shape) {
    return ReadFloats(dir + "/" + name + ".f32", shape);
  };
  ASSERT_OK_AND_ASSIGN(
      Fp8Recipe recipe,
      ResolveFp8Recipe({.recipe = recipe_name}, state::MapEnvironment()));
  Fp8Linear layer(k, n);
  {
    torch::NoGradGuard no_grad;
    layer->weight.copy_(read("weight", {n, k}));
    layer->bias.copy_(read("bias", {n}));
  }
  layer->EnableFp8(recipe);
  torch::Tensor x = read("input", {m, k}).requires_grad_(true);
  torch::Tensor y = layer->forward(x);
  y.backward(read("grad_output", {m, n}));
  const auto expect_close = [](const torch::Tensor& ours,
                               const torch::Tensor& theirs,
                               const std::string& what) {
    EXPECT_TRUE(torch::allclose(ours, theirs, 1e-5, 1e-5))
        << what << ": largest difference "
        << (ours - theirs).abs().max().item<float>() << " of "
        << theirs.abs().max().item<float>();
  };
  expect_close(y.detach(), read("output", {m, n}), "output");
  expect_close(x.grad(), read("grad_input", {m, k}), "grad_input");
  expect_close(layer->weight.grad(), read("grad_weight", {n, k}),
               "grad_weight");
  expect_close(layer->bias.grad(), read("grad_bias", {n}), "grad_bias");
  // And float8 made a difference: the plain product is not that close.
  const torch::Tensor exact =
      torch::nn::functional::linear(x.detach(), layer->weight, layer->bias);
  EXPECT_FALSE(torch::allclose(y.detach(), exact, 1e-5, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Recipes, Fp8LinearPeerTest,
                         ::testing::Values("tensorwise", "rowwise"));

TEST(Fp8LinearTest, UntilEnabledItIsAPlainLinearLayer) {
  torch::manual_seed(1);
  Fp8Linear layer(8, 4);
  torch::nn::Linear plain(8, 4);
  {
    torch::NoGradGuard no_grad;
    plain->weight.copy_(layer->weight);
    plain->bias.copy_(layer->bias);
  }
  const torch::Tensor x = torch::randn({3, 5, 8});
  EXPECT_TRUE(torch::equal(layer->forward(x), plain->forward(x)));
  EXPECT_FALSE(layer->fp8_enabled());
  // Its parameters carry torch::nn::Linear's names.
  EXPECT_EQ(layer->named_parameters().keys(),
            (std::vector<std::string>{"weight", "bias"}));
}

TEST(Fp8LinearTest, UnderAutocastTheOutputHasTheAutocastDtype) {
  Fp8Linear layer(16, 8);
  layer->EnableFp8(Fp8Recipe{});
  AutocastScope autocast(MixedPrecision::kBf16, c10::DeviceType::CPU);
  const torch::Tensor y = layer->forward(torch::randn({4, 16}));
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{4, 8}));
}

// The first step casts with scale 1 (448 and above saturate); the second
// with 448 / the first step's amax.
TEST(Fp8LinearTest, DelayedScalingUsesTheAmaxOfThePreviousStep) {
  Fp8Recipe recipe;
  recipe.scaling = Fp8Scaling::kDelayed;
  recipe.amax_history_len = 4;
  Fp8Linear layer(torch::nn::LinearOptions(2, 1).bias(false));
  {
    torch::NoGradGuard no_grad;
    layer->weight.copy_(torch::tensor({{1.0f, 1.0f}}));
  }
  layer->EnableFp8(recipe);
  const torch::Tensor big = torch::tensor({{1000.0f, 1.0f}});
  EXPECT_EQ(layer->forward(big).item<float>(), 448.0f + 1.0f);  // saturated
  EXPECT_FLOAT_EQ(layer->scales()->input.history()[0].item<float>(), 1000.0f);
  const float second = layer->forward(big).item<float>();
  EXPECT_FLOAT_EQ(layer->scales()->input.scale().item<float>(), 0.448f);
  EXPECT_NEAR(second, 1001.0f, 1001.0f / 16);  // E4M3's relative precision
  EXPECT_GT(second, 900.0f);
  // The weight's scale followed its amax of 1.
  EXPECT_FLOAT_EQ(layer->scales()->weight.scale().item<float>(), 448.0f);
}

// A clone keeps its own delayed scales, and a graph outlives its layer.
TEST(Fp8LinearTest, ClonesAndPendingGraphsOwnTheirScales) {
  Fp8Recipe recipe;
  recipe.scaling = Fp8Scaling::kDelayed;
  recipe.amax_history_len = 2;
  torch::Tensor loss;
  torch::Tensor x = torch::full({2, 4}, 3.0f);
  {
    Fp8Linear layer(4, 4);
    layer->EnableFp8(recipe);
    layer->forward(x);
    auto copy = std::dynamic_pointer_cast<Fp8LinearImpl>(layer->clone());
    ASSERT_NE(copy, nullptr);
    ASSERT_NE(copy->scales(), layer->scales());
    copy->forward(torch::full({2, 4}, 100.0f));
    copy->forward(torch::full({2, 4}, 100.0f));
    EXPECT_FLOAT_EQ(copy->scales()->input.scale().item<float>(), 4.48f);
    layer->forward(x);
    EXPECT_FLOAT_EQ(layer->scales()->input.scale().item<float>(),
                    448.0f / 3);
    loss = layer->forward(x.clone().requires_grad_(true)).sum();
  }
  // The layer is gone; its backward still has the scales it needs.
  loss.backward();
}

// Two processes see different inputs; their delayed input scales agree, set
// by the larger amax.
TEST(Fp8LinearTest, DelayedAmaxesAreMaxReducedAcrossProcesses) {
  std::vector<absl::Status> statuses =
      RunOnRanks(2, [](const state::PartialState& state) -> absl::Status {
        Fp8Recipe recipe;
        recipe.scaling = Fp8Scaling::kDelayed;
        recipe.amax_history_len = 2;
        Fp8Linear layer(4, 2);
        layer->EnableFp8(recipe, &state);
        const float peak = state.process_index() == 0 ? 2.0f : 8.0f;
        const torch::Tensor x = torch::full({3, 4}, peak);
        layer->forward(x).sum().backward();
        layer->forward(x);
        const float scale = layer->scales()->input.scale().item<float>();
        if (std::abs(scale - 448.0f / 8) > 1e-3) {
          return absl::InternalError(absl::StrCat("input scale ", scale));
        }
        if (!layer->scales()->grad_output.scale().gt(1).item<bool>() &&
            !layer->scales()->grad_output.scale().lt(1).item<bool>()) {
          return absl::InternalError("the gradient's scale never moved");
        }
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
}

// torchao's two recipes and Transformer Engine's (a short history), by name.
std::vector<std::pair<std::string, Fp8Recipe>> EveryRecipe() {
  Fp8Recipe delayed;
  delayed.scaling = Fp8Scaling::kDelayed;
  delayed.amax_history_len = 16;
  absl::StatusOr<Fp8Recipe> rowwise =
      ResolveFp8Recipe({.recipe = "rowwise"}, state::MapEnvironment());
  EXPECT_TRUE(rowwise.ok()) << rowwise.status();
  return {{"tensorwise", Fp8Recipe{}},
          {"rowwise", rowwise.value_or(Fp8Recipe{})},
          {"delayed", delayed}};
}

// A small network fitted in fp8 (each recipe) ends close to bf16.
TEST(Fp8LinearTest, TrainingInFp8ConvergesNearBf16) {
  const auto fit = [](std::optional<Fp8Recipe> recipe) {
    torch::manual_seed(5);
    Fp8Linear first(16, 64), second(64, 1);
    if (recipe) {
      first->EnableFp8(*recipe);
      second->EnableFp8(*recipe);
    }
    std::vector<torch::Tensor> params = first->parameters();
    for (const auto& p : second->parameters()) params.push_back(p);
    torch::optim::Adam adam(params, 1e-2);
    const torch::Tensor x = torch::randn({256, 16});
    const torch::Tensor y = torch::sin(x.sum(1, true));
    float loss_value = 0;
    for (int step = 0; step < 300; ++step) {
      AutocastScope autocast(MixedPrecision::kBf16, c10::DeviceType::CPU);
      torch::Tensor out =
          second->forward(torch::relu(first->forward(x))).to(torch::kFloat);
      torch::Tensor loss = torch::mse_loss(out, y);
      adam.zero_grad();
      {
        AutocastOff off;
        loss.backward();
      }
      adam.step();
      loss_value = loss.item<float>();
    }
    return loss_value;
  };
  const float bf16 = fit(std::nullopt);
  EXPECT_LT(bf16, 0.1) << "the bf16 reference does not learn";
  for (const auto& [name, recipe] : EveryRecipe()) {
    const float fp8 = fit(recipe);
    EXPECT_LT(std::abs(fp8 - bf16), 0.05) << name << ": fp8 loss " << fp8
                                          << ", bf16 loss " << bf16;
  }
}

// A one-block causal transformer whose four linear layers are Fp8Linear.
struct TinyTransformerImpl : torch::nn::Module {
  static constexpr int64_t kVocab = 16, kWidth = 32, kTokens = 16;
  TinyTransformerImpl() {
    embed = register_module("embed", torch::nn::Embedding(kVocab, kWidth));
    norm = register_module(
        "norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kWidth})));
    qkv = register_module("qkv", Fp8Linear(kWidth, 3 * kWidth));
    proj = register_module("proj", Fp8Linear(kWidth, kWidth));
    up = register_module("up", Fp8Linear(kWidth, 4 * kWidth));
    down = register_module("down", Fp8Linear(4 * kWidth, kWidth));
    head = register_module("head", torch::nn::Linear(kWidth, kVocab));
  }
  void EnableFp8(const Fp8Recipe& recipe) {
    for (Fp8Linear* layer : {&qkv, &proj, &up, &down}) {
      (*layer)->EnableFp8(recipe);
    }
  }
  torch::Tensor forward(const torch::Tensor& tokens) {
    torch::Tensor x = embed->forward(tokens);
    const int64_t b = x.size(0), t = x.size(1);
    auto parts = qkv->forward(norm->forward(x)).view({b, t, 3, kWidth})
                     .permute({2, 0, 1, 3});
    torch::Tensor scores =
        torch::matmul(parts[0], parts[1].transpose(-2, -1)) /
        std::sqrt(static_cast<double>(kWidth));
    scores = scores.masked_fill(torch::ones({t, t}, torch::kBool).triu(1),
                                -std::numeric_limits<double>::infinity());
    x = x + proj->forward(torch::matmul(torch::softmax(scores, -1), parts[2]));
    x = x + down->forward(torch::gelu(up->forward(x)));
    return head->forward(x);
  }
  torch::nn::Embedding embed{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  Fp8Linear qkv{nullptr}, proj{nullptr}, up{nullptr}, down{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(TinyTransformer);

// Next-token prediction of sequences x[t+1] = (5 x[t] + 3) mod 16: a small
// transformer trained in fp8 (each recipe) ends close to bf16.
TEST(Fp8LinearTest, ASmallTransformerTrainedInFp8EndsNearBf16) {
  using Model = TinyTransformerImpl;
  torch::manual_seed(11);
  const torch::Tensor starts = torch::randint(0, Model::kVocab, {32, 1});
  std::vector<torch::Tensor> columns = {starts};
  for (int64_t t = 1; t <= Model::kTokens; ++t) {
    columns.push_back((columns.back() * 5 + 3) % Model::kVocab);
  }
  const torch::Tensor sequence = torch::cat(columns, 1);
  const torch::Tensor inputs = sequence.narrow(1, 0, Model::kTokens);
  const torch::Tensor targets =
      sequence.narrow(1, 1, Model::kTokens).reshape({-1});
  const auto fit = [&](std::optional<Fp8Recipe> recipe) {
    torch::manual_seed(12);
    TinyTransformer model;
    if (recipe) model->EnableFp8(*recipe);
    torch::optim::Adam adam(model->parameters(), 3e-3);
    float loss_value = 0;
    for (int step = 0; step < 200; ++step) {
      torch::Tensor loss;
      {
        AutocastScope autocast(MixedPrecision::kBf16, c10::DeviceType::CPU);
        loss = torch::cross_entropy_loss(
            model->forward(inputs).to(torch::kFloat).reshape(
                {-1, Model::kVocab}),
            targets);
      }
      adam.zero_grad();
      loss.backward();
      adam.step();
      loss_value = loss.item<float>();
    }
    return loss_value;
  };
  const float bf16 = fit(std::nullopt);
  EXPECT_LT(bf16, 0.2) << "the bf16 reference does not learn";
  for (const auto& [name, recipe] : EveryRecipe()) {
    const float fp8 = fit(recipe);
    EXPECT_LT(std::abs(fp8 - bf16), 0.1) << name << ": fp8 loss " << fp8
                                         << ", bf16 loss " << bf16;
  }
}

}  // namespace
}  // namespace accelerate::precision
