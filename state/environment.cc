#include "state/environment.h"

#include <cstdlib>

namespace accelerate::state {
namespace {

class ProcessEnvironmentImpl final : public Environment {
 public:
  std::optional<std::string> Get(absl::string_view name) const override {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  }
};

}  // namespace

const Environment& ProcessEnvironment() {
  static const ProcessEnvironmentImpl* const kEnvironment =
      new ProcessEnvironmentImpl();
  return *kEnvironment;
}

std::optional<std::string> MapEnvironment::Get(absl::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

}  // namespace accelerate::state
