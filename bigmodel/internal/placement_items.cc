// Items of a module tree to place (see placement_items.h).

#include "bigmodel/internal/placement_items.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace accelerate::bigmodel_internal {

using ::accelerate::bigmodel::ModuleTree;
using ::accelerate::bigmodel::TensorSpec;

std::string JoinName(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : absl::StrCat(prefix, ".", name);
}

bool IsUnder(const std::string& name, const std::string& module) {
  return absl::StartsWith(absl::StrCat(name, "."), absl::StrCat(module, "."));
}

std::vector<Item> Contents(const ModuleTree& module, const std::string& path,
                           bool with_buffers) {
  std::vector<Item> items;
  for (const TensorSpec& param : module.params) {
    items.push_back({JoinName(path, param.name), nullptr});
  }
  for (const ModuleTree& child : module.children) {
    items.push_back({JoinName(path, child.name), &child});
  }
  if (with_buffers) {
    for (const TensorSpec& buffer : module.buffers) {
      items.push_back({JoinName(path, buffer.name), nullptr});
    }
  }
  return items;
}

int64_t SizeOf(const std::map<std::string, int64_t>& sizes,
               const std::string& name) {
  auto it = sizes.find(name);
  return it == sizes.end() ? 0 : it->second;
}

int64_t BufferBytes(const ModuleTree& module, const std::string& path,
                    const std::map<std::string, int64_t>& sizes) {
  int64_t bytes = 0;
  for (const TensorSpec& buffer : module.buffers) {
    if (buffer.tied_to.empty())
      bytes += SizeOf(sizes, JoinName(path, buffer.name));
  }
  for (const ModuleTree& child : module.children) {
    bytes += BufferBytes(child, JoinName(path, child.name), sizes);
  }
  return bytes;
}

}  // namespace accelerate::bigmodel_internal
