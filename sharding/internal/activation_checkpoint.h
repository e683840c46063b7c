// Activation checkpointing without the model's code changing. PyTorch's
// non-reentrant checkpoint calls the wrapped module again in backward;
// LibTorch modules have no generic forward to call, so this records
// instead: while a checkpointed unit's forward runs, every operation the
// training thread dispatches is kept on the unit's tape (the operator, its
// arguments, which earlier operation made each tensor argument, tensors
// from outside the unit kept as they are), and the tensors autograd saves
// for backward are dropped when the unit's forward ends. The first of them
// backward asks for replays the tape (with the random-number generators
// and autocast as they were, gradients recorded), collects what autograd
// saves in the same order, and hands each out once.
//
// A unit's forward begins with the first operation given one of its
// parameters and ends with the first given a parameter of another unit (or
// when a backward starts, `BackwardScope`). Operations are seen through a
// boxed fallback on a dispatch key that sits above autograd and autocast
// (`TESTING_ONLY_GenericMode`, unused by LibTorch itself), included on the
// recording thread only.
//
// A unit whose forward cannot be replayed keeps its saved tensors, with a
// warning naming it and the operation: one that writes in place into a
// tensor from outside the unit (a batch norm's running statistics
// included), or runs a collective. Replaying fails the backward, naming
// the unit, when a tensor it read from outside was changed in place since
// or the replay saves other tensors than the forward did. Random operations
// replay exactly when no other thread draws from the same generator while
// the unit's forward runs (as with PyTorch's checkpoint).
//
// Thread safety: recording state is per thread; the registry and each
// region are guarded by locks.

#ifndef ACCELERATE_SHARDING_INTERNAL_ACTIVATION_CHECKPOINT_H_
#define ACCELERATE_SHARDING_INTERNAL_ACTIVATION_CHECKPOINT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/TensorImpl.h>

namespace accelerate::sharding_internal {

// One unit's recorded forward (defined in the .cc).
class Region;

// What one owner's checkpointed units did.
struct CheckpointCounters {
  std::atomic<int64_t> checkpointed{0};  // forwards whose activations were dropped
  std::atomic<int64_t> kept{0};          // forwards that could not be replayed
  std::atomic<int64_t> recomputed{0};    // replays
};

// Makes `param` known as a parameter of `owner`'s unit `unit` (labelled
// `label` in messages); `checkpointed` units are recorded.
void RegisterCheckpointParam(const c10::TensorImpl* param, const void* owner,
                             int unit, bool checkpointed,
                             const std::string& label, c10::Device device,
                             std::shared_ptr<CheckpointCounters> counters);
void ForgetCheckpointParams(const void* owner);

// Records on this thread from now on (idempotent; operations outside
// checkpointed units pass through), until no checkpointed unit is left
// registered. Call at a forward's first operation.
void StartRecording();
// Ends the unit forward being recorded on this thread, if any.
void EndUnitForward();
// While a backward runs on this thread: the unit forward being recorded
// ends, and the backward's own operations are not seen.
class BackwardScope {
 public:
  BackwardScope();
  ~BackwardScope();
  BackwardScope(const BackwardScope&) = delete;
  BackwardScope& operator=(const BackwardScope&) = delete;

 private:
  const bool recording_;
};

// For the saved-tensor hooks (saved_tensors.cc):
// Whether this thread records or replays (saved tensors need the hooks).
bool CheckpointHooksWanted();
// During a replay, takes `tensor` as the next one saved and returns true.
bool CaptureReplayed(const at::Tensor& tensor);
// During a unit's forward: numbers `tensor` (the next saved), keeps it
// until the forward ends unless `owned` (a parameter view packed
// elsewhere), and returns the region; null outside.
std::shared_ptr<Region> PackIntoRegion(const at::Tensor& tensor, bool owned,
                                       int64_t* index);
// The saved tensor `index` of `region`, replaying it if needed. Throws
// (c10::Error) naming the unit when the replay fails.
at::Tensor UnpackFromRegion(Region& region, int64_t index);

}  // namespace accelerate::sharding_internal

#endif  // ACCELERATE_SHARDING_INTERNAL_ACTIVATION_CHECKPOINT_H_
