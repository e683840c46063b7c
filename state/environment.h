// The one way `//state` (and the libraries above it) read environment
// variables, so that tests can inject a map instead of the process
// environment. (Starting child processes with an environment is
// state/child_process.h.)
//
// clang-format off
//   #include "state/launch_info.h"
//   absl::StatusOr<LaunchInfo> SecondOfTwo() {
//     MapEnvironment env({{"RANK", "1"}, {"WORLD_SIZE", "2"}});
//     return ResolveLaunchInfo(env);
//   }
// clang-format on
//
// Thread safety: `Get` is const and safe to call concurrently, provided
// nobody calls `setenv` on the process environment at the same time.

#ifndef ACCELERATE_STATE_ENVIRONMENT_H_
#define ACCELERATE_STATE_ENVIRONMENT_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>

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

}  // namespace accelerate::state

#endif  // ACCELERATE_STATE_ENVIRONMENT_H_
