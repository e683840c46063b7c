// The Accelerator on a GPU (tag `gpu`; skipped, saying why, without one):
// one process trains on its GPU, batches arriving there through pinned
// memory, and ends where the same loop on the CPU ends; under bf16 autocast
// its loss stays within 5% of float32's.

#include <memory>
#include <string>
#include <vector>

#include <torch/cuda.h>
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "data/batch.h"
#include "data/data_loader.h"
#include "gtest/gtest.h"
#include "testing/cuda_testutil.h"
#include "state/environment.h"
#include "state/status_macros.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate {
namespace {

using ::accelerate::testing::TensorsClose;

class AcceleratorGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACCELERATE_SKIP_WITHOUT_CUDA();
    at::globalContext().setAllowTF32CuBLAS(false);
  }
};

struct Trained {
  std::vector<at::Tensor> params;  // On the CPU.
  double last_epoch_loss = 0;      // Mean over the second epoch.
  bool batches_on_device = true;
  c10::Device device = c10::kCPU;
};

// Two epochs of a small regression over 64 rows, batch 8, on the device
// the options choose.
absl::StatusOr<Trained> Train(const AcceleratorOptions& options) {
  ACCELERATE_ASSIGN_OR_RETURN(
      auto accelerator, Accelerator::Create(options, state::MapEnvironment()));
  torch::manual_seed(3);
  auto data = std::make_shared<data::TensorDataset>(torch::randn({64, 8}),
                                                    torch::randn({64, 2}));
  torch::nn::Sequential model(torch::nn::Linear(8, 32), torch::nn::GELU(),
                              torch::nn::Linear(32, 2));
  // SGD: linear in the gradients, so that the CPU's and the GPU's kernels
  // end close (Adam's normalized steps magnify rounding where gradients
  // are tiny).
  auto sgd = std::make_shared<torch::optim::SGD>(
      model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  ACCELERATE_ASSIGN_OR_RETURN(
      auto prepared,
      accelerator->Prepare(model.ptr(), sgd,
                           DataLoaderSpec{data, {.batch_size = 8}}));
  auto& [module, opt, loader] = prepared;
  Trained out;
  out.device = accelerator->Device();
  for (int epoch = 0; epoch < 2; ++epoch) {
    loader->SetEpoch(epoch);
    out.last_epoch_loss = 0;
    while (true) {
      ACCELERATE_ASSIGN_OR_RETURN(auto batch, loader->Next());
      if (!batch) break;
      out.batches_on_device &= batch->tensor(0).device() == out.device;
      const at::Tensor loss = torch::mse_loss(
          accelerator->Forward(model, batch->tensor(0)), batch->tensor(1));
      out.last_epoch_loss += loss.item<double>() / 8;
      ACCELERATE_RETURN_IF_ERROR(accelerator->Backward(loss));
      ACCELERATE_RETURN_IF_ERROR(opt->step());
      opt->zero_grad();
    }
  }
  for (const at::Tensor& p : model->parameters()) {
    out.params.push_back(p.detach().cpu().clone());
  }
  return out;
}

TEST_F(AcceleratorGpuTest, TrainsOnItsGpuAsOnTheCpu) {
  ASSERT_OK_AND_ASSIGN(const Trained on_gpu, Train({}));
  EXPECT_TRUE(on_gpu.device.is_cuda());
  EXPECT_TRUE(on_gpu.batches_on_device);
  AcceleratorOptions cpu;
  cpu.cpu = true;
  ASSERT_OK_AND_ASSIGN(const Trained on_cpu, Train(cpu));
  ASSERT_EQ(on_gpu.params.size(), on_cpu.params.size());
  for (size_t i = 0; i < on_gpu.params.size(); ++i) {
    EXPECT_TRUE(TensorsClose(on_gpu.params[i], on_cpu.params[i],
                             {.rtol = 1e-3, .atol = 1e-4}))
        << "parameter " << i;
  }
  AcceleratorOptions bf16;
  bf16.mixed_precision = "bf16";
  ASSERT_OK_AND_ASSIGN(const Trained in_bf16, Train(bf16));
  EXPECT_NEAR(in_bf16.last_epoch_loss, on_gpu.last_epoch_loss,
              0.05 * on_gpu.last_epoch_loss);
  EXPECT_NEAR(on_cpu.last_epoch_loss, on_gpu.last_epoch_loss,
              1e-4 * on_gpu.last_epoch_loss);
}

TEST_F(AcceleratorGpuTest, BatchesReachTheGpuThroughPinnedMemory) {
  const data::Batch batch = data::Batch::Named(
      {{"x", torch::arange(1000).reshape({10, 100})},
       {"pair", data::Batch::Of({torch::ones({10}), torch::randn({10, 3})})}});
  const data::Batch moved =
      data::ToDevice(batch, c10::Device(c10::kCUDA, 0));
  EXPECT_EQ(moved.Describe(), batch.Describe());
  batch.ForEachTensor([&](const std::string& path, const at::Tensor& sent) {
    const at::Tensor& arrived =
        path == "x" ? moved.tensor("x")
                    : moved["pair"].tensor(path == "pair.0" ? 0 : 1);
    EXPECT_TRUE(arrived.is_cuda()) << path;
    // Read on the GPU's stream after the copy, as kernels would.
    EXPECT_TRUE(TensorsClose(arrived.cpu(), sent, {.rtol = 0, .atol = 0}))
        << path;
  });
}

}  // namespace
}  // namespace accelerate
