// A batch's structure as text (kinds, keys, dtypes and shapes, no values),
// sent ahead of the tensors when a batch is broadcast, and read back into
// empty tensors of those shapes.

#ifndef ACCELERATE_DATA_INTERNAL_BATCH_HEADER_H_
#define ACCELERATE_DATA_INTERNAL_BATCH_HEADER_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "data/batch.h"

namespace accelerate::data_internal {

std::string EncodeStructure(const data::Batch& batch);

// A batch of uninitialized CPU tensors with the encoded structure. `DataLoss`
// naming the header for anything malformed.
[[nodiscard]] absl::StatusOr<data::Batch> DecodeStructure(absl::string_view header);

}  // namespace accelerate::data_internal

#endif  // ACCELERATE_DATA_INTERNAL_BATCH_HEADER_H_
