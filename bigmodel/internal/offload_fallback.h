// How offloaded weights come in when an operation uses them. LibTorch
// modules have no forward hooks, so this is done one level lower: an
// offloaded weight is a placeholder tensor (device `privateuseone`, no
// storage) whose dispatch keys send every operation given it to a boxed
// fallback, which has the owning OffloadEngine load the weights, then runs
// the operation again on them.
//
// Thread safety: the registry of owners is guarded by a lock; the fallback
// runs on whatever thread runs the operation.

#ifndef ACCELERATE_BIGMODEL_INTERNAL_OFFLOAD_FALLBACK_H_
#define ACCELERATE_BIGMODEL_INTERNAL_OFFLOAD_FALLBACK_H_

#include <c10/core/ScalarType.h>
#include <c10/core/TensorImpl.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/intrusive_ptr.h>

namespace accelerate::bigmodel_internal {

class OffloadEngine;

// A tensor of `dtype` and `sizes` without storage, on device
// `privateuseone`, whose operations go to the fallback.
c10::intrusive_ptr<c10::TensorImpl> MakePlaceholder(at::ScalarType dtype,
                                                    c10::IntArrayRef sizes);

// Registers the fallback on the placeholders' dispatch keys; the first call
// in a process does it, later ones nothing.
void InstallFallbackOnce();

// Makes the model tensor `target` known to the fallback as a weight of unit
// `unit` of `engine`, which loads it when an operation uses it.
void RegisterOwner(const c10::TensorImpl* target, OffloadEngine* engine,
                   int unit);

// Forgets `target`: operations on it are then an error naming the gone
// DispatchedModel.
void ForgetOwner(const c10::TensorImpl* target);

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_OFFLOAD_FALLBACK_H_
