// FSDP on GPUs (tag `gpu`; skipped, saying why, without a GPU): a model on
// the GPU, sharded in one process, trains as the same model unsharded, its
// state kept on the GPU or offloaded to pinned CPU memory (gathered back
// onto the GPU per unit); two processes over NCCL where there are two GPUs
// (one process has no process group, as in Accelerate).

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cuda_testutil.h"
#include "sharding/fully_sharded_model.h"
#include "state/environment.h"
#include "state/partial_state.h"
#include "testing/free_port.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "testing/tensor_testutil.h"

namespace accelerate::sharding {
namespace {

using ::accelerate::testing::PickFreePort;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::RunLocalJob;
using ::accelerate::testing::Runfile;
using ::accelerate::testing::TensorsClose;
using ::testing::HasSubstr;

class FullyShardedGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACCELERATE_SKIP_WITHOUT_CUDA();
    at::globalContext().setAllowTF32CuBLAS(false);
  }
};

torch::nn::Sequential MakeModel() {
  torch::nn::Sequential model(torch::nn::Linear(16, 64), torch::nn::Tanh(),
                              torch::nn::Linear(64, 64), torch::nn::Tanh(),
                              torch::nn::Linear(64, 4));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(5);
  torch::NoGradGuard no_grad;
  for (at::Tensor& p : model->parameters()) {
    p.copy_(torch::randn(p.sizes(), generator) * 0.3);
  }
  return model;
}

at::Tensor Loss(torch::nn::Sequential& model, int step, c10::Device device) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(100 + step);
  const at::Tensor x = torch::randn({8, 16}, generator).to(device);
  return model->forward(x).square().mean();
}

// `steps` AdamW steps of the model on `device`, sharded by `options` over
// `state` unless it is null; the parameters after them, on the CPU.
std::vector<at::Tensor> Train(const state::PartialState* state,
                              const FullyShardedOptions& options,
                              c10::Device device, int steps) {
  torch::nn::Sequential model = MakeModel();
  model->to(device);
  std::unique_ptr<FullyShardedModel> sharded;
  if (state != nullptr) {
    absl::StatusOr<std::unique_ptr<FullyShardedModel>> made =
        FullyShardedModel::Create(model.ptr(), *state, options);
    EXPECT_OK(made.status());
    if (!made.ok()) return {};
    sharded = std::move(*made);
  }
  torch::optim::AdamW optimizer(model->parameters(),
                                torch::optim::AdamWOptions(1e-2));
  if (sharded) EXPECT_OK(sharded->ShardOptimizer(optimizer));
  for (int step = 0; step < steps; ++step) {
    optimizer.zero_grad();
    Loss(model, step, device).backward();
    optimizer.step();
  }
  if (sharded) EXPECT_OK(sharded->Unshard());
  std::vector<at::Tensor> params;
  for (const at::Tensor& p : model->parameters()) {
    params.push_back(p.detach().cpu().clone());
  }
  if (sharded) EXPECT_OK(sharded->Reshard());
  return params;
}

TEST_F(FullyShardedGpuTest, TrainsOnItsGpuAsTheModelUnsharded) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<state::PartialState> state,
                       state::PartialState::Create({}, state::MapEnvironment()));
  ASSERT_TRUE(state->device().is_cuda());
  const std::vector<at::Tensor> expected =
      Train(nullptr, {}, state->device(), 4);
  for (bool offload : {false, true}) {
    SCOPED_TRACE(offload ? "state offloaded to the CPU" : "state on the GPU");
    const std::vector<at::Tensor> got =
        Train(state.get(), {.units = {"0", "2"}, .offload_params = offload},
              state->device(), 4);
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_TRUE(TensorsClose(got[i], expected[i],
                               {.rtol = 1e-4, .atol = 1e-5}))
          << "parameter " << i;
    }
  }
}

TEST_F(FullyShardedGpuTest, TwoProcessesOverNcclWhereThereAreTwoGpus) {
  if (torch::cuda::device_count() < 2) {
    GTEST_SKIP() << "one GPU visible; two NCCL processes need two";
  }
  absl::StatusOr<std::vector<ProcessResult>> results = RunLocalJob(
      {Runfile("sharding/fully_sharded_worker")}, 2, PickFreePort(),
      {{"WORKER_DEVICE", "gpu"}}, absl::Seconds(300));
  ASSERT_TRUE(results.ok()) << results.status();
  for (const ProcessResult& result : *results) {
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_THAT(result.output, HasSubstr("DONE"));
  }
}

}  // namespace
}  // namespace accelerate::sharding
