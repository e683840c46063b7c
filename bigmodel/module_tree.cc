// Module trees: described from LibTorch modules or from checkpoints, to and
// from JSON, and their sizes (see module_tree.h).

#include "bigmodel/module_tree.h"

#include <algorithm>
#include <memory>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include <c10/core/TensorImpl.h>
#include "bigmodel/dtype.h"
#include "bigmodel/internal/json_string.h"
#include "bigmodel/safetensors.h"
#include "bigmodel/sharded_checkpoint.h"
#include "bigmodel/torch_dtype.h"
#include "state/status_macros.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::bigmodel_internal::AppendJsonString;
using ::google::protobuf::Struct;
using ::google::protobuf::Value;

// PyTorch's name of `type`; LibTorch's for a type outside the table (which
// ParseModuleTree will then refuse).
std::string PytorchNameOf(at::ScalarType type) {
  const Dtype* dtype = DtypeOf(type);
  return dtype != nullptr ? std::string(dtype->pytorch_name)
                          : std::string(c10::toString(type));
}

// "torch::nn::LinearImpl" -> "Linear", "NetImpl" -> "Net".
std::string ClassName(const std::string& cpp_name) {
  std::string name = cpp_name;
  const size_t colon = name.rfind(':');
  if (colon != std::string::npos) name = name.substr(colon + 1);
  if (absl::EndsWith(name, "Impl") && name.size() > 4) {
    name.resize(name.size() - 4);
  }
  return name;
}

std::string Join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : absl::StrCat(prefix, ".", name);
}

void Describe(const torch::nn::Module& module, const std::string& name,
              const std::string& path,
              std::unordered_map<const c10::TensorImpl*, std::string>& seen,
              ModuleTree* out) {
  out->name = name;
  out->class_name = ClassName(module.name());
  for (const auto& item : module.named_parameters(/*recurse=*/false)) {
    TensorSpec spec;
    spec.name = item.key();
    spec.shape = item.value().sizes().vec();
    spec.dtype = PytorchNameOf(item.value().scalar_type());
    const c10::TensorImpl* impl = item.value().unsafeGetTensorImpl();
    auto [it, inserted] = seen.emplace(impl, Join(path, item.key()));
    if (!inserted) spec.tied_to = it->second;
    out->params.push_back(std::move(spec));
  }
  for (const auto& item : module.named_buffers(/*recurse=*/false)) {
    TensorSpec spec;
    spec.name = item.key();
    spec.shape = item.value().sizes().vec();
    spec.dtype = PytorchNameOf(item.value().scalar_type());
    out->buffers.push_back(std::move(spec));
  }
  for (const auto& child : module.named_children()) {
    ModuleTree tree;
    Describe(*child.value(), child.key(), Join(path, child.key()), seen, &tree);
    out->children.push_back(std::move(tree));
  }
}

void AppendTensors(std::string* out, const std::vector<TensorSpec>& specs,
                   bool buffers) {
  out->push_back('[');
  for (size_t i = 0; i < specs.size(); ++i) {
    if (i > 0) out->append(", ");
    out->append("{\"name\": ");
    AppendJsonString(out, specs[i].name);
    absl::StrAppend(out, ", \"shape\": [", absl::StrJoin(specs[i].shape, ", "),
                    "], \"dtype\": ");
    AppendJsonString(out, specs[i].dtype);
    if (buffers) {
      absl::StrAppend(
          out, ", \"persistent\": ", specs[i].persistent ? "true" : "false");
    }
    if (!specs[i].tied_to.empty()) {
      out->append(", \"tied_to\": ");
      AppendJsonString(out, specs[i].tied_to);
    }
    out->push_back('}');
  }
  out->push_back(']');
}

void AppendTree(std::string* out, const ModuleTree& tree) {
  out->append("{\"name\": ");
  AppendJsonString(out, tree.name);
  out->append(", \"class\": ");
  AppendJsonString(out, tree.class_name);
  out->append(", \"params\": ");
  AppendTensors(out, tree.params, /*buffers=*/false);
  out->append(", \"buffers\": ");
  AppendTensors(out, tree.buffers, /*buffers=*/true);
  out->append(", \"children\": [");
  for (size_t i = 0; i < tree.children.size(); ++i) {
    if (i > 0) out->append(", ");
    AppendTree(out, tree.children[i]);
  }
  out->append("]}");
}

absl::Status Bad(const std::string& path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(
      "module tree at \"", path.empty() ? "<root>" : path, "\": ", problem));
}

absl::StatusOr<std::string> StringField(const Struct& object,
                                        const std::string& key,
                                        const std::string& path) {
  auto it = object.fields().find(key);
  if (it == object.fields().end() ||
      it->second.kind_case() != Value::kStringValue) {
    return Bad(path, absl::StrCat("needs a string \"", key, "\""));
  }
  return it->second.string_value();
}

absl::StatusOr<std::vector<TensorSpec>> ParseTensors(
    const Struct& object, const std::string& key, const std::string& path,
    std::set<std::string>* known) {
  std::vector<TensorSpec> specs;
  auto it = object.fields().find(key);
  if (it == object.fields().end()) return specs;
  if (it->second.kind_case() != Value::kListValue) {
    return Bad(path, absl::StrCat("\"", key, "\" is not a list"));
  }
  for (const Value& item : it->second.list_value().values()) {
    if (item.kind_case() != Value::kStructValue) {
      return Bad(path,
                 absl::StrCat("an entry of \"", key, "\" is not an object"));
    }
    const Struct& entry = item.struct_value();
    TensorSpec spec;
    ACCELERATE_ASSIGN_OR_RETURN(spec.name, StringField(entry, "name", path));
    const std::string full = Join(path, spec.name);
    ACCELERATE_ASSIGN_OR_RETURN(spec.dtype, StringField(entry, "dtype", full));
    if (DtypeByPytorchName(spec.dtype) == nullptr) {
      return Bad(full, absl::StrCat("unknown dtype \"", spec.dtype, "\""));
    }
    auto shape = entry.fields().find("shape");
    if (shape == entry.fields().end() ||
        shape->second.kind_case() != Value::kListValue) {
      return Bad(full, "needs a \"shape\" list");
    }
    for (const Value& dim : shape->second.list_value().values()) {
      const double d = dim.number_value();
      if (dim.kind_case() != Value::kNumberValue || d < 0 ||
          d != static_cast<int64_t>(d)) {
        return Bad(full,
                   "has a shape entry that is not a non-negative integer");
      }
      spec.shape.push_back(static_cast<int64_t>(d));
    }
    if (auto tied = entry.fields().find("tied_to");
        tied != entry.fields().end()) {
      spec.tied_to = tied->second.string_value();
      if (known->count(spec.tied_to) == 0) {
        return Bad(full, absl::StrCat("is tied to \"", spec.tied_to,
                                      "\", which is not a tensor met before"));
      }
    }
    if (auto persistent = entry.fields().find("persistent");
        persistent != entry.fields().end()) {
      spec.persistent = persistent->second.bool_value();
    }
    known->insert(full);
    specs.push_back(std::move(spec));
  }
  return specs;
}

absl::StatusOr<ModuleTree> ParseNode(const Struct& object,
                                     const std::string& path,
                                     std::set<std::string>* known) {
  ModuleTree tree;
  ACCELERATE_ASSIGN_OR_RETURN(tree.name, StringField(object, "name", path));
  ACCELERATE_ASSIGN_OR_RETURN(tree.class_name,
                              StringField(object, "class", path));
  ACCELERATE_ASSIGN_OR_RETURN(tree.params,
                              ParseTensors(object, "params", path, known));
  ACCELERATE_ASSIGN_OR_RETURN(tree.buffers,
                              ParseTensors(object, "buffers", path, known));
  auto children = object.fields().find("children");
  if (children != object.fields().end()) {
    if (children->second.kind_case() != Value::kListValue) {
      return Bad(path, "\"children\" is not a list");
    }
    for (const Value& child : children->second.list_value().values()) {
      if (child.kind_case() != Value::kStructValue) {
        return Bad(path, "a child is not an object");
      }
      auto name = child.struct_value().fields().find("name");
      const std::string child_name = name == child.struct_value().fields().end()
                                         ? ""
                                         : name->second.string_value();
      if (child_name.empty()) return Bad(path, "a child has no name");
      ACCELERATE_ASSIGN_OR_RETURN(
          ModuleTree parsed,
          ParseNode(child.struct_value(), Join(path, child_name), known));
      tree.children.push_back(std::move(parsed));
    }
  }
  return tree;
}

void AddSizes(const ModuleTree& tree, const std::string& path,
              const std::optional<std::string>& dtype,
              std::map<std::string, int64_t>& sizes) {
  int64_t own = 0;
  const auto count = [&](const TensorSpec& spec) {
    if (!spec.tied_to.empty()) return;  // Counted where first met.
    int64_t elements = 1;
    for (int64_t d : spec.shape) elements *= d;
    const Dtype* stored = DtypeByPytorchName(spec.dtype);
    int bytes = stored != nullptr ? stored->bytes : 4;
    if (dtype.has_value() && stored != nullptr && stored->floating) {
      if (const Dtype* counted = DtypeByPytorchName(*dtype)) {
        bytes = counted->bytes;
      }
    }
    const int64_t size = elements * bytes;
    sizes[Join(path, spec.name)] = size;
    own += size;
  };
  for (const TensorSpec& spec : tree.params) count(spec);
  for (const TensorSpec& spec : tree.buffers) count(spec);
  int64_t total = own;
  for (const ModuleTree& child : tree.children) {
    const std::string child_path = Join(path, child.name);
    AddSizes(child, child_path, dtype, sizes);
    total += sizes[child_path];
  }
  sizes[path] = total;
}

// A module being assembled from tensor names, children found by name.
struct NameNode {
  std::vector<TensorSpec> params;
  std::vector<std::string> order;  // Children in order of appearance.
  std::map<std::string, std::unique_ptr<NameNode>> children;
};

// Numbered siblings in numeric order ("h.2" before "h.10"), then the rest by
// name: safetensors files keep tensors sorted by dtype and name, not by the
// model's registration order, which only a module-tree JSON carries.
bool SiblingLess(const std::string& a, const std::string& b) {
  const auto numeric = [](const std::string& s) {
    return !s.empty() && s.size() < 18 &&
           std::all_of(s.begin(), s.end(), absl::ascii_isdigit);
  };
  if (numeric(a) && numeric(b)) return std::stoll(a) < std::stoll(b);
  if (numeric(a) != numeric(b)) return numeric(a);
  return a < b;
}

ModuleTree ToTree(NameNode& node, const std::string& name) {
  ModuleTree tree;
  tree.name = name;
  tree.params = std::move(node.params);
  std::sort(node.order.begin(), node.order.end(), SiblingLess);
  for (const std::string& child : node.order) {
    tree.children.push_back(ToTree(*node.children[child], child));
  }
  return tree;
}

// Adds `entry` as a parameter of the module its name's prefix names.
absl::Status AddTensor(const TensorEntry& entry, NameNode& root) {
  std::vector<std::string> parts = absl::StrSplit(entry.name, '.');
  if (std::any_of(parts.begin(), parts.end(),
                  [](const std::string& p) { return p.empty(); })) {
    return absl::InvalidArgumentError("tensor name \"" + entry.name +
                                      "\" has an empty part");
  }
  NameNode* node = &root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    std::unique_ptr<NameNode>& child = node->children[parts[i]];
    if (child == nullptr) {
      child = std::make_unique<NameNode>();
      node->order.push_back(parts[i]);
    }
    node = child.get();
  }
  const Dtype* dtype = DtypeBySafetensorsName(entry.dtype);
  if (dtype == nullptr) {
    return absl::InvalidArgumentError("tensor \"" + entry.name +
                                      "\" has unknown dtype " + entry.dtype);
  }
  node->params.push_back(
      {parts.back(), entry.shape, std::string(dtype->pytorch_name), ""});
  return absl::OkStatus();
}

// `InvalidArgument` for a name that is both a tensor and a module ("a" and
// "a.b").
absl::Status CheckTensorsAreNotModules(const NameNode& root) {
  std::vector<std::pair<const NameNode*, std::string>> stack = {{&root, ""}};
  while (!stack.empty()) {
    auto [node, path] = stack.back();
    stack.pop_back();
    for (const TensorSpec& p : node->params) {
      if (node->children.count(p.name) > 0) {
        return absl::InvalidArgumentError("\"" + Join(path, p.name) +
                                          "\" is both a tensor and a module");
      }
    }
    for (const auto& [name, child] : node->children) {
      stack.push_back({child.get(), Join(path, name)});
    }
  }
  return absl::OkStatus();
}

}  // namespace

ModuleTree DescribeModule(const torch::nn::Module& module) {
  ModuleTree tree;
  std::unordered_map<const c10::TensorImpl*, std::string> seen;
  Describe(module, "", "", seen, &tree);
  return tree;
}

std::string ModuleTreeToJson(const ModuleTree& tree) {
  std::string out;
  AppendTree(&out, tree);
  return out;
}

absl::StatusOr<ModuleTree> ParseModuleTree(const std::string& json) {
  Struct root;
  if (!google::protobuf::util::JsonStringToMessage(json, &root).ok()) {
    return absl::InvalidArgumentError("module tree: not a JSON object");
  }
  std::set<std::string> known;
  return ParseNode(root, "", &known);
}

absl::StatusOr<ModuleTree> ModuleTreeFromCheckpoint(const std::string& path) {
  ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<ShardedCheckpoint> checkpoint,
                              ShardedCheckpoint::Open(path));
  ACCELERATE_ASSIGN_OR_RETURN(const std::vector<TensorEntry> entries,
                              checkpoint->Entries());
  NameNode root;
  for (const TensorEntry& entry : entries) {
    ACCELERATE_RETURN_IF_ERROR(AddTensor(entry, root));
  }
  ACCELERATE_RETURN_IF_ERROR(CheckTensorsAreNotModules(root));
  return ToTree(root, "");
}

std::map<std::string, int64_t> ComputeModuleSizes(
    const ModuleTree& tree, const std::optional<std::string>& dtype) {
  std::map<std::string, int64_t> sizes;
  AddSizes(tree, "", dtype, sizes);
  return sizes;
}

}  // namespace accelerate::bigmodel
