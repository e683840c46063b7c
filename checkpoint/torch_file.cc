// Writing `torch.save` archives (see torch_file.h).

#include "checkpoint/torch_file.h"

#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include <caffe2/serialize/inline_container.h>
#include <c10/util/Exception.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include "checkpoint/internal/direct_writer.h"

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

}  // namespace accelerate::checkpoint
