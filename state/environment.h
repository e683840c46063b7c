// The one way `//state` (and the libraries above it) read environment
// variables, so that tests can inject a map instead of the process
// environment.
//
//   MapEnvironment env({{"RANK", "1"}, {"WORLD_SIZE", "2"}});
//   absl::StatusOr<LaunchInfo> info = ResolveLaunchInfo(env);
//
// Thread safety: `Get` is const and safe to call concurrently, provided
// nobody calls `setenv` on the process environment at the same time.

#ifndef ACCELERATE_STATE_ENVIRONMENT_H_
#define ACCELERATE_STATE_ENVIRONMENT_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace accelerate::state {

// Read-only view of a set of environment variables.
class Environment {
 public:
  virtual ~Environment() = default;

  // The value of `name`, or `std::nullopt` when it is not set. A variable set
  // to the empty string is set (its value is "").
  virtual std::optional<std::string> Get(absl::string_view name) const = 0;
};

// The environment of this process (`getenv`). The returned object lives for
// the whole program.
const Environment& ProcessEnvironment();

// An environment backed by a map; for tests and for programs that compute the
// variables themselves.
class MapEnvironment final : public Environment {
 public:
  MapEnvironment() = default;
  explicit MapEnvironment(const std::map<std::string, std::string>& values)
      : values_(values.begin(), values.end()) {}

  std::optional<std::string> Get(absl::string_view name) const override;

  void Set(std::string name, std::string value) {
    values_[std::move(name)] = std::move(value);
  }

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

// The NAME=VALUE strings of this process's environment with `overrides` added
// or replacing, sorted by name: what a launched child should see.
std::vector<std::string> ChildEnvironment(
    const std::map<std::string, std::string>& overrides);

// Null-terminated pointers into `strings`, for execve's argv and envp.
// `strings` must outlive the result and not change size.
std::vector<char*> CStringArray(std::vector<std::string>& strings);

}  // namespace accelerate::state

#endif  // ACCELERATE_STATE_ENVIRONMENT_H_
