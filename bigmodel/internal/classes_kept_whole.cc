// Module classes kept whole (see classes_kept_whole.h).

#include "bigmodel/internal/classes_kept_whole.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bigmodel/dtype.h"

namespace accelerate::bigmodel_internal {

absl::StatusOr<ClassesKeptWhole> ClassesKeptWhole::Compile(
    const std::vector<std::string>& patterns) {
  ClassesKeptWhole classes;
  for (const std::string& pattern : patterns) {
    auto re = std::make_shared<RE2>(pattern, RE2::Quiet);
    if (!re->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("no_split_module_classes pattern \"", pattern,
                       "\" is not valid RE2: ", re->error()));
    }
    classes.patterns_.push_back(std::move(re));
  }
  return classes;
}

bool ClassesKeptWhole::KeepsWhole(const bigmodel::ModuleTree& module) const {
  auto [it, inserted] = cache_.try_emplace(module.class_name, false);
  if (inserted) {
    for (const auto& re : patterns_) {
      if (RE2::FullMatch(module.class_name, *re)) it->second = true;
    }
  }
  return it->second;
}

bool ClassesKeptWhole::MaySplit(const Item& item) const {
  return item.module != nullptr && !item.module->children.empty() &&
         !KeepsWhole(*item.module);
}

absl::StatusOr<ClassesKeptWhole> CompileDeviceMapOptions(
    const bigmodel::DeviceMapOptions& options) {
  if (options.dtype.has_value() &&
      bigmodel::DtypeByPytorchName(*options.dtype) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("dtype \"", *options.dtype, "\" is not a known dtype"));
  }
  return ClassesKeptWhole::Compile(options.no_split_module_classes);
}

}  // namespace accelerate::bigmodel_internal
