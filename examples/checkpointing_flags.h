// Accelerate's example-script checkpoint flags, shared by our examples:
// `--checkpointing_steps` ("epoch", or a number of batches), `--output_dir`
// (where `step_<n>` / `epoch_<e>` folders go) and `--resume_from_checkpoint`
// (a folder, or "latest": the most recent complete checkpoint in
// `--output_dir`).
//
// Thread safety: pure functions and plain values.

#ifndef ACCELERATE_EXAMPLES_CHECKPOINTING_FLAGS_H_
#define ACCELERATE_EXAMPLES_CHECKPOINTING_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace accelerate::examples {

struct CheckpointingSteps {
  // Save every `every` batches (0: not by steps).
  int64_t every = 0;
  // Save at the end of every epoch.
  bool each_epoch = false;
};

// "" (never), "epoch", or a positive number; `InvalidArgument` naming the
// value otherwise.
[[nodiscard]] absl::StatusOr<CheckpointingSteps> ParseCheckpointingSteps(
    const std::string& value);

// The folder to resume from: `value` itself, or for "latest" the complete
// checkpoint in `output_dir` written last. `NotFound` naming the folder
// when there is none.
[[nodiscard]] absl::StatusOr<std::string> ResolveResumeFolder(
    const std::string& value, const std::string& output_dir);

}  // namespace accelerate::examples

#endif  // ACCELERATE_EXAMPLES_CHECKPOINTING_FLAGS_H_
