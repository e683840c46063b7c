// The offloaded execution of a dispatched model (dispatch.h): the offloaded
// weights grouped by module into units, loaded onto the execution device
// when an operation needs them (state/placeholder.h's fallback calls
// Materialize), given
// back when another unit comes in, and prepared ahead on a background
// thread in the order the previous pass used them (else registration
// order), within `prefetch_bytes`.
//
// On a GPU a unit is staged: its weights are copied (and converted) into one
// pinned host buffer, which goes to the GPU in one non-blocking copy on a
// copy stream of the engine's own; the forward's stream waits for that
// copy's event (on the GPU, not the host) when the unit is activated. So a
// prefetched unit's disk reads, conversion and transfer all overlap the
// running module. Pinned buffers come from LibTorch's caching host
// allocator, reused once their copy is done. A unit's device memory is
// marked in use by the stream current when it is activated and when it is
// released, so that its reuse waits for that stream; a unit still loaded
// when forwards move to another stream is not waited for again there
// (Release first).
//
// Thread safety: built single-threaded (UnitFor, AddSlot, slot, then
// Start); afterwards Activate, Release and stats may be called from any
// thread (one activation at a time), while the prefetch thread reads the
// slots, which no longer change.

#ifndef ACCELERATE_BIGMODEL_INTERNAL_OFFLOAD_ENGINE_H_
#define ACCELERATE_BIGMODEL_INTERNAL_OFFLOAD_ENGINE_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/Event.h>
#include <c10/core/ScalarType.h>
#include <c10/core/Stream.h>
#include <c10/core/TensorImpl.h>
#include <c10/util/intrusive_ptr.h>

#include "bigmodel/dispatch.h"
#include "state/placeholder.h"

namespace accelerate::bigmodel_internal {

// One offloaded weight.
struct Slot {
  std::string name;
  at::Tensor target;  // The model's tensor, whose contents are swapped.
  c10::intrusive_ptr<c10::TensorImpl> placeholder;
  at::Tensor source;    // On the CPU: a mapping alias, or a copy in memory.
  bool mapped = false;  // `source` aliases a file mapping.
  at::ScalarType dtype = at::kFloat;  // On the execution device.
};

// A unit's weights on the execution device. On a GPU, `arrived` is the
// event of their copy stream's transfer, which users must wait for, and
// `buffers` the device memory they live in (the one staging buffer they
// are views of, or themselves).
struct PreparedUnit {
  std::vector<at::Tensor> tensors;
  std::unique_ptr<c10::Event> arrived;
  std::vector<at::Tensor> buffers;
  int64_t staged_bytes = 0;  // Sent from a pinned buffer.
};

// The offloaded weights of one module, loaded and released together.
struct Unit {
  std::vector<Slot> slots;
  int next = -1;  // The unit loaded after this one last time.
  bool loaded = false;
  std::vector<at::Tensor> buffers;  // While loaded on a GPU (PreparedUnit's).
};

class OffloadEngine : public state::PlaceholderOwner {
 public:
  // Weights run on `device`; `prefetch` and `prefetch_bytes` as
  // DispatchOptions'.
  OffloadEngine(c10::Device device, bool prefetch, int64_t prefetch_bytes);
  OffloadEngine(const OffloadEngine&) = delete;
  OffloadEngine& operator=(const OffloadEngine&) = delete;
  // Stops the prefetch thread, makes the placeholders unknown to the
  // fallback and gives back the loaded weights.
  ~OffloadEngine() override;

  c10::Device device() const { return device_; }

  // Before Start: the unit of `module`'s weights (made on first use).
  int UnitFor(const std::string& module);
  // Before Start: a new slot of `unit`, as (unit, slot) indices for `slot`.
  std::pair<int, int> AddSlot(int unit);
  Slot& slot(std::pair<int, int> at) {
    return units_[at.first].slots[at.second];
  }

  // Puts the placeholders in the model and makes them known to the
  // fallback; starts the prefetch thread. Call once, with every slot filled.
  void Start();

  // Names of the offloaded weights, unit by unit.
  std::vector<std::string> names() const;

  // Loads `wanted` (the units one operation needs), releases the others,
  // and has the units expected next prepared.
  void Activate(const std::vector<int>& wanted);
  // The fallback's call: activates the units `tags`.
  void Materialize(const std::vector<int>& tags) override { Activate(tags); }

  // Gives back every loaded and prepared unit.
  void Release();

  bigmodel::DispatchStats stats() const;

 private:
  // The unit's weights on the execution device. Runs on the prefetch
  // thread too: reads only the slots, immutable after Start.
  PreparedUnit Prepare(const Unit& unit) const;
  // Prepare on a GPU: staged through one pinned buffer, sent on
  // `copy_stream_`; nothing when pinned memory cannot be had.
  std::optional<PreparedUnit> Stage(const Unit& unit) const;
  // Makes the forward's current stream wait for `unit`'s transfer and keeps
  // its memory from being reused before that stream is done with it.
  void Receive(PreparedUnit& unit) const;
  // The stream the forward runs on now, on `device_`.
  c10::Stream CurrentStream() const;
  // Marks `buffers` in use by `stream` until its queued work is done (their
  // memory is reused after that).
  void KeepForStream(const std::vector<at::Tensor>& buffers,
                     c10::Stream stream) const;
  // Puts the placeholders back in the loaded units but `keep`.
  void UnloadAllBut(const std::vector<int>& keep);
  // The unit expected after `u`: the one that followed it last time, else
  // the next registered; -1 after the last.
  int NextOf(int u) const;
  // Queues the units expected after `from`, at least one and up to
  // `prefetch_bytes_` of weights; forgets prepared units outside that
  // window, so that memory stays bounded.
  void Schedule(int from);
  // Unit `u` prepared ahead (waiting if the prefetch thread is on it or
  // about to be), or nothing.
  std::optional<PreparedUnit> TakePrepared(int u);
  // Gives back the pages of unit `u`'s file-backed weights, after a release
  // or a prefetch not taken. (Should the unit be in use meanwhile, prepared
  // again on the forward thread, its pages are only read back in: the
  // mapping is private and unwritten.)
  void Discard(int u) const;
  // The prefetch thread's loop.
  void Work();
  void StopWorker();

  const c10::Device device_;
  const bool prefetch_;
  const int64_t prefetch_bytes_;
  std::optional<c10::Stream> copy_stream_;  // On a GPU.
  mutable std::mutex mu_;  // One activation at a time.
  std::vector<Unit> units_;
  std::vector<int64_t> unit_bytes_;
  std::map<std::string, int> unit_index_;
  std::vector<int> loaded_;
  int last_ = -1;
  bigmodel::DispatchStats stats_;

  // Shared with the prefetch thread.
  std::mutex prefetch_mu_;
  std::condition_variable prefetch_cv_;
  std::deque<int> queued_;
  int working_ = -1;
  std::map<int, PreparedUnit> prepared_;
  std::set<int> failed_;
  std::unordered_set<int> window_;  // What Schedule asked for last.
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_OFFLOAD_ENGINE_H_
