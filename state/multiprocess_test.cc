// Real processes: each test starts 2 to 4 copies of multiprocess_worker that
// rendezvous over gloo on 127.0.0.1, and checks what every rank printed.

#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/files.h"
#include "testing/free_port.h"
#include "testing/subprocess.h"

namespace accelerate::state {
namespace {

using ::accelerate::testing::PickFreePort;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::RunLocalJob;
using ::accelerate::testing::Runfile;
using ::accelerate::testing::Subprocess;
using ::accelerate::testing::TestPath;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;

std::string WorkerPath() { return Runfile("state/multiprocess_worker"); }

// The `RESULT <name> <value>` lines of one rank's output.
std::map<std::string, std::string> Results(const ProcessResult& result) {
  std::map<std::string, std::string> values;
  for (absl::string_view line : absl::StrSplit(result.output, '\n')) {
    if (!absl::ConsumePrefix(&line, "RESULT ")) continue;
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 1));
    values[parts[0]] = parts.size() > 1 ? parts[1] : "";
  }
  return values;
}

std::string Numbers(const std::vector<double>& values) {
  return absl::StrJoin(values, ",", [](std::string* out, double v) {
    absl::StrAppend(out, v);
  });
}

class MultiprocessTest : public ::testing::TestWithParam<int> {};

TEST_P(MultiprocessTest, EveryCollectiveAgreesOnEveryRank) {
  const int n = GetParam();
  absl::StatusOr<std::vector<ProcessResult>> results = RunLocalJob(
      {WorkerPath(), "collectives", "60"}, n, PickFreePort(),
      {{"WORKER_TMPDIR", TestPath("")}}, absl::Seconds(120));
  ASSERT_TRUE(results.ok()) << results.status();

  std::vector<double> gather, scalars, nested, reduce_sum;
  std::vector<std::string> objects;
  for (int r = 0; r < n; ++r) {
    gather.push_back(10 * r);
    gather.push_back(10 * r + 1);
    scalars.push_back(r);
    nested.push_back(2 * r);
    objects.push_back(std::string(r + 1, 'a' + r));
  }
  for (int rank = 0; rank < n; ++rank) {
    const ProcessResult& result = (*results)[rank];
    ASSERT_EQ(result.exit_code, 0) << "rank " << rank << ":\n"
                                   << result.output;
    std::map<std::string, std::string> got = Results(result);
    SCOPED_TRACE(absl::StrCat("rank ", rank, " of ", n, ":\n", result.output));
    EXPECT_EQ(got["rank"], absl::StrCat(rank, ",", n, ",", rank, ",",
                                        rank == 0, ",", rank == n - 1));
    EXPECT_EQ(got["gather"], Numbers(gather));
    EXPECT_EQ(got["gather_scalar"], Numbers(scalars));
    EXPECT_EQ(got["gather_nested"], Numbers(nested));
    EXPECT_EQ(got["gather_object"], absl::StrJoin(objects, ","));
    EXPECT_EQ(got["broadcast"], Numbers({n - 1.0, n - 1.0}));
    EXPECT_EQ(got["broadcast_object"], absl::StrCat("hello from ", n - 1));
    const double sum = n * (n + 1) / 2.0;
    EXPECT_EQ(got["reduce_sum"], Numbers({sum, sum}));
    EXPECT_EQ(got["reduce_mean"], Numbers({(n - 1) / 2.0}));
    std::vector<double> pad(n, -1), pad_first(n, -1);
    for (int i = 0; i <= rank; ++i) {
      pad[i] = rank + 1;
      pad_first[n - 1 - i] = rank + 1;
    }
    EXPECT_EQ(got["pad"], Numbers(pad));
    EXPECT_EQ(got["pad_first"], Numbers(pad_first));
    // 2n+1 items: rank 0 gets 3, the others 2 (padded to 3).
    if (rank == 0) {
      EXPECT_EQ(got["split"], "0,1,2");
      EXPECT_EQ(got["split_padded"], "0,1,2");
    } else {
      EXPECT_EQ(got["split"], absl::StrCat(2 * rank + 1, ",", 2 * rank + 2));
      EXPECT_EQ(got["split_padded"], absl::StrCat(2 * rank + 1, ",",
                                                  2 * rank + 2, ",",
                                                  2 * rank + 2));
    }
    EXPECT_EQ(got["main_first"], rank == 0 ? "main" : "written by main");
    EXPECT_EQ(got["barrier"], "ok");
  }
}

INSTANTIATE_TEST_SUITE_P(Worlds, MultiprocessTest, ::testing::Values(2, 4),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return absl::StrCat(info.param, "Processes");
                         });

// Runs one worker per entry of `envs` (each rank's full launcher variables).
std::vector<ProcessResult> RunWithEnvs(
    const std::vector<std::string>& argv,
    const std::vector<std::map<std::string, std::string>>& envs,
    absl::Duration timeout) {
  std::vector<std::unique_ptr<Subprocess>> children;
  for (const auto& env : envs) {
    children.push_back(std::make_unique<Subprocess>(argv, env));
    EXPECT_TRUE(children.back()->Start().ok());
  }
  std::vector<ProcessResult> results;
  for (auto& child : children) results.push_back(child->Wait(timeout));
  return results;
}

TEST(MultiprocessLaunchersTest, OpenMpiAndSlurmVariablesFormAGroup) {
  const int port = PickFreePort();
  std::vector<std::map<std::string, std::string>> mpi;
  for (int rank = 0; rank < 2; ++rank) {
    mpi.push_back({{"OMPI_COMM_WORLD_RANK", absl::StrCat(rank)},
                   {"OMPI_COMM_WORLD_SIZE", "2"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", absl::StrCat(rank)},
                   {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                   {"MASTER_PORT", absl::StrCat(port)},
                   {"WORKER_TMPDIR", TestPath("")}});
  }
  for (const ProcessResult& result :
       RunWithEnvs({WorkerPath(), "collectives", "60"}, mpi,
                   absl::Seconds(60))) {
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_EQ(Results(result)["gather_scalar"], "0,1") << result.output;
  }

  const int slurm_port = PickFreePort();
  std::vector<std::map<std::string, std::string>> slurm;
  for (int rank = 0; rank < 2; ++rank) {
    slurm.push_back({{"SLURM_PROCID", absl::StrCat(rank)},
                     {"SLURM_NTASKS", "2"},
                     {"SLURM_LOCALID", absl::StrCat(rank)},
                     {"SLURM_NODEID", "0"},
                     {"SLURM_TASKS_PER_NODE", "2"},
                     {"SLURM_JOB_NODELIST", "localhost"},
                     {"MASTER_PORT", absl::StrCat(slurm_port)},
                     {"WORKER_TMPDIR", TestPath("")}});
  }
  for (const ProcessResult& result :
       RunWithEnvs({WorkerPath(), "collectives", "60"}, slurm,
                   absl::Seconds(60))) {
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_EQ(Results(result)["reduce_sum"], "3,3") << result.output;
  }
}

TEST(MultiprocessFailureTest, ACrashedRankMakesOthersFailNotHang) {
  absl::StatusOr<std::vector<ProcessResult>> results = RunLocalJob(
      {WorkerPath(), "crash", "120"}, 3, PickFreePort(), {},
      absl::Seconds(150));
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[2].exit_code, 3) << (*results)[2].output;
  for (int rank = 0; rank < 2; ++rank) {
    const ProcessResult& result = (*results)[rank];
    EXPECT_FALSE(result.timed_out) << result.output;
    EXPECT_EQ(result.exit_code, 0) << result.output;
    // Well before the 120 s collective timeout: the lost peer is noticed.
    EXPECT_LT(result.elapsed, absl::Seconds(60)) << result.output;
    EXPECT_THAT(Results(result)["after_crash"],
                AnyOf("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL"))
        << result.output;
  }
}

TEST(MultiprocessFailureTest, AMissingPeerEndsInDeadlineExceeded) {
  Subprocess alone({WorkerPath(), "collectives", "2"},
                   {{"RANK", "0"},
                    {"WORLD_SIZE", "2"},
                    {"MASTER_ADDR", "127.0.0.1"},
                    {"MASTER_PORT", absl::StrCat(PickFreePort())}});
  ASSERT_TRUE(alone.Start().ok());
  ProcessResult result = alone.Wait(absl::Seconds(30));
  EXPECT_FALSE(result.timed_out);
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_THAT(Results(result)["create_error"],
              AllOf(HasSubstr("DEADLINE_EXCEEDED"),
                    HasSubstr("missing ranks: 1")));
  EXPECT_LT(result.elapsed, absl::Seconds(15));
}

TEST(MultiprocessDebugTest, ShapeMismatchIsReportedOnEveryRank) {
  absl::StatusOr<std::vector<ProcessResult>> results = RunLocalJob(
      {WorkerPath(), "debug", "60"}, 2, PickFreePort(),
      {{"ACCELERATE_DEBUG_MODE", "1"}}, absl::Seconds(60));
  ASSERT_TRUE(results.ok()) << results.status();
  for (const ProcessResult& result : *results) {
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_THAT(result.output, HasSubstr("Process 0: Float [1, 1]"));
    EXPECT_THAT(result.output, HasSubstr("Process 1: Float [1, 2]"));
  }
}

}  // namespace
}  // namespace accelerate::state
