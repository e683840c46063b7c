#include "state/torch_errors.h"

#include <new>
#include <stdexcept>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <torch/torch.h>
#include "testing/status_matchers.h"

namespace accelerate::state {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(TorchErrorsTest, ShapeMismatchIsInvalidArgumentNamingTheOperation) {
  absl::Status status = RunGuarded("the forward pass", [] {
    (void)torch::matmul(torch::ones({2, 3}), torch::ones({4, 5}));
  });
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("the forward pass failed: ")));
  // LibTorch's C++ backtrace stays out of the message.
  EXPECT_THAT(std::string(status.message()),
              Not(HasSubstr("Exception raised from")));
}

TEST(TorchErrorsTest, DtypeMismatchIsInvalidArgument) {
  EXPECT_THAT(RunGuarded("index", [] {
                (void)torch::ones({3}).index_select(0, torch::ones({1}));
              }),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TorchErrorsTest, OutOfMemoryIsResourceExhausted) {
  EXPECT_THAT(RunGuarded("allocating",
                         [] { throw std::bad_alloc(); }),
              StatusIs(absl::StatusCode::kResourceExhausted));
  // LibTorch's CPU allocator when the machine has no such memory.
  EXPECT_THAT(RunGuarded("allocating",
                         [] {
                           (void)torch::empty({int64_t{1} << 60},
                                              torch::kByte);
                         }),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("allocating failed")));
}

TEST(TorchErrorsTest, LostPeersAreUnavailableAndTimeoutsDeadlineExceeded) {
  EXPECT_THAT(StatusFromException(
                  "all_reduce on rank 1",
                  c10::DistNetworkError(c10::SourceLocation{__func__, __FILE__,
                                                            __LINE__},
                                        "Connection closed by peer")),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("all_reduce on rank 1 failed")));
  EXPECT_THAT(StatusFromException(
                  "barrier",
                  std::runtime_error("[gloo] Connection reset by peer")),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(
      StatusFromException("barrier",
                          std::runtime_error("Timed out waiting 1000ms")),
      StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST(TorchErrorsTest, AnythingElseIsInternalNotUnavailable) {
  EXPECT_THAT(StatusFromException("step", std::runtime_error("oops")),
              StatusIs(absl::StatusCode::kInternal, "step failed: oops"));
  EXPECT_THAT(RunGuarded("nothing", [] {}), IsOk());
}

TEST(TorchErrorsTest, CallGuardedReturnsTheValue) {
  EXPECT_THAT(CallGuarded("adding", [] { return 40 + 2; }), IsOkAndHolds(42));
  EXPECT_THAT(CallGuarded("adding",
                          []() -> int { throw std::invalid_argument("no"); }),
              StatusIs(absl::StatusCode::kInternal, "adding failed: no"));
}

}  // namespace
}  // namespace accelerate::state
