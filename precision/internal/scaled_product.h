// The product of two float8 operands with their scales, as the FP8 layers
// compute it: natively through `at::_scaled_mm` where the device has float8
// matrix units (CUDA, compute capability 8.9 or newer: Ada, Hopper,
// Blackwell), else in float32 from the dequantized values.
//
// Thread safety: pure functions.

#ifndef ACCELERATE_PRECISION_INTERNAL_SCALED_PRODUCT_H_
#define ACCELERATE_PRECISION_INTERNAL_SCALED_PRODUCT_H_

#include <ATen/core/Tensor.h>

namespace accelerate::precision_internal {

// A float8 tensor and the scale it was cast with (`bits = x * scale`): one
// value per tensor, or one per row ([rows, 1]).
struct ScaledOperand {
  at::Tensor bits;
  at::Tensor scale;
};

// (a.bits / a.scale) @ (b.bits / b.scale)^T as float32: `a` is [M, K], `b`
// is [N, K] (a Linear's weight layout), the result [M, N].
at::Tensor ScaledProduct(const ScaledOperand& a, const ScaledOperand& b);

// Whether ScaledProduct runs `at::_scaled_mm` for these operands: both on
// one CUDA device of compute capability >= 8.9, per-tensor scales, M, K
// and N multiples of 16, and not both E5M2 (cuBLASLt has no such kernel).
bool RunsNatively(const ScaledOperand& a, const ScaledOperand& b);

// The `at::_scaled_mm` call itself, on any device that implements it (the
// tests run it on the CPU too). REQUIRES: per-tensor scales.
at::Tensor NativeScaledProduct(const ScaledOperand& a, const ScaledOperand& b);

}  // namespace accelerate::precision_internal

#endif  // ACCELERATE_PRECISION_INTERNAL_SCALED_PRODUCT_H_
