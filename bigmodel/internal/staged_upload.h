// Host bytes to device tensors through a ring of page-locked staging
// buffers: host threads copy the next piece of the source (a file's mapping,
// so the page cache) into one buffer while the pieces before it travel to
// the device from the others. A copy straight from pageable memory (what
// `at::Tensor::to` does with a mapped tensor) leaves the driver to stage it
// through small buffers of its own, one at a time, on one thread.
//
//   absl::StatusOr<std::unique_ptr<StagedUpload>> upload =
//       StagedUpload::Create(DeviceStaging(device), {});
//   for (...) {
//     at::Tensor dst = at::empty(shape, at::device(device).dtype(dtype));
//     (void)(*upload)->Add(mapped_bytes, dst);
//   }
//   absl::Status done = (*upload)->Finish();  // `dst`s usable from here
//
// Thread safety: a StagedUpload is used from one thread (it runs helper
// threads of its own for the host copies).

#ifndef ACCELERATE_BIGMODEL_INTERNAL_STAGED_UPLOAD_H_
#define ACCELERATE_BIGMODEL_INTERNAL_STAGED_UPLOAD_H_

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace accelerate::bigmodel_internal {

// Where staged bytes go: page-locked buffers and asynchronous sends out of
// them. `DeviceStaging` is the GPU's; tests pass their own.
class StagingTransport {
 public:
  virtual ~StagingTransport() = default;
  // One host buffer of `bytes` (a byte tensor) the sends can read from.
  // `Unavailable` when none can be had (no pinned memory).
  [[nodiscard]] virtual absl::StatusOr<at::Tensor> NewBuffer(
      int64_t bytes) = 0;
  // Starts copying `source` (a slice of a buffer) into `target` (a byte
  // slice of a destination, same size) and returns; the slice of the buffer
  // is not written again before `WaitSent(slot)` returns. May throw
  // `c10::Error`.
  virtual void Send(int slot, const at::Tensor& source,
                    const at::Tensor& target) = 0;
  // Blocks until every send from `slot` so far is done.
  virtual void WaitSent(int slot) = 0;
  // Makes every target usable where the caller goes on (on a GPU: the
  // current stream waits for the sends, without blocking the host).
  virtual void Finish() = 0;
};

// The transport to `device` (a GPU): pinned buffers, sends on a copy stream
// from the pool, one event per slot. `FailedPrecondition` for a device with
// no streams (the CPU).
[[nodiscard]] absl::StatusOr<std::unique_ptr<StagingTransport>>
DeviceStaging(c10::Device device);

struct StagedUploadOptions {
  // Bytes of each staging buffer. Default 32 MiB (under a millisecond of a
  // PCIe 5 link, so the first piece, which nothing overlaps, costs little).
  int64_t buffer_bytes = int64_t{32} << 20;
  // Buffers in the ring (at least 2 to overlap). Default 3.
  int buffers = 3;
  // Host threads copying into a buffer, the caller's included. 0: one per
  // core, at most 8.
  int threads = 0;
};

class StagedUpload {
 public:
  // `InvalidArgument` for options out of range; the transport's status
  // when it has no buffers.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<StagedUpload>> Create(
      std::unique_ptr<StagingTransport> transport,
      const StagedUploadOptions& options = {});

  StagedUpload(const StagedUpload&) = delete;
  StagedUpload& operator=(const StagedUpload&) = delete;
  // Waits for what is in flight.
  ~StagedUpload();

  // Queues the copy of `dst.nbytes()` bytes at `src` (any alignment) into
  // `dst`. `src` is read before this returns; `dst` is kept until `Finish`.
  // REQUIRES: `dst` is contiguous; `Finish` not called yet.
  [[nodiscard]] absl::Status Add(const void* src, const at::Tensor& dst);
  // Queues `src` (a contiguous CPU tensor) converted to `dst`'s dtype, as
  // `src.to(dst.dtype())` rounds, into `dst`: the conversion writes into the
  // staging buffers, so no converted copy of the whole tensor is made. It
  // runs on the caller (LibTorch's intra-op threads), not on the helpers.
  // REQUIRES: as `Add`; `src` on the CPU, contiguous, as many elements as
  // `dst`.
  [[nodiscard]] absl::Status AddConverted(const at::Tensor& src,
                                          const at::Tensor& dst);
  // Ends the upload: the destinations are usable once this returns OK.
  [[nodiscard]] absl::Status Finish();

  int threads() const { return static_cast<int>(helpers_.size()) + 1; }
  int64_t bytes_sent() const { return bytes_sent_; }

 private:
  StagedUpload(std::unique_ptr<StagingTransport> transport,
               std::vector<at::Tensor> buffers, int threads);
  // Copies `bytes` from `src` to `dst` on the caller and the helpers.
  void CopyOnHost(char* dst, const char* src, int64_t bytes);
  // Moves on to the next buffer, once what it held has left.
  void NextBuffer();
  void HelperLoop(int index);

  std::unique_ptr<StagingTransport> transport_;
  std::vector<at::Tensor> buffers_;
  int slot_ = 0;          // The buffer being filled.
  int64_t filled_ = 0;    // Bytes of it already sent.
  int64_t bytes_sent_ = 0;
  bool finished_ = false;
  std::vector<at::Tensor> targets_;

  // The helpers' work: one part of the current host copy each.
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  char* copy_dst_ = nullptr;
  const char* copy_src_ = nullptr;
  int64_t copy_bytes_ = 0;
  int copy_parts_ = 0;
  std::vector<std::thread> helpers_;
};

// A staged upload onto `device`, or none (nullptr: copy plainly) where the
// device has no streams (the CPU, or one LibTorch cannot reach: the plain
// copy says why) or no page-locked memory can be had (a warning, once per
// process). `InvalidArgument` for options out of range.
[[nodiscard]] absl::StatusOr<std::unique_ptr<StagedUpload>>
StagedUploadIfPossible(c10::Device device,
                       const StagedUploadOptions& options = {});

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_STAGED_UPLOAD_H_
