#include "accelerator/find_executable_batch_size.h"

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/ATen.h>
#include "state/torch_errors.h"
#include "testing/status_matchers.h"

namespace accelerate {
namespace {

using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A real LibTorch out-of-memory error above 8 samples: 4 TiB asked of the
// CPU allocator, turned into ResourceExhausted by RunGuarded.
TEST(FindExecutableBatchSizeTest, HalvesOnOutOfMemoryUntilItRuns) {
  std::vector<int64_t> tried;
  absl::StatusOr<int64_t> result = FindExecutableBatchSize<int64_t>(
      [&](int64_t batch_size) -> absl::StatusOr<int64_t> {
        tried.push_back(batch_size);
        at::Tensor activations;
        absl::Status status = state::RunGuarded("the step", [&] {
          activations = at::empty(
              {batch_size > 8 ? (int64_t{1} << 42) : batch_size}, at::kByte);
        });
        if (!status.ok()) return status;
        return activations.numel();
      },
      128);
  EXPECT_THAT(result, IsOkAndHolds(8));
  EXPECT_THAT(tried, ElementsAre(128, 64, 32, 16, 8));
}

TEST(FindExecutableBatchSizeTest, OtherErrorsReturnAtOnce) {
  int calls = 0;
  absl::StatusOr<int> result = FindExecutableBatchSize<int>(
      [&](int64_t) -> absl::StatusOr<int> {
        ++calls;
        return absl::InvalidArgumentError("bad batch");
      });
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(calls, 1);
}

TEST(FindExecutableBatchSizeTest, ReachingZeroNamesTheLastError) {
  absl::StatusOr<int> result = FindExecutableBatchSize<int>(
      [](int64_t batch_size) -> absl::StatusOr<int> {
        return absl::ResourceExhaustedError(
            absl::StrCat("out of memory at ", batch_size));
      },
      4);
  EXPECT_THAT(result,
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("reached zero from 4"),
                             HasSubstr("out of memory at 1"))));
}

}  // namespace
}  // namespace accelerate
