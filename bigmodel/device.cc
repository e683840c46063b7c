// Parsing and printing devices (see device.h).

#include "bigmodel/device.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "state/logging.h"

namespace accelerate::bigmodel {

absl::StatusOr<Device> Device::Parse(absl::string_view text) {
  if (text == "cpu") return Cpu();
  if (text == "disk") return Disk();
  int index = 0;
  // Digits only: SimpleAtoi alone would take "+1" and " 1".
  if (!text.empty() &&
      std::all_of(text.begin(), text.end(), absl::ascii_isdigit) &&
      absl::SimpleAtoi(text, &index)) {
    return Gpu(index);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "device \"", text, "\" is not a GPU index, \"cpu\" or \"disk\""));
}

Device::Device(const char* spelling) : Device(Kind::kCpu, 0) {
  ACCELERATE_CHECK(spelling != nullptr) << "a null device name";
  absl::StatusOr<Device> parsed = Parse(spelling);
  ACCELERATE_CHECK_OK(parsed.status());
  *this = *parsed;
}

int Device::gpu_index() const {
  ACCELERATE_CHECK(is_gpu()) << ToString() << " is not a GPU";
  return index_;
}

std::string Device::ToString() const {
  switch (kind_) {
    case Kind::kGpu:
      return absl::StrCat(index_);
    case Kind::kCpu:
      return "cpu";
    case Kind::kDisk:
      return "disk";
  }
  return "?";
}

}  // namespace accelerate::bigmodel
