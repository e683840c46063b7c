#include "state/internal/errors.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace accelerate::state_internal {

absl::Status StatusFromException(absl::string_view operation,
                                 absl::string_view message) {
  const std::string lower = absl::AsciiStrToLower(message);
  const std::string text = absl::StrCat(operation, " failed: ", message);
  if (absl::StrContains(lower, "timed out") ||
      absl::StrContains(lower, "timeout")) {
    return absl::DeadlineExceededError(text);
  }
  for (const char* peer_lost :
       {"connection closed", "connection reset", "broken pipe",
        "connection refused", "socket", "peer", "closed by"}) {
    if (absl::StrContains(lower, peer_lost)) {
      return absl::UnavailableError(text);
    }
  }
  return absl::InternalError(text);
}

}  // namespace accelerate::state_internal
