#include "examples/tracking_flags.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "trackers/trackers.h"

namespace accelerate::examples {

absl::Status ApplyTrackingFlags(const TrackingFlags& flags,
                                AcceleratorOptions& options) {
  if (!flags.with_tracking) return absl::OkStatus();
  auto names = trackers::ParseLogWith(flags.report_to);
  if (!names.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--report_to: ", names.status().message()));
  }
  if (names->empty()) {
    return absl::InvalidArgumentError(
        "--with_tracking needs --report_to to name a tracker");
  }
  options.trackers.log_with = *std::move(names);
  if (!flags.project_dir.empty()) {
    options.project_config.project_dir = flags.project_dir;
  }
  return absl::OkStatus();
}

}  // namespace accelerate::examples
