#include "launch/flags.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace accelerate::launch {
namespace {

constexpr size_t kHelpColumn = 30;
constexpr size_t kHelpWidth = 80;

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

// One help entry: `left` padded to the help column, then the wrapped help.
std::string HelpLine(std::string left, absl::string_view help) {
  if (left.size() < kHelpColumn) {
    left.resize(kHelpColumn, ' ');
  } else {
    absl::StrAppend(&left, "\n", std::string(kHelpColumn, ' '));
  }
  return absl::StrCat(left, Wrap(help, kHelpColumn, kHelpWidth), "\n");
}

bool LooksLikeFlag(absl::string_view arg) {
  return arg.size() >= 2 && arg[0] == '-';
}

}  // namespace

bool IsOneOf(absl::string_view value, const std::vector<std::string>& valid) {
  return std::find(valid.begin(), valid.end(), value) != valid.end();
}

absl::Status NotOneOfError(absl::string_view what, absl::string_view value,
                           const std::vector<std::string>& valid) {
  return absl::InvalidArgumentError(absl::StrCat(
      what, ": \"", value, "\" is not one of ", absl::StrJoin(valid, ", ")));
}

bool ParsedFlags::Has(absl::string_view name) const {
  const std::string key(name);
  return values.count(key) > 0 || lists.count(key) > 0;
}

std::optional<std::string> ParsedFlags::Get(absl::string_view name) const {
  auto it = values.find(std::string(name));
  if (it == values.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> ParsedFlags::GetList(absl::string_view name) const {
  auto it = lists.find(std::string(name));
  if (it == lists.end()) return {};
  return it->second;
}

void FlagParser::Group(std::string title) { current_group_ = std::move(title); }

void FlagParser::AddSwitch(std::string name, std::string help,
                           std::string short_name) {
  specs_.push_back({std::move(name), std::move(short_name), "",
                    std::move(help), {}, current_group_, Kind::kSwitch});
}

void FlagParser::AddValue(std::string name, std::string metavar,
                          std::string help, std::vector<std::string> choices,
                          std::string short_name) {
  specs_.push_back({std::move(name), std::move(short_name),
                    std::move(metavar), std::move(help), std::move(choices),
                    current_group_, Kind::kValue});
}

void FlagParser::AddBool(std::string name, std::string help) {
  specs_.push_back({std::move(name), "", "", std::move(help), {},
                    current_group_, Kind::kBool});
}

void FlagParser::AddList(std::string name, std::string metavar,
                         std::string help, std::vector<std::string> choices) {
  specs_.push_back({std::move(name), "", std::move(metavar), std::move(help),
                    std::move(choices), current_group_, Kind::kList});
}

void FlagParser::AddPositional(std::string metavar, std::string help) {
  positionals_.push_back({std::move(metavar), std::move(help)});
}

void FlagParser::AddRest(std::string metavar, std::string help) {
  rest_ = Positional{std::move(metavar), std::move(help)};
}

const FlagParser::Spec* FlagParser::Find(absl::string_view token) const {
  for (const Spec& spec : specs_) {
    if (absl::StartsWith(token, "--") &&
        Normalize(token.substr(2)) == spec.name) {
      return &spec;
    }
    if (!spec.short_name.empty() &&
        token == absl::StrCat("-", spec.short_name)) {
      return &spec;
    }
  }
  return nullptr;
}

absl::StatusOr<ParsedFlags> FlagParser::Parse(
    const std::vector<std::string>& args) const {
  ParsedFlags parsed;
  const auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(program_, ": ", parts...));
  };
  const auto check_choice = [&](const Spec& spec,
                                const std::string& value) -> absl::Status {
    if (spec.choices.empty() || IsOneOf(value, spec.choices)) {
      return absl::OkStatus();
    }
    return bad("--", spec.name, " \"", value, "\" is not one of ",
               absl::StrJoin(spec.choices, ", "));
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      parsed.help = true;
      continue;
    }
    if (arg == "--") {
      parsed.positional.insert(parsed.positional.end(), args.begin() + i + 1,
                               args.end());
      break;
    }
    if (!LooksLikeFlag(arg)) {
      if (rest_.has_value()) {
        parsed.positional.assign(args.begin() + i, args.end());
        break;
      }
      parsed.positional.push_back(arg);
      continue;
    }
    std::string token = arg;
    std::optional<std::string> inline_value;
    if (const size_t eq = arg.find('=');
        absl::StartsWith(arg, "--") && eq != std::string::npos) {
      token = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    const Spec* spec = Find(token);
    if (spec == nullptr) {
      return bad("unknown flag ", token, "; see ", program_, " --help");
    }
    switch (spec->kind) {
      case Kind::kSwitch:
        if (inline_value.has_value()) {
          return bad("--", spec->name, " takes no value (got \"",
                     *inline_value, "\")");
        }
        parsed.values[spec->name] = "true";
        break;
      case Kind::kBool: {
        bool value = true;
        if (inline_value.has_value() &&
            !absl::SimpleAtob(*inline_value, &value)) {
          return bad("--", spec->name, " \"", *inline_value,
                     "\" is not a boolean (true or false)");
        }
        parsed.values[spec->name] = value ? "true" : "false";
        break;
      }
      case Kind::kValue: {
        std::string value;
        if (inline_value.has_value()) {
          value = *inline_value;
        } else if (i + 1 < args.size()) {
          value = args[++i];
        } else {
          return bad("--", spec->name, " needs a value (", spec->metavar, ")");
        }
        if (absl::Status valid = check_choice(*spec, value); !valid.ok()) {
          return valid;
        }
        parsed.values[spec->name] = value;
        break;
      }
      case Kind::kList: {
        std::vector<std::string> values;
        if (inline_value.has_value()) {
          values.push_back(*inline_value);
        } else {
          while (i + 1 < args.size() && !LooksLikeFlag(args[i + 1])) {
            values.push_back(args[++i]);
          }
        }
        if (values.empty()) {
          return bad("--", spec->name, " needs at least one value (",
                     spec->metavar, ")");
        }
        for (const std::string& value : values) {
          if (absl::Status valid = check_choice(*spec, value); !valid.ok()) {
            return valid;
          }
        }
        parsed.lists[spec->name] = std::move(values);
        break;
      }
    }
  }
  if (parsed.help || rest_.has_value()) return parsed;
  if (parsed.positional.size() > positionals_.size()) {
    return bad("unexpected argument \"", parsed.positional[positionals_.size()],
               "\"; see ", program_, " --help");
  }
  if (parsed.positional.size() < positionals_.size()) {
    return bad("missing ", positionals_[parsed.positional.size()].metavar,
               "; see ", program_, " --help");
  }
  return parsed;
}

std::string FlagParser::Usage() const {
  std::string usage = absl::StrCat("usage: ", program_, " [flags]");
  for (const Positional& positional : positionals_) {
    absl::StrAppend(&usage, " ", positional.metavar);
  }
  if (rest_.has_value()) absl::StrAppend(&usage, " ", rest_->metavar);
  return usage;
}

std::string FlagParser::Help() const {
  std::string out =
      absl::StrCat(Usage(), "\n\n", Wrap(description_, 0, kHelpWidth), "\n");
  std::vector<Positional> positionals = positionals_;
  if (rest_.has_value()) positionals.push_back(*rest_);
  if (!positionals.empty()) absl::StrAppend(&out, "\npositional arguments:\n");
  for (const Positional& positional : positionals) {
    absl::StrAppend(&out,
                    HelpLine(absl::StrCat("  ", positional.metavar),
                             positional.help));
  }
  std::string group = "\x01";
  for (const Spec& spec : specs_) {
    if (spec.group != group) {
      group = spec.group;
      absl::StrAppend(&out, "\n", group.empty() ? "flags" : group, ":\n");
    }
    std::string left = absl::StrCat(
        "  ",
        spec.short_name.empty() ? "" : absl::StrCat("-", spec.short_name, ", "),
        "--", spec.name);
    const std::string value =
        spec.choices.empty()
            ? spec.metavar
            : absl::StrCat("{", absl::StrJoin(spec.choices, ","), "}");
    switch (spec.kind) {
      case Kind::kSwitch:
        break;
      case Kind::kBool:
        absl::StrAppend(&left, "[=BOOL]");
        break;
      case Kind::kValue:
        absl::StrAppend(&left, " ", value);
        break;
      case Kind::kList:
        absl::StrAppend(&left, " ", value, " [...]");
        break;
    }
    absl::StrAppend(&out, HelpLine(std::move(left), spec.help));
  }
  absl::StrAppend(&out, "\n", HelpLine("  -h, --help", "Show this help."));
  return out;
}

std::vector<std::string> FlagParser::CanonicalArgs(
    const ParsedFlags& flags) const {
  std::vector<std::string> args = flags.positional;
  for (const Spec& spec : specs_) {
    if (!flags.Has(spec.name)) continue;
    const std::string flag = absl::StrCat("--", spec.name);
    switch (spec.kind) {
      case Kind::kSwitch:
        args.push_back(flag);
        break;
      case Kind::kBool:
        args.push_back(absl::StrCat(flag, "=", *flags.Get(spec.name)));
        break;
      case Kind::kValue:
        args.push_back(flag);
        args.push_back(*flags.Get(spec.name));
        break;
      case Kind::kList:
        args.push_back(flag);
        for (const std::string& value : flags.GetList(spec.name)) {
          args.push_back(value);
        }
        break;
    }
  }
  return args;
}

}  // namespace accelerate::launch
