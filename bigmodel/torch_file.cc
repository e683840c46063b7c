// Reading `torch.save` archives (see torch_file.h): LibTorch's unpickler,
// then our lenient one; records read or aliasing a mapping of the file.

#include "bigmodel/torch_file.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include <caffe2/serialize/inline_container.h>
#include <c10/util/Exception.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/unpickler.h>
#include "bigmodel/internal/pickle_reader.h"
#include "bigmodel/safetensors.h"
#include "state/status_macros.h"

namespace accelerate::bigmodel {
namespace {

// The first line of a LibTorch message (the rest is its stack).
std::string FirstLine(const char* what) {
  std::string text(what);
  const size_t end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

// The storage records of an archive: read into memory, or aliasing
// `mapping` at their offsets (stored uncompressed, as PyTorch writes them).
std::function<at::DataPtr(const std::string&)> RecordReader(
    caffe2::serialize::PyTorchStreamReader& reader,
    std::shared_ptr<const MappedFile> mapping) {
  if (mapping == nullptr) {
    return [&reader](const std::string& name) {
      return std::get<0>(reader.getRecord("data/" + name));
    };
  }
  return [&reader, mapping](const std::string& name) {
    const std::string key = "data/" + name;
    const size_t offset = reader.getRecordOffset(key);
    const size_t size = reader.getRecordSize(key);
    TORCH_CHECK(offset <= mapping->size && size <= mapping->size - offset,
                "record ", key, " lies outside the file");
    return ShareMapping(mapping, mapping->base + offset);
  };
}

// LibTorch's unpickler over the archive's pickle.
c10::IValue LoadExact(caffe2::serialize::PyTorchStreamReader& reader,
                      std::shared_ptr<const MappedFile> mapping) {
  if (mapping == nullptr) {
    return torch::jit::readArchiveAndTensors(
        "data", /*pickle_prefix=*/"", /*tensor_prefix=*/"data/",
        /*type_resolver=*/std::nullopt, /*obj_loader=*/std::nullopt,
        /*device=*/at::Device(at::kCPU), reader);
  }
  auto [pickle_ptr, pickle_size] = reader.getRecord("data.pkl");
  const char* pickle = static_cast<const char*>(pickle_ptr.get());
  size_t position = 0;
  auto read = [&](char* out, size_t n) -> size_t {
    n = std::min(n, pickle_size - position);
    std::memcpy(out, pickle + position, n);
    position += n;
    return n;
  };
  torch::jit::Unpickler unpickler(read, /*type_resolver=*/nullptr,
                                  /*obj_loader=*/nullptr,
                                  RecordReader(reader, std::move(mapping)),
                                  at::Device(at::kCPU));
  unpickler.set_version(reader.version());
  return unpickler.parse_ivalue();
}

// Our lenient reader over the archive's pickle (Python objects LibTorch has
// no type for read as None).
absl::StatusOr<c10::IValue> LoadLenient(
    caffe2::serialize::PyTorchStreamReader& reader,
    std::shared_ptr<const MappedFile> mapping) {
  auto [pickle_ptr, pickle_size] = reader.getRecord("data.pkl");
  std::function<at::DataPtr(const std::string&)> record =
      RecordReader(reader, std::move(mapping));
  return bigmodel_internal::ReadTorchPickle(
      absl::string_view(static_cast<const char*>(pickle_ptr.get()),
                        pickle_size),
      [&](const std::string& key) -> bigmodel_internal::TorchPickleRecord {
        bigmodel_internal::TorchPickleRecord out;
        out.size = reader.getRecordSize("data/" + key);
        out.data = record(key);
        return out;
      });
}

}  // namespace

absl::StatusOr<c10::IValue> LoadTorchFile(
    const std::string& path, const TorchFileLoadOptions& options) {
  if (::access(path.c_str(), F_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(path, " is missing"));
  }
  std::shared_ptr<const MappedFile> mapping;
  if (options.map_file) {
    absl::StatusOr<std::shared_ptr<const MappedFile>> mapped =
        MappedFile::Map(path);
    if (!mapped.ok()) return mapped.status();
    mapping = *std::move(mapped);
  }
  std::string exact_error;
  try {
    caffe2::serialize::PyTorchStreamReader reader{path};
    try {
      return LoadExact(reader, mapping);
    } catch (const std::exception& e) {
      // Python objects LibTorch has no type for (NumPy's in Accelerate's
      // random states), or ints it does not read (`random.getstate()`'s):
      // read again leniently.
      exact_error = FirstLine(e.what());
    }
    absl::StatusOr<c10::IValue> lenient = LoadLenient(reader, mapping);
    if (lenient.ok()) return lenient;
    return absl::DataLossError(absl::StrCat(
        path, " is not a readable torch.save archive: ", exact_error, "; ",
        lenient.status().message()));
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(
        path, " is not a readable torch.save archive: ", FirstLine(e.what())));
  }
}

absl::StatusOr<NamedTensors> LoadTorchStateDict(
    const std::string& path, const TorchFileLoadOptions& options) {
  ACCELERATE_ASSIGN_OR_RETURN(c10::IValue value, LoadTorchFile(path, options));
  if (!value.isGenericDict()) {
    return absl::DataLossError(absl::StrCat(
        path, " holds a ", value.tagKind(),
        ", not a state_dict (a dict of names to tensors)"));
  }
  NamedTensors tensors;
  for (const auto& item : value.toGenericDict()) {
    if (!item.key().isString() || !item.value().isTensor()) {
      return absl::DataLossError(absl::StrCat(
          path, " is not a state_dict (a dict of names to tensors): it maps ",
          item.key().isString() ? item.key().toStringRef()
                                : item.key().tagKind(),
          " to a ", item.value().tagKind()));
    }
    tensors.emplace_back(item.key().toStringRef(), item.value().toTensor());
  }
  return tensors;
}

}  // namespace accelerate::bigmodel
