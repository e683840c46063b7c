#include "precision/internal/scaled_product.h"

#include <ATen/ATen.h>
#ifdef ACCELERATE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif
#include "precision/float8.h"
#include "state/logging.h"

namespace accelerate::precision_internal {
namespace {

bool Fp8MatrixUnits(const c10::Device& device) {
#ifdef ACCELERATE_WITH_CUDA
  if (!device.is_cuda()) return false;
  const cudaDeviceProp* properties =
      at::cuda::getDeviceProperties(device.index());
  return properties->major * 10 + properties->minor >= 89;
#else
  (void)device;
  return false;
#endif
}

}  // namespace

bool RunsNatively(const ScaledOperand& a, const ScaledOperand& b) {
  if (a.bits.dim() != 2 || b.bits.dim() != 2) return false;
  if (a.scale.numel() != 1 || b.scale.numel() != 1) return false;
  if (a.bits.device() != b.bits.device()) return false;
  if (a.bits.scalar_type() == at::kFloat8_e5m2 &&
      b.bits.scalar_type() == at::kFloat8_e5m2) {
    return false;
  }
  const int64_t m = a.bits.size(0), k = a.bits.size(1), n = b.bits.size(0);
  if (m % 16 != 0 || k % 16 != 0 || n % 16 != 0) return false;
  return Fp8MatrixUnits(a.bits.device());
}

at::Tensor NativeScaledProduct(const ScaledOperand& a, const ScaledOperand& b) {
  ACCELERATE_CHECK(a.scale.numel() == 1 && b.scale.numel() == 1)
      << "NativeScaledProduct needs per-tensor scales";
  // _scaled_mm multiplies by its scales: ours divide. The first operand
  // row-major, the second column-major ([N, K] contiguous, transposed).
  const at::Tensor a_inverse = a.scale.to(at::kFloat).reciprocal().reshape({});
  const at::Tensor b_inverse = b.scale.to(at::kFloat).reciprocal().reshape({});
  return at::_scaled_mm(a.bits.contiguous(), b.bits.contiguous().t(),
                        a_inverse, b_inverse, /*bias=*/std::nullopt,
                        /*scale_result=*/std::nullopt,
                        /*out_dtype=*/at::kFloat, /*use_fast_accum=*/false);
}

at::Tensor ScaledProduct(const ScaledOperand& a, const ScaledOperand& b) {
  if (RunsNatively(a, b)) return NativeScaledProduct(a, b);
  return at::mm(precision::Dequantize(a.bits, a.scale),
                precision::Dequantize(b.bits, b.scale).t());
}

}  // namespace accelerate::precision_internal
