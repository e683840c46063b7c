// Accelerate's collectives (`gather`, `broadcast`, `pad_across_processes`)
// on batches of any structure (`Batch`): every tensor of the structure in
// turn, after checking that every process holds the same structure.
//
// clang-format off
//   #include "state/status_macros.h"
//   absl::Status Example(const state::PartialState& state, const Batch& outputs) {
//     // Sequences of different lengths on each process: pad, then gather.
//     ACCELERATE_ASSIGN_OR_RETURN(
//         Batch padded, PadAcrossProcesses(state, outputs, {.dim = 1}));
//     ACCELERATE_ASSIGN_OR_RETURN(Batch all, Gather(state, padded));
//     state.Print("gathered ", all.Describe());
//     return absl::OkStatus();
//   }
// clang-format on
//
// Collective: every process calls, in the same order. A structure that
// differs between processes (fields, dtypes, dimensions) is an
// `InvalidArgument` on every process naming the field and the process, not a
// hang. Thread safety: as the state's collectives.

#ifndef ACCELERATE_DATA_BATCH_COLLECTIVES_H_
#define ACCELERATE_DATA_BATCH_COLLECTIVES_H_

#include "absl/status/statusor.h"
#include "data/batch.h"
#include "state/collectives.h"
#include "state/partial_state.h"

namespace accelerate::data {

// Every process's batch concatenated sample-wise, in rank order. Shapes must
// agree, dimension 0 included (pad first where they do not); a difference is
// an `InvalidArgument` naming it.
[[nodiscard]] absl::StatusOr<Batch> Gather(const state::PartialState& state,
                                           const Batch& batch);

// `from_process`'s batch on every process, on each one's device; the others'
// `batch` is ignored (any structure, or an empty map).
[[nodiscard]] absl::StatusOr<Batch> Broadcast(const state::PartialState& state,
                                              const Batch& batch,
                                              int from_process = 0);

// Every tensor padded along `options.dim` to the largest size any process
// has there.
[[nodiscard]] absl::StatusOr<Batch> PadAcrossProcesses(
    const state::PartialState& state, const Batch& batch,
    const state::PadOptions& options = {});

// `InvalidArgument` on every process, naming the first field and process
// that differ from process 0, when the processes' batches differ in
// structure, dtypes or (with `compare_sizes`) shapes.
[[nodiscard]] absl::Status CheckSameStructure(const state::PartialState& state,
                                              const Batch& batch,
                                              bool compare_sizes);

}  // namespace accelerate::data

#endif  // ACCELERATE_DATA_BATCH_COLLECTIVES_H_
