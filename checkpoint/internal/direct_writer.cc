#include "checkpoint/internal/direct_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "checkpoint/internal/errno_status.h"

namespace accelerate::checkpoint_internal {

absl::StatusOr<std::unique_ptr<DirectWriter>> DirectWriter::Create(
    const std::string& path, bool direct) {
  constexpr int kFlags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
  int fd = ::open(path.c_str(), kFlags | (direct ? O_DIRECT : 0), 0644);
  if (fd < 0 && direct && errno == EINVAL) {  // No O_DIRECT here.
    direct = false;
    fd = ::open(path.c_str(), kFlags, 0644);
  }
  if (fd < 0) return ErrnoStatus(errno, "cannot create", path);
  std::unique_ptr<DirectWriter> writer(new DirectWriter(path, fd, direct));
  if (direct) {
    void* buffer = nullptr;
    if (::posix_memalign(&buffer, kAlignment, kChunkBytes) == 0) {
      writer->buffer_.reset(static_cast<char*>(buffer));
    } else if (absl::Status stopped = writer->StopDirect(); !stopped.ok()) {
      return stopped;
    }
  }
  return writer;
}

DirectWriter::DirectWriter(std::string path, int fd, bool direct)
    : path_(std::move(path)), fd_(fd), direct_(direct),
      buffer_(nullptr, &std::free) {}

DirectWriter::~DirectWriter() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status DirectWriter::Fail(absl::Status status) {
  if (error_.ok()) error_ = status;
  return status;
}

absl::Status DirectWriter::WriteAll(const char* data, size_t n) {
  while (n > 0) {
    const ssize_t wrote = ::write(fd_, data, n);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) {
      return ErrnoStatus(wrote < 0 ? errno : EIO, "cannot write", path_);
    }
    data += wrote;
    n -= static_cast<size_t>(wrote);
  }
  return absl::OkStatus();
}

absl::Status DirectWriter::StopDirect() {
  direct_ = false;
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0) {
    return ErrnoStatus(errno, "cannot turn off O_DIRECT on", path_);
  }
  return absl::OkStatus();
}

absl::Status DirectWriter::FlushChunk() {
  const char* data = buffer_.get();
  size_t left = filled_;
  filled_ = 0;
  while (left > 0 && direct_) {
    const ssize_t wrote = ::write(fd_, data, left);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0 && errno == EINVAL) {
      // This file refuses direct writes after all (an alignment stricter
      // than ours): the rest of it goes through the page cache.
      if (absl::Status stopped = StopDirect(); !stopped.ok()) return stopped;
      break;
    }
    if (wrote <= 0) {
      return ErrnoStatus(wrote < 0 ? errno : EIO, "cannot write", path_);
    }
    data += wrote;
    left -= static_cast<size_t>(wrote);
    // A short write that leaves the offset unaligned: likewise.
    if (left > 0 && wrote % kAlignment != 0) {
      if (absl::Status stopped = StopDirect(); !stopped.ok()) return stopped;
    }
  }
  return WriteAll(data, left);
}

absl::Status DirectWriter::Append(absl::string_view bytes) {
  if (!error_.ok()) return error_;
  appended_ += bytes.size();
  while (direct_ && !bytes.empty()) {
    const size_t n = std::min(bytes.size(), kChunkBytes - filled_);
    std::memcpy(buffer_.get() + filled_, bytes.data(), n);
    filled_ += n;
    bytes.remove_prefix(n);
    if (filled_ == kChunkBytes) {
      if (absl::Status flushed = FlushChunk(); !flushed.ok()) {
        return Fail(flushed);
      }
    }
  }
  if (absl::Status wrote = WriteAll(bytes.data(), bytes.size()); !wrote.ok()) {
    return Fail(wrote);
  }
  return absl::OkStatus();
}

absl::Status DirectWriter::Close() {
  absl::Status status = error_;
  if (status.ok() && filled_ > 0) {
    // The tail is not a whole number of blocks: through the page cache.
    status = StopDirect();
    if (status.ok()) status = WriteAll(buffer_.get(), filled_);
    filled_ = 0;
  }
  if (status.ok() && ::fsync(fd_) != 0) {
    status = ErrnoStatus(errno, "cannot sync", path_);
  }
  if (::close(fd_) != 0 && status.ok()) {
    status = ErrnoStatus(errno, "cannot close", path_);
  }
  fd_ = -1;
  return status;
}

}  // namespace accelerate::checkpoint_internal
