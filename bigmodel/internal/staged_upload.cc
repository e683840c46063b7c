// Staged uploads of host bytes to a device (see staged_upload.h).

#include "bigmodel/internal/staged_upload.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include "state/logging.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::bigmodel_internal {
namespace {

// A host copy is split among threads in parts of at least this many bytes
// (smaller parts cost more in waking threads than they save).
constexpr int64_t kMinPartBytes = int64_t{2} << 20;
constexpr int kMaxDefaultThreads = 8;

class DeviceTransport : public StagingTransport {
 public:
  DeviceTransport(c10::Device device, c10::Stream stream)
      : device_(device), stream_(stream) {}

  ~DeviceTransport() override {
    for (size_t slot = 0; slot < sent_.size(); ++slot) {
      try {
        WaitSent(static_cast<int>(slot));
      } catch (const std::exception&) {
        // The device failed; nothing left to wait for.
      }
    }
  }

  absl::StatusOr<at::Tensor> NewBuffer(int64_t bytes) override {
    try {
      return at::empty(
          {bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    } catch (const std::exception& error) {
      return absl::UnavailableError(
          absl::StrCat("no page-locked memory for a staging buffer of ", bytes,
                       " bytes: ", state::StatusFromException(
                                       "pinning", error).message()));
    }
  }

  void Send(int slot, const at::Tensor& source,
            const at::Tensor& target) override {
    if (static_cast<size_t>(slot) >= sent_.size()) {
      sent_.resize(slot + 1);
    }
    // The target's memory was allocated on the current stream, which may
    // still have work queued that used it before: the copy waits for that.
    c10::Event allocated(device_.type());
    allocated.record(
        c10::impl::VirtualGuardImpl(device_.type()).getStream(device_));
    allocated.block(stream_);
    c10::StreamGuard on_copy_stream(stream_);
    target.copy_(source, /*non_blocking=*/true);
    if (!sent_[slot]) sent_[slot].emplace(device_.type());
    sent_[slot]->record(stream_);
    any_sent_ = true;
  }

  void WaitSent(int slot) override {
    if (static_cast<size_t>(slot) < sent_.size() && sent_[slot]) {
      sent_[slot]->synchronize();
    }
  }

  void Finish() override {
    if (!any_sent_) return;
    // Every send is on `stream_`: one event after the last of them.
    c10::Event all_sent(device_.type());
    all_sent.record(stream_);
    all_sent.block(c10::impl::VirtualGuardImpl(device_.type())
                       .getStream(device_));
  }

 private:
  const c10::Device device_;
  const c10::Stream stream_;
  // The last send of each slot.
  std::vector<std::optional<c10::Event>> sent_;
  bool any_sent_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<StagingTransport>> DeviceStaging(
    c10::Device device) {
  if (device.is_cpu() || device.is_meta()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "staged uploads go to a device with streams, not ", device.str()));
  }
  std::optional<c10::Stream> stream;
  ACCELERATE_RETURN_IF_ERROR(
      state::RunGuarded(absl::StrCat("a copy stream on ", device.str()), [&] {
        stream = c10::impl::VirtualGuardImpl(device.type())
                     .getStreamFromGlobalPool(device, /*isHighPriority=*/false);
      }));
  return std::unique_ptr<StagingTransport>(
      new DeviceTransport(device, *stream));
}

absl::StatusOr<std::unique_ptr<StagedUpload>> StagedUpload::Create(
    std::unique_ptr<StagingTransport> transport,
    const StagedUploadOptions& options) {
  if (options.buffer_bytes < 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "staging buffer_bytes ", options.buffer_bytes,
        " is too small; use 4096 or more"));
  }
  if (options.buffers < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "staging buffers ", options.buffers, " must be at least 1"));
  }
  if (options.threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "staging threads ", options.threads,
        " must be 0 (one per core) or more"));
  }
  std::vector<at::Tensor> buffers;
  for (int i = 0; i < options.buffers; ++i) {
    ACCELERATE_ASSIGN_OR_RETURN(at::Tensor buffer,
                                transport->NewBuffer(options.buffer_bytes));
    buffers.push_back(std::move(buffer));
  }
  int threads = options.threads;
  if (threads == 0) {
    threads = std::clamp(static_cast<int>(std::thread::hardware_concurrency()),
                         1, kMaxDefaultThreads);
  }
  return std::unique_ptr<StagedUpload>(
      new StagedUpload(std::move(transport), std::move(buffers), threads));
}

StagedUpload::StagedUpload(std::unique_ptr<StagingTransport> transport,
                           std::vector<at::Tensor> buffers, int threads)
    : transport_(std::move(transport)), buffers_(std::move(buffers)) {
  for (int i = 1; i < threads; ++i) {
    helpers_.emplace_back([this, i] { HelperLoop(i); });
  }
}

StagedUpload::~StagedUpload() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& helper : helpers_) helper.join();
  // The buffers must outlive the sends reading them.
  for (size_t slot = 0; slot < buffers_.size(); ++slot) {
    try {
      transport_->WaitSent(static_cast<int>(slot));
    } catch (const std::exception&) {
      // The device failed; nothing left to wait for.
    }
  }
}

absl::Status StagedUpload::Add(const void* src, const at::Tensor& dst) {
  ACCELERATE_CHECK(!finished_) << "StagedUpload::Add after Finish";
  ACCELERATE_CHECK(dst.is_contiguous()) << "StagedUpload::Add: dst is not "
                                           "contiguous";
  const int64_t bytes = static_cast<int64_t>(dst.nbytes());
  targets_.push_back(dst);
  if (bytes == 0) return absl::OkStatus();
  const char* from = static_cast<const char*>(src);
  const int64_t buffer_bytes = buffers_[0].numel();
  return state::RunGuarded(
      absl::StrCat("staging ", bytes, " bytes to ", dst.device().str()), [&] {
        const at::Tensor target = dst.view({-1}).view(at::kByte);
        int64_t done = 0;
        while (done < bytes) {
          if (filled_ == buffer_bytes) NextBuffer();
          const int64_t piece = std::min(bytes - done, buffer_bytes - filled_);
          const at::Tensor& buffer = buffers_[slot_];
          CopyOnHost(static_cast<char*>(buffer.data_ptr()) + filled_,
                     from + done, piece);
          transport_->Send(slot_, buffer.narrow(0, filled_, piece),
                           target.narrow(0, done, piece));
          filled_ += piece;
          done += piece;
          bytes_sent_ += piece;
        }
      });
}

absl::Status StagedUpload::AddConverted(const at::Tensor& src,
                                        const at::Tensor& dst) {
  ACCELERATE_CHECK(src.is_cpu() && src.is_contiguous())
      << "StagedUpload::AddConverted: src is not a contiguous CPU tensor";
  ACCELERATE_CHECK(src.numel() == dst.numel())
      << "StagedUpload::AddConverted: " << src.numel() << " elements into "
      << dst.numel();
  if (src.scalar_type() == dst.scalar_type()) return Add(src.data_ptr(), dst);
  ACCELERATE_CHECK(!finished_) << "StagedUpload::AddConverted after Finish";
  ACCELERATE_CHECK(dst.is_contiguous())
      << "StagedUpload::AddConverted: dst is not contiguous";
  targets_.push_back(dst);
  const int64_t elements = src.numel();
  if (elements == 0) return absl::OkStatus();
  const int64_t element = static_cast<int64_t>(dst.element_size());
  const int64_t buffer_bytes = buffers_[0].numel();
  return state::RunGuarded(
      absl::StrCat("staging ", elements, " elements of ",
                   c10::toString(src.scalar_type()), " as ",
                   c10::toString(dst.scalar_type()), " to ",
                   dst.device().str()),
      [&] {
        const at::Tensor from = src.view({-1});
        const at::Tensor target = dst.view({-1}).view(at::kByte);
        int64_t done = 0;
        while (done < elements) {
          // Converted elements start cache-line aligned in the buffer.
          filled_ = (filled_ + 63) / 64 * 64;
          if (filled_ + element > buffer_bytes) NextBuffer();
          const int64_t count =
              std::min(elements - done, (buffer_bytes - filled_) / element);
          const at::Tensor& buffer = buffers_[slot_];
          at::from_blob(static_cast<char*>(buffer.data_ptr()) + filled_,
                        {count}, at::TensorOptions().dtype(dst.dtype()))
              .copy_(from.narrow(0, done, count));
          transport_->Send(slot_, buffer.narrow(0, filled_, count * element),
                           target.narrow(0, done * element, count * element));
          filled_ += count * element;
          done += count;
          bytes_sent_ += count * element;
        }
      });
}

void StagedUpload::NextBuffer() {
  slot_ = (slot_ + 1) % static_cast<int>(buffers_.size());
  transport_->WaitSent(slot_);
  filled_ = 0;
}

absl::Status StagedUpload::Finish() {
  ACCELERATE_CHECK(!finished_) << "StagedUpload::Finish called twice";
  finished_ = true;
  absl::Status status =
      state::RunGuarded("finishing a staged upload", [&] {
        transport_->Finish();
      });
  targets_.clear();
  return status;
}

absl::StatusOr<std::unique_ptr<StagedUpload>> StagedUploadIfPossible(
    c10::Device device, const StagedUploadOptions& options) {
  absl::StatusOr<std::unique_ptr<StagingTransport>> transport =
      DeviceStaging(device);
  if (!transport.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<StagedUpload>> upload =
      StagedUpload::Create(*std::move(transport), options);
  if (upload.ok() || !absl::IsUnavailable(upload.status())) return upload;
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true)) {
    ACCELERATE_LOG(WARNING) << "copying onto " << device.str()
                            << " without staging: " << upload.status();
  }
  return nullptr;
}

void StagedUpload::CopyOnHost(char* dst, const char* src, int64_t bytes) {
  const int parts = static_cast<int>(std::min<int64_t>(
      threads(), (bytes + kMinPartBytes - 1) / kMinPartBytes));
  if (parts <= 1) {
    std::memcpy(dst, src, bytes);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    copy_dst_ = dst;
    copy_src_ = src;
    copy_bytes_ = bytes;
    copy_parts_ = parts;
    pending_ = parts - 1;
    ++generation_;
  }
  work_cv_.notify_all();
  // Part 0 here, the others on the helpers.
  const int64_t per = (bytes + parts - 1) / parts;
  std::memcpy(dst, src, std::min(per, bytes));
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return pending_ == 0; });
}

void StagedUpload::HelperLoop(int index) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    if (index >= copy_parts_) continue;
    const int64_t per = (copy_bytes_ + copy_parts_ - 1) / copy_parts_;
    const int64_t begin = std::min(copy_bytes_, per * index);
    const int64_t end = std::min(copy_bytes_, begin + per);
    char* dst = copy_dst_;
    const char* src = copy_src_;
    lock.unlock();
    if (end > begin) std::memcpy(dst + begin, src + begin, end - begin);
    lock.lock();
    if (--pending_ == 0) done_cv_.notify_one();
  }
}

}  // namespace accelerate::bigmodel_internal
