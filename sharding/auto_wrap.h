// Which submodules become FULL_SHARD units (FSDP's auto-wrap policies, as
// Accelerate configures them): by class (`transformer_layer_cls_to_wrap`,
// FSDP_TRANSFORMER_CLS_TO_WRAP: class names or RE2 patterns matched against
// the whole class name, "Block" for a `BlockImpl`), by size
// (`min_num_params`, FSDP_MIN_NUM_PARAMS: bottom-up, a submodule whose
// parameters not already in a unit below it number at least that many),
// or none (the whole model is one unit). The root module is always a unit
// too: it holds every parameter no other unit holds.
//
// clang-format off
//   #include <torch/nn/module.h>
//   absl::StatusOr<std::vector<std::string>> Example(const torch::nn::Module& model) {
//     AutoWrapPolicy policy;
//     policy.kind = AutoWrapKind::kTransformerLayers;
//     policy.layer_classes = {"Block"};
//     return UnitModules(model, policy);  // {"blocks.0", "blocks.1", ...}
//   }
// clang-format on
//
// Thread safety: pure functions.

#ifndef ACCELERATE_SHARDING_AUTO_WRAP_H_
#define ACCELERATE_SHARDING_AUTO_WRAP_H_

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include "absl/status/statusor.h"

namespace accelerate::sharding {

enum class AutoWrapKind {
  kNone,               // NO_WRAP: one unit, the root
  kTransformerLayers,  // TRANSFORMER_BASED_WRAP
  kSize,               // SIZE_BASED_WRAP
};

struct AutoWrapPolicy {
  AutoWrapKind kind = AutoWrapKind::kNone;
  // kTransformerLayers: class names or RE2 patterns ("Block", "GPT2Block").
  std::vector<std::string> layer_classes;
  // kSize: the parameters a unit needs at least (FSDP's default 1e8).
  int64_t min_num_params = 100'000'000;
};

// The paths of the submodules that become units ("blocks.0"): in
// registration order by class, children before parents by size; the root
// is not listed. InvalidArgument names a pattern that is not valid RE2, a
// non-positive `min_num_params`, or a class list none of the model's
// modules matches (a misspelt class would otherwise leave everything in
// one unit, silently).
[[nodiscard]] absl::StatusOr<std::vector<std::string>> UnitModules(
    const torch::nn::Module& model, const AutoWrapPolicy& policy);

// "torch::nn::LinearImpl" -> "Linear", "ns::BlockImpl" -> "Block".
std::string ModuleClassName(const torch::nn::Module& module);

}  // namespace accelerate::sharding

#endif  // ACCELERATE_SHARDING_AUTO_WRAP_H_
