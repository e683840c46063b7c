#include "trackers/internal/buffered_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace accelerate::trackers_internal {
namespace {

absl::Status ErrnoError(int error, const std::string& what) {
  return absl::Status(absl::ErrnoToStatusCode(error),
                      absl::StrCat(what, ": ", std::strerror(error)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BufferedFile>> BufferedFile::Open(
    const std::string& path, const BufferedFileOptions& options) {
  const std::filesystem::path parent =
      std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code error;
    std::filesystem::create_directories(parent, error);
    if (error) {
      return ErrnoError(error.value(),
                        absl::StrCat("cannot create the log folder ",
                                     parent.string()));
    }
  }
  const int fd = ::open(path.c_str(),
                        O_WRONLY | O_CREAT | O_CLOEXEC |
                            (options.append ? O_APPEND : O_TRUNC),
                        0644);
  if (fd < 0) {
    return ErrnoError(errno, absl::StrCat("cannot create the log file ", path));
  }
  struct stat info = {};
  const size_t size = ::fstat(fd, &info) == 0 ? info.st_size : 0;
  std::unique_ptr<BufferedFile> file(new BufferedFile(path, fd, options));
  file->initial_size_ = size;
  return file;
}

BufferedFile::BufferedFile(std::string path, int fd,
                           const BufferedFileOptions& options)
    : path_(std::move(path)), fd_(fd), options_(options) {
  writer_ = std::thread([this] { Run(); });
  on_signal_ = std::make_unique<FlushOnSignal>([this] { (void)Flush(); });
}

BufferedFile::~BufferedFile() { (void)Close(); }

absl::Status BufferedFile::Append(std::string_view bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.append(bytes.data(), bytes.size());
  if (pending_.size() >= options_.max_pending) wake_.notify_one();
  return error_;
}

absl::Status BufferedFile::WriteOut() {
  std::string bytes;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    bytes.swap(pending_);
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status status =
          ErrnoError(errno, absl::StrCat("cannot write the log file ", path_));
      std::lock_guard<std::mutex> lock(mutex_);
      // What was not written goes back in front of what came since.
      pending_.insert(0, bytes, done, std::string::npos);
      if (error_.ok()) error_ = status;
      return status;
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status BufferedFile::Flush() {
  std::lock_guard<std::mutex> write_lock(write_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return close_status_;
  }
  return WriteOut();
}

void BufferedFile::Run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!closing_) {
    wake_.wait_for(lock, absl::ToChronoNanoseconds(options_.flush_interval),
                   [this] {
                     return closing_ || pending_.size() >= options_.max_pending;
                   });
    if (closing_) return;
    if (pending_.empty()) continue;
    lock.unlock();
    {
      std::lock_guard<std::mutex> write_lock(write_mutex_);
      (void)WriteOut();
    }
    lock.lock();
  }
}

absl::Status BufferedFile::Close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
    wake_.notify_one();
  }
  if (writer_.joinable()) writer_.join();
  on_signal_.reset();  // Waits for a flush that is running.
  std::lock_guard<std::mutex> write_lock(write_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return close_status_;
  }
  absl::Status status = WriteOut();
  if (::fsync(fd_) != 0 && status.ok()) {
    status = ErrnoError(errno, absl::StrCat("cannot sync the log file ", path_));
  }
  if (::close(fd_) != 0 && status.ok()) {
    status =
        ErrnoError(errno, absl::StrCat("cannot close the log file ", path_));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
  close_status_ = status;
  return status;
}

}  // namespace accelerate::trackers_internal
