// The one command-line parser of every `accelerate` subcommand, with Python
// argparse's conventions as Accelerate's CLI uses them: `--name value` and
// `--name=value`, hyphens and underscores interchangeable in long names
// (`--num-processes`), short aliases (`-q`), switches without values,
// booleans with an optional `=VALUE`, lists (`--dtypes float32 int8`), and
// positional arguments, either declared (taken between the flags, as
// argparse does) or a rest (the first positional argument and everything
// after it handed over untouched: a program and its arguments).
//
// clang-format off
//   absl::StatusOr<ParsedFlags> ParseLaunch(
//       const std::vector<std::string>& args) {
//     FlagParser parser("accelerate launch", "Launches a program on ...");
//     parser.AddSwitch("cpu", "Run on CPU only.");
//     parser.AddValue("num_processes", "N", "Processes in total.");
//     parser.AddRest("PROGRAM [ARGS...]", "The program and its arguments.");
//     return parser.Parse(args);
//   }
// clang-format on
//
// Thread safety: a parser is immutable after setup.

#ifndef ACCELERATE_LAUNCH_FLAGS_H_
#define ACCELERATE_LAUNCH_FLAGS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accelerate::launch {

struct ParsedFlags {
  // Flag name (underscore form) -> value; switches map to "true", booleans
  // to "true" or "false".
  std::map<std::string, std::string> values;
  // List flag name (underscore form) -> its values, in order.
  std::map<std::string, std::vector<std::string>> lists;
  // The declared positional arguments in order, or the rest: the first
  // positional argument and everything after it.
  std::vector<std::string> positional;
  bool help = false;

  bool Has(absl::string_view name) const;
  std::optional<std::string> Get(absl::string_view name) const;
  // Whether the switch `name` was given.
  bool Switch(absl::string_view name) const { return Has(name); }
  // The values of the list flag `name`; empty when it was not given.
  std::vector<std::string> GetList(absl::string_view name) const;
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
  // A boolean: `--name` alone is true; `--name=VALUE` takes true/false,
  // yes/no, t/f, y/n or 1/0 in any case.
  void AddBool(std::string name, std::string help);
  // A flag with one or more values (argparse's nargs="+"): the arguments
  // after it up to the next one that starts with "-"; `--name=VALUE` gives
  // exactly one. `choices` restricts each value.
  void AddList(std::string name, std::string metavar, std::string help,
               std::vector<std::string> choices = {});
  // A required positional argument, after those declared before it; flags
  // may come before, between and after positional arguments.
  // REQUIRES: `AddRest` was not called.
  void AddPositional(std::string metavar, std::string help);
  // The first positional argument and everything after it, flags included,
  // go to `positional` untouched (optional: none may be given).
  // REQUIRES: `AddPositional` was not called. A parser with neither takes no
  // positional argument.
  void AddRest(std::string metavar, std::string help);

  // Parses `args` (without the program name). `InvalidArgument` for an
  // unknown flag, a missing value, a value outside the choices, or a missing
  // or unexpected positional argument, naming the flag or argument and, for
  // choices, the valid ones. With --help, positional arguments are not
  // checked.
  [[nodiscard]] absl::StatusOr<ParsedFlags> Parse(
      const std::vector<std::string>& args) const;

  // The --help text: usage line, description, positional arguments and the
  // flags by group.
  std::string Help() const;

  // `flags` as arguments for a program with a parser of its own: positional
  // arguments first, then each given flag in declaration order, switches as
  // `--name`, booleans as `--name=true|false`, values as `--name VALUE`,
  // lists as `--name V1 V2 ...`.
  std::vector<std::string> CanonicalArgs(const ParsedFlags& flags) const;

 private:
  enum class Kind { kSwitch, kBool, kValue, kList };
  struct Spec {
    std::string name;
    std::string short_name;
    std::string metavar;  // Empty for switches and booleans.
    std::string help;
    std::vector<std::string> choices;
    std::string group;
    Kind kind = Kind::kSwitch;
  };
  struct Positional {
    std::string metavar;
    std::string help;
  };
  const Spec* Find(absl::string_view token) const;
  std::string Usage() const;

  std::string program_;
  std::string description_;
  std::string current_group_;
  std::vector<Spec> specs_;
  std::vector<Positional> positionals_;
  std::optional<Positional> rest_;
};

// Whether `value` is one of `valid`.
bool IsOneOf(absl::string_view value, const std::vector<std::string>& valid);

// `InvalidArgument`: `what: "value" is not one of a, b, c`.
absl::Status NotOneOfError(absl::string_view what, absl::string_view value,
                           const std::vector<std::string>& valid);

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_FLAGS_H_
