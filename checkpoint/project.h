// Accelerate's `ProjectConfiguration` and its automatic checkpoint naming:
// `<project_dir>/checkpoints/checkpoint_<iteration>`, the latest found by
// the last number in a folder's name (as Accelerate sorts them), the oldest
// removed beyond `total_limit`. Unlike Accelerate, only complete
// checkpoints count: a folder cut short by a crash is never "the latest"
// and never makes a complete one go. No LibTorch.
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status Example(ProjectConfiguration& project) {
//     const std::string next = AutomaticCheckpointFolder(project);
//     // ... a checkpoint is committed at `next` ...
//     project.iteration += 1;
//     return PruneCheckpoints(project).status();
//   }
// clang-format on
//
// Thread safety: the functions are safe to call concurrently; pruning
// should run on one process.

#ifndef ACCELERATE_CHECKPOINT_PROJECT_H_
#define ACCELERATE_CHECKPOINT_PROJECT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace accelerate::checkpoint {

// Accelerate's `ProjectConfiguration`, with its defaults.
struct ProjectConfiguration {
  // Where checkpoints (and trackers' logs) go. Default none.
  std::string project_dir;
  // Logs of local trackers; default `project_dir`.
  std::string logging_dir;
  // `SaveState()` without a folder writes
  // `<project_dir>/checkpoints/checkpoint_<iteration>`. Default false.
  bool automatic_checkpoint_naming = false;
  // Complete checkpoints kept under automatic naming (the oldest go after
  // a new one is committed). Default: all.
  std::optional<int> total_limit;
  // The number of the next automatic checkpoint. Default 0.
  int64_t iteration = 0;
  // Every node's local main process saves (file systems not shared across
  // machines). Default false; the Accelerator refuses true (its checkpoints
  // need one shared file system).
  bool save_on_each_node = false;
};

// `<project_dir>/checkpoints`.
std::string CheckpointsFolder(const ProjectConfiguration& project);
// `<project_dir>/checkpoints/checkpoint_<iteration>`.
std::string AutomaticCheckpointFolder(const ProjectConfiguration& project);

// The last run of digits in `name` (Accelerate's sort key); nullopt for a
// name without one.
std::optional<int64_t> CheckpointNumber(const std::string& name);

struct ListedCheckpoint {
  std::string path;
  int64_t number = 0;
  bool complete = false;
};

// The checkpoint folders in `checkpoints_dir`, by number (staging folders
// left by a crash are skipped); an empty list when the folder is missing.
[[nodiscard]] absl::StatusOr<std::vector<ListedCheckpoint>> ListCheckpoints(
    const std::string& checkpoints_dir);

// The complete checkpoint with the highest number; `NotFound` naming the
// folder when there is none.
[[nodiscard]] absl::StatusOr<std::string> LatestCheckpoint(
    const std::string& checkpoints_dir);

// Removes the oldest checkpoints beyond `total_limit` complete ones
// (incomplete folders older than the newest complete one go too); returns
// what it removed. Nothing without a limit.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> PruneCheckpoints(
    const ProjectConfiguration& project);

}  // namespace accelerate::checkpoint

#endif  // ACCELERATE_CHECKPOINT_PROJECT_H_
