#include "examples/checkpointing_flags.h"

#include <filesystem>
#include <optional>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "checkpoint/inspect.h"

namespace accelerate::examples {

absl::StatusOr<CheckpointingSteps> ParseCheckpointingSteps(
    const std::string& value) {
  CheckpointingSteps steps;
  if (value.empty()) return steps;
  if (value == "epoch") {
    steps.each_epoch = true;
    return steps;
  }
  if (!absl::SimpleAtoi(value, &steps.every) || steps.every < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--checkpointing_steps \"", value,
        "\" is neither \"epoch\" nor a positive number of steps"));
  }
  return steps;
}

absl::StatusOr<std::string> ResolveResumeFolder(const std::string& value,
                                                const std::string& output_dir) {
  namespace fs = std::filesystem;
  if (value != "latest") return value;
  const std::string dir = output_dir.empty() ? "." : output_dir;
  std::optional<fs::file_time_type> newest;
  std::string latest;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    if (!entry.is_directory()) continue;
    absl::StatusOr<checkpoint::CheckpointReport> report =
        checkpoint::InspectCheckpoint(entry.path().string());
    if (!report.ok() || !report->complete) continue;
    const fs::file_time_type written = fs::last_write_time(entry.path(), error);
    if (!newest || written > *newest) {
      newest = written;
      latest = entry.path().string();
    }
  }
  if (latest.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "--resume_from_checkpoint latest: no complete checkpoint in ", dir));
  }
  return latest;
}

}  // namespace accelerate::examples
