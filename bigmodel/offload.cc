// Accelerate's offload folder: writing .dat files and pointers, reading
// them back (see offload.h).

#include "bigmodel/offload.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include <ATen/ATen.h>
#include "bigmodel/dtype.h"
#include "bigmodel/torch_dtype.h"
#include "state/status_macros.h"

namespace accelerate::bigmodel {
namespace {

using ::google::protobuf::Struct;
using ::google::protobuf::Value;

// Accelerate writes numpy's dtype names, which for the offloadable dtypes
// are PyTorch's (dtype.h), bfloat16 included.
absl::StatusOr<at::ScalarType> TypeOf(const std::string& name,
                                      const std::string& dtype) {
  const Dtype* known = DtypeByPytorchName(dtype);
  if (known != nullptr && known->offloadable) return ScalarTypeOf(*known);
  return absl::InvalidArgumentError(absl::StrCat(
      "offload index: \"", name, "\" has unknown dtype \"", dtype, "\""));
}

absl::StatusOr<std::string> NameOf(const std::string& name,
                                   at::ScalarType type) {
  const Dtype* dtype = DtypeOf(type);
  if (dtype != nullptr && dtype->offloadable) {
    return std::string(dtype->pytorch_name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("cannot offload \"", name, "\": dtype ", c10::toString(type),
                   " has no name in Accelerate's format"));
}

std::string IndexPath(const std::string& dir) { return dir + "/index.json"; }

absl::Status Ensure(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::UnavailableError(absl::StrCat(
        "cannot create offload folder ", dir, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Struct> ReadIndex(const std::string& dir, bool missing_ok) {
  Struct index;
  std::ifstream in(IndexPath(dir));
  if (!in) {
    // Only a missing index starts empty: an unreadable one must not be
    // replaced by the new entries alone.
    struct stat info;
    if (::stat(IndexPath(dir).c_str(), &info) != 0 && errno == ENOENT) {
      if (missing_ok) return index;
      return absl::NotFoundError(
          absl::StrCat("no offload index ", IndexPath(dir)));
    }
    return absl::UnavailableError(absl::StrCat("cannot read ", IndexPath(dir)));
  }
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = google::protobuf::util::JsonStringToMessage(text.str(), &index);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(IndexPath(dir),
                     " is not a JSON object: ", parsed.message().as_string()));
  }
  return index;
}

absl::Status WriteIndex(const std::string& dir, const Struct& index) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  auto printed =
      google::protobuf::util::MessageToJsonString(index, &json, options);
  if (!printed.ok()) return absl::InternalError(printed.message().as_string());
  return WriteFileAtomically(IndexPath(dir), {json});
}

absl::Status CheckName(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." ||
      name == ".." || name == "index.json") {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot offload \"", name, "\": not usable as a file name"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status OffloadTensors(const std::string& dir,
                            const NamedTensors& tensors) {
  ACCELERATE_RETURN_IF_ERROR(Ensure(dir));
  ACCELERATE_ASSIGN_OR_RETURN(Struct index,
                              ReadIndex(dir, /*missing_ok=*/true));
  for (const auto& [name, tensor] : tensors) {
    ACCELERATE_RETURN_IF_ERROR(CheckName(name));
    ACCELERATE_ASSIGN_OR_RETURN(std::string dtype,
                                NameOf(name, tensor.scalar_type()));
    const at::Tensor data = tensor.detach().to(at::kCPU).contiguous();
    const size_t bytes =
        static_cast<size_t>(data.numel()) * data.element_size();
    ACCELERATE_RETURN_IF_ERROR(WriteFileAtomically(
        absl::StrCat(dir, "/", name, ".dat"),
        {absl::string_view(static_cast<const char*>(data.data_ptr()), bytes)}));
    Struct entry;
    (*entry.mutable_fields())["dtype"].set_string_value(dtype);
    auto* shape = (*entry.mutable_fields())["shape"].mutable_list_value();
    for (int64_t d : data.sizes())
      shape->add_values()->set_number_value(static_cast<double>(d));
    *(*index.mutable_fields())[name].mutable_struct_value() = entry;
  }
  return WriteIndex(dir, index);
}

absl::Status OffloadPointers(const std::string& dir, const std::string& file,
                             const std::vector<std::string>& names) {
  ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> source,
                              SafetensorsFile::Open(file));
  ACCELERATE_RETURN_IF_ERROR(Ensure(dir));
  ACCELERATE_ASSIGN_OR_RETURN(Struct index,
                              ReadIndex(dir, /*missing_ok=*/true));
  for (const std::string& name : names) {
    ACCELERATE_ASSIGN_OR_RETURN(at::Tensor tensor, source->Get(name));
    ACCELERATE_ASSIGN_OR_RETURN(std::string dtype,
                                NameOf(name, tensor.scalar_type()));
    Struct entry;
    (*entry.mutable_fields())["safetensors_file"].set_string_value(file);
    (*entry.mutable_fields())["weight_name"].set_string_value(name);
    (*entry.mutable_fields())["dtype"].set_string_value(dtype);
    *(*index.mutable_fields())[name].mutable_struct_value() = entry;
  }
  return WriteIndex(dir, index);
}

absl::StatusOr<std::unique_ptr<OffloadedWeights>> OffloadedWeights::Open(
    const std::string& dir) {
  ACCELERATE_ASSIGN_OR_RETURN(Struct index,
                              ReadIndex(dir, /*missing_ok=*/false));
  std::unique_ptr<OffloadedWeights> weights(new OffloadedWeights(dir));
  for (const auto& [name, value] : index.fields()) {
    const auto bad = [&](absl::string_view problem) {
      return absl::InvalidArgumentError(
          absl::StrCat(IndexPath(dir), ": entry \"", name, "\" ", problem));
    };
    if (value.kind_case() != Value::kStructValue)
      return bad("is not an object");
    const auto& fields = value.struct_value().fields();
    Entry entry;
    auto dtype = fields.find("dtype");
    if (dtype != fields.end()) {
      if (dtype->second.kind_case() != Value::kStringValue)
        return bad("has a non-string dtype");
      entry.dtype = dtype->second.string_value();
      ACCELERATE_RETURN_IF_ERROR(TypeOf(name, entry.dtype).status());
    }
    auto file = fields.find("safetensors_file");
    if (file != fields.end() &&
        file->second.kind_case() == Value::kStringValue) {
      entry.safetensors_file = file->second.string_value();
      auto weight = fields.find("weight_name");
      entry.weight_name =
          weight != fields.end() &&
                  weight->second.kind_case() == Value::kStringValue
              ? weight->second.string_value()
              : name;
    } else {
      ACCELERATE_RETURN_IF_ERROR(CheckName(name));
      if (entry.dtype.empty()) return bad("has no dtype");
      auto shape = fields.find("shape");
      if (shape == fields.end() ||
          shape->second.kind_case() != Value::kListValue) {
        return bad("has no shape list");
      }
      for (const Value& d : shape->second.list_value().values()) {
        const double n = d.number_value();
        if (d.kind_case() != Value::kNumberValue || n < 0 ||
            n != static_cast<int64_t>(n) || n > 9.0e15) {
          return bad("has a shape that is not a list of sizes");
        }
        entry.shape.push_back(static_cast<int64_t>(n));
      }
    }
    weights->entries_.emplace(name, std::move(entry));
  }
  return weights;
}

std::vector<std::string> OffloadedWeights::names() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : entries_) names.push_back(name);
  return names;
}

absl::StatusOr<at::Tensor> OffloadedWeights::Get(const std::string& name) {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(
        absl::StrCat(dir_, ": no offloaded weight \"", name, "\""));
  }
  const Entry& entry = it->second;
  if (!entry.safetensors_file.empty()) {
    std::unique_ptr<SafetensorsFile>& file = files_[entry.safetensors_file];
    if (file == nullptr) {
      ACCELERATE_ASSIGN_OR_RETURN(
          file, SafetensorsFile::Open(entry.safetensors_file));
    }
    ACCELERATE_ASSIGN_OR_RETURN(at::Tensor tensor,
                                file->Get(entry.weight_name));
    if (entry.dtype.empty()) return tensor;
    ACCELERATE_ASSIGN_OR_RETURN(at::ScalarType type, TypeOf(name, entry.dtype));
    return tensor.scalar_type() == type ? tensor : tensor.to(type);
  }
  ACCELERATE_ASSIGN_OR_RETURN(at::ScalarType type, TypeOf(name, entry.dtype));
  int64_t numel = 1;
  int64_t bytes = 0;
  for (int64_t d : entry.shape) {
    if (__builtin_mul_overflow(numel, d, &numel)) {
      numel = -1;
      break;
    }
  }
  if (numel < 0 ||
      __builtin_mul_overflow(
          numel, static_cast<int64_t>(c10::elementSize(type)), &bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(IndexPath(dir_), ": entry \"", name,
                     "\" has a shape too large to hold"));
  }
  const size_t expected = static_cast<size_t>(bytes);
  const std::string path = absl::StrCat(dir_, "/", name, ".dat");
  ACCELERATE_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> mapping,
                              MappedFile::Map(path));
  if (mapping->size != expected) {
    return absl::DataLossError(
        absl::StrCat(path, " holds ", mapping->size, " bytes; its entry (",
                     entry.dtype, ", ", numel, " elements) needs ", expected));
  }
  if (expected == 0) {
    return at::empty(entry.shape, at::TensorOptions().dtype(type));
  }
  return AliasMapping(mapping, mapping->base, entry.shape, type);
}

}  // namespace accelerate::bigmodel
