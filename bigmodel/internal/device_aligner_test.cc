// Tests of the device aligner on the CPU, with the meta device as the
// second device: activations follow the weights, in-place writes keep
// their tensor, and everything is undone when the aligner goes.

#include "bigmodel/internal/device_aligner.h"

#include <torch/torch.h>

#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "bigmodel/empty_weights.h"
#include "gtest/gtest.h"
#include "testing/tensor_testutil.h"

namespace accelerate::bigmodel_internal {
namespace {

using ::accelerate::testing::TensorsClose;

constexpr int64_t kWidth = 8, kDepth = 4;

// A residual block (LibTorch has no meta kernel for its norms).
struct BlockImpl : torch::nn::Module {
  BlockImpl() {
    up = register_module("up", torch::nn::Linear(kWidth, 4 * kWidth));
    down = register_module("down", torch::nn::Linear(4 * kWidth, kWidth));
  }
  at::Tensor forward(const at::Tensor& x) {
    return x + down(torch::gelu(up(x)));
  }
  torch::nn::Linear up{nullptr}, down{nullptr};
};
TORCH_MODULE(Block);

// Residual blocks in a row, those from `first_on_meta` on built on the
// meta device (InitEmptyWeights): the model's second device.
struct ChainImpl : torch::nn::Module {
  explicit ChainImpl(int64_t first_on_meta) {
    for (int64_t i = 0; i < kDepth; ++i) {
      std::optional<bigmodel::InitEmptyWeights> empty;
      if (i >= first_on_meta) empty.emplace();
      blocks.push_back(register_module(std::to_string(i), Block()));
    }
  }
  // The output of block 1 (the last on the CPU) and of the last block.
  std::pair<at::Tensor, at::Tensor> forward(at::Tensor x) {
    at::Tensor after_first_two;
    for (size_t i = 0; i < blocks.size(); ++i) {
      x = blocks[i]->forward(x);
      if (i == 1) after_first_two = x;
    }
    return {after_first_two, x};
  }
  std::vector<Block> blocks;
};
TORCH_MODULE(Chain);

// Every parameter of `model`, registered on the device it is on.
std::vector<DeviceAligner::Weight> Weights(torch::nn::Module& model) {
  std::vector<DeviceAligner::Weight> weights;
  for (const at::Tensor& p : model.parameters()) {
    weights.push_back({p, p.device()});
  }
  return weights;
}

bool Marked(const at::Tensor& tensor) {
  return tensor.key_set().has(c10::DispatchKey::TESTING_ONLY_GenericWrapper);
}

TEST(DeviceAlignerTest, ActivationsFollowTheBlocksAcrossDevices) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  const at::Tensor input = torch::randn({2, 5, kWidth});
  torch::manual_seed(4);
  const at::Tensor expected = Chain(/*first_on_meta=*/kDepth)(input).first;
  torch::manual_seed(4);
  Chain model(/*first_on_meta=*/2);
  // Without aligning, block 2 gets a CPU input and meta weights.
  EXPECT_THROW(model(input), c10::Error);

  const int64_t before = DeviceAligner::aligned_operations();
  {
    DeviceAligner aligner(Weights(*model));
    // On a thread of its own: aligning is switched on per thread.
    std::thread([&] {
      at::Tensor on_cpu, out;
      try {
        std::tie(on_cpu, out) = model(input);
      } catch (const std::exception& error) {
        FAIL() << error.what();
      }
      EXPECT_TRUE(on_cpu.is_cpu());
      EXPECT_TRUE(TensorsClose(on_cpu, expected, {.rtol = 0, .atol = 0}));
      EXPECT_TRUE(out.is_meta());
      EXPECT_EQ(out.sizes(), input.sizes());
    }).join();
    // Block 2's first layer moved its input there, and its residual
    // addition (no weight: the block's input and its last output) moved
    // that input where the block runs. Nothing else mixed devices.
    EXPECT_EQ(DeviceAligner::aligned_operations() - before, 2);
  }
}

TEST(DeviceAlignerTest, KeepsAligningAcrossInferenceModeScopes) {
  torch::manual_seed(4);
  Chain model(/*first_on_meta=*/2);
  const at::Tensor input = torch::randn({2, 5, kWidth});
  DeviceAligner aligner(Weights(*model));
  std::thread([&] {
    // Each scope restores the thread's dispatch keys when it ends; the next
    // forward must align again (its residual additions use no weight).
    for (int pass = 0; pass < 3; ++pass) {
      c10::InferenceMode inference;
      try {
        EXPECT_TRUE(model(input).second.is_meta()) << "pass " << pass;
      } catch (const std::exception& error) {
        ADD_FAILURE() << "pass " << pass << ": " << error.what();
      }
    }
  }).join();
}

TEST(DeviceAlignerTest, AnInPlaceWriteKeepsItsTensorWhereItIs) {
  torch::NoGradGuard no_grad;
  torch::nn::Linear on_cpu(4, 4);
  torch::nn::Linear on_meta{nullptr};
  {
    bigmodel::InitEmptyWeights empty;
    on_meta = torch::nn::Linear(4, 4);
  }
  std::vector<DeviceAligner::Weight> weights = Weights(*on_cpu);
  for (DeviceAligner::Weight& weight : Weights(*on_meta)) {
    weights.push_back(std::move(weight));
  }
  DeviceAligner aligner(std::move(weights));
  std::thread([&] {
   try {
    const at::Tensor x = on_cpu(torch::ones({2, 4}));
    // The last weight used is on the CPU, but `written` is written in
    // place: the CPU operand goes to it, not the other way round (which
    // would lose the write, and fail: nothing copies out of meta).
    at::Tensor written = torch::zeros({2, 4}, torch::kMeta);
    written.add_(x);
    EXPECT_TRUE(written.is_meta());
    // Weights decide: `x` goes to the meta layer.
    const at::Tensor y = on_meta(x);
    EXPECT_TRUE(y.is_meta());
    // No weight: to the device of the last weight used.
    EXPECT_TRUE((x + y).is_meta());
    // Copies between devices are left alone (here: out of the meta device
    // is refused, as without aligning).
    at::Tensor host = torch::zeros({2, 4});
    EXPECT_THROW(host.copy_(y), c10::Error);
    // Written tensors on two devices stay where they are (each is updated
    // in place, none through a copy).
    torch::_foreach_add_(at::TensorList({host, written}), 1.0);
    EXPECT_TRUE(TensorsClose(host, torch::ones({2, 4}), {.rtol = 0, .atol = 0}));
    EXPECT_TRUE(written.is_meta());
   } catch (const std::exception& error) {
     FAIL() << error.what();
   }
  }).join();
}

TEST(DeviceAlignerTest, MarksAreUndoneAndWeightsKeepTheirState) {
  torch::nn::Linear layer(3, 2);
  const at::Tensor weight = layer->weight;
  const void* data = weight.data_ptr();
  const int64_t version = weight._version();
  {
    DeviceAligner aligner({{weight, weight.device()}});
    EXPECT_TRUE(Marked(weight));
    EXPECT_TRUE(weight.requires_grad());
    EXPECT_EQ(weight.data_ptr(), data);
    EXPECT_EQ(weight._version(), version);
    // Gradients still reach the weight through the marked tensor.
    layer(torch::ones({1, 3})).sum().backward();
    ASSERT_TRUE(weight.grad().defined());
    EXPECT_TRUE(TensorsClose(weight.grad(), torch::ones({2, 3}),
                             {.rtol = 0, .atol = 0}));
  }
  EXPECT_FALSE(Marked(weight));
  EXPECT_EQ(weight.data_ptr(), data);
  // With no aligner left, mixed devices are an error again.
  torch::NoGradGuard no_grad;
  EXPECT_THROW(torch::ones({2}) + torch::ones({2}, torch::kMeta), c10::Error);
}

}  // namespace
}  // namespace accelerate::bigmodel_internal
