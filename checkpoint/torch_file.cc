#include "checkpoint/torch_file.h"

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
#include <vector>

#include "absl/strings/str_cat.h"
#include <caffe2/serialize/inline_container.h>
#include <c10/util/Exception.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/csrc/jit/serialization/unpickler.h>
#include "bigmodel/safetensors.h"
#include "checkpoint/internal/direct_writer.h"
#include "checkpoint/internal/pickle_reader.h"

namespace accelerate::checkpoint {
namespace {

// The first line of a LibTorch message (the rest is its stack).
std::string FirstLine(const char* what) {
  std::string text(what);
  const size_t end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

// LibTorch's pickler writes a list typed as ints, floats, booleans or
// tensors (`c10::List<int64_t>`, say: an optimizer's `params`, a
// scheduler's `base_lrs`) through TorchScript's
// `torch.jit._pickle.build_intlist` (`build_doublelist`, ...), a global
// that Python's weights-only unpickler refuses, and with it Accelerate's
// `load_state`. Such lists are rewritten as plain lists, through dicts and
// tuples; tensors are shared, not copied.
c10::IValue PlainLists(const c10::IValue& value) {
  if (value.isList()) {
    c10::List<c10::IValue> out(c10::AnyType::get());
    for (const c10::IValue& item : value.toListRef()) {
      out.push_back(PlainLists(item));
    }
    return out;
  }
  if (value.isGenericDict()) {
    const c10::Dict<c10::IValue, c10::IValue> dict = value.toGenericDict();
    c10::Dict<c10::IValue, c10::IValue> out(dict.keyType(),
                                            c10::AnyType::get());
    for (const auto& item : dict) {
      out.insert(item.key(), PlainLists(item.value()));
    }
    return out;
  }
  if (value.isTuple()) {
    std::vector<c10::IValue> items;
    for (const c10::IValue& item : value.toTupleRef().elements()) {
      items.push_back(PlainLists(item));
    }
    return c10::ivalue::Tuple::create(std::move(items));
  }
  return value;
}

}  // namespace

absl::Status SaveTorchFile(const std::string& path, const c10::IValue& value) {
  // Streamed past the page cache where the file system allows, and synced.
  absl::StatusOr<std::unique_ptr<checkpoint_internal::DirectWriter>> file =
      checkpoint_internal::DirectWriter::Create(path);
  if (!file.ok()) return file.status();
  absl::Status write_status;
  try {
    // Storages as `torch.save` records them (persistent ids), aggregates
    // untagged: what Python's weights-only unpickler accepts.
    std::string pickle;
    torch::jit::Pickler pickler(
        [&](const char* bytes, size_t n) { pickle.append(bytes, n); },
        /*tensor_table=*/nullptr, /*type_renamer=*/nullptr,
        /*memoized_class_types=*/nullptr, /*get_tensor_id=*/nullptr,
        /*tag_aggregates=*/false);
    pickler.protocol();
    pickler.pushIValue(PlainLists(value));
    pickler.stop();
    caffe2::serialize::PyTorchStreamWriter writer(
        [&](const void* data, size_t n) -> size_t {
          write_status = (*file)->Append(
              absl::string_view(static_cast<const char*>(data), n));
          return write_status.ok() ? n : 0;
        });
    torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(),
                                       pickler.tensorData(), writer);
    writer.writeEndOfFile();
  } catch (const std::exception& e) {
    if (!write_status.ok()) return write_status;
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot serialize ", path, ": ", FirstLine(e.what())));
  }
  return (*file)->Close();
}

namespace {

// The deleter context of a storage aliasing a mapping: a share of it.
void ReleaseMappingShare(void* context) {
  delete static_cast<std::shared_ptr<const bigmodel::MappedFile>*>(context);
}

// The storage records of an archive: read into memory, or aliasing
// `mapping` at their offsets (stored uncompressed, as PyTorch writes them).
std::function<at::DataPtr(const std::string&)> RecordReader(
    caffe2::serialize::PyTorchStreamReader& reader,
    std::shared_ptr<const bigmodel::MappedFile> mapping) {
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
    return at::DataPtr(
        mapping->base + offset,
        new std::shared_ptr<const bigmodel::MappedFile>(mapping),
        &ReleaseMappingShare, at::Device(at::kCPU));
  };
}

// LibTorch's unpickler over the archive's pickle.
c10::IValue LoadExact(caffe2::serialize::PyTorchStreamReader& reader,
                      std::shared_ptr<const bigmodel::MappedFile> mapping) {
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
    std::shared_ptr<const bigmodel::MappedFile> mapping) {
  auto [pickle_ptr, pickle_size] = reader.getRecord("data.pkl");
  std::function<at::DataPtr(const std::string&)> record =
      RecordReader(reader, std::move(mapping));
  return checkpoint_internal::ReadTorchPickle(
      absl::string_view(static_cast<const char*>(pickle_ptr.get()),
                        pickle_size),
      [&](const std::string& key) -> checkpoint_internal::TorchPickleRecord {
        checkpoint_internal::TorchPickleRecord out;
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
  std::shared_ptr<const bigmodel::MappedFile> mapping;
  if (options.map_file) {
    absl::StatusOr<std::shared_ptr<const bigmodel::MappedFile>> mapped =
        bigmodel::MappedFile::Map(path);
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

}  // namespace accelerate::checkpoint
