#include "precision/float8.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>

namespace accelerate::precision {
namespace {

// torchao's EPS: keeps an all-zero tensor's scale finite.
constexpr double kMinAmax = 1e-12;

}  // namespace

absl::StatusOr<Float8Format> ParseFloat8Format(absl::string_view text) {
  const std::string upper = absl::AsciiStrToUpper(text);
  if (upper == "E4M3") return Float8Format::kE4M3;
  if (upper == "E5M2") return Float8Format::kE5M2;
  return absl::InvalidArgumentError(absl::StrCat(
      "fp8 format: \"", text, "\" is not one of E4M3, E5M2"));
}

absl::string_view Float8FormatName(Float8Format format) {
  return format == Float8Format::kE4M3 ? "E4M3" : "E5M2";
}

at::ScalarType Float8Type(Float8Format format) {
  return format == Float8Format::kE4M3 ? at::kFloat8_e4m3fn
                                       : at::kFloat8_e5m2;
}

double Float8Max(Float8Format format) {
  return format == Float8Format::kE4M3 ? 448.0 : 57344.0;
}

at::Tensor AmaxToScale(const at::Tensor& amax, Float8Format format,
                       bool round_to_power_of_2) {
  at::Tensor scale =
      (Float8Max(format) / amax.to(at::kDouble).clamp_min(kMinAmax))
          .to(at::kFloat);
  if (round_to_power_of_2) scale = at::exp2(at::floor(at::log2(scale)));
  return scale;
}

at::Tensor CastToFloat8(const at::Tensor& x, const at::Tensor& scale,
                        Float8Format format) {
  const double max = Float8Max(format);
  return (x.to(at::kFloat) * scale).clamp(-max, max).to(Float8Type(format));
}

at::Tensor Dequantize(const at::Tensor& bits, const at::Tensor& scale) {
  return bits.to(at::kFloat) / scale;
}

}  // namespace accelerate::precision
