// Files in PyTorch's own serialization (`torch.save`'s zip archive with a
// pickle and one record per storage), which Python reads with `torch.load`
// (`weights_only=True` too) and which Python's `torch.save` writes for us to
// read: dicts, lists, tuples, strings, numbers, booleans, None and tensors.
// Tensors are streamed to the file from their own memory (no copy of the
// whole archive is built), past the page cache where the file system allows
// (`O_DIRECT`), and the file is synced to disk before `Save` returns.
//
// clang-format off
//   #include <ATen/ATen.h>
//   #include "state/status_macros.h"
//   absl::Status Example(const std::string& path) {
//     c10::Dict<std::string, at::Tensor> values;
//     values.insert("weight", at::ones({2, 2}));
//     ACCELERATE_RETURN_IF_ERROR(SaveTorchFile(path, values));
//     ACCELERATE_ASSIGN_OR_RETURN(c10::IValue loaded, LoadTorchFile(path));
//     return loaded.isGenericDict() ? absl::OkStatus() : absl::DataLossError(path);
//   }
// clang-format on
//
// Thread safety: the functions are safe to call concurrently on different
// files.

#ifndef ACCELERATE_CHECKPOINT_TORCH_FILE_H_
#define ACCELERATE_CHECKPOINT_TORCH_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/ivalue.h>

namespace accelerate::checkpoint {

// Writes `value` to `path` (replacing it) as `torch.save` would, synced.
// Errors name the file (`ResourceExhausted` for a full disk).
[[nodiscard]] absl::Status SaveTorchFile(const std::string& path,
                                         const c10::IValue& value);

struct TorchFileLoadOptions {
  // The tensors alias a private, copy-on-write mapping of the file instead
  // of being read into memory of their own (`torch.load(mmap=True)`):
  // loading reads nothing, pages come in when first touched, and writing to
  // a tensor copies that page, never the file. REQUIRES: the file is not
  // truncated or rewritten in place while the tensors live (deleting it, or
  // replacing it by a rename as `SaveState` does, is fine). Default false.
  bool map_file = false;
};

// Reads a file written by `torch.save` (or `SaveTorchFile`), tensors on the
// CPU. Python objects LibTorch has no type for (a NumPy array, an instance
// of a class, as in Accelerate's `random_states_<rank>.pkl`) come back as
// None, and the rest exactly; bytes come back as strings. `NotFound` when
// missing; `DataLoss` naming the file when it is truncated or not an
// archive (PyTorch's legacy format included).
[[nodiscard]] absl::StatusOr<c10::IValue> LoadTorchFile(
    const std::string& path, const TorchFileLoadOptions& options = {});

}  // namespace accelerate::checkpoint

#endif  // ACCELERATE_CHECKPOINT_TORCH_FILE_H_
