// Turning LibTorch's autocast on for a training step and back to what it was
// afterwards, and off for a backward pass (as PyTorch recommends).
//
// Thread safety: autocast settings are thread-local; use on the training
// thread.

#ifndef ACCELERATE_ACCELERATOR_INTERNAL_AUTOCAST_H_
#define ACCELERATE_ACCELERATOR_INTERNAL_AUTOCAST_H_

#include <c10/core/ScalarType.h>

namespace accelerate::accelerator_internal {

// The autocast settings before `EnterAutocast`, restored by `ExitAutocast`.
struct AutocastSnapshot {
  bool entered = false;  // EnterAutocast turned autocast on.
  bool cpu_was = false;
  bool gpu_was = false;
  at::ScalarType cpu_dtype_was = at::kBFloat16;
  at::ScalarType gpu_dtype_was = at::kHalf;
};

// Enables autocast to `dtype` on the GPU (`cuda`) or the CPU.
AutocastSnapshot EnterAutocast(at::ScalarType dtype, bool cuda);

// Restores the settings from before the matching `EnterAutocast` (nothing
// when it did not enter).
void ExitAutocast(const AutocastSnapshot& snapshot);

// Autocast off on CPU and GPU while alive.
class AutocastDisabled {
 public:
  AutocastDisabled();
  AutocastDisabled(const AutocastDisabled&) = delete;
  AutocastDisabled& operator=(const AutocastDisabled&) = delete;
  ~AutocastDisabled();

 private:
  bool cpu_was_;
  bool gpu_was_;
};

}  // namespace accelerate::accelerator_internal

#endif  // ACCELERATE_ACCELERATOR_INTERNAL_AUTOCAST_H_
