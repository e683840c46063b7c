#include "state/collectives.h"

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/ATen.h>
#include "state/environment.h"
#include "state/partial_state.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::state {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::RunOnRanks;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TensorsClose;
using ::accelerate::testing::TensorValues;
using ::testing::AllOf;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr ::accelerate::testing::Tolerance kExact = {0.0, 0.0};

// Runs `fn` on `world_size` thread ranks and expects all to succeed.
void ExpectOnRanks(int world_size,
                   const std::function<absl::Status(const PartialState&)>& fn,
                   const PartialStateOptions& options = {},
                   const std::map<std::string, std::string>& env = {}) {
  std::vector<absl::Status> statuses = RunOnRanks(world_size, fn, options, env);
  for (size_t rank = 0; rank < statuses.size(); ++rank) {
    EXPECT_THAT(statuses[rank], IsOk()) << "rank " << rank;
  }
}

class CollectivesTest : public ::testing::TestWithParam<int> {
 protected:
  int world_size() const { return GetParam(); }
};

TEST_P(CollectivesTest, GatherConcatenatesInRankOrder) {
  const int n = world_size();
  ExpectOnRanks(n, [&](const PartialState& state) -> absl::Status {
    const int rank = state.process_index();
    at::Tensor mine = at::tensor({rank * 10.0, rank * 10.0 + 1}, at::kFloat)
                          .reshape({1, 2});
    absl::StatusOr<at::Tensor> all = Gather(state, mine);
    if (!all.ok()) return all.status();
    std::vector<float> expected;
    for (int r = 0; r < n; ++r) {
      expected.push_back(r * 10.0f);
      expected.push_back(r * 10.0f + 1);
    }
    EXPECT_TRUE(TensorsClose(*all, at::tensor(expected).reshape({n, 2}),
                             kExact));
    // Scalars gather into a vector.
    absl::StatusOr<at::Tensor> scalars =
        Gather(state, at::scalar_tensor(rank, at::kLong));
    if (!scalars.ok()) return scalars.status();
    EXPECT_TRUE(TensorsClose(*scalars, at::arange(n, at::kLong), kExact));
    return absl::OkStatus();
  });
}

TEST_P(CollectivesTest, GatherAndBroadcastMoveBoolAndBfloat16) {
  const int n = world_size();
  ExpectOnRanks(n, [&](const PartialState& state) -> absl::Status {
    const int rank = state.process_index();
    at::Tensor flags =
        at::tensor({rank % 2 == 0 ? 1 : 0, 1}, at::kLong).to(at::kBool);
    auto all = Gather(state, flags);
    if (!all.ok()) return all.status();
    EXPECT_EQ(all->scalar_type(), at::kBool);
    std::vector<double> expected;
    for (int r = 0; r < n; ++r) {
      expected.push_back(r % 2 == 0);
      expected.push_back(1);
    }
    EXPECT_EQ(::accelerate::testing::TensorValues(*all), expected);
    at::Tensor half = at::full({3}, 0.5 + rank, at::kBFloat16);
    auto sent = Broadcast(state, half, n - 1);
    if (!sent.ok()) return sent.status();
    EXPECT_TRUE(TensorsClose(*sent, at::full({3}, 0.5 + n - 1, at::kBFloat16),
                             kExact));
    return absl::OkStatus();
  });
}

TEST_P(CollectivesTest, BroadcastInPlaceOverwritesEveryTensorWithTheSource) {
  const int n = world_size();
  ExpectOnRanks(n, [&](const PartialState& state) -> absl::Status {
    const int rank = state.process_index();
    const int source = n - 1;
    // Mixed dtypes (buckets split where the dtype changes), a transposed
    // (non-contiguous) tensor, a parameter that requires gradients.
    at::Tensor weight = at::full({3, 2}, rank, at::kFloat).requires_grad_();
    at::Tensor bias = at::full({2}, rank + 0.5, at::kFloat);
    at::Tensor mask = at::full({4}, rank % 2 == 0, at::kBool);
    at::Tensor half = at::full({2}, rank + 0.25, at::kBFloat16);
    at::Tensor counts = at::arange(6, at::kLong).reshape({2, 3}).add(rank).t();
    const void* weight_data = weight.data_ptr();
    absl::Status status =
        BroadcastInPlace(state, {weight, bias, mask, half, counts}, source);
    if (!status.ok()) return status;
    EXPECT_EQ(weight.data_ptr(), weight_data);  // The same storage, filled.
    EXPECT_TRUE(weight.requires_grad());
    EXPECT_TRUE(TensorsClose(weight.detach(),
                             at::full({3, 2}, source, at::kFloat), kExact));
    EXPECT_TRUE(TensorsClose(bias, at::full({2}, source + 0.5, at::kFloat),
                             kExact));
    EXPECT_TRUE(mask.equal(at::full({4}, source % 2 == 0, at::kBool)));
    EXPECT_TRUE(TensorsClose(
        half, at::full({2}, source + 0.25, at::kBFloat16), kExact));
    EXPECT_TRUE(counts.equal(
        at::arange(6, at::kLong).reshape({2, 3}).add(source).t()));
    EXPECT_THAT(BroadcastInPlace(state, {bias}, n),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("from_process")));
    return absl::OkStatus();
  });
}

TEST_P(CollectivesTest, GatherKeepsNestedStructure) {
  const int n = world_size();
  ExpectOnRanks(n, [&](const PartialState& state) -> absl::Status {
    const int rank = state.process_index();
    std::map<std::string, std::vector<at::Tensor>> mine = {
        {"loss", {at::full({1}, rank, at::kDouble)}},
        {"preds", {at::full({2}, 2 * rank, at::kInt), at::full({1}, -rank, at::kFloat)}}};
    auto all = Gather(state, mine);
    if (!all.ok()) return all.status();
    EXPECT_EQ(all->size(), 2u);
    EXPECT_TRUE(TensorsClose(all->at("loss")[0], at::arange(n, at::kDouble),
                             kExact));
    EXPECT_TRUE(TensorsClose(all->at("preds")[0],
                             (2 * at::arange(n, at::kInt))
                                 .repeat_interleave(2),
                             kExact));
    EXPECT_TRUE(TensorsClose(all->at("preds")[1],
                             -at::arange(n, at::kFloat), kExact));
    return absl::OkStatus();
  });
}

TEST_P(CollectivesTest, GatherObjectReturnsEachRanksBytes) {
  const int n = world_size();
  ExpectOnRanks(n, [&](const PartialState& state) -> absl::Status {
    const int rank = state.process_index();
    // Different lengths per rank, including an empty string and a zero byte.
    std::string mine(rank, static_cast<char>('a' + rank));
    if (rank == 1) mine = std::string("x\0y", 3);
    auto all = GatherObject(state, mine);
    if (!all.ok()) return all.status();
    EXPECT_EQ(all->size(), static_cast<size_t>(n));
    for (int r = 0; r < n; ++r) {
      std::string expected(r, static_cast<char>('a' + r));
      if (r == 1) expected = std::string("x\0y", 3);
      EXPECT_EQ((*all)[r], expected) << "from rank " << r;
    }
    // Lists flatten in rank order.
    auto flat = GatherObject(
        state, std::vector<std::string>(rank + 1, absl::StrCat("r", rank)));
    if (!flat.ok()) return flat.status();
    std::vector<std::string> expected;
    for (int r = 0; r < n; ++r) {
      for (int i = 0; i <= r; ++i) expected.push_back(absl::StrCat("r", r));
    }
    EXPECT_EQ(*flat, expected);
    return absl::OkStatus();
  });
}

TEST_P(CollectivesTest, BroadcastSendsTheSourceValue) {
  const int n = world_size();
  ExpectOnRanks(n, [&](const PartialState& state) -> absl::Status {
    const int rank = state.process_index();
    const int source = n - 1;
    at::Tensor mine = at::full({2, 2}, rank, at::kFloat);
    auto result = Broadcast(state, mine, source);
    if (!result.ok()) return result.status();
    EXPECT_TRUE(TensorsClose(*result, at::full({2, 2}, source, at::kFloat),
                             kExact));
    // The input is not modified.
    EXPECT_TRUE(TensorsClose(mine, at::full({2, 2}, rank, at::kFloat), kExact));
    auto text = BroadcastObject(state, absl::StrCat("hello from ", rank),
                                n > 1 ? 1 : 0);
    if (!text.ok()) return text.status();
    EXPECT_EQ(*text, absl::StrCat("hello from ", n > 1 ? 1 : 0));
    EXPECT_THAT(Broadcast(state, mine, n),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("from_process")));
    return absl::OkStatus();
  });
}

TEST_P(CollectivesTest, ReduceSumsAndAverages) {
  const int n = world_size();
  ExpectOnRanks(n, [&](const PartialState& state) -> absl::Status {
    const int rank = state.process_index();
    at::Tensor mine = at::full({3}, rank + 1, at::kFloat);
    ReduceOptions sum_options;
    sum_options.reduction = Reduction::kSum;
    auto sum = Reduce(state, mine, sum_options);
    if (!sum.ok()) return sum.status();
    // The default is the mean, as accelerate.utils.reduce.
    auto by_default = Reduce(state, mine);
    if (!by_default.ok()) return by_default.status();
    EXPECT_TRUE(TensorsClose(*by_default,
                             at::full({3}, (n + 1) / 2.0, at::kFloat),
                             {1e-6, 1e-6}));
    // Scaling integers is refused instead of throwing.
    ReduceOptions scaled = sum_options;
    scaled.scale = 0.5;
    EXPECT_THAT(Reduce(state, at::ones({1}, at::kLong), scaled),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("scale 0.5"), HasSubstr("Long"))));
    EXPECT_TRUE(TensorsClose(*sum, at::full({3}, n * (n + 1) / 2, at::kFloat),
                             kExact));
    ReduceOptions mean_options;
    mean_options.reduction = Reduction::kMean;
    mean_options.scale = 2.0;
    auto mean = Reduce(state, std::vector<at::Tensor>{mine}, mean_options);
    if (!mean.ok()) return mean.status();
    EXPECT_TRUE(TensorsClose((*mean)[0],
                             at::full({3}, (n + 1) / 2.0 * 2.0, at::kFloat),
                             {1e-6, 1e-6}));
    // The mean of integers is refused on any number of processes.
    EXPECT_THAT(Reduce(state, at::ones({1}, at::kLong), mean_options),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("mean"), HasSubstr("Long"))));
    return absl::OkStatus();
  });
}

TEST_P(CollectivesTest, PadAcrossProcessesPadsToTheLongest) {
  const int n = world_size();
  ExpectOnRanks(n, [&](const PartialState& state) -> absl::Status {
    const int rank = state.process_index();
    at::Tensor mine = at::full({2, rank + 1}, rank + 1, at::kFloat);
    PadOptions options;
    options.dim = 1;
    options.pad_index = -1;
    auto padded = PadAcrossProcesses(state, mine, options);
    if (!padded.ok()) return padded.status();
    at::Tensor expected = at::full({2, n}, -1, at::kFloat);
    expected.narrow(1, 0, rank + 1).fill_(rank + 1);
    EXPECT_TRUE(TensorsClose(*padded, expected, kExact));

    options.dim = -1;
    options.pad_first = true;
    auto first = PadAcrossProcesses(state, mine, options);
    if (!first.ok()) return first.status();
    at::Tensor expected_first = at::full({2, n}, -1, at::kFloat);
    expected_first.narrow(1, n - rank - 1, rank + 1).fill_(rank + 1);
    EXPECT_TRUE(TensorsClose(*first, expected_first, kExact));

    // A dimension the tensor lacks leaves it unchanged.
    options.dim = 5;
    auto unchanged = PadAcrossProcesses(state, mine, options);
    if (!unchanged.ok()) return unchanged.status();
    EXPECT_TRUE(TensorsClose(*unchanged, mine, kExact));

    // Padded tensors can then be gathered.
    options.dim = 1;
    auto gathered = Gather(state, *PadAcrossProcesses(state, mine, options));
    if (!gathered.ok()) return gathered.status();
    EXPECT_EQ(gathered->sizes(), (std::vector<int64_t>{2 * n, n}));
    return absl::OkStatus();
  });
}

INSTANTIATE_TEST_SUITE_P(Worlds, CollectivesTest, ::testing::Values(1, 2, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return absl::StrCat(info.param, "Processes");
                         });

TEST(CollectivesDebugModeTest, ShapeMismatchListsEveryProcess) {
  std::vector<absl::Status> statuses = RunOnRanks(
      2,
      [](const PartialState& state) -> absl::Status {
        EXPECT_TRUE(state.debug());
        const int rank = state.process_index();
        at::Tensor mine = rank == 0 ? at::zeros({1, 5}) : at::zeros({1, 2, 5});
        return Gather(state, mine).status();
      },
      {}, {{"ACCELERATE_DEBUG_MODE", "1"}});
  for (const absl::Status& status : statuses) {
    EXPECT_THAT(status,
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         AllOf(HasSubstr("Cannot apply gather"),
                               HasSubstr("Process 0: Float [1, 5]"),
                               HasSubstr("Process 1: Float [1, 2, 5]"))));
  }
}

TEST(CollectivesDebugModeTest, MatchingShapesPassTheCheck) {
  ExpectOnRanks(
      2,
      [](const PartialState& state) -> absl::Status {
        ReduceOptions sum_options;
        sum_options.reduction = Reduction::kSum;
        auto sum = Reduce(state, at::ones({2, 2}), sum_options);
        if (!sum.ok()) return sum.status();
        EXPECT_TRUE(TensorsClose(*sum, at::full({2, 2}, 2.0), kExact));
        return absl::OkStatus();
      },
      {}, {{"ACCELERATE_DEBUG_MODE", "true"}});
}

}  // namespace
}  // namespace accelerate::state
