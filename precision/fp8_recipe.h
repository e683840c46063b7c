// How FP8 training scales its tensors, configured with Accelerate's names:
//
//   - backend "AO" (torchao's dynamic scaling, the default): every cast takes
//     its scale from the tensor being cast; recipe "tensorwise" (one scale per
//     tensor, E4M3 forward and E5M2 gradients) or "rowwise" (one scale per
//     row or column of each matrix product, all E4M3, power-of-two scales);
//   - backend "TE" (Transformer Engine's delayed scaling): each tensor's
//     scale comes from the amax history of earlier steps,
//     `(fp8_max / amax) / 2^margin`, with `fp8_format` HYBRID (E4M3 forward,
//     E5M2 gradients) or E4M3, `amax_history_len`, `amax_compute_algo` max or
//     most_recent, `margin` and `interval`; histories are max-reduced across
//     processes.
//
// Values not given come from the variables `accelerate launch` exports from
// a config's `fp8_config` (ACCELERATE_FP8_BACKEND, ACCELERATE_FP8_FORMAT,
// ACCELERATE_FP8_MARGIN, ACCELERATE_FP8_INTERVAL,
// ACCELERATE_FP8_AMAX_HISTORY_LEN, ACCELERATE_FP8_AMAX_COMPUTE_ALGO) and
// ACCELERATE_FP8_RECIPE (ours, for AO's recipe).
//
// clang-format off
//   absl::StatusOr<Fp8Recipe> Example() {
//     Fp8Options options;
//     options.backend = "TE";
//     options.amax_history_len = 16;
//     return ResolveFp8Recipe(options, state::ProcessEnvironment());
//   }
// clang-format on
//
// Thread safety: `DelayedScale` is used by one training thread.

#ifndef ACCELERATE_PRECISION_FP8_RECIPE_H_
#define ACCELERATE_PRECISION_FP8_RECIPE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include "precision/float8.h"
#include "state/environment.h"

namespace accelerate::precision {

struct Fp8Options {
  // "AO" (dynamic scaling) or "TE" (delayed scaling). Default: AO.
  std::optional<std::string> backend;
  // AO: "tensorwise" or "rowwise". Default: tensorwise.
  std::optional<std::string> recipe;
  // TE: "HYBRID" or "E4M3". Default: HYBRID.
  std::optional<std::string> fp8_format;
  // TE: steps of amax history. Default: 1024.
  std::optional<int> amax_history_len;
  // TE: "most_recent" or "max". Default: most_recent.
  std::optional<std::string> amax_compute_algo;
  // TE: the scale is divided by 2^margin. Default: 0.
  std::optional<int> margin;
  // TE: steps between scale updates. Default: 1.
  std::optional<int> interval;
};

enum class Fp8Scaling { kDynamicTensorwise, kDynamicRowwise, kDelayed };

// A resolved recipe (what `ResolveFp8Recipe` returns; the defaults are
// torchao's tensorwise recipe).
struct Fp8Recipe {
  // Where the scales come from.
  Fp8Scaling scaling = Fp8Scaling::kDynamicTensorwise;
  // The format of inputs and weights.
  Float8Format forward_format = Float8Format::kE4M3;
  // The format of output gradients.
  Float8Format backward_format = Float8Format::kE5M2;
  // Dynamic scaling: scales rounded down to powers of two (rowwise).
  bool round_scales_to_power_of_2 = false;
  // Delayed scaling: steps of amax history.
  int amax_history_len = 1024;
  // Delayed scaling: the amax is the history's max, else the most recent.
  bool amax_max = false;
  // Delayed scaling: scales are divided by 2^margin.
  int margin = 0;
  // Delayed scaling: updates between scale changes.
  int interval = 1;
};

// `InvalidArgument` names a bad value and lists the valid ones.
[[nodiscard]] absl::StatusOr<Fp8Recipe> ResolveFp8Recipe(
    const Fp8Options& options, const state::Environment& env);

// The delayed scale of one tensor (TE's recipe): starts at 1; each cast
// records the tensor's amax; before the next cast, `Update` turns the history
// into the next scale and rolls it.
class DelayedScale {
 public:
  DelayedScale(const Fp8Recipe& recipe, Float8Format format);

  // Keeps the history and the scale on `device` (where the tensors being
  // cast live), moving them on the first cast there.
  void MoveTo(c10::Device device);
  // The scale for this step's cast (float32, one element).
  const at::Tensor& scale() const { return scale_; }
  // Writes this step's amax into the history's newest slot.
  void Record(const at::Tensor& amax);
  // Whether an amax was recorded since the last update.
  bool pending() const { return pending_; }
  // Slot 0, this step's amax, to be max-reduced across processes before
  // `Update`.
  at::Tensor newest() { return history_[0]; }
  // amax from the history (max or most recent); every `interval` updates a
  // new scale `(fp8_max / amax) / 2^margin` (kept when amax is 0 or not
  // finite); then the history rolls and the newest slot is cleared.
  void Update();
  const at::Tensor& history() const { return history_; }
  Float8Format format() const { return format_; }
  // A copy with its own history and scale.
  DelayedScale Clone() const;

  // What a checkpoint keeps to resume the recipe exactly.
  struct Saved {
    at::Tensor history;
    at::Tensor scale;
    int64_t updates = 0;
    bool pending = false;
  };
  Saved Save() const { return {history_, scale_, updates_, pending_}; }
  // `InvalidArgument` naming the sizes when the history is not
  // `amax_history_len` long or the scale not one value; nothing changes then.
  [[nodiscard]] absl::Status Restore(const Saved& saved);

 private:
  Fp8Recipe recipe_;
  Float8Format format_;
  at::Tensor history_;  // [amax_history_len]: slot 0 is this step's
  at::Tensor scale_;
  int64_t updates_ = 0;
  bool pending_ = false;
};

}  // namespace accelerate::precision

#endif  // ACCELERATE_PRECISION_FP8_RECIPE_H_
