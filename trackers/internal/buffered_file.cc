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
  if (!(options.flush_interval >= absl::Milliseconds(1) &&
        options.flush_interval <= absl::Hours(1))) {
    return absl::InvalidArgumentError(
        absl::StrCat("flush_interval ",
                     absl::FormatDuration(options.flush_interval),
                     " is not between 1ms and 1h"));
  }
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
    : path_(std::move(path)),
      fd_(fd),
      options_(options),
      owner_pid_(::getpid()) {
  // The registration first: if starting the thread throws, nothing is
  // left joinable.
  on_signal_ = std::make_unique<FlushOnSignal>([this] { (void)Flush(); });
  writer_ = std::thread([this] { Run(); });
}

BufferedFile::~BufferedFile() { (void)Close(); }

absl::Status BufferedFile::Append(std::string_view bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closing_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the log file ", path_, " is closed"));
  }
  if (pending_.size() + bytes.size() > options_.max_buffered) {
    dropped_bytes_ += bytes.size();
    return absl::ResourceExhaustedError(absl::StrCat(
        dropped_bytes_, " bytes for ", path_, " were dropped: ",
        pending_.size(), " bytes wait to be written (",
        error_.ok() ? "the disk is slow" : error_.message(), ")"));
  }
  pending_.append(bytes.data(), bytes.size());
  if (pending_.size() >= options_.max_pending && error_.ok()) {
    wake_.notify_one();
  }
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
      error_ = status;
      if (first_error_.ok()) first_error_ = status;
      return status;
    }
    done += static_cast<size_t>(n);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  error_ = absl::OkStatus();
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
    // After a failed write, the next try waits the whole interval (a full
    // disk is not retried in a loop).
    wake_.wait_for(lock, absl::ToChronoNanoseconds(options_.flush_interval),
                   [this] {
                     return closing_ || (error_.ok() && pending_.size() >=
                                                            options_.max_pending);
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
  std::lock_guard<std::mutex> close_lock(close_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return close_status_;
    closing_ = true;
    wake_.notify_one();
  }
  if (owner_pid_ != ::getpid()) {
    // A forked child's copy: the thread and the queued bytes are the
    // parent's.
    if (writer_.joinable()) writer_.detach();
    on_signal_.reset();  // The registry was reset in this process.
    ::close(fd_);
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    return close_status_;
  }
  if (writer_.joinable()) writer_.join();
  on_signal_.reset();  // Waits for a flush that is running.
  std::lock_guard<std::mutex> write_lock(write_mutex_);
  absl::Status status = WriteOut();
  if (::fsync(fd_) != 0 && status.ok()) {
    status = ErrnoError(errno, absl::StrCat("cannot sync the log file ", path_));
  }
  if (::close(fd_) != 0 && status.ok()) {
    status =
        ErrnoError(errno, absl::StrCat("cannot close the log file ", path_));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (status.ok() && dropped_bytes_ > 0) {
    status = absl::DataLossError(absl::StrCat(
        dropped_bytes_, " bytes of logs for ", path_,
        " were dropped while it could not be written (",
        first_error_.ok() ? "the disk was too slow" : first_error_.message(),
        ")"));
  }
  closed_ = true;
  close_status_ = status;
  return status;
}

}  // namespace accelerate::trackers_internal
