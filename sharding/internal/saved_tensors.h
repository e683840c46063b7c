// Saved tensors that do not keep gathered parameters alive. Autograd saves
// what backward needs (a Linear's `weight.t()`, the weight itself); under
// FULL_SHARD those are views of a unit's gathered buffer, which would then
// stay in memory from forward to backward. While any storage is registered
// here, every tensor autograd saves goes through pack and unpack hooks:
// one whose storage is registered is kept as its owner, tag and layout
// only, and unpacked in backward as the same view of the storage its owner
// gives then (gathering it again if it was freed), which is how the unit's
// parameters come back for its backward. Other tensors are kept as they
// are.
//
// LibTorch's C++ engine has no default saved-tensor hooks (Python's engine
// reads them from Python); `InstallSavedTensorHooksOnce` makes the default
// autograd engine one that has. Call it before the first backward that
// should see the hooks.
//
// Thread safety: the registry is guarded by a lock; hooks run on autograd's
// threads and call `Storage` without the registry's lock held.

#ifndef ACCELERATE_SHARDING_INTERNAL_SAVED_TENSORS_H_
#define ACCELERATE_SHARDING_INTERNAL_SAVED_TENSORS_H_

#include <ATen/core/Tensor.h>
#include <c10/core/StorageImpl.h>

namespace accelerate::sharding_internal {

class StorageOwner {
 public:
  virtual ~StorageOwner() = default;
  // The tensor whose storage now holds what was registered under `tag`:
  // contiguous, storage offset 0, covering the storage. Throws (c10::Error)
  // to fail the backward.
  virtual at::Tensor Storage(int tag) = 0;
};

// Makes the default autograd engine one with the hooks above; the first
// call in a process does it.
void InstallSavedTensorHooksOnce();

// Saved views of `storage` are packed as (owner, tag, layout).
// REQUIRES: `owner` outlives the registration.
void RegisterStorage(const c10::StorageImpl* storage, StorageOwner* owner,
                     int tag);
void ForgetStorage(const c10::StorageImpl* storage);

}  // namespace accelerate::sharding_internal

#endif  // ACCELERATE_SHARDING_INTERNAL_SAVED_TENSORS_H_
