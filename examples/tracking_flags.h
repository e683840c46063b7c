// Accelerate's example flags for experiment tracking, shared by the
// examples: `--with_tracking` switches trackers on, `--report_to` names
// them (`tensorboard`, `mlflow`, `jsonl`, `csv`, `all`, or several
// separated by commas), `--project_dir` is where their logs go (and
// automatic checkpoints).
//
// clang-format off
//   absl::Status Example(accelerate::AcceleratorOptions& options) {
//     return ApplyTrackingFlags({.with_tracking = true, .report_to = "jsonl",
//                                .project_dir = "/tmp/logs"},
//                               options);
//   }
// clang-format on
//
// Thread safety: pure functions.

#ifndef ACCELERATE_EXAMPLES_TRACKING_FLAGS_H_
#define ACCELERATE_EXAMPLES_TRACKING_FLAGS_H_

#include <string>

#include "absl/status/status.h"
#include "accelerator/accelerator_options.h"

namespace accelerate::examples {

struct TrackingFlags {
  bool with_tracking = false;
  // Accelerate's examples default to "all".
  std::string report_to = "all";
  // Accelerate's examples default to "logs".
  std::string project_dir = "logs";
};

// With `with_tracking`, sets `options.trackers.log_with` from `report_to`
// and the project folder from `project_dir`; without it, nothing.
// InvalidArgument names an unknown tracker.
[[nodiscard]] absl::Status ApplyTrackingFlags(const TrackingFlags& flags,
                                              AcceleratorOptions& options);

}  // namespace accelerate::examples

#endif  // ACCELERATE_EXAMPLES_TRACKING_FLAGS_H_
