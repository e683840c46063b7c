#include "precision/fp8_recipe.h"

#include <cmath>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include "state/status_macros.h"

namespace accelerate::precision {
namespace {

std::optional<std::string> Pick(const std::optional<std::string>& given,
                                const state::Environment& env,
                                const char* variable) {
  if (given.has_value()) return given;
  return env.Get(variable);
}

absl::StatusOr<int> PickInt(const std::optional<int>& given,
                            const state::Environment& env,
                            const char* variable, int fallback) {
  if (given.has_value()) return *given;
  std::optional<std::string> text = env.Get(variable);
  if (!text.has_value()) return fallback;
  int value = 0;
  if (!absl::SimpleAtoi(*text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(variable, "=\"", *text, "\" is not an integer"));
  }
  return value;
}

absl::Status NotOneOf(absl::string_view what, absl::string_view value,
                      absl::string_view valid) {
  return absl::InvalidArgumentError(absl::StrCat(
      "fp8 ", what, ": \"", value, "\" is not one of ", valid));
}

}  // namespace

absl::StatusOr<Fp8Recipe> ResolveFp8Recipe(const Fp8Options& options,
                                           const state::Environment& env) {
  Fp8Recipe recipe;
  const std::string backend = absl::AsciiStrToUpper(
      Pick(options.backend, env, "ACCELERATE_FP8_BACKEND").value_or("AO"));
  if (backend == "AO") {
    const std::string name = absl::AsciiStrToLower(
        Pick(options.recipe, env, "ACCELERATE_FP8_RECIPE")
            .value_or("tensorwise"));
    if (name == "tensorwise") {
      recipe.scaling = Fp8Scaling::kDynamicTensorwise;
    } else if (name == "rowwise") {
      recipe.scaling = Fp8Scaling::kDynamicRowwise;
      recipe.backward_format = Float8Format::kE4M3;
      recipe.round_scales_to_power_of_2 = true;
    } else {
      return NotOneOf("recipe", name, "tensorwise, rowwise");
    }
    return recipe;
  }
  if (backend != "TE") return NotOneOf("backend", backend, "AO, TE");
  recipe.scaling = Fp8Scaling::kDelayed;
  const std::string format = absl::AsciiStrToUpper(
      Pick(options.fp8_format, env, "ACCELERATE_FP8_FORMAT")
          .value_or("HYBRID"));
  if (format == "E4M3") {
    recipe.backward_format = Float8Format::kE4M3;
  } else if (format != "HYBRID") {
    return NotOneOf("format", format, "HYBRID, E4M3");
  }
  const std::string algo = absl::AsciiStrToLower(
      Pick(options.amax_compute_algo, env, "ACCELERATE_FP8_AMAX_COMPUTE_ALGO")
          .value_or("most_recent"));
  if (algo != "most_recent" && algo != "max") {
    return NotOneOf("amax_compute_algo", algo, "most_recent, max");
  }
  recipe.amax_max = algo == "max";
  ACCELERATE_ASSIGN_OR_RETURN(
      recipe.amax_history_len,
      PickInt(options.amax_history_len, env,
              "ACCELERATE_FP8_AMAX_HISTORY_LEN", 1024));
  ACCELERATE_ASSIGN_OR_RETURN(
      recipe.margin,
      PickInt(options.margin, env, "ACCELERATE_FP8_MARGIN", 0));
  ACCELERATE_ASSIGN_OR_RETURN(
      recipe.interval,
      PickInt(options.interval, env, "ACCELERATE_FP8_INTERVAL", 1));
  if (recipe.amax_history_len < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("fp8 amax_history_len ", recipe.amax_history_len,
                     " is not a positive length"));
  }
  if (recipe.interval < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fp8 interval ", recipe.interval, " is not a positive count"));
  }
  if (recipe.margin < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("fp8 margin ", recipe.margin, " is negative"));
  }
  return recipe;
}

DelayedScale::DelayedScale(const Fp8Recipe& recipe, Float8Format format)
    : recipe_(recipe),
      format_(format),
      history_(at::zeros({recipe.amax_history_len}, at::kFloat)),
      scale_(at::ones({1}, at::kFloat)) {}

DelayedScale DelayedScale::Clone() const {
  DelayedScale copy = *this;
  copy.history_ = history_.clone();
  copy.scale_ = scale_.clone();
  return copy;
}

absl::Status DelayedScale::Restore(const Saved& saved) {
  if (!saved.history.defined() || !saved.scale.defined() ||
      saved.history.dim() != 1 ||
      saved.history.size(0) != history_.size(0) ||
      saved.scale.numel() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fp8 delayed scaling state: a history of ",
        saved.history.defined() ? c10::str(saved.history.sizes()) : "none",
        " and a scale of ",
        saved.scale.defined() ? c10::str(saved.scale.sizes()) : "none",
        " do not fit amax_history_len ", history_.size(0)));
  }
  history_ = saved.history.to(history_.device(), at::kFloat).clone();
  scale_ = saved.scale.to(scale_.device(), at::kFloat).reshape({1}).clone();
  updates_ = saved.updates;
  pending_ = saved.pending;
  return absl::OkStatus();
}

void DelayedScale::MoveTo(c10::Device device) {
  if (history_.device() == device) return;
  history_ = history_.to(device);
  scale_ = scale_.to(device);
}

void DelayedScale::Record(const at::Tensor& amax) {
  history_[0].copy_(amax.to(at::kFloat).reshape({}));
  pending_ = true;
}

void DelayedScale::Update() {
  const at::Tensor amax =
      recipe_.amax_max ? history_.max() : history_[0].clone();
  if (updates_++ % recipe_.interval == 0) {
    const at::Tensor fresh =
        (Float8Max(format_) / amax.to(at::kDouble)).to(at::kFloat) /
        std::ldexp(1.0, recipe_.margin);
    const at::Tensor usable = at::logical_and(amax > 0, at::isfinite(amax));
    scale_ = at::where(usable, fresh, scale_).reshape({1});
  }
  history_ = at::roll(history_, -1, 0);
  history_[0].zero_();
  pending_ = false;
}

}  // namespace accelerate::precision
