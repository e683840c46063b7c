#include "precision/mixed_precision.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace accelerate::precision {
namespace {

constexpr MixedPrecision kAll[] = {MixedPrecision::kNo, MixedPrecision::kFp16,
                                   MixedPrecision::kBf16,
                                   MixedPrecision::kFp8};

}  // namespace

absl::StatusOr<MixedPrecision> ParseMixedPrecision(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "false") return MixedPrecision::kNo;
  for (MixedPrecision precision : kAll) {
    if (lower == MixedPrecisionName(precision)) return precision;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("mixed_precision: \"", text, "\" is not one of ",
                   absl::StrJoin(MixedPrecisionNames(), ", ")));
}

absl::string_view MixedPrecisionName(MixedPrecision precision) {
  switch (precision) {
    case MixedPrecision::kNo:
      return "no";
    case MixedPrecision::kFp16:
      return "fp16";
    case MixedPrecision::kBf16:
      return "bf16";
    case MixedPrecision::kFp8:
      return "fp8";
  }
  return "no";
}

const std::vector<std::string>& MixedPrecisionNames() {
  static const auto* const kNames = [] {
    auto* names = new std::vector<std::string>;
    for (MixedPrecision precision : kAll) {
      names->emplace_back(MixedPrecisionName(precision));
    }
    return names;
  }();
  return *kNames;
}

}  // namespace accelerate::precision
