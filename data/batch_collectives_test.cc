#include "data/batch_collectives.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/ATen.h>
#include "state/partial_state.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::data {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::RunOnRanks;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TensorValues;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Rank r's outputs: logits [2, 3] full of r, and a pair of ids.
Batch Outputs(int rank) {
  return Batch::Named(
      {{"logits", at::full({2, 3}, rank, at::kFloat)},
       {"ids", Batch::Of({at::full({2}, 10 * rank, at::kLong),
                          at::full({2, 1}, rank, at::kLong)})}});
}

absl::Status Expect(bool ok, const std::string& what) {
  return ok ? absl::OkStatus() : absl::InternalError(what);
}

TEST(BatchCollectivesTest, GatherConcatenatesNestedBatchesInRankOrder) {
  std::vector<absl::Status> statuses =
      RunOnRanks(2, [](const state::PartialState& state) -> absl::Status {
        absl::StatusOr<Batch> all = Gather(state, Outputs(state.process_index()));
        if (!all.ok()) return all.status();
        return Expect(
            all->Describe() ==
                    "{ids: [Long[4], Long[4, 1]], logits: Float[4, 3]}" &&
                TensorValues((*all)["ids"].tensor(0)) ==
                    std::vector<double>{0, 0, 10, 10} &&
                TensorValues(all->tensor("logits").select(1, 0)) ==
                    std::vector<double>{0, 0, 1, 1},
            all->Describe());
      });
  EXPECT_THAT(statuses, Each(IsOk()));
}

TEST(BatchCollectivesTest, AStructureThatDiffersNamesTheFieldAndProcess) {
  std::vector<absl::Status> statuses =
      RunOnRanks(2, [](const state::PartialState& state) -> absl::Status {
        Batch outputs = Outputs(state.process_index());
        if (state.process_index() == 1) {
          outputs.Set("logits", at::zeros({2, 4}));
        }
        return Gather(state, outputs).status();
      });
  EXPECT_THAT(statuses,
              Each(StatusIs(absl::StatusCode::kInvalidArgument,
                            HasSubstr("process 1 has logits=Float/2d[2, 4] "
                                      "where process 0 has "
                                      "logits=Float/2d[2, 3]"))));
  // A field only one process has, in padding too.
  statuses = RunOnRanks(2, [](const state::PartialState& state) -> absl::Status {
    Batch outputs = Outputs(state.process_index());
    if (state.process_index() == 1) outputs.Set("labels", at::zeros({2}));
    return PadAcrossProcesses(state, outputs).status();
  });
  EXPECT_THAT(statuses, Each(StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("process 1 has labels="))));
}

TEST(BatchCollectivesTest, BroadcastSendsTheStructureToo) {
  std::vector<absl::Status> statuses =
      RunOnRanks(3, [](const state::PartialState& state) -> absl::Status {
        const Batch mine =
            state.process_index() == 2 ? Outputs(7) : Batch();
        absl::StatusOr<Batch> got = Broadcast(state, mine, /*from_process=*/2);
        if (!got.ok()) return got.status();
        return Expect(got->Describe() == Outputs(7).Describe() &&
                          TensorValues((*got)["ids"].tensor(0)) ==
                              std::vector<double>{70, 70},
                      got->Describe());
      });
  EXPECT_THAT(statuses, Each(IsOk()));
}

TEST(BatchCollectivesTest, PaddedSequencesOfEveryLengthGather) {
  std::vector<absl::Status> statuses =
      RunOnRanks(2, [](const state::PartialState& state) -> absl::Status {
        // Rank 0 has sequences of 2 tokens, rank 1 of 5.
        const int64_t length = state.process_index() == 0 ? 2 : 5;
        const Batch batch = Batch::Named(
            {{"tokens", at::ones({1, length}, at::kLong)}});
        absl::StatusOr<Batch> padded =
            PadAcrossProcesses(state, batch, {.dim = 1, .pad_index = -1});
        if (!padded.ok()) return padded.status();
        absl::StatusOr<Batch> all = Gather(state, *padded);
        if (!all.ok()) return all.status();
        return Expect(TensorValues(all->tensor("tokens")) ==
                          std::vector<double>{1, 1, -1, -1, -1, 1, 1, 1, 1, 1},
                      all->Describe());
      });
  EXPECT_THAT(statuses, ElementsAre(IsOk(), IsOk()));
}

}  // namespace
}  // namespace accelerate::data
