#include "checkpoint/internal/ivalue_fields.h"

#include "absl/strings/str_cat.h"
#include <ATen/core/jit_type.h>

namespace accelerate::checkpoint_internal {
namespace {

absl::Status WrongType(const c10::IValue& value, absl::string_view expected,
                       const FieldPath& where) {
  return absl::InvalidArgumentError(absl::StrCat(
      where.ToString(), " is a ", value.tagKind(), ", not ", expected));
}

}  // namespace

FieldPath FieldPath::Key(const std::string& key) const {
  return {source, path.empty() ? key : absl::StrCat(path, ".", key)};
}

FieldPath FieldPath::Index(int64_t index) const {
  return {source, absl::StrCat(path, "[", index, "]")};
}

std::string FieldPath::ToString() const {
  return path.empty() ? source : absl::StrCat(source, ": ", path);
}

Dict NewDict() { return Dict(c10::AnyType::get(), c10::AnyType::get()); }

absl::StatusOr<Dict> AsDict(const c10::IValue& value, const FieldPath& where) {
  if (!value.isGenericDict()) return WrongType(value, "dict", where);
  return value.toGenericDict();
}

absl::StatusOr<c10::List<c10::IValue>> AsList(const c10::IValue& value,
                                              const FieldPath& where) {
  if (value.isList()) return value.toList();
  if (value.isTuple()) {
    c10::List<c10::IValue> list(c10::AnyType::get());
    for (const c10::IValue& item : value.toTupleRef().elements()) {
      list.push_back(item);
    }
    return list;
  }
  return WrongType(value, "list", where);
}

absl::StatusOr<c10::IValue> Field(const Dict& dict, const std::string& key,
                                  const FieldPath& where) {
  auto found = dict.find(c10::IValue(key));
  if (found == dict.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where.Key(key).ToString(), " is missing"));
  }
  return found->value();
}

std::optional<c10::IValue> OptionalField(const Dict& dict,
                                         const std::string& key) {
  auto found = dict.find(c10::IValue(key));
  if (found == dict.end()) return std::nullopt;
  return found->value();
}

absl::StatusOr<double> AsDouble(const c10::IValue& value,
                                const FieldPath& where) {
  if (value.isDouble()) return value.toDouble();
  if (value.isInt()) return static_cast<double>(value.toInt());
  if (value.isTensor() && value.toTensor().numel() == 1) {
    return value.toTensor().item<double>();
  }
  return WrongType(value, "number", where);
}

absl::StatusOr<int64_t> AsInt(const c10::IValue& value,
                              const FieldPath& where) {
  if (value.isInt()) return value.toInt();
  if (value.isDouble() && value.toDouble() == static_cast<int64_t>(value.toDouble())) {
    return static_cast<int64_t>(value.toDouble());
  }
  if (value.isTensor() && value.toTensor().numel() == 1) {
    return value.toTensor().item<int64_t>();
  }
  return WrongType(value, "integer", where);
}

absl::StatusOr<bool> AsBool(const c10::IValue& value, const FieldPath& where) {
  if (value.isBool()) return value.toBool();
  return WrongType(value, "bool", where);
}

absl::StatusOr<at::Tensor> AsTensor(const c10::IValue& value,
                                    const FieldPath& where) {
  if (value.isTensor()) return value.toTensor();
  return WrongType(value, "tensor", where);
}

}  // namespace accelerate::checkpoint_internal
