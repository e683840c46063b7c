// Status propagation macros. Abseil 20220623 (Debian 12) ships none, so the
// project keeps this one small copy.
//
// clang-format off
//   #include "absl/strings/string_view.h"
//   absl::Status Connect();
//   absl::StatusOr<int> ParsePort(absl::string_view text);
//
//   absl::StatusOr<int> Join(absl::string_view text) {
//     ACCELERATE_RETURN_IF_ERROR(Connect());
//     ACCELERATE_ASSIGN_OR_RETURN(int port, ParsePort(text));
//     return port;
//   }
// clang-format on

#ifndef ACCELERATE_STATE_STATUS_MACROS_H_
#define ACCELERATE_STATE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the enclosing function when `expr` (an `absl::Status`) is not
// OK, passing the status on unchanged.
#define ACCELERATE_RETURN_IF_ERROR(expr)                         \
  do {                                                           \
    ::absl::Status accelerate_status_ = (expr);                  \
    if (!accelerate_status_.ok()) return accelerate_status_;     \
  } while (false)

#define ACCELERATE_STATUS_MACROS_CONCAT_INNER_(a, b) a##b
#define ACCELERATE_STATUS_MACROS_CONCAT_(a, b) \
  ACCELERATE_STATUS_MACROS_CONCAT_INNER_(a, b)

// Evaluates `rexpr` (an `absl::StatusOr<T>`); on error returns its status from
// the enclosing function, otherwise moves the value into `lhs`, which may be a
// declaration (`auto x`, `const int y`) or an existing variable.
#define ACCELERATE_ASSIGN_OR_RETURN(lhs, rexpr)                          \
  ACCELERATE_ASSIGN_OR_RETURN_IMPL_(                                     \
      ACCELERATE_STATUS_MACROS_CONCAT_(accelerate_statusor_, __LINE__), \
      lhs, rexpr)

#define ACCELERATE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                      \
  if (!statusor.ok()) return std::move(statusor).status();      \
  lhs = std::move(statusor).value()

#endif  // ACCELERATE_STATE_STATUS_MACROS_H_
