#include "launch/command.h"

#include <iostream>

#include "absl/status/statusor.h"

namespace accelerate::launch {

int Fail(absl::string_view message) {
  std::cerr << message << std::endl;
  return kFailureExitCode;
}

std::optional<int> ParseCommandLine(const FlagParser& parser,
                                    const std::vector<std::string>& args,
                                    ParsedFlags* flags) {
  absl::StatusOr<ParsedFlags> parsed = parser.Parse(args);
  if (!parsed.ok()) return Fail(parsed.status().message());
  if (parsed->help) {
    std::cout << parser.Help();
    return 0;
  }
  *flags = *std::move(parsed);
  return std::nullopt;
}

}  // namespace accelerate::launch
