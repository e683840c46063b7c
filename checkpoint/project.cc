#include "checkpoint/project.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "checkpoint/folder.h"
#include "checkpoint/inspect.h"
#include "re2/re2.h"

namespace accelerate::checkpoint {
namespace {
namespace fs = std::filesystem;
}  // namespace

std::string CheckpointsFolder(const ProjectConfiguration& project) {
  return (fs::path(project.project_dir) / "checkpoints").string();
}

std::string AutomaticCheckpointFolder(const ProjectConfiguration& project) {
  return (fs::path(CheckpointsFolder(project)) /
          absl::StrCat("checkpoint_", project.iteration))
      .string();
}

std::optional<int64_t> CheckpointNumber(const std::string& name) {
  std::string digits;
  re2::StringPiece input(name);
  std::optional<int64_t> number;
  static const re2::RE2 kRun(R"((\d+))");
  while (re2::RE2::FindAndConsume(&input, kRun, &digits)) {
    int64_t value = 0;
    if (absl::SimpleAtoi(digits, &value)) number = value;
  }
  return number;
}

absl::StatusOr<std::vector<ListedCheckpoint>> ListCheckpoints(
    const std::string& checkpoints_dir) {
  std::vector<ListedCheckpoint> listed;
  std::error_code error;
  if (!fs::is_directory(checkpoints_dir, error)) return listed;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir, error)) {
    const std::string name = entry.path().filename();
    if (!entry.is_directory() || IsStagingName(name)) continue;
    if (name.size() > 4 && name.substr(name.size() - 4) == ".old") continue;
    std::optional<int64_t> number = CheckpointNumber(name);
    if (!number) continue;
    absl::StatusOr<CheckpointReport> report =
        InspectCheckpoint(entry.path().string());
    listed.push_back({entry.path().string(), *number,
                      report.ok() && report->complete});
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot list ", checkpoints_dir, ": ", error.message()));
  }
  std::sort(listed.begin(), listed.end(),
            [](const ListedCheckpoint& a, const ListedCheckpoint& b) {
              return a.number != b.number ? a.number < b.number
                                          : a.path < b.path;
            });
  return listed;
}

absl::StatusOr<std::string> LatestCheckpoint(
    const std::string& checkpoints_dir) {
  absl::StatusOr<std::vector<ListedCheckpoint>> listed =
      ListCheckpoints(checkpoints_dir);
  if (!listed.ok()) return listed.status();
  for (auto it = listed->rbegin(); it != listed->rend(); ++it) {
    if (it->complete) return it->path;
  }
  return absl::NotFoundError(absl::StrCat(
      "no complete checkpoint in ", checkpoints_dir,
      listed->empty() ? "" : " (only incomplete ones)"));
}

absl::StatusOr<std::vector<std::string>> PruneCheckpoints(
    const ProjectConfiguration& project) {
  std::vector<std::string> removed;
  if (!project.total_limit) return removed;
  absl::StatusOr<std::vector<ListedCheckpoint>> listed =
      ListCheckpoints(CheckpointsFolder(project));
  if (!listed.ok()) return listed.status();
  int complete = 0;
  for (const ListedCheckpoint& item : *listed) complete += item.complete;
  int to_remove = std::max(0, complete - std::max(1, *project.total_limit));
  int64_t newest_complete = -1;
  for (const ListedCheckpoint& item : *listed) {
    if (item.complete) newest_complete = item.number;
  }
  for (const ListedCheckpoint& item : *listed) {
    const bool drop = item.complete ? to_remove > 0
                                    : item.number < newest_complete;
    if (!drop) continue;
    if (absl::Status gone = RemoveTree(item.path); !gone.ok()) return gone;
    if (item.complete) --to_remove;
    removed.push_back(item.path);
  }
  return removed;
}

}  // namespace accelerate::checkpoint
