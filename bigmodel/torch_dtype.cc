// The `at::ScalarType` column of the dtype table, expanded from the same
// rows as dtype.cc.

#include "bigmodel/torch_dtype.h"

#include "state/logging.h"

namespace accelerate::bigmodel {
namespace {

#define ACCELERATE_BIGMODEL_SCALAR_TYPE(safetensors, pytorch, scalar_type, \
                                        bytes, floating, offloadable)      \
  at::ScalarType::scalar_type,

// In the order of AllDtypes().
constexpr at::ScalarType kScalarTypes[] = {
    ACCELERATE_BIGMODEL_DTYPE_TABLE(ACCELERATE_BIGMODEL_SCALAR_TYPE)};

#undef ACCELERATE_BIGMODEL_SCALAR_TYPE

}  // namespace

at::ScalarType ScalarTypeOf(const Dtype& dtype) {
  const absl::Span<const Dtype> rows = AllDtypes();
  for (size_t row = 0; row < rows.size(); ++row) {
    if (&rows[row] == &dtype) return kScalarTypes[row];
  }
  ACCELERATE_CHECK(false) << "dtype " << dtype.pytorch_name
                          << " is not a row of the table";
  return at::ScalarType::Undefined;
}

const Dtype* DtypeOf(at::ScalarType type) {
  const absl::Span<const Dtype> rows = AllDtypes();
  for (size_t row = 0; row < rows.size(); ++row) {
    if (kScalarTypes[row] == type) return &rows[row];
  }
  return nullptr;
}

}  // namespace accelerate::bigmodel
