// The dtypes bigmodel reads and writes, in one table: for each, its name in
// safetensors headers ("F32"), PyTorch's name ("float32", which is numpy's
// too and the one module trees and offload folders use), LibTorch's scalar
// type, its element size and its kind. Safetensors files, module trees,
// offload folders, device maps and the memory estimate all look dtypes up
// here; torch_dtype.h maps rows to and from `at::ScalarType`.
//
// The table is a macro so that this header needs no LibTorch (the safetensors
// header parser, fuzzed with clang, builds without it) while torch_dtype.cc
// expands the same rows with their `at::ScalarType`.
//
// clang-format off
//   #include "absl/status/statusor.h"
//
//   // Bytes held by `elements` elements of a safetensors dtype ("BF16").
//   absl::StatusOr<int64_t> Example(absl::string_view name, int64_t elements) {
//     const Dtype* dtype = DtypeBySafetensorsName(name);
//     if (dtype == nullptr) {
//       return absl::InvalidArgumentError(absl::StrCat("no dtype ", name));
//     }
//     // dtype->pytorch_name is "bfloat16", dtype->floating is true.
//     return elements * dtype->bytes;
//   }
// clang-format on
//
// Thread safety: an immutable table.

#ifndef ACCELERATE_BIGMODEL_DTYPE_H_
#define ACCELERATE_BIGMODEL_DTYPE_H_

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

// ROW(safetensors name, PyTorch name, at::ScalarType enumerator, bytes per
//     element, floating point (as at::isFloatingType), offloadable: an
//     offload folder can hold it, as numpy has the type (bfloat16 is
//     stored as int16, as Accelerate does))
#define ACCELERATE_BIGMODEL_DTYPE_TABLE(ROW)                     \
  ROW("BOOL", "bool", Bool, 1, false, true)                      \
  ROW("U8", "uint8", Byte, 1, false, true)                       \
  ROW("I8", "int8", Char, 1, false, true)                        \
  ROW("U16", "uint16", UInt16, 2, false, true)                   \
  ROW("I16", "int16", Short, 2, false, true)                     \
  ROW("F16", "float16", Half, 2, true, true)                     \
  ROW("BF16", "bfloat16", BFloat16, 2, true, true)               \
  ROW("U32", "uint32", UInt32, 4, false, true)                   \
  ROW("I32", "int32", Int, 4, false, true)                       \
  ROW("F32", "float32", Float, 4, true, true)                    \
  ROW("U64", "uint64", UInt64, 8, false, true)                   \
  ROW("I64", "int64", Long, 8, false, true)                      \
  ROW("F64", "float64", Double, 8, true, true)                   \
  ROW("C64", "complex64", ComplexFloat, 8, false, true)          \
  ROW("F8_E4M3", "float8_e4m3fn", Float8_e4m3fn, 1, true, false) \
  ROW("F8_E5M2", "float8_e5m2", Float8_e5m2, 1, true, false)     \
  ROW("F8_E8M0", "float8_e8m0fnu", Float8_e8m0fnu, 1, true, false)

namespace accelerate::bigmodel {

// One row of the table.
struct Dtype {
  absl::string_view safetensors_name;  // "F32"
  absl::string_view pytorch_name;      // "float32" (no "torch.")
  int bytes = 0;                       // Per element.
  bool floating = false;               // Converted by a dtype override.
  bool offloadable = false;            // An offload folder can hold it.
};

// Every row, in table order.
absl::Span<const Dtype> AllDtypes();

// The row of a safetensors dtype name ("F32", "BF16", "BOOL", ...);
// nullptr for names outside the table.
const Dtype* DtypeBySafetensorsName(absl::string_view name);

// The row of a PyTorch dtype name ("float32", "bfloat16", "int64", ...);
// nullptr for names outside the table.
const Dtype* DtypeByPytorchName(absl::string_view name);

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_DTYPE_H_
