#include "state/partial_state.h"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include "state/environment.h"
#include "state/status_macros.h"
#include "testing/distributed_testutil.h"
#include "testing/free_port.h"
#include "testing/status_matchers.h"
#include "testing/stopwatch.h"
#include "testing/tensor_testutil.h"

namespace accelerate::state {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::PickFreePort;
using ::accelerate::testing::RunOnRanks;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TensorsClose;
using ::accelerate::testing::TensorValues;
using ::accelerate::testing::TorchrunVariables;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Each;
using ::testing::HasSubstr;

// `rank`'s share of `inputs` among `world_size` real states (defined below).
std::vector<int> SplitFor(int rank, int world_size,
                          const std::vector<int>& inputs, bool padding);

TEST(PartialStateTest, NoLauncherVariablesGiveASingleProcess) {
  ASSERT_OK_AND_ASSIGN(auto state, PartialState::Create({}, MapEnvironment()));
  EXPECT_EQ(state->num_processes(), 1);
  EXPECT_EQ(state->process_index(), 0);
  EXPECT_EQ(state->local_process_index(), 0);
  EXPECT_TRUE(state->is_main_process());
  EXPECT_TRUE(state->is_local_main_process());
  EXPECT_TRUE(state->is_last_process());
  EXPECT_FALSE(state->use_distributed());
  EXPECT_EQ(state->backend(), Backend::kNone);
  EXPECT_EQ(state->distributed_type(), DistributedType::kNo);
  EXPECT_EQ(state->device(), c10::Device(c10::kCPU));
  EXPECT_EQ(state->process_group(), nullptr);
  EXPECT_OK(state->WaitForEveryone());
}

TEST(PartialStateTest, ProcessControlRunsOnASingleProcess) {
  ASSERT_OK_AND_ASSIGN(auto state, PartialState::Create({}, MapEnvironment()));
  std::vector<std::string> ran;
  EXPECT_OK(state->MainProcessFirst([&] { ran.push_back("first"); }));
  EXPECT_OK(state->LocalMainProcessFirst([&] { ran.push_back("local"); }));
  state->OnMainProcess([&] { ran.push_back("main"); });
  state->OnLocalMainProcess([&] { ran.push_back("local_main"); });
  state->OnLastProcess([&] { ran.push_back("last"); });
  state->OnProcess(0, [&] { ran.push_back("zero"); });
  EXPECT_THAT(ran, ElementsAre("first", "local", "main", "local_main", "last",
                               "zero"));
}

TEST(PartialStateTest, BadEnvironmentFailsCreate) {
  EXPECT_THAT(PartialState::Create(
                  {}, MapEnvironment({{"RANK", "3"}, {"WORLD_SIZE", "2"}})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("RANK=3")));
}

TEST(PartialStateTest, NcclWithoutCudaBuildIsFailedPrecondition) {
#ifdef ACCELERATE_WITH_CUDA
  GTEST_SKIP() << "this build has NCCL; the refusal applies to CPU builds";
#endif
  PartialStateOptions options;
  options.backend = Backend::kNccl;
  options.timeout = absl::Seconds(5);
  EXPECT_THAT(PartialState::Create(options,
                                   MapEnvironment(TorchrunVariables(
                                       0, 2, PickFreePort()))),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("nccl")));
}

TEST(PartialStateTest, RejectsNonPositiveTimeout) {
  PartialStateOptions options;
  options.timeout = absl::ZeroDuration();
  EXPECT_THAT(PartialState::Create(options, MapEnvironment()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("timeout")));
}

TEST(PartialStateTest, ParsesBackendNames) {
  EXPECT_THAT(ParseBackend("gloo"), testing::IsOkAndHolds(Backend::kGloo));
  EXPECT_THAT(ParseBackend("nccl"), testing::IsOkAndHolds(Backend::kNccl));
  EXPECT_THAT(ParseBackend("mpi"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("\"mpi\""), HasSubstr("gloo, nccl"))));
}

TEST(PartialStateTest, JoinsAGlooGroupOnThreads) {
  for (int world_size : {2, 4}) {
    std::mutex mu;
    std::vector<std::vector<int>> seen(world_size);
    std::vector<absl::Status> statuses = RunOnRanks(
        world_size, [&](const PartialState& state) -> absl::Status {
          std::lock_guard<std::mutex> lock(mu);
          seen[state.process_index()] = {
              state.num_processes(), state.local_process_index(),
              state.is_main_process(), state.is_last_process(),
              static_cast<int>(state.distributed_type())};
          EXPECT_EQ(state.backend(), Backend::kGloo);
          EXPECT_NE(state.process_group(), nullptr);
          return absl::OkStatus();
        });
    EXPECT_THAT(statuses, Each(IsOk()));
    for (int rank = 0; rank < world_size; ++rank) {
      EXPECT_THAT(seen[rank],
                  ElementsAre(world_size, rank, rank == 0,
                              rank == world_size - 1,
                              static_cast<int>(DistributedType::kMultiCpu)));
    }
  }
}

TEST(PartialStateTest, NewGroupReducesOverItsMembersOnly) {
  // 4 processes as pairs {0, 1} and {2, 3}: each pair sums its own.
  std::mutex mu;
  std::vector<double> sums(4);
  std::vector<absl::Status> statuses = RunOnRanks(
      4, [&](const PartialState& state) -> absl::Status {
        const int rank = state.process_index();
        const int pair = rank / 2;
        ACCELERATE_ASSIGN_OR_RETURN(
            auto group, state.NewGroup({2 * pair, 2 * pair + 1},
                                       absl::StrCat("pair_", pair)));
        EXPECT_EQ(group->getSize(), 2);
        EXPECT_EQ(group->getRank(), rank % 2);
        std::vector<at::Tensor> tensors = {at::full({1}, rank + 1.0)};
        group->allreduce(tensors)->wait();
        std::lock_guard<std::mutex> lock(mu);
        sums[rank] = tensors[0].item<double>();
        // Not a member: refused, naming it.
        EXPECT_THAT(state.NewGroup({(rank + 1) % 4}, "other").status(),
                    StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("is not among its ranks")));
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
  EXPECT_THAT(sums, ElementsAre(3, 3, 7, 7));
}

TEST(PartialStateTest, WaitForEveryoneBlocksUntilAllArrive) {
  std::atomic<int> arrived{0};
  std::vector<int> seen_after(3, -1);
  std::vector<absl::Status> statuses = RunOnRanks(
      3, [&](const PartialState& state) -> absl::Status {
        // The last rank is late; nobody may leave the barrier before it came.
        if (state.is_last_process()) absl::SleepFor(absl::Milliseconds(300));
        arrived.fetch_add(1);
        absl::Status status = state.WaitForEveryone();
        seen_after[state.process_index()] = arrived.load();
        return status;
      });
  EXPECT_THAT(statuses, Each(IsOk()));
  EXPECT_THAT(seen_after, Each(3));
}

TEST(PartialStateTest, MainProcessFirstRunsMainBeforeOthers) {
  std::mutex mu;
  std::vector<int> order;
  std::vector<absl::Status> statuses = RunOnRanks(
      3, [&](const PartialState& state) -> absl::Status {
        // Rank 0 is slow: the others must still wait for it.
        return state.MainProcessFirst([&] {
          if (state.is_main_process()) absl::SleepFor(absl::Milliseconds(200));
          std::lock_guard<std::mutex> lock(mu);
          order.push_back(state.process_index());
        });
      });
  EXPECT_THAT(statuses, Each(IsOk()));
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order[0], 0);
}

TEST(PartialStateTest, OnProcessHelpersRunOnTheirProcessOnly) {
  std::mutex mu;
  std::map<std::string, std::vector<int>> ran;
  std::vector<absl::Status> statuses = RunOnRanks(
      3, [&](const PartialState& state) -> absl::Status {
        const int rank = state.process_index();
        auto note = [&](const char* what) {
          std::lock_guard<std::mutex> lock(mu);
          ran[what].push_back(rank);
        };
        state.OnMainProcess([&] { note("main"); });
        state.OnLocalMainProcess([&] { note("local_main"); });
        state.OnLastProcess([&] { note("last"); });
        state.OnProcess(1, [&] { note("one"); });
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
  EXPECT_THAT(ran["main"], ElementsAre(0));
  EXPECT_THAT(ran["local_main"], ElementsAre(0));
  EXPECT_THAT(ran["last"], ElementsAre(2));
  EXPECT_THAT(ran["one"], ElementsAre(1));
}

TEST(PartialStateTest, MissingPeerIsDeadlineExceededNamingIt) {
  PartialStateOptions options;
  options.timeout = absl::Seconds(2);
  const testing::Stopwatch watch;
  // Rank 0 of 3 alone, then rank 0 and 2: rank 1 never comes.
  absl::StatusOr<std::unique_ptr<PartialState>> alone = PartialState::Create(
      options, MapEnvironment(TorchrunVariables(0, 2, PickFreePort())));
  EXPECT_THAT(alone, StatusIs(absl::StatusCode::kDeadlineExceeded,
                              AllOf(HasSubstr("1 of 2 processes arrived"),
                                    HasSubstr("missing ranks: 1"))));
  EXPECT_LT(watch.Elapsed(), absl::Seconds(10));

  const int port = PickFreePort();
  std::vector<absl::Status> statuses(3);
  std::vector<std::thread> threads;
  for (int rank : {0, 2}) {
    threads.emplace_back([&, rank] {
      statuses[rank] =
          PartialState::Create(
              options, MapEnvironment(TorchrunVariables(rank, 3, port)))
              .status();
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_THAT(statuses[0], StatusIs(absl::StatusCode::kDeadlineExceeded,
                                    HasSubstr("missing ranks: 1")));
  // Rank 2 arrived and hears the same reason from rank 0.
  EXPECT_THAT(statuses[2], StatusIs(absl::StatusCode::kDeadlineExceeded,
                                    HasSubstr("missing ranks: 1")));
}

TEST(PartialStateTest, UnreachableStoreIsDeadlineExceeded) {
  PartialStateOptions options;
  options.timeout = absl::Seconds(1);
  const testing::Stopwatch watch;
  EXPECT_THAT(PartialState::Create(options, MapEnvironment(TorchrunVariables(
                                                1, 2, PickFreePort()))),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("rank 1 could not reach"),
                             HasSubstr("127.0.0.1:"))));
  EXPECT_LT(watch.Elapsed(), absl::Seconds(15));
}

TEST(PartialStateTest, ClientsMayStartBeforeRankZero) {
  PartialStateOptions options;
  options.timeout = absl::Seconds(20);
  const int port = PickFreePort();
  std::vector<absl::Status> statuses(2);
  std::thread early([&] {
    statuses[1] = PartialState::Create(options, MapEnvironment(
                                                    TorchrunVariables(1, 2, port)))
                      .status();
  });
  absl::SleepFor(absl::Milliseconds(700));
  statuses[0] =
      PartialState::Create(options,
                           MapEnvironment(TorchrunVariables(0, 2, port)))
          .status();
  early.join();
  EXPECT_THAT(statuses, Each(IsOk()));
}

TEST(PartialStateTest, TwoProcessesClaimingOneRankFail) {
  PartialStateOptions options;
  options.timeout = absl::Seconds(3);
  const int port = PickFreePort();
  std::vector<absl::Status> statuses(3);
  std::vector<std::thread> threads;
  const int ranks[] = {0, 1, 1};
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      statuses[i] = PartialState::Create(options,
                                         MapEnvironment(TorchrunVariables(
                                             ranks[i], 3, port)))
                        .status();
    });
  }
  for (auto& thread : threads) thread.join();
  // Nobody succeeds, and every process, rank 0 included, is told why (rank
  // 0 keeps serving the store until all have read it).
  EXPECT_THAT(statuses, Each(StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("claimed the same rank"))));
}

TEST(PartialStateTest, SplitsVectorsLikeAccelerate) {
  // 5 items over 3 processes: 2, 2, 1.
  const std::vector<int> items = {0, 1, 2, 3, 4};
  EXPECT_THAT(SplitFor(0, 3, items, false), ElementsAre(0, 1));
  EXPECT_THAT(SplitFor(1, 3, items, false), ElementsAre(2, 3));
  EXPECT_THAT(SplitFor(2, 3, items, false), ElementsAre(4));
  EXPECT_THAT(SplitFor(2, 3, items, true), ElementsAre(4, 4));
  // 4 items over 3 processes: 2, 1, 1; padding repeats each share's last.
  const std::vector<int> four = {0, 1, 2, 3};
  EXPECT_THAT(SplitFor(0, 3, four, true), ElementsAre(0, 1));
  EXPECT_THAT(SplitFor(1, 3, four, true), ElementsAre(2, 2));
  EXPECT_THAT(SplitFor(2, 3, four, true), ElementsAre(3, 3));
  // Fewer items than processes: the process past the end gets the last item.
  const std::vector<int> two = {7, 8};
  EXPECT_THAT(SplitFor(0, 3, two, false), ElementsAre(7));
  EXPECT_THAT(SplitFor(1, 3, two, false), ElementsAre(8));
  EXPECT_THAT(SplitFor(2, 3, two, false), ElementsAre(8));
  // Even splits need no padding.
  EXPECT_THAT(SplitFor(1, 2, four, true), ElementsAre(2, 3));
  // One process keeps everything.
  EXPECT_THAT(SplitFor(0, 1, items, true), ElementsAre(0, 1, 2, 3, 4));
}

TEST(PartialStateTest, SplitsTensorsAlongTheFirstDimension) {
  const at::Tensor rows = at::arange(10, at::kFloat).reshape({5, 2});
  std::vector<std::vector<double>> shares(3);
  std::vector<std::vector<double>> padded(3);
  std::vector<absl::Status> statuses = RunOnRanks(
      3, [&](const PartialState& state) -> absl::Status {
        absl::StatusOr<at::Tensor> share = state.SplitBetweenProcesses(rows);
        if (!share.ok()) return share.status();
        absl::StatusOr<at::Tensor> pad =
            state.SplitBetweenProcesses(rows, /*apply_padding=*/true);
        if (!pad.ok()) return pad.status();
        EXPECT_EQ(pad->size(0), 2);
        shares[state.process_index()] = TensorValues(*share);
        padded[state.process_index()] = TensorValues(*pad);
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
  EXPECT_THAT(shares[0], ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(shares[1], ElementsAre(4, 5, 6, 7));
  EXPECT_THAT(shares[2], ElementsAre(8, 9));
  EXPECT_THAT(padded[2], ElementsAre(8, 9, 8, 9));
  EXPECT_THAT(padded[0], ElementsAre(0, 1, 2, 3));
}

TEST(PartialStateTest, SplittingAScalarTensorIsInvalidArgument) {
  ASSERT_OK_AND_ASSIGN(auto state, PartialState::Create({}, MapEnvironment()));
  EXPECT_THAT(state->SplitBetweenProcesses(at::scalar_tensor(1.0)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("0-dimensional")));
  ASSERT_OK_AND_ASSIGN(at::Tensor whole,
                       state->SplitBetweenProcesses(at::ones({3})));
  EXPECT_TRUE(TensorsClose(whole, at::ones({3}), {}));
}

// Splits through real states of `world_size` threads and returns `rank`'s
// share.
std::vector<int> SplitFor(int rank, int world_size,
                          const std::vector<int>& inputs, bool padding) {
  std::vector<int> result;
  if (world_size == 1) {
    auto state = PartialState::Create({}, MapEnvironment());
    EXPECT_TRUE(state.ok());
    return (*state)->SplitBetweenProcesses(inputs, padding);
  }
  std::vector<absl::Status> statuses = RunOnRanks(
      world_size, [&](const PartialState& state) -> absl::Status {
        if (state.process_index() == rank) {
          result = state.SplitBetweenProcesses(inputs, padding);
        }
        return absl::OkStatus();
      });
  EXPECT_THAT(statuses, Each(IsOk()));
  return result;
}

// Named columns split by the same shares, as Accelerate splits a dict.
TEST(PartialStateTest, MapsSplitEveryValueByTheSameShares) {
  std::vector<absl::Status> statuses =
      RunOnRanks(2, [](const PartialState& state) -> absl::Status {
        const int rank = state.process_index();
        std::map<std::string, std::vector<int>> columns = {
            {"a", {1, 2, 3, 4, 5}}, {"b", {10, 20, 30, 40, 50}}};
        ACCELERATE_ASSIGN_OR_RETURN(auto mine,
                                    state.SplitBetweenProcesses(columns));
        const std::vector<int> a = rank == 0 ? std::vector<int>{1, 2, 3}
                                             : std::vector<int>{4, 5};
        const std::vector<int> b = rank == 0 ? std::vector<int>{10, 20, 30}
                                             : std::vector<int>{40, 50};
        if (mine["a"] != a || mine["b"] != b) {
          return absl::InternalError("wrong vector shares");
        }
        ACCELERATE_ASSIGN_OR_RETURN(
            auto tensors,
            state.SplitBetweenProcesses(
                std::map<std::string, at::Tensor>{
                    {"ids", at::arange(5)}, {"mask", at::ones({5, 2})}},
                /*apply_padding=*/true));
        if (tensors["ids"].size(0) != 3 || tensors["mask"].size(0) != 3 ||
            tensors["ids"][0].item<int64_t>() != (rank == 0 ? 0 : 3)) {
          return absl::InternalError("wrong tensor shares");
        }
        int ran = 0;
        state.OnLocalProcess(1, [&] { ++ran; });
        if (ran != (rank == 1 ? 1 : 0)) {
          return absl::InternalError("OnLocalProcess ran on the wrong rank");
        }
        columns["b"].pop_back();
        return state.SplitBetweenProcesses(columns).status();
      });
  for (const absl::Status& status : statuses) {
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("\"a\" has 5 and \"b\" has 4")));
  }
}

}  // namespace
}  // namespace accelerate::state
