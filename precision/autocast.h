// Autocast scopes: LibTorch's automatic mixed precision switched on for the
// code inside a scope (operations that gain from it run in float16 or
// bfloat16, the others in float32) and back to what it was when the scope
// ends; and switched off for a backward pass, as PyTorch recommends.
//
// clang-format off
//   #include <ATen/ATen.h>
//   at::Tensor Example(const at::Tensor& x, const at::Tensor& w) {
//     AutocastScope autocast(MixedPrecision::kBf16, c10::DeviceType::CPU);
//     return at::matmul(x, w);  // computed in bfloat16
//   }
// clang-format on
//
// Thread safety: autocast settings are thread-local; a scope acts on the
// thread that made it and must end there.

#ifndef ACCELERATE_PRECISION_AUTOCAST_H_
#define ACCELERATE_PRECISION_AUTOCAST_H_

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include "precision/mixed_precision.h"

namespace accelerate::precision {

// The dtype autocast computes in for `precision`: float16 for fp16, bfloat16
// for bf16 and fp8 (whose non-matmul operations run in bf16, as in
// Accelerate's FP8 recipes); `Undefined` for no.
at::ScalarType AutocastDtype(MixedPrecision precision);

// Whether this CPU multiplies float16 matrices in hardware: on x86, AVX512-FP16
// or AMX-FP16 (what LibTorch's oneDNN float16 path needs); assumed on other
// architectures. Without it LibTorch computes float16 matrix products in a
// scalar loop, tens of times slower than float32 (bfloat16 stays fast on
// CPUs with AVX512-BF16 or AMX), and the Accelerator warns when fp16 is
// asked on the CPU.
bool CpuHasFastFloat16Matmul();

// Autocast on `device` (CPU or CUDA) with `AutocastDtype(precision)` while
// alive; nothing for `kNo` or a default-constructed scope. Movable, so a
// training-step scope can hold one.
class AutocastScope {
 public:
  AutocastScope() = default;
  AutocastScope(MixedPrecision precision, c10::DeviceType device);
  AutocastScope(AutocastScope&& other) noexcept;
  AutocastScope& operator=(AutocastScope&&) = delete;
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;
  ~AutocastScope();

  bool active() const { return active_; }

 private:
  bool active_ = false;
  bool cpu_was_ = false;
  bool gpu_was_ = false;
  at::ScalarType cpu_dtype_was_ = at::kBFloat16;
  at::ScalarType gpu_dtype_was_ = at::kHalf;
};

// Autocast off on CPU and CUDA while alive (for backward passes).
class AutocastOff {
 public:
  AutocastOff();
  AutocastOff(const AutocastOff&) = delete;
  AutocastOff& operator=(const AutocastOff&) = delete;
  ~AutocastOff();

 private:
  bool cpu_was_;
  bool gpu_was_;
};

}  // namespace accelerate::precision

#endif  // ACCELERATE_PRECISION_AUTOCAST_H_
