// //state on GPUs (tag `gpu`): the NCCL process group over real processes,
// one GPU per local rank. Skips, saying why, without a CUDA build or a GPU.

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include <torch/cuda.h>
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cuda_testutil.h"
#include "state/partial_state.h"
#include "testing/free_port.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace accelerate::state {
namespace {

using ::accelerate::testing::PickFreePort;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::RunLocalJob;
using ::accelerate::testing::Runfile;
using ::accelerate::testing::TestPath;
using ::testing::HasSubstr;

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
// one, both refuse at once, naming the counts, instead of NCCL's late
// "duplicate GPU" failure.
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
      EXPECT_THAT(result.output,
                  HasSubstr("2 processes on this machine but 1 visible GPU"));
    }
  }
}

}  // namespace
}  // namespace accelerate::state
