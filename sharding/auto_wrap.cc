#include "sharding/auto_wrap.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include <c10/core/TensorImpl.h>
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "re2/re2.h"

namespace accelerate::sharding {
namespace {

std::string Join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : absl::StrCat(prefix, ".", name);
}

// Parameters of `module` (recursively) not yet counted in `seen`.
int64_t UncountedParameters(const torch::nn::Module& module,
                            const std::unordered_set<const void*>& seen) {
  int64_t count = 0;
  std::unordered_set<const void*> here;
  for (const at::Tensor& p : module.parameters()) {
    const void* impl = p.unsafeGetTensorImpl();
    if (seen.count(impl) == 0 && here.insert(impl).second) count += p.numel();
  }
  return count;
}

void MarkParameters(const torch::nn::Module& module,
                    std::unordered_set<const void*>& seen) {
  for (const at::Tensor& p : module.parameters()) {
    seen.insert(p.unsafeGetTensorImpl());
  }
}

}  // namespace

std::string ModuleClassName(const torch::nn::Module& module) {
  std::string name = module.name();
  const size_t colon = name.rfind(':');
  if (colon != std::string::npos) name = name.substr(colon + 1);
  if (absl::EndsWith(name, "Impl") && name.size() > 4) {
    name.resize(name.size() - 4);
  }
  return name;
}

absl::StatusOr<std::vector<std::string>> UnitModules(
    const torch::nn::Module& model, const AutoWrapPolicy& policy) {
  std::vector<std::string> units;
  switch (policy.kind) {
    case AutoWrapKind::kNone:
      return units;
    case AutoWrapKind::kTransformerLayers: {
      std::vector<std::unique_ptr<RE2>> patterns;
      for (const std::string& pattern : policy.layer_classes) {
        auto re = std::make_unique<RE2>(pattern, RE2::Quiet);
        if (!re->ok()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "transformer_layer_cls_to_wrap: \"", pattern,
              "\" is not a valid RE2 pattern: ", re->error()));
        }
        patterns.push_back(std::move(re));
      }
      if (patterns.empty()) {
        return absl::InvalidArgumentError(
            "TRANSFORMER_BASED_WRAP needs transformer_layer_cls_to_wrap "
            "(FSDP_TRANSFORMER_CLS_TO_WRAP): the class names of the layers "
            "to shard one by one");
      }
      std::vector<std::string> classes;
      std::vector<bool> used(patterns.size(), false);
      // Outermost matches only: a matching module's insides belong to it.
      std::function<void(const torch::nn::Module&, const std::string&)> visit =
          [&](const torch::nn::Module& module, const std::string& path) {
            for (const auto& child : module.named_children()) {
              const std::string child_path = Join(path, child.key());
              const std::string name = ModuleClassName(*child.value());
              classes.push_back(name);
              bool match = false;
              for (size_t k = 0; k < patterns.size(); ++k) {
                if (RE2::FullMatch(name, *patterns[k])) {
                  used[k] = true;
                  match = true;
                }
              }
              if (match) {
                units.push_back(child_path);
              } else {
                visit(*child.value(), child_path);
              }
            }
          };
      visit(model, "");
      // As Accelerate: every class named must be found in the model.
      for (size_t k = 0; k < patterns.size(); ++k) {
        if (used[k]) continue;
        std::sort(classes.begin(), classes.end());
        classes.erase(std::unique(classes.begin(), classes.end()),
                      classes.end());
        return absl::InvalidArgumentError(absl::StrCat(
            "transformer_layer_cls_to_wrap: \"", policy.layer_classes[k],
            "\" is not the class of any submodule of ",
            ModuleClassName(model), " (its classes: ",
            absl::StrJoin(classes, ", "), ")"));
      }
      return units;
    }
    case AutoWrapKind::kSize: {
      if (policy.min_num_params <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("min_num_params: ", policy.min_num_params,
                         " is not a positive number of parameters"));
      }
      // Bottom-up, as FSDP's size_based_auto_wrap_policy: children first,
      // then whatever they left if it is large enough.
      std::unordered_set<const void*> seen;
      std::function<void(const torch::nn::Module&, const std::string&)> visit =
          [&](const torch::nn::Module& module, const std::string& path) {
            for (const auto& child : module.named_children()) {
              visit(*child.value(), Join(path, child.key()));
            }
            if (!path.empty() &&
                UncountedParameters(module, seen) >= policy.min_num_params) {
              MarkParameters(module, seen);
              units.push_back(path);
            }
          };
      visit(model, "");
      return units;
    }
  }
  return units;
}

}  // namespace accelerate::sharding
