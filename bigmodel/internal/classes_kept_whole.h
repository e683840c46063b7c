// The module classes a device map never splits across devices
// (`no_split_module_classes`), compiled once, and the checks both
// InferAutoDeviceMap and GetBalancedMemory make on their options.
//
// Thread safety: a ClassesKeptWhole caches answers without a lock: use one
// per thread.

#ifndef ACCELERATE_BIGMODEL_INTERNAL_CLASSES_KEPT_WHOLE_H_
#define ACCELERATE_BIGMODEL_INTERNAL_CLASSES_KEPT_WHOLE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bigmodel/device_map.h"
#include "bigmodel/internal/placement_items.h"
#include "bigmodel/module_tree.h"
#include "re2/re2.h"

namespace accelerate::bigmodel_internal {

// Class names of modules kept whole: exact names or RE2 patterns that match
// a whole class name, with the answer kept per class name.
class ClassesKeptWhole {
 public:
  // `InvalidArgument` naming a pattern that is not valid RE2.
  [[nodiscard]] static absl::StatusOr<ClassesKeptWhole> Compile(
      const std::vector<std::string>& patterns);

  // Whether `module`'s class is one of them.
  bool KeepsWhole(const bigmodel::ModuleTree& module) const;

  // Whether `item` may be opened into its contents: a module with children
  // whose class is not kept whole.
  bool MaySplit(const Item& item) const;

 private:
  std::vector<std::shared_ptr<RE2>> patterns_;
  mutable std::map<std::string, bool> cache_;  // Class name -> kept whole.
};

// Checks `options` (a known dtype, valid patterns) and compiles its
// `no_split_module_classes`.
[[nodiscard]] absl::StatusOr<ClassesKeptWhole> CompileDeviceMapOptions(
    const bigmodel::DeviceMapOptions& options);

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_CLASSES_KEPT_WHOLE_H_
