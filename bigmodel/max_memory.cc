// Parsing memory budgets (see max_memory.h).

#include "bigmodel/max_memory.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace accelerate::bigmodel {
namespace {

// Bytes in `text` ("10GiB", "30GB", "512"); nullopt when it is not a size
// below 2^63.
std::optional<int64_t> ParseSize(absl::string_view text) {
  static const auto* const kUnits =
      new std::vector<std::pair<std::string, double>>{
          {"TIB", 1024.0 * 1024 * 1024 * 1024},
          {"GIB", 1024.0 * 1024 * 1024},
          {"MIB", 1024.0 * 1024},
          {"KIB", 1024.0},
          {"TB", 1e12},
          {"GB", 1e9},
          {"MB", 1e6},
          {"KB", 1e3},
          {"B", 1}};
  std::string size(text);
  double multiplier = 1;
  const std::string upper = absl::AsciiStrToUpper(size);
  for (const auto& [unit, factor] : *kUnits) {
    if (absl::EndsWith(upper, unit)) {
      multiplier = factor;
      // As Accelerate: "10Gb" (a lowercase b after a decimal unit) is bits.
      if (unit.size() == 2 && absl::EndsWith(size, "b")) multiplier /= 8;
      size = size.substr(0, size.size() - unit.size());
      break;
    }
  }
  double value = 0;
  if (!absl::SimpleAtod(size, &value) || !std::isfinite(value) || value < 0 ||
      value * multiplier >= 9.2e18) {
    return std::nullopt;
  }
  return static_cast<int64_t>(value * multiplier);
}

}  // namespace

absl::StatusOr<MaxMemory> ParseMaxMemory(const std::string& text) {
  MaxMemory memory;
  for (absl::string_view entry : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> kv =
        absl::StrSplit(entry, absl::MaxSplits('=', 1));
    if (kv.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("max_memory entry \"", entry, "\" is not DEVICE=SIZE"));
    }
    absl::StatusOr<Device> device =
        Device::Parse(absl::StripAsciiWhitespace(kv[0]));
    if (!device.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("max_memory: ", device.status().message()));
    }
    for (const auto& [seen, bytes] : memory) {
      if (seen == *device) {
        return absl::InvalidArgumentError(
            absl::StrCat("max_memory names device ", device->ToString(),
                         " twice (\"", entry, "\")"));
      }
    }
    const absl::string_view size = absl::StripAsciiWhitespace(kv[1]);
    const std::optional<int64_t> bytes = ParseSize(size);
    if (!bytes.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "max_memory size \"", kv[1], "\" for ", device->ToString(),
          " is not a size (bytes, or with KB/MB/GB/TB or KiB/MiB/GiB/TiB)"));
    }
    memory.emplace_back(*device, *bytes);
  }
  if (memory.empty()) {
    return absl::InvalidArgumentError("max_memory is empty");
  }
  // GPUs first (by index), then cpu, then disk, as Accelerate orders them.
  std::stable_sort(
      memory.begin(), memory.end(),
      [](const auto& a, const auto& b) { return a.first < b.first; });
  return memory;
}

}  // namespace accelerate::bigmodel
