// A small command-line parser with Python argparse's conventions, as
// Accelerate's CLI uses them: `--name value` and `--name=value`, hyphens and
// underscores interchangeable in long names (`--num-processes`), short
// aliases (`-q`), switches without values, and everything from the first
// positional argument on handed over untouched (the program and its
// arguments).
//
//   FlagParser parser("accelerate launch", "Launches a program on ...");
//   parser.AddSwitch("cpu", "Run on CPU only.");
//   parser.AddValue("num_processes", "N", "Processes in total.");
//   absl::StatusOr<ParsedFlags> flags = parser.Parse(args);
//
// Thread safety: a parser is immutable after setup.

#ifndef ACCELERATE_LAUNCH_FLAGS_H_
#define ACCELERATE_LAUNCH_FLAGS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accelerate::launch {

struct ParsedFlags {
  // Flag name (underscore form) -> value; switches map to "true".
  std::map<std::string, std::string> values;
  // The first positional argument and everything after it.
  std::vector<std::string> positional;
  bool help = false;

  bool Has(absl::string_view name) const {
    return values.count(std::string(name)) > 0;
  }
  std::optional<std::string> Get(absl::string_view name) const;
  bool Switch(absl::string_view name) const { return Has(name); }
};

class FlagParser {
 public:
  FlagParser(std::string program, std::string description)
      : program_(std::move(program)), description_(std::move(description)) {}

  // Starts a group of flags in the help text.
  void Group(std::string title);
  // A flag without a value (argparse's store_true).
  void AddSwitch(std::string name, std::string help,
                 std::string short_name = "");
  // A flag with a value; `choices` restricts it (empty: any value).
  void AddValue(std::string name, std::string metavar, std::string help,
                std::vector<std::string> choices = {},
                std::string short_name = "");

  // Parses `args` (without the program name). `InvalidArgument` for an
  // unknown flag, a missing value, or a value outside the choices, naming
  // the flag and the valid choices.
  [[nodiscard]] absl::StatusOr<ParsedFlags> Parse(
      const std::vector<std::string>& args) const;

  // The --help text.
  std::string Help(absl::string_view usage_tail) const;

 private:
  struct Spec {
    std::string name;
    std::string short_name;
    std::string metavar;  // Empty for switches.
    std::string help;
    std::vector<std::string> choices;
    std::string group;
  };
  const Spec* Find(absl::string_view token) const;

  std::string program_;
  std::string description_;
  std::string current_group_;
  std::vector<Spec> specs_;
};

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_FLAGS_H_
