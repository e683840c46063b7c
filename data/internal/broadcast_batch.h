// Broadcasting a batch from one process (dispatch mode): its structure,
// dtypes and shapes first, then the tensors.

#ifndef ACCELERATE_DATA_INTERNAL_BROADCAST_BATCH_H_
#define ACCELERATE_DATA_INTERNAL_BROADCAST_BATCH_H_

#include <string>

#include "absl/status/statusor.h"
#include "data/batch.h"
#include "state/partial_state.h"

namespace accelerate::data_internal {

// On `from_process` returns `batch` after sending it; elsewhere returns what
// it sent (`batch` is ignored), on the state's device. `extra` travels with
// the header (the sender's value is returned in it on every process).
// `DataLoss` for a malformed header.
[[nodiscard]] absl::StatusOr<data::Batch> BroadcastBatch(const state::PartialState& state,
                                           const data::Batch& batch,
                                           std::string* extra,
                                           int from_process = 0);

}  // namespace accelerate::data_internal

#endif  // ACCELERATE_DATA_INTERNAL_BROADCAST_BATCH_H_
