// Broadcasting a batch from the main process (dispatch mode): its shapes and
// dtypes first, then the tensors.

#ifndef ACCELERATE_DATA_INTERNAL_BROADCAST_BATCH_H_
#define ACCELERATE_DATA_INTERNAL_BROADCAST_BATCH_H_

#include <string>

#include "absl/status/statusor.h"
#include "data/data_loader.h"
#include "state/partial_state.h"

namespace accelerate::data_internal {

// On the main process returns `batch` after sending it; elsewhere returns
// what the main process sent (`batch` is ignored). `extra` travels with the
// header both ways (the main process's value is returned in it).
// `DataLoss` for a malformed header.
absl::StatusOr<data::Batch> BroadcastBatch(const state::PartialState& state,
                                           data::Batch batch,
                                           std::string* extra);

}  // namespace accelerate::data_internal

#endif  // ACCELERATE_DATA_INTERNAL_BROADCAST_BATCH_H_
