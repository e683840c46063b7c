// Reading the fields of a Python dict unpickled into an `IValue` (string or
// integer keys), with errors naming the file and the field path.
//
// Thread safety: pure functions.

#ifndef ACCELERATE_CHECKPOINT_INTERNAL_IVALUE_FIELDS_H_
#define ACCELERATE_CHECKPOINT_INTERNAL_IVALUE_FIELDS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>

namespace accelerate::checkpoint_internal {

// Where a value sits, for messages: "optimizer.bin: param_groups[0].lr".
struct FieldPath {
  std::string source;
  std::string path;
  FieldPath Key(const std::string& key) const;
  FieldPath Index(int64_t index) const;
  std::string ToString() const;
};

// A dict with string keys.
using Dict = c10::Dict<c10::IValue, c10::IValue>;

[[nodiscard]] absl::StatusOr<Dict> AsDict(const c10::IValue& value,
                                          const FieldPath& where);
[[nodiscard]] absl::StatusOr<c10::List<c10::IValue>> AsList(
    const c10::IValue& value, const FieldPath& where);
// `value[key]`; `InvalidArgument` naming the field when missing.
[[nodiscard]] absl::StatusOr<c10::IValue> Field(const Dict& dict,
                                                const std::string& key,
                                                const FieldPath& where);
// `value[key]` or nullopt when missing.
std::optional<c10::IValue> OptionalField(const Dict& dict,
                                         const std::string& key);
// A number (int or float; a one-element tensor too).
[[nodiscard]] absl::StatusOr<double> AsDouble(const c10::IValue& value,
                                              const FieldPath& where);
[[nodiscard]] absl::StatusOr<int64_t> AsInt(const c10::IValue& value,
                                            const FieldPath& where);
[[nodiscard]] absl::StatusOr<bool> AsBool(const c10::IValue& value,
                                          const FieldPath& where);
[[nodiscard]] absl::StatusOr<at::Tensor> AsTensor(const c10::IValue& value,
                                                  const FieldPath& where);

// A new dict with string keys and any values, as Python's `dict`.
Dict NewDict();

}  // namespace accelerate::checkpoint_internal

#endif  // ACCELERATE_CHECKPOINT_INTERNAL_IVALUE_FIELDS_H_
