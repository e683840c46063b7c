// Accelerate's one switch, `mixed_precision = no | fp16 | bf16 | fp8`, as a
// value with one parser and one printer: the launcher (without LibTorch),
// the `Accelerator` and user code read the same names the same way.
//
// clang-format off
//   absl::StatusOr<bool> Example(absl::string_view from_user) {
//     absl::StatusOr<MixedPrecision> precision = ParseMixedPrecision(from_user);
//     if (!precision.ok()) return precision.status();  // names the bad value
//     return *precision == MixedPrecision::kFp16;  // "FP16" and "fp16" alike
//   }
// clang-format on
//
// Thread safety: pure functions.

#ifndef ACCELERATE_PRECISION_MIXED_PRECISION_H_
#define ACCELERATE_PRECISION_MIXED_PRECISION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accelerate::precision {

enum class MixedPrecision {
  kNo,    // fp32 throughout
  kFp16,  // autocast to float16, dynamic loss scaling
  kBf16,  // autocast to bfloat16
  kFp8,   // float8 matrix multiplications
};

// Accelerate's spelling in any case; "false" (written by old config files)
// means no. `InvalidArgument` names the value and lists the valid ones:
// `mixed_precision: "fp17" is not one of no, fp16, bf16, fp8`.
[[nodiscard]] absl::StatusOr<MixedPrecision> ParseMixedPrecision(
    absl::string_view text);

// "no", "fp16", "bf16" or "fp8".
absl::string_view MixedPrecisionName(MixedPrecision precision);

// Every name, in Accelerate's order.
const std::vector<std::string>& MixedPrecisionNames();

}  // namespace accelerate::precision

#endif  // ACCELERATE_PRECISION_MIXED_PRECISION_H_
