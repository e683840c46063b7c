// An append-only file written in the background: `Append` copies bytes into
// memory and returns; a writer thread writes them out every
// `flush_interval` (or sooner when `max_pending` bytes wait), on `Flush`,
// on `Close` (then fsync) and when the process gets SIGTERM, SIGINT or
// SIGHUP. The event files and the JSONL/CSV trackers write through it, so
// that logging never waits on the disk in the training loop.
//
// When writing fails (a full disk), the bytes stay queued and the writer
// tries again every `flush_interval`; `Append` returns the error until a
// write succeeds. Beyond `max_buffered` queued bytes, appended bytes are
// dropped and counted (`Append` says so), and `Close` reports them.
//
// Thread safety: every member may be called from any thread. Ownership:
// owns the file descriptor and the thread. A process forked without exec
// does not write its parent's queued bytes: it only closes the descriptor.

#ifndef ACCELERATE_TRACKERS_INTERNAL_BUFFERED_FILE_H_
#define ACCELERATE_TRACKERS_INTERNAL_BUFFERED_FILE_H_

#include <sys/types.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "trackers/internal/flush_on_signal.h"

namespace accelerate::trackers_internal {

struct BufferedFileOptions {
  // How long appended bytes may wait in memory, and how long the writer
  // waits before trying again after a failed write. Between 1 ms and 1 h.
  // Default 2 s.
  absl::Duration flush_interval = absl::Seconds(2);
  // Bytes waiting that wake the writer early. Default 1 MiB.
  size_t max_pending = size_t{1} << 20;
  // Bytes kept while the file cannot be written; more are dropped (and
  // counted). Default 256 MiB.
  size_t max_buffered = size_t{256} << 20;
  // Appends to a file that exists instead of truncating it (a resumed run
  // continues its logs). Default false.
  bool append = false;
};

class BufferedFile {
 public:
  // Creates `path` (truncated if present, unless `append`) and its parent
  // folder. Errors name the path: PermissionDenied, NotFound, ...;
  // InvalidArgument for a `flush_interval` out of range.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BufferedFile>> Open(
      const std::string& path, const BufferedFileOptions& options = {});
  BufferedFile(const BufferedFile&) = delete;
  BufferedFile& operator=(const BufferedFile&) = delete;
  // Closes (errors are lost: call `Close` to see them).
  ~BufferedFile();

  // Queues `bytes`. Returns the error that keeps the writer from writing
  // (the bytes are still queued), ResourceExhausted when they were dropped
  // (`max_buffered`), FailedPrecondition after `Close`; OK otherwise.
  absl::Status Append(std::string_view bytes);
  // Writes what is queued now; the write's error otherwise.
  absl::Status Flush();
  // Flushes, fsyncs, closes, stops the writer. An error when something
  // could not be written or was dropped. Later calls return the first
  // call's status.
  absl::Status Close();

  const std::string& path() const { return path_; }
  // The file's size when it was opened (0 unless appending to one).
  size_t initial_size() const { return initial_size_; }

 private:
  BufferedFile(std::string path, int fd, const BufferedFileOptions& options);
  void Run();
  // Writes `pending_` out. REQUIRES: `write_mutex_` held.
  absl::Status WriteOut();

  const std::string path_;
  const int fd_;
  const BufferedFileOptions options_;
  const pid_t owner_pid_;
  size_t initial_size_ = 0;

  // Guards the members below it up to `write_mutex_`.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::string pending_;
  // The last write's error (cleared by a write that succeeds).
  absl::Status error_;
  // The first write error, for `Close`'s report.
  absl::Status first_error_;
  uint64_t dropped_bytes_ = 0;
  bool closing_ = false;
  bool closed_ = false;
  absl::Status close_status_;
  // Serializes writers (the thread, `Flush`, signals); taken before
  // `mutex_`.
  std::mutex write_mutex_;
  // Serializes `Close` calls.
  std::mutex close_mutex_;
  std::unique_ptr<FlushOnSignal> on_signal_;
  std::thread writer_;
};

}  // namespace accelerate::trackers_internal

#endif  // ACCELERATE_TRACKERS_INTERNAL_BUFFERED_FILE_H_
