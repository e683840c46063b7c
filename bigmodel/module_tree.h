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
// one met before it. Dtypes are the PyTorch names of dtype.h. Module sizes
// follow Accelerate's `compute_module_sizes`: a tied tensor counts once,
// where it is first met. A tree also comes from a safetensors checkpoint,
// whose tensor names give the modules.
//
// clang-format off
//   absl::StatusOr<int64_t> Example(const torch::nn::Module& model) {
//     const ModuleTree tree = DescribeModule(model);
//     absl::StatusOr<ModuleTree> parsed =
//         ParseModuleTree(ModuleTreeToJson(tree));
//     if (!parsed.ok()) return parsed.status();
//     absl::StatusOr<ModuleTree> stored =
//         ModuleTreeFromCheckpoint("/tmp/ckpt");
//     if (!stored.ok()) return stored.status();
//     const std::map<std::string, int64_t> sizes = ComputeModuleSizes(*parsed);
//     return sizes.at("");  // The whole model's bytes.
//   }
// clang-format on
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

// A parameter or buffer of a module, without its data.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  // PyTorch's spelling without "torch." (dtype.h): float32, bfloat16, int64..
  std::string dtype;
  // Parameters: the full name of the tensor this one is (tied weights).
  std::string tied_to;
  // Buffers: saved in the state dict (always true for LibTorch modules).
  bool persistent = true;
};

// A module, its own tensors and its children.
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
[[nodiscard]] absl::StatusOr<ModuleTree> ParseModuleTree(
    const std::string& json);

// The module tree a safetensors checkpoint's tensor names imply (`path` as
// ShardedCheckpoint::Open takes it; only headers are read): "a.b.weight" is
// the parameter "weight" of module "b" inside module "a". Checkpoints keep
// tensors sorted, not in registration order, so numbered siblings come in
// numeric order ("h.2" before "h.10"), then the others by name; classes are
// unknown (""). `InvalidArgument` for a name with an empty part or one that
// is both a tensor and a module; file errors as ShardedCheckpoint's.
[[nodiscard]] absl::StatusOr<ModuleTree> ModuleTreeFromCheckpoint(
    const std::string& path);

// Bytes of every module and tensor by full name ("" is the whole model), as
// Accelerate's compute_module_sizes: tied tensors count once. With `dtype`,
// floating-point tensors are counted in it instead of their own (dtype.h's
// `floating`).
std::map<std::string, int64_t> ComputeModuleSizes(
    const ModuleTree& tree, const std::optional<std::string>& dtype = {});

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_MODULE_TREE_H_
