// MLflow's rules for what a run accepts, as mlflow/utils/validation.py
// (MLflow 3.17) states them, checked before anything is sent so that one
// bad name is refused at once instead of failing a whole batch later.
//
// Thread safety: the functions keep no state.

#ifndef ACCELERATE_TRACKERS_MLFLOW_INTERNAL_VALIDATION_H_
#define ACCELERATE_TRACKERS_MLFLOW_INTERNAL_VALIDATION_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace accelerate::trackers_internal {

// Limits of a `runs/log-batch` request and of what it holds.
inline constexpr size_t kMaxMetricsPerBatch = 1000;
inline constexpr size_t kMaxParamsTagsPerBatch = 100;
inline constexpr size_t kMaxEntitiesPerBatch = 1000;
inline constexpr size_t kMaxBatchRequestBytes = 1000000;
// In characters (Unicode code points), as Python's `len`.
inline constexpr size_t kMaxKeyLength = 250;
inline constexpr size_t kMaxParamValueLength = 6000;
inline constexpr size_t kMaxExperimentNameLength = 500;

// OK when MLflow accepts `name` as a metric, param or tag key; otherwise
// `InvalidArgument` naming `kind` ("metric", "param", "tag") and the name
// and saying the rule: valid UTF-8; only letters and digits (Unicode's, as
// Python's `\w`), underscores, dashes, periods, spaces, colons and slashes;
// a normalized relative path (not empty, no leading "/" or "..", no empty,
// "." or ".." segment); at most 250 characters.
absl::Status CheckKey(absl::string_view kind, absl::string_view name);

// Whether MLflow accepts `run_id`: an ASCII letter or digit, then up to 255
// letters, digits, underscores or dashes.
bool IsValidRunId(absl::string_view run_id);

bool IsValidUtf8(absl::string_view text);

// The number of characters (code points) of valid UTF-8 `text`.
size_t CountCharacters(absl::string_view text);

}  // namespace accelerate::trackers_internal

#endif  // ACCELERATE_TRACKERS_MLFLOW_INTERNAL_VALIDATION_H_
