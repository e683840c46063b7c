// Placeholder tensors: a module's tensor whose values are elsewhere (an
// offloaded weight, a parameter sharded across processes) until an
// operation needs them. LibTorch modules have no forward hooks, so this
// works one level lower: the tensor's contents are swapped for a
// placeholder (device `privateuseone`, no storage) whose dispatch keys send
// every operation given it to one boxed fallback, which asks the tensor's
// owner to materialize it (swap real contents back in), then runs the
// operation again. Autograd metadata (requires_grad, `.grad`, hooks) stays
// with the tensor through the swaps. `//bigmodel`'s offloaded execution and
// `//sharding`'s FULL_SHARD are the two owners; one fallback serves both.
//
// clang-format off
//   #include <ATen/core/Tensor.h>
//   class Lazy : public PlaceholderOwner {
//    public:
//     explicit Lazy(at::Tensor weight) : weight_(weight), real_(weight.clone()) {
//       InstallPlaceholderFallbackOnce();
//       weight_.unsafeGetTensorImpl()->shallow_copy_from(
//           MakePlaceholder(weight.scalar_type(), weight.sizes()));
//       RegisterPlaceholderOwner(weight_.unsafeGetTensorImpl(), this, 0);
//     }
//     ~Lazy() override { ForgetPlaceholderOwner(weight_.unsafeGetTensorImpl()); }
//     void Materialize(const std::vector<int>&) override {
//       weight_.unsafeGetTensorImpl()->shallow_copy_from(real_.getIntrusivePtr());
//     }
//    private:
//     at::Tensor weight_, real_;
//   };
// clang-format on
//
// Thread safety: the registry of owners is guarded by a lock; the fallback
// runs on whatever thread runs the operation and calls `Materialize` there,
// without the registry's lock held.

#ifndef ACCELERATE_STATE_PLACEHOLDER_H_
#define ACCELERATE_STATE_PLACEHOLDER_H_

#include <vector>

#include <c10/core/ScalarType.h>
#include <c10/core/TensorImpl.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/intrusive_ptr.h>

namespace accelerate::state {

// Who puts real contents into its placeholders.
class PlaceholderOwner {
 public:
  virtual ~PlaceholderOwner() = default;
  // Puts the real contents into every tensor registered under one of
  // `tags` (the tags of the placeholders one operation was given, each
  // once). Throws (c10::Error) to fail the operation.
  virtual void Materialize(const std::vector<int>& tags) = 0;
};

// A tensor of `dtype` and `sizes` without storage, on device
// `privateuseone`, whose operations go to the fallback.
c10::intrusive_ptr<c10::TensorImpl> MakePlaceholder(at::ScalarType dtype,
                                                    c10::IntArrayRef sizes);

// Registers the fallback on the placeholders' dispatch keys; the first call
// in a process does it, later ones nothing.
void InstallPlaceholderFallbackOnce();

// Makes `target` known to the fallback: when an operation is given it as a
// placeholder, `owner->Materialize` is called with `tag` among the tags.
// REQUIRES: `owner` outlives the registration (ForgetPlaceholderOwner).
void RegisterPlaceholderOwner(const c10::TensorImpl* target,
                              PlaceholderOwner* owner, int tag);

// Forgets `target`: operations on it while a placeholder are then an error
// saying its owner is gone.
void ForgetPlaceholderOwner(const c10::TensorImpl* target);

}  // namespace accelerate::state

#endif  // ACCELERATE_STATE_PLACEHOLDER_H_
