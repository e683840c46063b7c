// The shape of a model without its weights: every module's class, parameters
// (name, shape, dtype, and the tensor a tied parameter shares) and buffers,
// in registration order, as JSON in the form `accelerate plan-device-map`
// reads:
//
//   {"name": "", "class": "Net",
//    "params": [{"name": "weight", "shape": [4, 3], "dtype": "float32"}],
//    "buffers": [{"name": "running_mean", "shape": [4], "dtype": "float32",
//                 "persistent": true}],
//    "children": [ ...the same form... ]}
//
// plus `"tied_to": "<full name>"` on a parameter that is the same tensor as
// one met before it. Module sizes follow Accelerate's `compute_module_sizes`:
// a tied tensor counts once, where it is first met.
//
//   ModuleTree tree = DescribeModule(*model);
//   std::string json = ModuleTreeToJson(tree);
//   std::map<std::string, int64_t> sizes = ComputeModuleSizes(tree);
//
// Thread safety: pure functions; DescribeModule reads the module only.

#ifndef ACCELERATE_BIGMODEL_MODULE_TREE_H_
#define ACCELERATE_BIGMODEL_MODULE_TREE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <torch/nn/module.h>

namespace accelerate::bigmodel {

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  // PyTorch's spelling without "torch.": float32, float16, bfloat16, int64...
  std::string dtype;
  // Parameters: the full name of the tensor this one is (tied weights).
  std::string tied_to;
  // Buffers: saved in the state dict (always true for LibTorch modules).
  bool persistent = true;
};

struct ModuleTree {
  std::string name;        // Local name; "" for the root.
  std::string class_name;  // "Linear" for torch::nn::LinearImpl.
  std::vector<TensorSpec> params;
  std::vector<TensorSpec> buffers;
  std::vector<ModuleTree> children;
};

// The tree of `module`, children in registration order.
ModuleTree DescribeModule(const torch::nn::Module& module);

std::string ModuleTreeToJson(const ModuleTree& tree);
// `InvalidArgument` naming the path and the problem for malformed JSON, an
// unknown dtype, a negative dimension or a `tied_to` that names no earlier
// parameter.
[[nodiscard]] absl::StatusOr<ModuleTree> ParseModuleTree(const std::string& json);

// Bytes per element of a dtype name; nullopt if unknown.
std::optional<int> DtypeBytes(const std::string& dtype);

// PyTorch's name of `type` ("float32"; numpy's too for these types), and the
// type of a name; nullopt for types and names outside the table.
std::optional<std::string> DtypeName(at::ScalarType type);
std::optional<at::ScalarType> ScalarTypeOf(const std::string& dtype);

// Bytes of every module and tensor by full name ("" is the whole model), as
// Accelerate's compute_module_sizes: tied tensors count once. With `dtype`,
// floating-point tensors are counted in it instead of their own.
std::map<std::string, int64_t> ComputeModuleSizes(
    const ModuleTree& tree, const std::optional<std::string>& dtype = {});

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_MODULE_TREE_H_
