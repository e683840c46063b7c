// What InferAutoDeviceMap and GetBalancedMemory walk: the items of a module
// tree to place (modules and their own tensors, by full name), in
// Accelerate's order, and lookups in name-sorted containers.
//
// Thread safety: pure functions.

#ifndef ACCELERATE_BIGMODEL_INTERNAL_PLACEMENT_ITEMS_H_
#define ACCELERATE_BIGMODEL_INTERNAL_PLACEMENT_ITEMS_H_

#include <cstdint>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "bigmodel/module_tree.h"

namespace accelerate::bigmodel_internal {

// One thing to place: a module or a tensor (a module's own parameter or
// buffer), by full name.
struct Item {
  std::string name;
  const bigmodel::ModuleTree* module = nullptr;  // Null for a tensor.
};

// "prefix.name", or `name` under the root ("").
std::string JoinName(const std::string& prefix, const std::string& name);

// Whether `name` is `module` or lies under it ("module.…").
bool IsUnder(const std::string& name, const std::string& module);

// Accelerate's order for a module's contents: its own parameters, then its
// children; `with_buffers` (the top level) adds its own buffers last.
std::vector<Item> Contents(const bigmodel::ModuleTree& module,
                           const std::string& path, bool with_buffers);

// The size of `name` in `sizes` (ComputeModuleSizes), 0 when absent.
int64_t SizeOf(const std::map<std::string, int64_t>& sizes,
               const std::string& name);

// The bytes of every buffer in `module` (named `path`) and below it.
int64_t BufferBytes(const bigmodel::ModuleTree& module, const std::string& path,
                    const std::map<std::string, int64_t>& sizes);

// Erases `name` and every key under it ("name.…") from a container sorted
// by name (a set, or a map by key), calling `on_erase` on each first.
template <typename Sorted, typename OnErase>
void EraseUnder(Sorted& keys, const std::string& name, OnErase on_erase) {
  auto erase = [&](auto first, auto last) {
    for (auto it = first; it != last; ++it) on_erase(*it);
    keys.erase(first, last);
  };
  auto exact = keys.find(name);
  if (exact != keys.end()) erase(exact, std::next(exact));
  // Keys under name sort between "name." and "name/" ('/' follows '.').
  erase(keys.lower_bound(name + "."), keys.lower_bound(name + "/"));
}

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_PLACEMENT_ITEMS_H_
