// Dispatched execution on GPUs (tag `gpu`; skipped, saying why, without
// one): offloaded weights staged through pinned buffers on a copy stream,
// activations moved between the CPU and a GPU, and a model spread over
// several GPUs.

#include <torch/torch.h>

#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bigmodel/dispatch.h"
#include "bigmodel/dispatch_testutil.h"
#include "bigmodel/internal/device_aligner.h"
#include "gtest/gtest.h"
#include "testing/cuda_testutil.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::bigmodel_internal::DeviceAligner;
using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::TensorsClose;

constexpr int64_t kVocab = 64, kWidth = 32, kDepth = 4;
// GPU kernels (TF32 off) against the same kernels or the CPU's.
constexpr ::accelerate::testing::Tolerance kClose{.rtol = 1e-4, .atol = 1e-4};

int GpuCount() {
  return torch::cuda::is_available()
             ? c10::impl::VirtualGuardImpl(c10::kCUDA).deviceCount()
             : 0;
}

class DispatchGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACCELERATE_SKIP_WITHOUT_CUDA();
    at::globalContext().setAllowTF32CuBLAS(false);
    dir_ = FreshTestDir(absl::StrCat(
        "dispatch_gpu_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::create_directories(dir_ + "/ckpt");
    reference_ = RandomTinyLm(kVocab, kWidth, kDepth, /*seed=*/11);
    ASSERT_OK(SaveTinyLm(reference_, dir_ + "/ckpt", 20'000));
    tokens_ = torch::randint(kVocab, {2, 7});
    torch::NoGradGuard no_grad;
    expected_ = reference_->forward(tokens_);
  }

  std::string dir_;
  TinyLm reference_{nullptr};
  at::Tensor tokens_;
  at::Tensor expected_;  // On the CPU.
};

TEST_F(DispatchGpuTest, OffloadedWeightsArriveThroughPinnedBuffers) {
  TinyLm model = EmptyTinyLm(kVocab, kWidth, kDepth);
  ASSERT_OK_AND_ASSIGN(auto dispatched,
                       LoadCheckpointAndDispatch(*model, dir_ + "/ckpt",
                                                 {{"embed", "0"},
                                                  {"blocks.0", "0"},
                                                  {"blocks.1", "cpu"},
                                                  {"blocks.2", "disk"},
                                                  {"blocks.3", "cpu"},
                                                  {"norm", "0"}}));
  EXPECT_TRUE(dispatched->execution_device().is_cuda());
  // Resident weights came through the staged upload: the checkpoint's
  // bytes, on the GPU.
  const std::vector<at::Tensor> resident = model->blocks[0]->parameters();
  const std::vector<at::Tensor> stored = reference_->blocks[0]->parameters();
  ASSERT_EQ(resident.size(), stored.size());
  for (size_t i = 0; i < resident.size(); ++i) {
    EXPECT_TRUE(resident[i].is_cuda());
    EXPECT_TRUE(TensorsClose(resident[i], stored[i], {0, 0})) << i;
  }
  torch::NoGradGuard no_grad;
  const at::Tensor tokens = tokens_.to(dispatched->execution_device());
  for (int pass = 0; pass < 3; ++pass) {
    const at::Tensor out = model->forward(tokens);
    EXPECT_TRUE(out.is_cuda());
    EXPECT_TRUE(TensorsClose(out.cpu(), expected_, kClose)) << "pass " << pass;
  }
  // On a stream of the caller's (after Release, as dispatch.h asks): each
  // weight waits there for its copy, queued right before, with no host
  // synchronization in between.
  dispatched->Release();
  const c10::Stream side =
      c10::impl::VirtualGuardImpl(c10::kCUDA)
          .getStreamFromGlobalPool(dispatched->execution_device());
  {
    c10::StreamGuard on_side(side);
    const at::Tensor out = model->forward(tokens);
    EXPECT_TRUE(TensorsClose(out.cpu(), expected_, kClose));
  }
  const DispatchStats stats = dispatched->stats();
  // Three offloaded blocks of three modules each, per pass.
  EXPECT_EQ(stats.loads, 4 * 3 * 3);
  EXPECT_GE(stats.prefetch_hits, 3 * 3 * 3);
  int64_t offloaded_bytes = 0;
  for (int64_t i = 1; i < kDepth; ++i) {
    for (const auto& p : reference_->blocks[i]->parameters()) {
      offloaded_bytes += p.nbytes();
    }
  }
  EXPECT_GE(stats.staged_bytes, 4 * offloaded_bytes);
}

TEST_F(DispatchGpuTest, WeightsGivenAnotherDtypeAreConvertedOnTheirWay) {
  TinyLm model = EmptyTinyLm(kVocab, kWidth, kDepth);
  ASSERT_OK_AND_ASSIGN(
      auto dispatched,
      LoadCheckpointAndDispatch(*model, dir_ + "/ckpt", {{"", "0"}},
                                {.dtype = at::kBFloat16}));
  const std::vector<at::Tensor> resident = model->parameters();
  const std::vector<at::Tensor> stored = reference_->parameters();
  ASSERT_EQ(resident.size(), stored.size());
  for (size_t i = 0; i < resident.size(); ++i) {
    EXPECT_TRUE(resident[i].is_cuda());
    // Rounded as `to` rounds on the CPU.
    EXPECT_TRUE(
        TensorsClose(resident[i], stored[i].to(at::kBFloat16), {0, 0}))
        << i;
  }
}

TEST_F(DispatchGpuTest, ActivationsMoveBetweenTheCpuAndAGpu) {
  // The aligner is device-generic: blocks 2 and 3 on the GPU, the rest on
  // the CPU, computing what the CPU alone does.
  TinyLm model = RandomTinyLm(kVocab, kWidth, kDepth, /*seed=*/11);
  const c10::Device gpu(c10::kCUDA, 0);
  model->blocks[2]->to(gpu);
  model->blocks[3]->to(gpu);
  std::vector<DeviceAligner::Weight> weights;
  for (const at::Tensor& p : model->parameters()) {
    weights.push_back({p, p.device()});
  }
  DeviceAligner aligner(std::move(weights));
  torch::NoGradGuard no_grad;
  const at::Tensor out = model->forward(tokens_);
  // The tied output layer's weight (the embedding) is on the CPU.
  EXPECT_TRUE(out.is_cpu());
  EXPECT_TRUE(TensorsClose(out, expected_, kClose));
}

TEST_F(DispatchGpuTest, AModelSpreadOverSeveralGpusComputesTheSame) {
  if (GpuCount() < 2) {
    GTEST_SKIP() << "one GPU visible; a map over several needs two";
  }
  TinyLm model = EmptyTinyLm(kVocab, kWidth, kDepth);
  ASSERT_OK_AND_ASSIGN(auto dispatched,
                       LoadCheckpointAndDispatch(*model, dir_ + "/ckpt",
                                                 {{"embed", "0"},
                                                  {"blocks.0", "0"},
                                                  {"blocks.1", "1"},
                                                  {"blocks.2", "disk"},
                                                  {"blocks.3", "1"},
                                                  {"norm", "1"}}));
  EXPECT_EQ(dispatched->execution_device(), c10::Device(c10::kCUDA, 0));
  EXPECT_EQ(model->blocks[1]->parameters()[0].device(),
            c10::Device(c10::kCUDA, 1));
  torch::NoGradGuard no_grad;
  const at::Tensor tokens = tokens_.to(dispatched->execution_device());
  for (int pass = 0; pass < 2; ++pass) {
    const at::Tensor out = model->forward(tokens);
    // The tied output layer runs on GPU 0, with the embedding.
    EXPECT_EQ(out.device(), c10::Device(c10::kCUDA, 0));
    EXPECT_TRUE(TensorsClose(out.cpu(), expected_, kClose));
  }
}

}  // namespace
}  // namespace accelerate::bigmodel
