// Reading files in PyTorch's own serialization (`torch.save`'s zip archive
// with a pickle and one record per storage): what Python's `torch.save`
// wrote (a `pytorch_model.bin`, Accelerate's optimizer and random states)
// and what `checkpoint::SaveTorchFile` writes. Dicts, lists, tuples,
// strings, numbers, booleans, None and tensors come back as LibTorch values,
// tensors on the CPU, optionally aliasing a mapping of the file.
//
// clang-format off
//   absl::Status Example(const std::string& path) {
//     absl::StatusOr<NamedTensors> weights =
//         LoadTorchStateDict(path, {.map_file = true});  // pytorch_model.bin
//     if (!weights.ok()) return weights.status();
//     absl::StatusOr<c10::IValue> anything = LoadTorchFile(path);
//     return anything.status();
//   }
// clang-format on
//
// Files are untrusted input: a truncated or corrupt archive or pickle is an
// error, never a crash or a hang.
//
// Thread safety: the functions are safe to call concurrently.

#ifndef ACCELERATE_BIGMODEL_TORCH_FILE_H_
#define ACCELERATE_BIGMODEL_TORCH_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/ivalue.h>

#include "bigmodel/safetensors.h"

namespace accelerate::bigmodel {

struct TorchFileLoadOptions {
  // The tensors alias a private, copy-on-write mapping of the file instead
  // of being read into memory of their own (`torch.load(mmap=True)`):
  // loading reads nothing but the pickle, pages come in when first touched,
  // and writing to a tensor copies that page, never the file
  // (`AliasesMapping` is true of them). REQUIRES: the file is not truncated
  // or rewritten in place while the tensors live (deleting it, or replacing
  // it by a rename, is fine). Default false.
  bool map_file = false;
};

// Reads a file written by `torch.save` (or `checkpoint::SaveTorchFile`),
// tensors on the CPU. Python objects LibTorch has no type for (a NumPy
// array, an instance of a class, as in Accelerate's
// `random_states_<rank>.pkl`) come back as None, and the rest exactly;
// bytes come back as strings. `NotFound` when missing; `DataLoss` naming the
// file when it is truncated or not an archive (PyTorch's legacy format
// included).
[[nodiscard]] absl::StatusOr<c10::IValue> LoadTorchFile(
    const std::string& path, const TorchFileLoadOptions& options = {});

// Reads a `torch.save`d `state_dict()` (`pytorch_model.bin` and its shards):
// its tensors by name, in the file's order (tensors that shared a storage in
// Python, tied weights, share it here too). Errors as `LoadTorchFile`'s, and
// `DataLoss` naming the file and what it holds when that is not a dict of
// names to tensors.
[[nodiscard]] absl::StatusOr<NamedTensors> LoadTorchStateDict(
    const std::string& path, const TorchFileLoadOptions& options = {});

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_TORCH_FILE_H_
