// LibTorch's side of the dtype table (dtype.h): the `at::ScalarType` of each
// row, and the row of a scalar type.
//
// clang-format off
//   #include <string>
//
//   #include "absl/status/statusor.h"
//
//   // The name an offload folder or a module tree gives `type`.
//   absl::StatusOr<std::string> Example(at::ScalarType type) {
//     const Dtype* dtype = DtypeOf(type);  // nullptr for complex128, ...
//     if (dtype == nullptr) return absl::InvalidArgumentError("no dtype");
//     if (ScalarTypeOf(*dtype) != type) return absl::InternalError("table");
//     return std::string(dtype->pytorch_name);  // "float32"
//   }
// clang-format on
//
// Thread safety: an immutable table.

#ifndef ACCELERATE_BIGMODEL_TORCH_DTYPE_H_
#define ACCELERATE_BIGMODEL_TORCH_DTYPE_H_

#include <c10/core/ScalarType.h>

#include "bigmodel/dtype.h"

namespace accelerate::bigmodel {

// LibTorch's type of `dtype`.
// REQUIRES: `dtype` is a row of the table (from AllDtypes or a lookup).
at::ScalarType ScalarTypeOf(const Dtype& dtype);

// The row of `type`; nullptr for types outside the table (complex128,
// quantized types, ...).
const Dtype* DtypeOf(at::ScalarType type);

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_TORCH_DTYPE_H_
