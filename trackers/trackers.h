// The trackers of a run, driven together: Accelerate's `log_with`,
// `init_trackers`, `log`, `get_tracker` and `end_training` without the
// `Accelerator` (which holds one of these). Built-in trackers by name
// (`tensorboard`, `mlflow`, `jsonl`, `csv`, or `all`) and users' own
// `Tracker`s; each runs on the main process only unless it says otherwise,
// so that on the other processes `Log` costs nothing.
//
// A tracker's trouble never ends the training loop unless asked: by
// default an error from a tracker's `Log` is a warning (once per tracker)
// and the others go on; `fail_on_error` returns it instead. `Start` and
// `Finish` always return errors (a run that cannot start, values that were
// lost).
//
// clang-format off
//   absl::Status Example(const state::PartialState& state) {
//     TrackersOptions options;
//     options.log_with = {"tensorboard", "jsonl"};
//     auto trackers = Trackers::Start(
//         options, {.project_name = "demo", .logging_dir = "/tmp/runs"},
//         {{"lr", 1e-3}}, &state);
//     if (!trackers.ok()) return trackers.status();
//     for (int step = 0; step < 10; ++step) {
//       (void)(*trackers)->Log({{"loss", 1.0 / (step + 1)}}, step);
//     }
//     return (*trackers)->Finish();
//   }
// clang-format on
//
// Thread safety: one thread drives the trackers. Ownership: owns the
// built-in trackers, shares the custom ones with the caller.

#ifndef ACCELERATE_TRACKERS_TRACKERS_H_
#define ACCELERATE_TRACKERS_TRACKERS_H_

#include <memory>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "state/environment.h"
#include "state/partial_state.h"
#include "trackers/jsonl_tracker.h"
#include "trackers/mlflow/mlflow_tracker.h"
#include "trackers/tensorboard/tensorboard_tracker.h"
#include "trackers/tracker.h"

namespace accelerate::trackers {

// The built-in trackers' names, as `log_with` takes them.
const std::vector<std::string>& TrackerNames();

// "tensorboard,mlflow" or "all" (Accelerate's `log_with` /
// `--report_to`), names separated by commas or spaces, as a list; empty
// text: none. Unknown names are InvalidArgument naming them and the valid
// ones. "all" stays "all" (resolved by `Trackers::Start`).
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ParseLogWith(
    absl::string_view text);

struct TrackersOptions {
  // Built-in trackers by name; "all" means tensorboard, jsonl, csv and,
  // when a tracking URI is known (options or MLFLOW_TRACKING_URI), mlflow.
  // Default none.
  std::vector<std::string> log_with;
  // Users' own trackers, driven like the built-in ones. Default none.
  std::vector<std::shared_ptr<Tracker>> custom;
  // The built-in trackers' options (Accelerate's `init_kwargs`).
  TensorBoardOptions tensorboard;
  MlflowOptions mlflow;
  TextTrackerOptions jsonl;
  TextTrackerOptions csv;
  // Whether `Log` returns a tracker's error instead of warning once and
  // going on. Default false.
  bool fail_on_error = false;
};

// `options` checked and completed once: `log_with` entries split
// (`ParseLogWith`: "tensorboard,jsonl" is two), "all" expanded, duplicates
// dropped; MLflow's options resolved from `env` (`ResolveMlflowOptions`)
// when mlflow is asked for. InvalidArgument names an unknown tracker or a
// bad MLflow setting (no tracking URI, say). Resolving twice changes
// nothing.
[[nodiscard]] absl::StatusOr<TrackersOptions> ResolveTrackersOptions(
    const TrackersOptions& options, const state::Environment& env);

class Trackers {
 public:
  // Makes the trackers this process runs (`options` resolved first,
  // `ResolveTrackersOptions`), starts their runs (`run`'s process fields
  // are filled from `state`), and stores `config` unless it is empty. A
  // tracker that cannot start is an error naming it (the others are
  // finished first); so is an unknown name. `state` may be null (one
  // process). `env` gives MLFLOW_* variables.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Trackers>> Start(
      const TrackersOptions& options, RunInfo run, const Config& config,
      const state::PartialState* state,
      const state::Environment& env = state::ProcessEnvironment());
  Trackers(const Trackers&) = delete;
  Trackers& operator=(const Trackers&) = delete;
  // Finishes the trackers not yet finished (errors are logged).
  ~Trackers();

  // Logs `values` at `step` to every tracker this process runs.
  // FailedPrecondition after `Finish`.
  absl::Status Log(const LogValues& values, std::optional<int64_t> step);
  // The tracker named `name` when this process runs it, null otherwise
  // (Accelerate's `get_tracker(name, unwrap=True)` on the main process).
  Tracker* Get(absl::string_view name) const;
  // Finishes every tracker; an error names each tracker that failed.
  // Later calls return OK and do nothing.
  absl::Status Finish();

  // The names of the trackers this process runs, in order.
  std::vector<std::string> names() const;

 private:
  Trackers() = default;

  struct Entry {
    std::shared_ptr<Tracker> tracker;
    bool warned = false;
  };
  std::vector<Entry> entries_;
  bool fail_on_error_ = false;
  bool finished_ = false;
};

}  // namespace accelerate::trackers

#endif  // ACCELERATE_TRACKERS_TRACKERS_H_
