#include "state/internal/rendezvous.h"

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "state/launch_info.h"
#include "testing/free_port.h"
#include "testing/status_matchers.h"

namespace accelerate::state_internal {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::PickFreePort;
using ::accelerate::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Each;
using ::testing::HasSubstr;

// The GPU (by UUID) each rank claims; nullopt claims none.
using Claims = std::vector<std::optional<std::string>>;

// Rendezvous of `claims.size()` ranks on threads, each claiming its entry of
// `claims` as "cuda:0 on host h<rank>"; every rank's outcome.
std::vector<absl::Status> RendezvousClaiming(const Claims& claims) {
  const int port = PickFreePort();
  const int world_size = static_cast<int>(claims.size());
  // The stores live until every rank is through: rank 0 serves them.
  std::vector<absl::StatusOr<c10::intrusive_ptr<c10d::Store>>> stores(
      world_size);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world_size; ++rank) {
    threads.emplace_back([&, rank] {
      state::LaunchInfo info;
      info.rank = rank;
      info.world_size = world_size;
      info.master_addr = "127.0.0.1";
      info.master_port = port;
      std::optional<DeviceClaim> claim;
      if (claims[rank].has_value()) {
        claim = DeviceClaim{
            .id = *claims[rank],
            .description = absl::StrCat("cuda:0 on host h", rank),
            .remedy = "give each process its own GPU",
        };
      }
      stores[rank] = Rendezvous(info, absl::Seconds(20), claim);
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::vector<absl::Status> statuses;
  for (const auto& store : stores) statuses.push_back(store.status());
  return statuses;
}

TEST(RendezvousTest, DistinctDevicesAllCheckIn) {
  EXPECT_THAT(RendezvousClaiming({"GPU-a", "GPU-b", std::nullopt, "GPU-c"}),
              Each(IsOk()));
}

// Ranks 1 and 3 claim one GPU: every rank, the two others included, fails at
// once with the same message naming both claimants, instead of waiting for
// NCCL to fail on some of them.
TEST(RendezvousTest, TwoRanksClaimingOneDeviceFailEveryRankNamingBoth) {
  const std::vector<absl::Status> statuses =
      RendezvousClaiming({"GPU-a", "GPU-same", "GPU-b", "GPU-same"});
  EXPECT_THAT(statuses,
              Each(StatusIs(absl::StatusCode::kFailedPrecondition,
                            AllOf(HasSubstr("rank 1 (cuda:0 on host h1)"),
                                  HasSubstr("rank 3 (cuda:0 on host h3)"),
                                  HasSubstr("the same device GPU-same"),
                                  HasSubstr("give each process its own GPU")))));
  for (const absl::Status& status : statuses) {
    EXPECT_EQ(status, statuses[0]);
  }
}

// A claim is per device, not per index: the same UUID on two hosts (or
// under two CUDA_VISIBLE_DEVICES numberings) is still one device, while
// processes that claim nothing never collide.
TEST(RendezvousTest, OnlyClaimsOfTheSameDeviceCollide) {
  EXPECT_THAT(RendezvousClaiming({std::nullopt, std::nullopt, "GPU-x"}),
              Each(IsOk()));
  EXPECT_THAT(RendezvousClaiming({"GPU-x", std::nullopt, "GPU-x"}),
              Each(StatusIs(absl::StatusCode::kFailedPrecondition,
                            AllOf(HasSubstr("rank 0 (cuda:0 on host h0)"),
                                  HasSubstr("rank 2 (cuda:0 on host h2)")))));
}

}  // namespace
}  // namespace accelerate::state_internal
