// The dtype table as an array of rows (see dtype.h), without LibTorch.

#include "bigmodel/dtype.h"

namespace accelerate::bigmodel {
namespace {

#define ACCELERATE_BIGMODEL_DTYPE_ROW(safetensors, pytorch, scalar_type, \
                                      bytes, floating, offloadable)      \
  Dtype{safetensors, pytorch, bytes, floating, offloadable},

constexpr Dtype kDtypes[] = {
    ACCELERATE_BIGMODEL_DTYPE_TABLE(ACCELERATE_BIGMODEL_DTYPE_ROW)};

#undef ACCELERATE_BIGMODEL_DTYPE_ROW

}  // namespace

absl::Span<const Dtype> AllDtypes() { return kDtypes; }

const Dtype* DtypeBySafetensorsName(absl::string_view name) {
  for (const Dtype& dtype : kDtypes) {
    if (dtype.safetensors_name == name) return &dtype;
  }
  return nullptr;
}

const Dtype* DtypeByPytorchName(absl::string_view name) {
  for (const Dtype& dtype : kDtypes) {
    if (dtype.pytorch_name == name) return &dtype;
  }
  return nullptr;
}

}  // namespace accelerate::bigmodel
