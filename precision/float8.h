// The two float8 formats of FP8 training, as LibTorch 2 stores them
// (`Float8_e4m3fn`, `Float8_e5m2`), and the scaled, saturating casts the
// recipes use: `x * scale` clamped to the format's largest finite value, then
// rounded to the nearest representable value (ties to even).
//
// clang-format off
//   #include <ATen/ATen.h>
//   at::Tensor Example(const at::Tensor& activations) {
//     const Float8Format format = Float8Format::kE4M3;
//     at::Tensor scale = AmaxToScale(activations.abs().max(), format);
//     at::Tensor bits = CastToFloat8(activations, scale, format);  // 1 byte each
//     return Dequantize(bits, scale);  // back to float32, close to the input
//   }
// clang-format on
//
// Thread safety: pure functions.

#ifndef ACCELERATE_PRECISION_FLOAT8_H_
#define ACCELERATE_PRECISION_FLOAT8_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include <ATen/core/Tensor.h>

namespace accelerate::precision {

enum class Float8Format {
  kE4M3,  // 4 exponent, 3 mantissa bits, no infinities: largest 448
  kE5M2,  // 5 exponent, 2 mantissa bits: largest finite 57344
};

// "E4M3" or "E5M2", any case; `InvalidArgument` naming the value otherwise.
[[nodiscard]] absl::StatusOr<Float8Format> ParseFloat8Format(
    absl::string_view text);
absl::string_view Float8FormatName(Float8Format format);

// LibTorch's dtype for `format`.
at::ScalarType Float8Type(Float8Format format);
// The largest finite value of `format` (448 or 57344).
double Float8Max(Float8Format format);

// The scale that maps `amax` onto the format's largest value,
// `max / max(amax, 1e-12)`, computed in float64 and returned in float32 (as
// torchao's amax_to_scale); rounded down to a power of two if asked.
at::Tensor AmaxToScale(const at::Tensor& amax, Float8Format format,
                       bool round_to_power_of_2 = false);

// `x * scale` (in float32, `scale` broadcast) saturated to the format's range
// and cast to it. NaN stays NaN.
at::Tensor CastToFloat8(const at::Tensor& x, const at::Tensor& scale,
                        Float8Format format);

// `bits / scale` in float32.
at::Tensor Dequantize(const at::Tensor& bits, const at::Tensor& scale);

}  // namespace accelerate::precision

#endif  // ACCELERATE_PRECISION_FLOAT8_H_
