#include "launch/flags.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace accelerate::launch {
namespace {

std::string Normalize(absl::string_view name) {
  return absl::StrReplaceAll(name, {{"-", "_"}});
}

// Word-wraps `text` to `width` columns, indenting continuation lines.
std::string Wrap(absl::string_view text, size_t indent, size_t width) {
  std::string out;
  size_t column = indent;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (column + word.size() + 1 > width && column > indent) {
      absl::StrAppend(&out, "\n", std::string(indent, ' '));
      column = indent;
    } else if (column > indent) {
      out += ' ';
      ++column;
    }
    absl::StrAppend(&out, word);
    column += word.size();
  }
  return out;
}

}  // namespace

std::optional<std::string> ParsedFlags::Get(absl::string_view name) const {
  auto it = values.find(std::string(name));
  if (it == values.end()) return std::nullopt;
  return it->second;
}

void FlagParser::Group(std::string title) { current_group_ = std::move(title); }

void FlagParser::AddSwitch(std::string name, std::string help,
                           std::string short_name) {
  specs_.push_back({std::move(name), std::move(short_name), "",
                    std::move(help), {}, current_group_});
}

void FlagParser::AddValue(std::string name, std::string metavar,
                          std::string help, std::vector<std::string> choices,
                          std::string short_name) {
  specs_.push_back({std::move(name), std::move(short_name),
                    std::move(metavar), std::move(help), std::move(choices),
                    current_group_});
}

const FlagParser::Spec* FlagParser::Find(absl::string_view token) const {
  for (const Spec& spec : specs_) {
    if (absl::StartsWith(token, "--") &&
        Normalize(token.substr(2)) == spec.name) {
      return &spec;
    }
    if (!spec.short_name.empty() && token == absl::StrCat("-", spec.short_name)) {
      return &spec;
    }
  }
  return nullptr;
}

absl::StatusOr<ParsedFlags> FlagParser::Parse(
    const std::vector<std::string>& args) const {
  ParsedFlags parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      parsed.help = true;
      continue;
    }
    if (arg == "--") {
      parsed.positional.assign(args.begin() + i + 1, args.end());
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      parsed.positional.assign(args.begin() + i, args.end());
      break;
    }
    std::string token = arg;
    std::optional<std::string> inline_value;
    if (const size_t eq = arg.find('='); absl::StartsWith(arg, "--") &&
                                         eq != std::string::npos) {
      token = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    const Spec* spec = Find(token);
    if (spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          program_, ": unknown flag ", token, "; see ", program_, " --help"));
    }
    if (spec->metavar.empty()) {
      if (inline_value.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat(
            program_, ": --", spec->name, " takes no value (got \"",
            *inline_value, "\")"));
      }
      parsed.values[spec->name] = "true";
      continue;
    }
    std::string value;
    if (inline_value.has_value()) {
      value = *inline_value;
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          program_, ": --", spec->name, " needs a value (", spec->metavar,
          ")"));
    }
    if (!spec->choices.empty() &&
        std::find(spec->choices.begin(), spec->choices.end(), value) ==
            spec->choices.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          program_, ": --", spec->name, " \"", value, "\" is not one of ",
          absl::StrJoin(spec->choices, ", ")));
    }
    parsed.values[spec->name] = value;
  }
  return parsed;
}

std::string FlagParser::Help(absl::string_view usage_tail) const {
  std::string out = absl::StrCat("usage: ", program_, " [flags]",
                                 usage_tail.empty() ? "" : " ", usage_tail,
                                 "\n\n", Wrap(description_, 0, 80), "\n");
  std::string group = "\x01";
  for (const Spec& spec : specs_) {
    if (spec.group != group) {
      group = spec.group;
      absl::StrAppend(&out, "\n", group.empty() ? "flags" : group, ":\n");
    }
    std::string left = absl::StrCat(
        "  ", spec.short_name.empty() ? "" : absl::StrCat("-", spec.short_name, ", "),
        "--", spec.name);
    if (!spec.metavar.empty()) {
      absl::StrAppend(&left, " ",
                      spec.choices.empty()
                          ? spec.metavar
                          : absl::StrCat("{", absl::StrJoin(spec.choices, ","),
                                         "}"));
    }
    if (left.size() < 30) {
      left.resize(30, ' ');
    } else {
      absl::StrAppend(&left, "\n", std::string(30, ' '));
    }
    absl::StrAppend(&out, left, Wrap(spec.help, 30, 80), "\n");
  }
  absl::StrAppend(&out, "\n  -h, --help                  Show this help.\n");
  return out;
}

}  // namespace accelerate::launch
