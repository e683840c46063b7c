// Real processes: 2 and 3 ranks read a shuffled dataset through the prepared
// loader over gloo on 127.0.0.1.

#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/free_port.h"
#include "testing/subprocess.h"

namespace accelerate::data {
namespace {

using ::accelerate::testing::PickFreePort;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::RunLocalJob;
using ::accelerate::testing::Runfile;

std::string Worker() { return Runfile("data/multiprocess_worker"); }

std::string Result(const ProcessResult& result, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(result.output, '\n')) {
    if (absl::ConsumePrefix(&line, absl::StrCat("RESULT ", name, " "))) {
      return std::string(line);
    }
  }
  return "";
}

class DataMultiprocessTest
    : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(DataMultiprocessTest, RanksCoverTheDatasetAndMetricsSeeItOnce) {
  const auto [world, dispatch] = GetParam();
  const int64_t length = 47;
  const int64_t batch = 4;
  std::vector<std::string> argv = {Worker(), absl::StrCat(length),
                                   absl::StrCat(batch)};
  if (dispatch) argv.push_back("dispatch");
  absl::StatusOr<std::vector<ProcessResult>> results =
      RunLocalJob(argv, world, PickFreePort(), {}, absl::Seconds(90));
  ASSERT_TRUE(results.ok()) << results.status();

  std::vector<int64_t> all_ids(length);
  for (int64_t i = 0; i < length; ++i) all_ids[i] = i;
  const std::string expected_metrics = absl::StrJoin(all_ids, ",");
  std::set<int64_t> seen;
  size_t batches_per_rank = 0;
  for (int rank = 0; rank < world; ++rank) {
    const ProcessResult& result = (*results)[rank];
    ASSERT_EQ(result.exit_code, 0) << "rank " << rank << ":\n" << result.output;
    const std::vector<std::string> batches =
        absl::StrSplit(Result(result, "batches"), ';');
    if (rank == 0) batches_per_rank = batches.size();
    EXPECT_EQ(batches.size(), batches_per_rank) << "rank " << rank;
    for (const std::string& b : batches) {
      const std::vector<std::string> ids = absl::StrSplit(b, ',');
      EXPECT_EQ(ids.size(), static_cast<size_t>(batch));
      for (const std::string& id : ids) {
        int64_t value = -1;
        ASSERT_TRUE(absl::SimpleAtoi(id, &value)) << b;
        seen.insert(value);
      }
    }
    // Every rank's metrics hold each sample exactly once.
    EXPECT_EQ(Result(result, "metrics"), expected_metrics) << "rank " << rank;
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(length));
  // ceil(47 / (4 * world)) steps.
  EXPECT_EQ(batches_per_rank,
            static_cast<size_t>((length + batch * world - 1) / (batch * world)));
}

// Ranks seeded differently draw the same numbers, and their samplers (which
// draw from the global generator) the same order, once the loader takes the
// main process's generator state at each epoch (rng_types torch); different
// numbers without it.
TEST(DataMultiprocessRngTest, RngTypesTorchSynchronizesEachEpoch) {
  for (bool synchronize : {true, false}) {
    absl::StatusOr<std::vector<ProcessResult>> results = RunLocalJob(
        {Worker(), "rng", synchronize ? "sync" : "nosync"}, 2, PickFreePort(),
        {}, absl::Seconds(90));
    ASSERT_TRUE(results.ok()) << results.status();
    for (const ProcessResult& result : *results) {
      ASSERT_EQ(result.exit_code, 0) << result.output;
    }
    const std::string rank0 = Result((*results)[0], "draws");
    const std::string rank1 = Result((*results)[1], "draws");
    ASSERT_FALSE(rank0.empty()) << (*results)[0].output;
    if (synchronize) {
      EXPECT_EQ(rank0, rank1);
      // The samplers drew the same order: each sample read once.
      for (const ProcessResult& result : *results) {
        EXPECT_EQ(Result(result, "epoch"), "0,1,2,3,4,5,6,7");
      }
    } else {
      EXPECT_NE(rank0, rank1);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Worlds, DataMultiprocessTest,
    ::testing::Combine(::testing::Values(2, 3), ::testing::Bool()),
    [](const ::testing::TestParamInfo<std::tuple<int, bool>>& info) {
      return absl::StrCat(std::get<0>(info.param), "Processes",
                          std::get<1>(info.param) ? "Dispatch" : "Local");
    });

}  // namespace
}  // namespace accelerate::data
