// An append-only file written in the background: `Append` copies bytes into
// memory and returns; a writer thread writes them out every
// `flush_interval` (or sooner when `max_pending` bytes wait), on `Flush`,
// on `Close` (then fsync) and when the process gets SIGTERM, SIGINT or
// SIGHUP. The event files and the JSONL/CSV trackers write through it, so
// that logging never waits on the disk in the training loop.
//
// Thread safety: every member may be called from any thread. Ownership:
// owns the file descriptor and the thread.

#ifndef ACCELERATE_TRACKERS_INTERNAL_BUFFERED_FILE_H_
#define ACCELERATE_TRACKERS_INTERNAL_BUFFERED_FILE_H_

#include <condition_variable>
#include <cstddef>
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
  // How long appended bytes may wait in memory. Default 2 s.
  absl::Duration flush_interval = absl::Seconds(2);
  // Bytes waiting that wake the writer early. Default 1 MiB.
  size_t max_pending = size_t{1} << 20;
  // Appends to a file that exists instead of truncating it (a resumed run
  // continues its logs). Default false.
  bool append = false;
};

class BufferedFile {
 public:
  // Creates `path` (truncated if present, unless `append`) and its parent
  // folder.
  // Errors name the path: PermissionDenied, NotFound, ...
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BufferedFile>> Open(
      const std::string& path, const BufferedFileOptions& options = {});
  BufferedFile(const BufferedFile&) = delete;
  BufferedFile& operator=(const BufferedFile&) = delete;
  // Closes (errors are lost: call `Close` to see them).
  ~BufferedFile();

  // Queues `bytes`. Returns the first error the writer met (the bytes are
  // still queued; the writer tries again), OK otherwise.
  // REQUIRES: not closed.
  absl::Status Append(std::string_view bytes);
  // Writes what is queued now; the first write error otherwise.
  absl::Status Flush();
  // Flushes, fsyncs, closes, stops the writer. Later calls return the
  // first call's status.
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
  size_t initial_size_ = 0;

  // Guards `pending_`, `error_`, `closing_`.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::string pending_;
  absl::Status error_;
  bool closing_ = false;
  bool closed_ = false;
  absl::Status close_status_;
  // Serializes writers (the thread, `Flush`, signals); taken before
  // `mutex_`.
  std::mutex write_mutex_;
  std::thread writer_;
  std::unique_ptr<FlushOnSignal> on_signal_;
};

}  // namespace accelerate::trackers_internal

#endif  // ACCELERATE_TRACKERS_INTERNAL_BUFFERED_FILE_H_
