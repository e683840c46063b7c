#include "checkpoint/folder.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "checkpoint/internal/direct_writer.h"
#include "checkpoint/internal/errno_status.h"

namespace accelerate::checkpoint {
namespace {

namespace fs = std::filesystem;

// The status of the system call that just failed (errno).
absl::Status Errno(absl::string_view what, const std::string& path) {
  return checkpoint_internal::ErrnoStatus(errno, what, path);
}

absl::Status FromErrorCode(absl::string_view what, const std::string& path,
                           const std::error_code& error) {
  return checkpoint_internal::ErrnoStatus(error.value(), what, path);
}

// `path` without "." parts or a trailing slash.
fs::path Clean(const std::string& path) {
  fs::path clean = fs::path(path).lexically_normal();
  if (clean.filename().empty() && clean.has_parent_path()) {
    clean = clean.parent_path();
  }
  return clean;
}

std::string Parent(const std::string& path) {
  std::string parent = Clean(path).parent_path();
  return parent.empty() ? "." : parent;
}

}  // namespace

std::string StagingFolder(const std::string& target) {
  return (fs::path(Parent(target)) /
          absl::StrCat(".", Clean(target).filename().string(), ".partial"))
      .string();
}

bool IsStagingName(absl::string_view name) {
  return absl::StartsWith(name, ".") && absl::EndsWith(name, ".partial");
}

absl::Status RemoveTree(const std::string& path) {
  std::error_code error;
  fs::remove_all(path, error);
  if (error) return FromErrorCode("cannot remove", path, error);
  return absl::OkStatus();
}

absl::Status RecreateFolder(const std::string& path) {
  if (absl::Status removed = RemoveTree(path); !removed.ok()) return removed;
  std::error_code error;
  fs::create_directories(path, error);
  if (error) return FromErrorCode("cannot create folder", path, error);
  return absl::OkStatus();
}

absl::Status WriteFileSynced(const std::string& path,
                             absl::string_view contents) {
  absl::StatusOr<std::unique_ptr<checkpoint_internal::DirectWriter>> file =
      checkpoint_internal::DirectWriter::Create(path, /*direct=*/false);
  if (!file.ok()) return file.status();
  if (absl::Status appended = (*file)->Append(contents); !appended.ok()) {
    (void)(*file)->Close();
    return appended;
  }
  return (*file)->Close();
}

absl::Status SyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open", path);
  // EINVAL: a file system that cannot sync folders (nothing to do there).
  if (::fsync(fd) != 0 && errno != EINVAL) {
    absl::Status status = Errno("cannot sync", path);
    ::close(fd);
    return status;
  }
  ::close(fd);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FileSize(const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) return Errno("cannot stat", path);
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a regular file"));
  }
  return static_cast<uint64_t>(info.st_size);
}

absl::Status CommitFolder(const std::string& staging,
                          const std::string& target) {
  const std::string parent = Parent(target);
  if (absl::Status synced = SyncPath(staging); !synced.ok()) return synced;
  struct stat info;
  const bool exists = ::stat(target.c_str(), &info) == 0;
  if (!exists) {
    if (::rename(staging.c_str(), target.c_str()) != 0) {
      return Errno(absl::StrCat("cannot rename ", staging, " to"), target);
    }
    return SyncPath(parent);
  }
  if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(),
                  RENAME_EXCHANGE) == 0) {
    if (absl::Status synced = SyncPath(parent); !synced.ok()) return synced;
    // The old checkpoint now sits at the staging name.
    return RemoveTree(staging);
  }
  if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
    return Errno(absl::StrCat("cannot exchange ", staging, " with"), target);
  }
  const std::string old = target + ".old";
  if (absl::Status removed = RemoveTree(old); !removed.ok()) return removed;
  if (::rename(target.c_str(), old.c_str()) != 0) {
    return Errno(absl::StrCat("cannot rename ", target, " to"), old);
  }
  if (::rename(staging.c_str(), target.c_str()) != 0) {
    return Errno(absl::StrCat("cannot rename ", staging, " to"), target);
  }
  if (absl::Status synced = SyncPath(parent); !synced.ok()) return synced;
  return RemoveTree(old);
}

absl::Status RecoverFolder(const std::string& target) {
  const std::string old = target + ".old";
  struct stat info;
  if (::stat(target.c_str(), &info) == 0 || ::stat(old.c_str(), &info) != 0) {
    return absl::OkStatus();
  }
  if (::rename(old.c_str(), target.c_str()) != 0) {
    return Errno(absl::StrCat("cannot rename ", old, " back to"), target);
  }
  return SyncPath(Parent(target));
}

}  // namespace accelerate::checkpoint
