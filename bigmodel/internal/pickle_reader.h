// A lenient reader of the pickle inside a `torch.save` archive (its
// `data.pkl`), for the files LibTorch's unpickler refuses: Python's objects
// that LibTorch has no type for (a NumPy array, a class instance, as in
// Accelerate's `random_states_<rank>.pkl`) come back as None, and the rest
// (dicts, lists, tuples, ints, floats, strings, bytes as strings, booleans,
// None, tensors) exactly as Python wrote it. Reads the opcodes of protocols
// 2 to 5 that `torch.save` emits; every read is bounded, so a truncated or
// hostile pickle is an error, never a crash or a hang.
//
// clang-format off
//   absl::StatusOr<c10::IValue> value = ReadTorchPickle(
//       pickle, [&](const std::string& key) -> TorchPickleRecord {
//         auto [data, size] = reader.getRecord("data/" + key);
//         return {std::move(data), size};
//       });
// clang-format on
//
// Thread safety: a pure function (but for what `records` does).

#ifndef ACCELERATE_BIGMODEL_INTERNAL_PICKLE_READER_H_
#define ACCELERATE_BIGMODEL_INTERNAL_PICKLE_READER_H_

#include <cstddef>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include <ATen/core/ivalue.h>
#include <c10/core/Allocator.h>

namespace accelerate::bigmodel_internal {

// The bytes of one storage record (`data/<key>` in the archive), on the CPU.
struct TorchPickleRecord {
  at::DataPtr data;
  size_t size = 0;
};

// Returns the record of storage `key`; may throw (a missing record).
using TorchPickleRecords =
    std::function<TorchPickleRecord(const std::string& key)>;

// Parses `pickle`; tensors are CPU tensors over the records `records`
// returns (shared, not copied). `DataLoss` saying what is wrong (the
// opcode, its offset) for a pickle it cannot read.
[[nodiscard]] absl::StatusOr<c10::IValue> ReadTorchPickle(
    absl::string_view pickle, const TorchPickleRecords& records);

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_PICKLE_READER_H_
