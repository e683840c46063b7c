#include "state/torch_errors.h"

#include <new>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include <c10/util/Exception.h>

namespace accelerate::state {
namespace {

bool ContainsAny(absl::string_view text,
                 std::initializer_list<absl::string_view> needles) {
  for (absl::string_view needle : needles) {
    if (absl::StrContains(text, needle)) return true;
  }
  return false;
}

absl::StatusCode Classify(const std::exception& error,
                          absl::string_view message) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&error) != nullptr ||
      dynamic_cast<const std::bad_alloc*>(&error) != nullptr) {
    return absl::StatusCode::kResourceExhausted;
  }
  if (dynamic_cast<const c10::NotImplementedError*>(&error) != nullptr) {
    return absl::StatusCode::kUnimplemented;
  }
  const std::string lower = absl::AsciiStrToLower(message);
  if (ContainsAny(lower, {"out of memory", "can't allocate memory",
                          "cannot allocate memory"})) {
    return absl::StatusCode::kResourceExhausted;
  }
  if (ContainsAny(lower, {"timed out", "timeout"})) {
    return absl::StatusCode::kDeadlineExceeded;
  }
  if (dynamic_cast<const c10::DistNetworkError*>(&error) != nullptr) {
    return absl::StatusCode::kUnavailable;
  }
  const bool distributed =
      dynamic_cast<const c10::DistError*>(&error) != nullptr;
  // c10d and gloo report lost peers as plain errors too ("Connection closed
  // by peer", "Connection reset", "Broken pipe", "Connection refused").
  if (ContainsAny(lower, {"connection closed", "connection reset",
                          "broken pipe", "connection refused", "closed by peer",
                          "peer closed", "socket"}) ||
      (distributed && absl::StrContains(lower, "peer"))) {
    return absl::StatusCode::kUnavailable;
  }
  if (dynamic_cast<const c10::TypeError*>(&error) != nullptr ||
      dynamic_cast<const c10::ValueError*>(&error) != nullptr ||
      dynamic_cast<const c10::IndexError*>(&error) != nullptr) {
    return absl::StatusCode::kInvalidArgument;
  }
  if (!distributed &&
      ContainsAny(lower, {"shape", "size mismatch", "sizes",
                          "must match the size", "dimension", "dtype",
                          "scalar type", "expected all tensors",
                          "mat1 and mat2"})) {
    return absl::StatusCode::kInvalidArgument;
  }
  return absl::StatusCode::kInternal;
}

}  // namespace

absl::Status StatusFromException(absl::string_view operation,
                                 const std::exception& error) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&error);
  const absl::string_view message = torch_error != nullptr
                                        ? torch_error->what_without_backtrace()
                                        : error.what();
  return absl::Status(Classify(error, message),
                      absl::StrCat(operation, " failed: ", message));
}

}  // namespace accelerate::state
