// GoogleTest matchers for `absl::Status` and `absl::StatusOr<T>`. Abseil
// 20220623 ships none, so the project keeps this one set.
//
// clang-format off
//   #include "absl/strings/string_view.h"
//   absl::StatusOr<int> ParsePort(absl::string_view text);
//   absl::Status Join();
//
//   void Example() {
//     EXPECT_THAT(ParsePort("80"), IsOkAndHolds(80));
//     EXPECT_THAT(ParsePort("x"), StatusIs(absl::StatusCode::kInvalidArgument,
//                                          ::testing::HasSubstr("\"x\"")));
//     ASSERT_OK(Join());
//     ASSERT_OK_AND_ASSIGN(int port, ParsePort("81"));
//     EXPECT_EQ(port, 81);
//   }
// clang-format on

#ifndef ACCELERATE_TESTING_STATUS_MATCHERS_H_
#define ACCELERATE_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace accelerate::testing {
namespace internal {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}

template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

template <typename StatusOrType>
class IsOkAndHoldsMatcherImpl
    : public ::testing::MatcherInterface<StatusOrType> {
 public:
  using ValueType = typename std::remove_reference_t<StatusOrType>::value_type;

  template <typename InnerMatcher>
  explicit IsOkAndHoldsMatcherImpl(InnerMatcher&& inner)
      : inner_(::testing::SafeMatcherCast<const ValueType&>(
            std::forward<InnerMatcher>(inner))) {}

  void DescribeTo(std::ostream* os) const override {
    *os << "is OK and has a value that ";
    inner_.DescribeTo(os);
  }

  void DescribeNegationTo(std::ostream* os) const override {
    *os << "isn't OK or has a value that ";
    inner_.DescribeNegationTo(os);
  }

  bool MatchAndExplain(
      StatusOrType actual,
      ::testing::MatchResultListener* listener) const override {
    if (!actual.ok()) {
      *listener << "which has status " << actual.status();
      return false;
    }
    return inner_.MatchAndExplain(*actual, listener);
  }

 private:
  ::testing::Matcher<const ValueType&> inner_;
};

template <typename InnerMatcher>
class IsOkAndHoldsMatcher {
 public:
  explicit IsOkAndHoldsMatcher(InnerMatcher inner) : inner_(std::move(inner)) {}

  template <typename StatusOrType>
  operator ::testing::Matcher<StatusOrType>() const {  // NOLINT
    return ::testing::Matcher<StatusOrType>(
        new IsOkAndHoldsMatcherImpl<const StatusOrType&>(inner_));
  }

 private:
  InnerMatcher inner_;
};

class StatusIsMatcherImpl {
 public:
  StatusIsMatcherImpl(::testing::Matcher<absl::StatusCode> code,
                      ::testing::Matcher<const std::string&> message)
      : code_(std::move(code)), message_(std::move(message)) {}

  void DescribeTo(std::ostream* os) const {
    *os << "has a status code that ";
    code_.DescribeTo(os);
    *os << " and a message that ";
    message_.DescribeTo(os);
  }

  void DescribeNegationTo(std::ostream* os) const {
    *os << "has a status code that ";
    code_.DescribeNegationTo(os);
    *os << " or a message that ";
    message_.DescribeNegationTo(os);
  }

  bool MatchAndExplain(const absl::Status& status,
                       ::testing::MatchResultListener* listener) const {
    ::testing::StringMatchResultListener inner;
    if (!code_.MatchAndExplain(status.code(), &inner)) {
      *listener << "whose status " << status << " has the wrong code";
      return false;
    }
    const std::string message(status.message());
    if (!message_.MatchAndExplain(message, &inner)) {
      *listener << "whose message \"" << message << "\" does not match";
      return false;
    }
    return true;
  }

 private:
  ::testing::Matcher<absl::StatusCode> code_;
  ::testing::Matcher<const std::string&> message_;
};

template <typename T>
class StatusIsMatcherAdapter : public ::testing::MatcherInterface<T> {
 public:
  explicit StatusIsMatcherAdapter(StatusIsMatcherImpl impl)
      : impl_(std::move(impl)) {}
  void DescribeTo(std::ostream* os) const override { impl_.DescribeTo(os); }
  void DescribeNegationTo(std::ostream* os) const override {
    impl_.DescribeNegationTo(os);
  }
  bool MatchAndExplain(
      T actual, ::testing::MatchResultListener* listener) const override {
    return impl_.MatchAndExplain(GetStatus(actual), listener);
  }

 private:
  StatusIsMatcherImpl impl_;
};

class StatusIsMatcher {
 public:
  StatusIsMatcher(::testing::Matcher<absl::StatusCode> code,
                  ::testing::Matcher<const std::string&> message)
      : impl_(std::move(code), std::move(message)) {}

  template <typename T>
  operator ::testing::Matcher<T>() const {  // NOLINT
    return ::testing::Matcher<T>(new StatusIsMatcherAdapter<T>(impl_));
  }

 private:
  StatusIsMatcherImpl impl_;
};

}  // namespace internal

// Matches an OK `absl::Status` or `absl::StatusOr<T>`.
MATCHER(IsOk, negation ? "is not OK" : "is OK") {
  const absl::Status& status = internal::GetStatus(arg);
  if (!status.ok()) *result_listener << "whose status is " << status;
  return status.ok();
}

// Matches an OK `absl::StatusOr<T>` whose value matches `inner`.
template <typename InnerMatcher>
internal::IsOkAndHoldsMatcher<std::decay_t<InnerMatcher>> IsOkAndHolds(
    InnerMatcher&& inner) {
  return internal::IsOkAndHoldsMatcher<std::decay_t<InnerMatcher>>(
      std::forward<InnerMatcher>(inner));
}

// Matches a status (or StatusOr) with a code matching `code` and a message
// matching `message`.
template <typename CodeMatcher, typename MessageMatcher>
internal::StatusIsMatcher StatusIs(CodeMatcher&& code,
                                   MessageMatcher&& message) {
  return internal::StatusIsMatcher(
      ::testing::MatcherCast<absl::StatusCode>(std::forward<CodeMatcher>(code)),
      ::testing::MatcherCast<const std::string&>(
          std::forward<MessageMatcher>(message)));
}

template <typename CodeMatcher>
internal::StatusIsMatcher StatusIs(CodeMatcher&& code) {
  return StatusIs(std::forward<CodeMatcher>(code), ::testing::_);
}

}  // namespace accelerate::testing

#define ACCELERATE_TESTING_CONCAT_INNER_(a, b) a##b
#define ACCELERATE_TESTING_CONCAT_(a, b) ACCELERATE_TESTING_CONCAT_INNER_(a, b)

#define EXPECT_OK(expr) \
  EXPECT_THAT((expr), ::accelerate::testing::IsOk())
#define ASSERT_OK(expr) \
  ASSERT_THAT((expr), ::accelerate::testing::IsOk())

// Asserts that `rexpr` is OK and moves its value into `lhs`.
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr)                                   \
  ASSERT_OK_AND_ASSIGN_IMPL_(                                              \
      ACCELERATE_TESTING_CONCAT_(accelerate_statusor_, __LINE__), lhs, rexpr)

#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr)                \
  auto statusor = (rexpr);                                              \
  ASSERT_TRUE(statusor.ok()) << statusor.status();                      \
  lhs = std::move(statusor).value()

#endif  // ACCELERATE_TESTING_STATUS_MATCHERS_H_
