// Writes one new file from start to end and syncs it, bypassing the page
// cache (`O_DIRECT`) where the file system allows: bytes go through an
// aligned buffer of `kChunkBytes` straight to the disk, so a checkpoint of
// gigabytes neither pays for copying into newly allocated page-cache pages
// (which on VMs returning free memory to the host costs as much as the
// disk itself) nor evicts what the training reads. Where `O_DIRECT` is
// refused (tmpfs, some network file systems) the same calls write through
// the page cache. Either way the file holds exactly the bytes appended and
// is on the disk when `Close` returns.
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status Example(const std::string& path) {
//     ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<DirectWriter> file,
//                                 DirectWriter::Create(path));
//     ACCELERATE_RETURN_IF_ERROR(file->Append("header"));
//     ACCELERATE_RETURN_IF_ERROR(file->Append("payload"));
//     return file->Close();  // synced
//   }
// clang-format on
//
// Thread safety: one thread per writer. Ownership: the writer owns its file
// descriptor and buffer; destroying it without `Close` closes the file
// unsynced (what is on the disk is then undefined, as for any unsynced
// write).

#ifndef ACCELERATE_CHECKPOINT_INTERNAL_DIRECT_WRITER_H_
#define ACCELERATE_CHECKPOINT_INTERNAL_DIRECT_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accelerate::checkpoint_internal {

class DirectWriter {
 public:
  // Bytes per direct write: large enough that each write keeps the disk
  // busy, small enough to stay in cache while it is filled.
  static constexpr size_t kChunkBytes = size_t{8} << 20;
  // Alignment of buffer addresses, lengths and file offsets for `O_DIRECT`
  // (a multiple of every logical block size in use).
  static constexpr size_t kAlignment = 4096;

  // Creates (or truncates) `path`; `direct` false writes through the page
  // cache (as where `O_DIRECT` is refused). Errors name the file:
  // `PermissionDenied`, `NotFound` (no such folder), `ResourceExhausted`.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DirectWriter>> Create(
      const std::string& path, bool direct = true);

  DirectWriter(const DirectWriter&) = delete;
  DirectWriter& operator=(const DirectWriter&) = delete;
  ~DirectWriter();

  // Appends `bytes`. After an error the writer only reports it again.
  [[nodiscard]] absl::Status Append(absl::string_view bytes);
  // Writes what is buffered, syncs and closes. REQUIRES: called once.
  [[nodiscard]] absl::Status Close();

  // Whether the file is written with `O_DIRECT` (false after a fallback).
  bool direct() const { return direct_; }
  uint64_t bytes_appended() const { return appended_; }

 private:
  DirectWriter(std::string path, int fd, bool direct);
  // Writes `n` bytes from `data` at the end of the file (loops over short
  // writes and EINTR).
  absl::Status WriteAll(const char* data, size_t n);
  // Writes the full buffer directly; falls back to the page cache when the
  // kernel refuses the direct write.
  absl::Status FlushChunk();
  // Turns `O_DIRECT` off for the rest of the file.
  absl::Status StopDirect();
  absl::Status Fail(absl::Status status);

  const std::string path_;
  int fd_ = -1;
  bool direct_ = false;
  // `kChunkBytes`, `kAlignment`-aligned; only while `direct_`.
  std::unique_ptr<char, void (*)(void*)> buffer_;
  size_t filled_ = 0;
  uint64_t appended_ = 0;
  absl::Status error_;
};

}  // namespace accelerate::checkpoint_internal

#endif  // ACCELERATE_CHECKPOINT_INTERNAL_DIRECT_WRITER_H_
