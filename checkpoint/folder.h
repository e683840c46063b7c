// Durable file-system steps for writing checkpoints atomically: files synced
// to disk before they count, a staging folder that replaces the target in
// one rename (an atomic exchange where the file system has one), and the
// staging folder's name every process derives alike. No LibTorch.
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status Example(const std::string& target) {
//     const std::string staging = StagingFolder(target);
//     ACCELERATE_RETURN_IF_ERROR(RecreateFolder(staging));
//     ACCELERATE_RETURN_IF_ERROR(WriteFileSynced(staging + "/notes.txt", "hello"));
//     return CommitFolder(staging, target);
//   }
// clang-format on
//
// Thread safety: the functions are safe to call concurrently on different
// paths.

#ifndef ACCELERATE_CHECKPOINT_FOLDER_H_
#define ACCELERATE_CHECKPOINT_FOLDER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accelerate::checkpoint {

// The folder a checkpoint bound for `target` is written into before it is
// committed: `<parent>/.<name>.partial`. Hidden, so Accelerate's listing of
// `checkpoints/` never counts it (its checkpoint number is still found).
std::string StagingFolder(const std::string& target);

// Whether `name` (a folder name, no path) is a staging folder.
bool IsStagingName(absl::string_view name);

// Removes `path` and everything under it if it exists, then creates it (and
// its parents).
[[nodiscard]] absl::Status RecreateFolder(const std::string& path);

// Removes `path` and everything under it; nothing if it does not exist.
[[nodiscard]] absl::Status RemoveTree(const std::string& path);

// Writes `contents` to `path` (replacing it) and syncs it to disk.
[[nodiscard]] absl::Status WriteFileSynced(const std::string& path,
                                           absl::string_view contents);

// Syncs the file or folder `path` to disk (a folder: its entries).
[[nodiscard]] absl::Status SyncPath(const std::string& path);

// The size of the regular file `path`; `NotFound` when missing.
[[nodiscard]] absl::StatusOr<uint64_t> FileSize(const std::string& path);

// Makes the folder `staging` the folder `target` in one step: an atomic
// exchange when `target` exists (the old folder is then removed), a rename
// otherwise; the parent is synced. A crash leaves either the old or the new
// folder at `target`, never neither (on a file system without exchange, the
// old one is first renamed to `<target>.old`, which `RecoverFolder` puts
// back).
[[nodiscard]] absl::Status CommitFolder(const std::string& staging,
                                        const std::string& target);

// Undoes a commit interrupted between the two renames of the fallback path:
// `<target>.old` back to `target` when `target` is missing.
[[nodiscard]] absl::Status RecoverFolder(const std::string& target);

}  // namespace accelerate::checkpoint

#endif  // ACCELERATE_CHECKPOINT_FOLDER_H_
