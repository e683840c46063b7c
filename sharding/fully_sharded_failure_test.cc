// A process that dies while its peers wait in a FULL_SHARD all-gather or a
// gradient reduction ends the run on every process, with an error naming
// the unit and the operation, well before any timeout.

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/free_port.h"
#include "testing/stopwatch.h"
#include "testing/subprocess.h"

namespace accelerate::sharding {
namespace {

using ::accelerate::testing::PickFreePort;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::RunLocalJob;
using ::accelerate::testing::Runfile;
using ::testing::HasSubstr;

TEST(FullyShardedFailureTest, TrainsOnRealProcesses) {
  absl::StatusOr<std::vector<ProcessResult>> results = RunLocalJob(
      {Runfile("sharding/fully_sharded_worker")}, 2, PickFreePort(), {},
      absl::Seconds(120));
  ASSERT_TRUE(results.ok()) << results.status();
  for (const ProcessResult& result : *results) {
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_THAT(result.output, HasSubstr("DONE"));
  }
}

// Rank 1 of 3 dies at step 2 (`env` says where); the others end with an
// error containing `error`, well before the 60 s collective timeout.
void ExpectPeersEndNaming(const std::map<std::string, std::string>& env,
                          const std::string& error) {
  const testing::Stopwatch watch;
  std::map<std::string, std::string> crash = {{"CRASH_RANK", "1"},
                                              {"CRASH_STEP", "2"}};
  crash.insert(env.begin(), env.end());
  absl::StatusOr<std::vector<ProcessResult>> results =
      RunLocalJob({Runfile("sharding/fully_sharded_worker")}, 3,
                  PickFreePort(), crash, absl::Seconds(120));
  ASSERT_TRUE(results.ok()) << results.status();
  // The peers learn at once.
  EXPECT_LT(watch.Elapsed(), absl::Seconds(50));
  EXPECT_EQ((*results)[1].exit_code, 3) << (*results)[1].output;
  for (int rank : {0, 2}) {
    const ProcessResult& result = (*results)[rank];
    EXPECT_FALSE(result.timed_out) << result.output;
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_THAT(result.output, HasSubstr(error));
    EXPECT_THAT(result.output, HasSubstr("ERROR training step"));
  }
}

TEST(FullyShardedFailureTest, ADeadPeerEndsTheAllGatherOnEveryProcess) {
  ExpectPeersEndNaming({}, "accelerate FULL_SHARD: all-gathering unit \"0\"");
}

TEST(FullyShardedFailureTest, ADeadPeerEndsTheGradientReductionOnEveryProcess) {
  ExpectPeersEndNaming({{"CRASH_BEFORE", "backward"}},
                       "accelerate FULL_SHARD: reduce-scattering the "
                       "gradients of unit \"2\"");
}

}  // namespace
}  // namespace accelerate::sharding
