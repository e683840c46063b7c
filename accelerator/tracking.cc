// The Accelerator's trackers: InitTrackers, Log, EndTraining.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "accelerator/accelerator.h"
#include "state/environment.h"
#include "trackers/trackers.h"

namespace accelerate {

absl::Status Accelerator::InitTrackers(const std::string& project_name,
                                       const trackers::Config& config) {
  if (trackers_ != nullptr) {
    return absl::FailedPreconditionError(
        "InitTrackers was already called for this Accelerator");
  }
  auto started = trackers::Trackers::Start(
      options_.trackers,
      {.project_name = project_name,
       .logging_dir = options_.project_config.logging_dir},
      config, state_.get(),
      // Resolved with the Accelerator's environment (Create).
      state::MapEnvironment());
  if (!started.ok()) return started.status();
  trackers_ = *std::move(started);
  return absl::OkStatus();
}

absl::Status Accelerator::Log(const trackers::LogValues& values,
                              std::optional<int64_t> step) {
  if (trackers_ != nullptr) return trackers_->Log(values, step);
  if (options_.trackers.log_with.empty() && options_.trackers.custom.empty()) {
    return absl::OkStatus();  // No trackers asked for: nothing to do.
  }
  return absl::FailedPreconditionError(
      "trackers were asked for (log_with) but InitTrackers was not called "
      "before Log");
}

absl::Status Accelerator::EndTraining() {
  absl::Status finished =
      trackers_ == nullptr ? absl::OkStatus() : trackers_->Finish();
  absl::Status waited = WaitForEveryone();
  return finished.ok() ? waited : finished;
}

}  // namespace accelerate
