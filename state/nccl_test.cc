// //state on GPUs (tag `gpu`): the NCCL process group over real processes,
// one GPU per local rank, and a group of one rank (a single GPU). Skips,
// saying why, without a CUDA build or a GPU.

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/cuda.h>
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cuda_testutil.h"
#include "state/internal/process_group.h"
#include "state/partial_state.h"
#include "testing/free_port.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "testing/tensor_testutil.h"

namespace accelerate::state {
namespace {

using ::accelerate::testing::PickFreePort;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::RunLocalJob;
using ::accelerate::testing::Runfile;
using ::accelerate::testing::TensorsClose;
using ::accelerate::testing::TestPath;
using ::testing::HasSubstr;

constexpr ::accelerate::testing::Tolerance kExact = {0, 0};

class NcclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACCELERATE_SKIP_WITHOUT_CUDA();
  }
};

// One process: its device is the GPU of its local rank.
TEST_F(NcclTest, OneProcessRunsOnItsLocalGpu) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<PartialState> state,
                       PartialState::Create());
  EXPECT_TRUE(state->device().is_cuda());
  EXPECT_EQ(state->device().index(), 0);
}

// Two processes: NCCL collectives where there are two GPUs; where there is
// one, both claim it at the rendezvous and both refuse at once, naming the
// two ranks and the GPU, instead of NCCL's late "duplicate GPU" failure.
TEST_F(NcclTest, TwoProcessesGetTwoGpusOrAClearRefusal) {
  const int gpus = static_cast<int>(torch::cuda::device_count());
  absl::StatusOr<std::vector<ProcessResult>> results = RunLocalJob(
      {Runfile("state/multiprocess_worker"), "collectives", "120"}, 2,
      PickFreePort(), {{"WORKER_TMPDIR", TestPath("")}}, absl::Seconds(300));
  ASSERT_TRUE(results.ok()) << results.status();
  for (const ProcessResult& result : *results) {
    if (gpus >= 2) {
      EXPECT_EQ(result.exit_code, 0) << result.output;
      EXPECT_THAT(result.output, ::testing::Not(HasSubstr("create_error")));
    } else {
      EXPECT_NE(result.exit_code, 0);
      EXPECT_THAT(result.output, HasSubstr("use the same device GPU-"));
      EXPECT_THAT(result.output, HasSubstr("rank 0 (cuda:0 on host"));
      EXPECT_THAT(result.output, HasSubstr("rank 1 (cuda:0 on host"));
    }
  }
}

// One rank: NCCL accepts a communicator of one, so a machine with a single
// GPU still builds our NCCL group and runs on it the collectives the
// project issues (all-reduce, broadcast, all-gather and reduce-scatter of
// flat tensors, barrier).
TEST_F(NcclTest, AOneRankGroupRunsTheProjectsCollectivesOnTheGpu) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  ASSERT_OK_AND_ASSIGN(
      c10::intrusive_ptr<c10d::ProcessGroup> group,
      state_internal::MakeNcclGroup(
          store, {.rank = 0, .world_size = 1, .timeout = absl::Minutes(2)}));
  EXPECT_EQ(group->getSize(), 1);
  const at::TensorOptions on_gpu =
      at::TensorOptions().device(c10::Device(c10::kCUDA, 0));
  const at::Tensor expected = at::arange(1000, at::kFloat);

  std::vector<at::Tensor> summed = {expected.to(on_gpu.device())};
  group->allreduce(summed)->wait();
  EXPECT_TRUE(TensorsClose(summed[0], expected, kExact));

  std::vector<at::Tensor> averaged = {
      expected.to(on_gpu.device()).to(at::kBFloat16)};
  c10d::AllreduceOptions average;
  average.reduceOp = c10d::ReduceOp::AVG;
  group->allreduce(averaged, average)->wait();
  EXPECT_TRUE(
      TensorsClose(averaged[0], expected.to(at::kBFloat16), kExact));

  at::Tensor gathered = at::empty({1000}, on_gpu);
  group->_allgather_base(gathered, summed[0])->wait();
  EXPECT_TRUE(TensorsClose(gathered, expected, kExact));

  at::Tensor scattered = at::empty({1000}, on_gpu);
  group->_reduce_scatter_base(scattered, gathered)->wait();
  EXPECT_TRUE(TensorsClose(scattered, expected, kExact));

  std::vector<at::Tensor> broadcast = {at::full({7}, 3.0, on_gpu)};
  group->broadcast(broadcast)->wait();
  EXPECT_TRUE(TensorsClose(broadcast[0], at::full({7}, 3.0), kExact));

  group->barrier()->wait();
}

}  // namespace
}  // namespace accelerate::state
