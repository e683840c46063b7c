#include "trackers/mlflow/internal/validation.h"

#include <cstdint>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "re2/re2.h"

namespace accelerate::trackers_internal {
namespace {

bool IsAsciiNameCharacter(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
         c == ' ' || c == ':' || c == '/';
}

// Python's `re.match(r"^[/\w.\- :]*$", name)` on a str: `\w` is Unicode
// letters and digits (str.isalnum) and the underscore.
bool HasOnlyNameCharacters(absl::string_view name) {
  bool ascii = true;
  for (const char c : name) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x80) {
      ascii = false;
    } else if (!IsAsciiNameCharacter(byte)) {
      return false;
    }
  }
  if (ascii) return true;
  static const RE2* const kUnicodeName = new RE2(R"([/\pL\pN_.\- :]*)");
  return RE2::FullMatch(re2::StringPiece(name.data(), name.size()),
                        *kUnicodeName);
}

// `posixpath.normpath(name) == name`, not "." and not starting with "/" or
// "..": what MLflow's `path_not_unique` asks of a name.
bool IsNormalizedRelativePath(absl::string_view name) {
  if (name.empty() || name[0] == '/' || absl::StartsWith(name, "..")) {
    return false;
  }
  for (const absl::string_view segment : absl::StrSplit(name, '/')) {
    if (segment.empty() || segment == "." || segment == "..") return false;
  }
  return true;
}

}  // namespace

absl::Status CheckKey(absl::string_view kind, absl::string_view name) {
  if (!IsValidUtf8(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("mlflow: the ", kind, " name \"", absl::CEscape(name),
                     "\" is not valid UTF-8"));
  }
  if (!HasOnlyNameCharacters(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mlflow: the ", kind, " name \"", name,
        "\" is refused by MLflow: names may only contain letters, digits, "
        "underscores (_), dashes (-), periods (.), spaces ( ), colons (:) "
        "and slashes (/)"));
  }
  if (!IsNormalizedRelativePath(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mlflow: the ", kind, " name \"", name,
        "\" is refused by MLflow: names are used as relative file paths, so "
        "they may not be empty, start with \"/\" or \"..\", or hold an "
        "empty, \".\" or \"..\" segment"));
  }
  const size_t length = CountCharacters(name);
  if (length > kMaxKeyLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("mlflow: the ", kind, " name \"", name, "\" is ", length,
                     " characters long; MLflow takes at most ", kMaxKeyLength));
  }
  return absl::OkStatus();
}

bool IsValidRunId(absl::string_view run_id) {
  if (run_id.empty() || run_id.size() > 256) return false;
  for (size_t i = 0; i < run_id.size(); ++i) {
    const auto c = static_cast<unsigned char>(run_id[i]);
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '_' && c != '-'))) return false;
  }
  return true;
}

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    uint32_t code_point;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
      code_point = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      code_point = lead & 0x0F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      code_point = lead & 0x07;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    // Overlong forms, surrogates, beyond U+10FFFF.
    if ((length == 3 && code_point < 0x800) ||
        (length == 4 && (code_point < 0x10000 || code_point > 0x10FFFF)) ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += length;
  }
  return true;
}

size_t CountCharacters(absl::string_view text) {
  size_t count = 0;
  for (const char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++count;
  }
  return count;
}

}  // namespace accelerate::trackers_internal
