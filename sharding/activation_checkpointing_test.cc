// FULL_SHARD's activation checkpointing (FullyShardedOptions::
// activation_checkpointing, internal/activation_checkpoint.h): memory
// measured through a counting CPU allocator, random operations replayed
// exactly, forwards that cannot be replayed kept, a changed input refused.

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sharding/fully_sharded_model.h"
#include "state/partial_state.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::sharding {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::TensorsClose;
using ::testing::HasSubstr;

// Counts the bytes of CPU tensors allocated while installed (simple data
// pointers, as LibTorch's raw allocations need).
class CountingAllocator final : public c10::Allocator {
 public:
  void Install() {
    base_ = c10::GetCPUAllocator();
    base_deleter_ = base_->raw_deleter();
    c10::SetCPUAllocator(this, /*priority=*/255);
  }
  void Uninstall() { c10::SetCPUAllocator(base_, /*priority=*/255); }
  void ResetPeak() { peak_ = current_.load(); }
  int64_t current() const { return current_; }
  int64_t peak() const { return peak_; }

  c10::DataPtr allocate(size_t n) override {
    void* data = base_->raw_allocate(n);
    {
      std::lock_guard<std::mutex> lock(mu_);
      sizes_[data] = static_cast<int64_t>(n);
    }
    const int64_t now = current_ += static_cast<int64_t>(n);
    int64_t seen = peak_;
    while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
    }
    return c10::DataPtr(data, data, &Delete, c10::Device(c10::kCPU));
  }
  c10::DeleterFnPtr raw_deleter() const override { return &Delete; }
  void copy_data(void* dest, const void* src,
                 std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  static void Delete(void* data);

  c10::Allocator* base_ = nullptr;
  c10::DeleterFnPtr base_deleter_ = nullptr;
  std::mutex mu_;
  std::unordered_map<void*, int64_t> sizes_;
  std::atomic<int64_t> current_{0};
  std::atomic<int64_t> peak_{0};
};

CountingAllocator& Counter() {
  static auto* counter = new CountingAllocator;
  return *counter;
}

void CountingAllocator::Delete(void* data) {
  CountingAllocator& self = Counter();
  int64_t size = 0;
  {
    std::lock_guard<std::mutex> lock(self.mu_);
    auto it = self.sizes_.find(data);
    if (it != self.sizes_.end()) {
      size = it->second;
      self.sizes_.erase(it);
    }
  }
  self.current_ -= size;
  self.base_deleter_(data);
}

struct BlockImpl : torch::nn::Module {
  BlockImpl(int64_t width, int64_t hidden, double dropout, bool batch_norm)
      : up(register_module("up", torch::nn::Linear(width, hidden))),
        down(register_module("down", torch::nn::Linear(hidden, width))),
        dropout(dropout) {
    if (batch_norm) {
      norm = register_module("norm", torch::nn::BatchNorm1d(hidden));
    }
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h = up(x);
    if (norm) h = norm(h);
    h = torch::gelu(h);
    if (dropout > 0) {
      h = torch::nn::functional::dropout(
          h, torch::nn::functional::DropoutFuncOptions().p(dropout).training(
                 is_training()));
    }
    return x + down(torch::tanh(h));
  }
  torch::nn::Linear up, down;
  torch::nn::BatchNorm1d norm{nullptr};
  double dropout;
};
TORCH_MODULE(Block);

// Blocks only: every parameter is in a checkpointed unit.
struct StackImpl : torch::nn::Module {
  StackImpl(int depth, int64_t width, int64_t hidden, double dropout = 0,
            bool batch_norm = false)
      : blocks(register_module("blocks", torch::nn::ModuleList())) {
    for (int i = 0; i < depth; ++i) {
      blocks->push_back(Block(width, hidden, dropout, batch_norm));
    }
    auto generator = at::make_generator<at::CPUGeneratorImpl>(3);
    torch::NoGradGuard no_grad;
    for (at::Tensor& p : parameters()) {
      p.copy_(torch::randn(p.sizes(), generator) / std::sqrt(p.size(-1)));
    }
  }
  at::Tensor forward(at::Tensor x) {
    for (const auto& block : *blocks) x = block->as<BlockImpl>()->forward(x);
    return x;
  }
  torch::nn::ModuleList blocks;
};
TORCH_MODULE(Stack);

std::vector<std::string> BlockUnits(int depth) {
  std::vector<std::string> units;
  for (int i = 0; i < depth; ++i) units.push_back(absl::StrCat("blocks.", i));
  return units;
}

struct StepResult {
  std::vector<at::Tensor> params;
  int64_t held_after_forward = 0;  // bytes allocated since the step began
  int64_t peak = 0;                // the most, during forward and backward
  FullyShardedStats stats;
  std::vector<at::Tensor> buffers;
  double next_random = 0;  // the generator's next draw after the step
};

// One SGD step of `model` (on one process) on a seeded batch.
StepResult Step(Stack model, int depth, bool checkpointing, int64_t batch,
                int64_t width) {
  StepResult result;
  const std::vector<absl::Status> statuses = accelerate::testing::RunOnRanks(
      1, [&](const state::PartialState& state) -> absl::Status {
        FullyShardedOptions options;
        options.units = BlockUnits(depth);
        options.activation_checkpointing = checkpointing;
        ACCELERATE_ASSIGN_OR_RETURN(
            auto sharded, FullyShardedModel::Create(model.ptr(), state, options));
        torch::optim::SGD optimizer(model->parameters(), 0.1);
        ACCELERATE_RETURN_IF_ERROR(sharded->ShardOptimizer(optimizer));
        auto generator = at::make_generator<at::CPUGeneratorImpl>(11);
        at::Tensor x = torch::randn({batch, width}, generator);
        torch::manual_seed(5);  // dropout's masks

        CountingAllocator& counter = Counter();
        counter.Install();
        const int64_t before = counter.current();
        counter.ResetPeak();
        at::Tensor loss = model->forward(x).square().mean();
        result.held_after_forward = counter.current() - before;
        loss.backward();
        result.peak = counter.peak() - before;
        counter.Uninstall();

        optimizer.step();
        result.next_random = torch::rand({}).item<double>();
        result.stats = sharded->stats();
        ACCELERATE_RETURN_IF_ERROR(sharded->Unshard());
        for (const at::Tensor& p : model->parameters()) {
          result.params.push_back(p.detach().clone());
        }
        for (const at::Tensor& b : model->buffers()) {
          result.buffers.push_back(b.detach().clone());
        }
        return sharded->Reshard();
      });
  EXPECT_THAT(statuses[0], IsOk());
  return result;
}

void ExpectSameParams(const StepResult& actual, const StepResult& expected,
                      const std::string& what) {
  ASSERT_EQ(actual.params.size(), expected.params.size()) << what;
  for (size_t i = 0; i < expected.params.size(); ++i) {
    EXPECT_TRUE(TensorsClose(actual.params[i], expected.params[i],
                             {.rtol = 1e-6, .atol = 1e-7}))
        << what << ", parameter " << i;
  }
}

TEST(ActivationCheckpointingTest, DropsActivationsUntilBackwardRecomputes) {
  constexpr int kDepth = 8;
  constexpr int64_t kBatch = 512;
  constexpr int64_t kWidth = 128;
  constexpr int64_t kHidden = 512;
  const StepResult plain = Step(Stack(kDepth, kWidth, kHidden), kDepth,
                                /*checkpointing=*/false, kBatch, kWidth);
  const StepResult checkpointed = Step(Stack(kDepth, kWidth, kHidden), kDepth,
                                       /*checkpointing=*/true, kBatch, kWidth);
  ExpectSameParams(checkpointed, plain, "checkpointed");
  EXPECT_EQ(plain.stats.checkpointed, 0);
  EXPECT_EQ(checkpointed.stats.checkpointed, kDepth);
  EXPECT_EQ(checkpointed.stats.recomputed, kDepth);

  // A block's activations: its hidden layer several times over (up, gelu,
  // tanh, their saved inputs and outputs). Without checkpointing every
  // block's stay until backward; with it, each block's input only, but for
  // the last block, whose forward lasts until backward starts (no unit
  // comes after it to end it).
  const int64_t hidden_bytes = kBatch * kHidden * 4;
  const int64_t input_bytes = kBatch * kWidth * 4;
  EXPECT_GE(plain.held_after_forward, kDepth * 2 * hidden_bytes);
  EXPECT_LE(checkpointed.held_after_forward,
            kDepth * input_bytes + 3 * hidden_bytes)
      << "plain held " << plain.held_after_forward;
  EXPECT_LT(checkpointed.held_after_forward, plain.held_after_forward / 3);
  // During backward one block's activations come back at a time.
  EXPECT_LT(checkpointed.peak, plain.peak / 2)
      << "plain peak " << plain.peak;
}

TEST(ActivationCheckpointingTest, ReplaysRandomOperationsExactly) {
  // Dropout draws the same masks in the replay; the generator is left
  // where the forward left it.
  constexpr int kDepth = 3;
  const StepResult plain =
      Step(Stack(kDepth, 16, 32, /*dropout=*/0.5), kDepth, false, 8, 16);
  const StepResult checkpointed =
      Step(Stack(kDepth, 16, 32, /*dropout=*/0.5), kDepth, true, 8, 16);
  ExpectSameParams(checkpointed, plain, "dropout");
  EXPECT_EQ(checkpointed.stats.recomputed, kDepth);
  EXPECT_EQ(checkpointed.next_random, plain.next_random);
}

TEST(ActivationCheckpointingTest, KeepsWhatCannotBeReplayed) {
  // A batch norm in training updates its running statistics: replaying it
  // would update them twice, so those units keep their activations.
  constexpr int kDepth = 2;
  const StepResult plain = Step(Stack(kDepth, 16, 32, 0, /*batch_norm=*/true),
                                kDepth, false, 8, 16);
  const StepResult checkpointed = Step(
      Stack(kDepth, 16, 32, 0, /*batch_norm=*/true), kDepth, true, 8, 16);
  ExpectSameParams(checkpointed, plain, "batch norm");
  EXPECT_EQ(checkpointed.stats.checkpointed, 0);
  EXPECT_EQ(checkpointed.stats.not_checkpointed, kDepth);
  EXPECT_EQ(checkpointed.stats.recomputed, 0);
  ASSERT_EQ(checkpointed.buffers.size(), plain.buffers.size());
  for (size_t i = 0; i < plain.buffers.size(); ++i) {
    EXPECT_TRUE(TensorsClose(checkpointed.buffers[i], plain.buffers[i],
                             {.rtol = 0, .atol = 0}))
        << "buffer " << i;
  }
}

TEST(ActivationCheckpointingTest, InputChangedBeforeBackwardFailsNamingUnit) {
  constexpr int kDepth = 2;
  Stack model(kDepth, 8, 16);
  const std::vector<absl::Status> statuses = accelerate::testing::RunOnRanks(
      1, [&](const state::PartialState& state) -> absl::Status {
        FullyShardedOptions options;
        options.units = BlockUnits(kDepth);
        options.activation_checkpointing = true;
        ACCELERATE_ASSIGN_OR_RETURN(
            auto sharded, FullyShardedModel::Create(model.ptr(), state, options));
        at::Tensor x = torch::randn({4, 8});
        at::Tensor loss = model->forward(x).sum();
        x.add_(1);  // read by blocks.0's forward, which backward replays
        try {
          loss.backward();
        } catch (const c10::Error& e) {
          EXPECT_THAT(e.what_without_backtrace(),
                      HasSubstr("activation checkpointing: recomputing unit "
                                "\"blocks.0\""));
          EXPECT_THAT(e.what_without_backtrace(),
                      HasSubstr("changed in place"));
          return absl::OkStatus();
        }
        return absl::InternalError("the backward did not fail");
      });
  EXPECT_THAT(statuses[0], IsOk());
}

}  // namespace
}  // namespace accelerate::sharding
