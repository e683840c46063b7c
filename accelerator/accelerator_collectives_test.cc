// The Accelerator's collectives, triggers and seeding, on 2 thread ranks.

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "state/environment.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"

namespace accelerate {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::RunOnRankThreads;
using ::testing::Each;

// Runs `fn` on 2 thread ranks, each with its own Accelerator.
std::vector<absl::Status> OnTwoRanks(
    const std::function<absl::Status(Accelerator&)>& fn) {
  return RunOnRankThreads(
      2, {}, [&](int, const state::Environment& env) -> absl::Status {
        ACCELERATE_ASSIGN_OR_RETURN(auto accelerator,
                                    Accelerator::Create({}, env));
        return fn(*accelerator);
      });
}

absl::Status Expect(bool condition, const std::string& what) {
  return condition ? absl::OkStatus() : absl::InternalError(what);
}

TEST(AcceleratorCollectivesTest, GatherReduceAndPadAsAccelerate) {
  EXPECT_THAT(OnTwoRanks([](Accelerator& acc) -> absl::Status {
                const int rank = acc.State().process_index();
                const torch::Tensor mine = torch::full({2}, rank + 1.0);
                ACCELERATE_ASSIGN_OR_RETURN(torch::Tensor all, acc.Gather(mine));
                ACCELERATE_RETURN_IF_ERROR(Expect(
                    torch::equal(all, torch::tensor({1.0, 1.0, 2.0, 2.0})),
                    "gather"));
                // Accelerator.reduce sums by default.
                ACCELERATE_ASSIGN_OR_RETURN(torch::Tensor sum, acc.Reduce(mine));
                ACCELERATE_RETURN_IF_ERROR(
                    Expect(torch::equal(sum, torch::full({2}, 3.0)), "sum"));
                ACCELERATE_ASSIGN_OR_RETURN(
                    torch::Tensor mean,
                    acc.Reduce(mine, state::Reduction::kMean));
                ACCELERATE_RETURN_IF_ERROR(
                    Expect(torch::equal(mean, torch::full({2}, 1.5)), "mean"));
                // Rank 1 has a longer sequence; rank 0 pads to it.
                ACCELERATE_ASSIGN_OR_RETURN(
                    torch::Tensor padded,
                    acc.PadAcrossProcesses(torch::ones({1, rank + 2}),
                                           {.dim = 1, .pad_index = -1}));
                return Expect(padded.size(1) == 3, "padded to 3");
              }),
              Each(IsOk()));
}

TEST(AcceleratorCollectivesTest, ATriggerSetOnOneRankStopsEveryRank) {
  EXPECT_THAT(OnTwoRanks([](Accelerator& acc) -> absl::Status {
                ACCELERATE_ASSIGN_OR_RETURN(bool before, acc.CheckTrigger());
                ACCELERATE_RETURN_IF_ERROR(Expect(!before, "no trigger yet"));
                if (acc.State().process_index() == 1) acc.SetTrigger();
                ACCELERATE_ASSIGN_OR_RETURN(bool fired, acc.CheckTrigger());
                ACCELERATE_RETURN_IF_ERROR(Expect(fired, "rank 1's trigger"));
                // Checking clears it.
                ACCELERATE_ASSIGN_OR_RETURN(bool again, acc.CheckTrigger());
                return Expect(!again, "the trigger was cleared");
              }),
              Each(IsOk()));
}

// Thread ranks share LibTorch's generator: each seeds and draws under a lock
// (real processes each have their own).
TEST(AcceleratorCollectivesTest, SetSeedRepeatsDrawsAndCanDifferPerProcess) {
  std::mutex generator;
  const auto seeded_draw = [&](Accelerator& acc, bool device_specific) {
    std::lock_guard<std::mutex> lock(generator);
    acc.SetSeed(42, device_specific);
    return torch::rand({4});
  };
  EXPECT_THAT(OnTwoRanks([&](Accelerator& acc) -> absl::Status {
                const torch::Tensor first = seeded_draw(acc, false);
                ACCELERATE_RETURN_IF_ERROR(Expect(
                    torch::equal(first, seeded_draw(acc, false)), "repeat"));
                ACCELERATE_ASSIGN_OR_RETURN(torch::Tensor both,
                                            acc.Gather(first));
                ACCELERATE_RETURN_IF_ERROR(Expect(
                    torch::equal(both.narrow(0, 0, 4), both.narrow(0, 4, 4)),
                    "same seed, same draws on every process"));
                ACCELERATE_ASSIGN_OR_RETURN(
                    torch::Tensor specific,
                    acc.Gather(seeded_draw(acc, /*device_specific=*/true)));
                // Rank r draws what seed 42 + r draws.
                torch::Tensor expected;
                {
                  std::lock_guard<std::mutex> lock(generator);
                  torch::manual_seed(43);
                  expected = torch::rand({4});
                }
                ACCELERATE_RETURN_IF_ERROR(Expect(
                    torch::equal(specific.narrow(0, 0, 4), first),
                    "rank 0 keeps seed 42"));
                return Expect(torch::equal(specific.narrow(0, 4, 4), expected),
                              "rank 1 draws with seed 43");
              }),
              Each(IsOk()));
}

}  // namespace
}  // namespace accelerate
