// The offload engine: loading, releasing and prefetching units of
// offloaded weights (see offload_engine.h).

#include "bigmodel/internal/offload_engine.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include "bigmodel/internal/page_cache.h"
#include "state/placeholder.h"

namespace accelerate::bigmodel_internal {

OffloadEngine::OffloadEngine(c10::Device device, bool prefetch,
                             int64_t prefetch_bytes)
    : device_(device), prefetch_(prefetch), prefetch_bytes_(prefetch_bytes) {
  state::InstallPlaceholderFallbackOnce();
  if (device_.is_cuda()) {
    copy_stream_ =
        c10::impl::VirtualGuardImpl(device_.type())
            .getStreamFromGlobalPool(device_, /*isHighPriority=*/false);
  }
}

OffloadEngine::~OffloadEngine() {
  std::lock_guard<std::mutex> lock(mu_);
  StopWorker();
  for (const Unit& unit : units_) {
    for (const Slot& slot : unit.slots) {
      state::ForgetPlaceholderOwner(slot.target.unsafeGetTensorImpl());
    }
  }
  UnloadAllBut({});
}

int OffloadEngine::UnitFor(const std::string& module) {
  auto [it, inserted] = unit_index_.emplace(module, units_.size());
  if (inserted) units_.emplace_back();
  return it->second;
}

std::pair<int, int> OffloadEngine::AddSlot(int unit) {
  units_[unit].slots.emplace_back();
  return {unit, static_cast<int>(units_[unit].slots.size()) - 1};
}

void OffloadEngine::Start() {
  for (const Unit& unit : units_) {
    int64_t bytes = 0;
    for (const Slot& slot : unit.slots) {
      bytes += slot.source.numel() * c10::elementSize(slot.dtype);
    }
    unit_bytes_.push_back(bytes);
  }
  for (int u = 0; u < static_cast<int>(units_.size()); ++u) {
    for (Slot& slot : units_[u].slots) {
      slot.target.unsafeGetTensorImpl()->shallow_copy_from(slot.placeholder);
      state::RegisterPlaceholderOwner(slot.target.unsafeGetTensorImpl(), this,
                                      u);
    }
  }
  if (prefetch_ && !units_.empty()) worker_ = std::thread([this] { Work(); });
}

std::vector<std::string> OffloadEngine::names() const {
  std::vector<std::string> names;
  for (const Unit& unit : units_) {
    for (const Slot& slot : unit.slots) names.push_back(slot.name);
  }
  return names;
}

void OffloadEngine::Activate(const std::vector<int>& wanted) {
  std::lock_guard<std::mutex> lock(mu_);
  // Release first, so that at most the wanted units and the prepared
  // window are in memory.
  UnloadAllBut(wanted);
  for (int u : wanted) {
    if (units_[u].loaded) continue;
    std::optional<PreparedUnit> ready = TakePrepared(u);
    if (ready) {
      ++stats_.prefetch_hits;
    } else {
      ready = Prepare(units_[u]);
    }
    Receive(*ready);
    stats_.staged_bytes += ready->staged_bytes;
    Unit& unit = units_[u];
    unit.buffers = std::move(ready->buffers);
    for (size_t i = 0; i < unit.slots.size(); ++i) {
      unit.slots[i].target.unsafeGetTensorImpl()->shallow_copy_from(
          ready->tensors[i].getIntrusivePtr());
    }
    unit.loaded = true;
    loaded_.push_back(u);
    ++stats_.loads;
    if (last_ >= 0 && last_ != u) units_[last_].next = u;
    last_ = u;
  }
  if (prefetch_ && last_ >= 0) Schedule(last_);
}

void OffloadEngine::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  {
    std::unique_lock<std::mutex> prefetch_lock(prefetch_mu_);
    queued_.clear();
    prefetch_cv_.wait(prefetch_lock, [&] { return working_ < 0; });
    for (const auto& [u, ready] : prepared_) Discard(u);
    prepared_.clear();
    failed_.clear();
    window_.clear();
  }
  UnloadAllBut({});
}

bigmodel::DispatchStats OffloadEngine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

PreparedUnit OffloadEngine::Prepare(const Unit& unit) const {
  // The model's tensors take these tensors' keys: they must not be
  // inference tensors, even when the forward runs under InferenceMode.
  c10::InferenceMode normal(/*enabled=*/false);
  if (copy_stream_) {
    if (std::optional<PreparedUnit> staged = Stage(unit)) {
      return std::move(*staged);
    }
    // Pinned memory is short: plain copies on the copy stream (the host
    // waits for each), under the same event.
    PreparedUnit ready;
    c10::StreamGuard on_copy_stream(*copy_stream_);
    for (const Slot& slot : unit.slots) {
      ready.tensors.push_back(slot.source.to(
          device_, slot.dtype, /*non_blocking=*/false, /*copy=*/true));
    }
    ready.buffers = ready.tensors;
    ready.arrived = std::make_unique<c10::Event>(device_.type());
    ready.arrived->record(*copy_stream_);
    return ready;
  }
  PreparedUnit ready;
  for (const Slot& slot : unit.slots) {
    if (device_.is_cpu() && slot.source.scalar_type() == slot.dtype) {
      if (slot.mapped) TouchPages(slot.source);
      ready.tensors.push_back(slot.source);
    } else {
      ready.tensors.push_back(slot.source.to(
          device_, slot.dtype, /*non_blocking=*/false, /*copy=*/true));
    }
  }
  return ready;
}

std::optional<PreparedUnit> OffloadEngine::Stage(const Unit& unit) const {
  // Offsets aligned for vectorized kernels.
  constexpr int64_t kAlignment = 256;
  std::vector<int64_t> offsets;
  int64_t bytes = 0;
  for (const Slot& slot : unit.slots) {
    offsets.push_back(bytes);
    const int64_t size = slot.source.numel() * c10::elementSize(slot.dtype);
    bytes += (size + kAlignment - 1) / kAlignment * kAlignment;
  }
  const auto views = [&](const at::Tensor& buffer) {
    std::vector<at::Tensor> tensors;
    for (size_t i = 0; i < unit.slots.size(); ++i) {
      const Slot& slot = unit.slots[i];
      const int64_t size = slot.source.numel() * c10::elementSize(slot.dtype);
      tensors.push_back(buffer.narrow(0, offsets[i], size)
                            .view(slot.dtype)
                            .view(slot.source.sizes()));
    }
    return tensors;
  };
  // Page-locked memory the GPU can copy from asynchronously.
  at::Tensor pinned;
  try {
    pinned = at::empty(
        {bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  // Read (from the page cache or the disk) and convert on this thread.
  const std::vector<at::Tensor> host = views(pinned);
  // (The copy reads every page of a mapped source itself.)
  for (size_t i = 0; i < unit.slots.size(); ++i) {
    host[i].copy_(unit.slots[i].source);
  }
  PreparedUnit ready;
  c10::StreamGuard on_copy_stream(*copy_stream_);
  const at::Tensor staged =
      at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(device_));
  // The caching host allocator keeps `pinned` until this copy is done.
  staged.copy_(pinned, /*non_blocking=*/true);
  ready.arrived = std::make_unique<c10::Event>(device_.type());
  ready.arrived->record(*copy_stream_);
  ready.tensors = views(staged);
  ready.buffers = {staged};
  ready.staged_bytes = bytes;
  return ready;
}

void OffloadEngine::Receive(PreparedUnit& unit) const {
  if (!unit.arrived) return;
  const c10::Stream current = CurrentStream();
  unit.arrived->block(current);
  KeepForStream(unit.buffers, current);
}

c10::Stream OffloadEngine::CurrentStream() const {
  return c10::impl::VirtualGuardImpl(device_.type()).getStream(device_);
}

void OffloadEngine::KeepForStream(const std::vector<at::Tensor>& buffers,
                                  c10::Stream stream) const {
  // Allocated on the copy stream, used on `stream`.
  for (const at::Tensor& buffer : buffers) buffer.record_stream(stream);
}

void OffloadEngine::UnloadAllBut(const std::vector<int>& keep) {
  std::vector<int> still;
  for (int u : loaded_) {
    if (std::find(keep.begin(), keep.end(), u) != keep.end()) {
      still.push_back(u);
      continue;
    }
    for (Slot& slot : units_[u].slots) {
      slot.target.unsafeGetTensorImpl()->shallow_copy_from(slot.placeholder);
    }
    // Whatever stream runs now may still have the unit's reads queued.
    if (!units_[u].buffers.empty()) {
      KeepForStream(units_[u].buffers, CurrentStream());
    }
    units_[u].buffers.clear();
    Discard(u);
    units_[u].loaded = false;
    ++stats_.releases;
  }
  loaded_ = std::move(still);
}

int OffloadEngine::NextOf(int u) const {
  if (units_[u].next >= 0) return units_[u].next;
  return u + 1 < static_cast<int>(units_.size()) ? u + 1 : -1;
}

void OffloadEngine::Schedule(int from) {
  std::vector<int> window;
  std::unordered_set<int> in_window;
  int64_t bytes = 0;
  std::unordered_set<int> seen = {from};
  for (int u = NextOf(from); u >= 0 && seen.insert(u).second; u = NextOf(u)) {
    if (!window.empty() && bytes + unit_bytes_[u] > prefetch_bytes_) break;
    if (!units_[u].loaded) {
      window.push_back(u);
      in_window.insert(u);
      bytes += unit_bytes_[u];
    }
  }
  std::lock_guard<std::mutex> lock(prefetch_mu_);
  for (auto it = prepared_.begin(); it != prepared_.end();) {
    if (in_window.count(it->first)) {
      ++it;
    } else {
      Discard(it->first);
      it = prepared_.erase(it);
    }
  }
  window_ = in_window;
  queued_.erase(std::remove_if(queued_.begin(), queued_.end(),
                               [&](int u) { return !in_window.count(u); }),
                queued_.end());
  const std::unordered_set<int> queued(queued_.begin(), queued_.end());
  for (int u : window) {
    if (u != working_ && !prepared_.count(u) && !queued.count(u)) {
      failed_.erase(u);  // A new try.
      queued_.push_back(u);
    }
  }
  prefetch_cv_.notify_all();
}

std::optional<PreparedUnit> OffloadEngine::TakePrepared(int u) {
  std::unique_lock<std::mutex> lock(prefetch_mu_);
  auto queued = std::find(queued_.begin(), queued_.end(), u);
  if (queued != queued_.end() && queued != queued_.begin()) {
    // Behind others: the guess was wrong; prepare it here instead.
    queued_.erase(queued);
    return std::nullopt;
  }
  if (queued == queued_.end() && working_ != u && !prepared_.count(u) &&
      !failed_.count(u)) {
    return std::nullopt;
  }
  window_.insert(u);  // Whatever is under way for `u` is kept for us.
  prefetch_cv_.wait(lock,
                    [&] { return prepared_.count(u) || failed_.count(u); });
  if (!prepared_.count(u)) {
    // Failed (say, memory was short while the previous module was still
    // loaded): prepare it again here, now that it has been released.
    failed_.erase(u);
    return std::nullopt;
  }
  failed_.erase(u);
  PreparedUnit ready = std::move(prepared_.at(u));
  prepared_.erase(u);
  return ready;
}

void OffloadEngine::Discard(int u) const {
  for (const Slot& slot : units_[u].slots) {
    if (slot.mapped) DropPages(slot.source);
  }
}

void OffloadEngine::Work() {
  std::unique_lock<std::mutex> lock(prefetch_mu_);
  while (true) {
    prefetch_cv_.wait(lock, [&] { return stopping_ || !queued_.empty(); });
    if (stopping_) return;
    const int u = queued_.front();
    queued_.pop_front();
    working_ = u;
    lock.unlock();
    PreparedUnit ready;
    bool failed = false;
    try {
      ready = Prepare(units_[u]);
    } catch (...) {
      failed = true;  // Prepared again on the forward thread when wanted.
    }
    lock.lock();
    working_ = -1;
    if (failed) {
      failed_.insert(u);
    } else {
      failed_.erase(u);
      if (window_.count(u)) {
        prepared_[u] = std::move(ready);
      } else {
        Discard(u);  // Left the window while it was being prepared.
      }
    }
    prefetch_cv_.notify_all();
  }
}

void OffloadEngine::StopWorker() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(prefetch_mu_);
    stopping_ = true;
  }
  prefetch_cv_.notify_all();
  worker_.join();
}

}  // namespace accelerate::bigmodel_internal
