// The MLflow tracker, Accelerate's `MLflowTracker` over MLflow's REST
// tracking API: `Start` finds or creates the experiment and creates (or
// resumes) a run on an MLflow tracking server, `StoreInitConfiguration`
// logs the configuration as the run's params, `Log` queues metric points
// that a background thread sends in batches, and `Finish` sends what is
// left and marks the run FINISHED. `Log` never waits on the network: while
// the server is unreachable (or answers 5xx/429) points stay queued and are
// retried with exponential backoff; nothing is dropped silently.
//
// clang-format off
//   #include "state/environment.h"
//   #include "state/status_macros.h"
//   absl::Status TrainWithMlflow() {
//     MlflowOptions options;
//     options.tracking_uri = "http://127.0.0.1:5000";  // else MLFLOW_TRACKING_URI
//     options.run_name = "baseline";
//     options.tags = std::map<std::string, std::string>{{"team", "vision"}};
//     ACCELERATE_ASSIGN_OR_RETURN(std::unique_ptr<MlflowTracker> tracker,
//                                 MakeMlflowTracker(options, state::ProcessEnvironment()));
//     ACCELERATE_RETURN_IF_ERROR(tracker->Start({.project_name = "mnist"}));
//     ACCELERATE_RETURN_IF_ERROR(
//         tracker->StoreInitConfiguration({{"lr", 1e-3}, {"batch_size", 32}}));
//     for (int64_t step = 0; step < 100; ++step) {
//       ACCELERATE_RETURN_IF_ERROR(tracker->Log({{"loss", 1.0 / (step + 1)}}, step));
//     }
//     return tracker->Finish();  // Unavailable if points could not be sent
//   }
// clang-format on
//
// Where the settings come from (`ResolveMlflowOptions`), as Python
// Accelerate and MLflow's client read them:
//   - the tracking URI: `MlflowOptions::tracking_uri`, else
//     MLFLOW_TRACKING_URI. Only http:// and https:// servers are supported
//     (not file stores, sqlite: or databricks).
//   - the experiment: MLFLOW_EXPERIMENT_NAME, else
//     `MlflowOptions::experiment_name`, else `RunInfo::project_name`;
//     created when absent.
//   - MLFLOW_RUN_ID, else `run_id`: resume that run (in whichever
//     experiment holds it) instead of creating one; it is set RUNNING again.
//   - MLFLOW_TAGS (a JSON object), else `tags`: the run's tags (and the new
//     experiment's, as Accelerate does).
//   - MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (basic auth),
//     else MLFLOW_TRACKING_TOKEN (bearer); MLFLOW_TRACKING_INSECURE_TLS,
//     MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_CLIENT_CERT_PATH.
// MLFLOW_NESTED_RUN is not read: Python nests the run under the process's
// active MLflow run, which a C++ program has none of; `parent_run_id` nests
// explicitly.
//
// What MLflow stores: metrics as (key, value, timestamp in ms, step) —
// NaN as NaN, infinities as +/-DBL_MAX (the SQL store's doing); params as
// text (`ConfigValue::ToString`); text and histogram values are skipped
// with a warning once per name, as Accelerate does.
//
// Thread safety: a tracker is driven by one thread at a time (`Tracker`'s
// contract); it sends from a background thread of its own. Ownership: the
// tracker owns its thread and connections; values passed in are copied.

#ifndef ACCELERATE_TRACKERS_MLFLOW_MLFLOW_TRACKER_H_
#define ACCELERATE_TRACKERS_MLFLOW_MLFLOW_TRACKER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "state/environment.h"
#include "trackers/tracker.h"

namespace accelerate::trackers_internal {
class MlflowRestClient;
}  // namespace accelerate::trackers_internal

namespace accelerate::trackers {

struct MlflowOptions {
  // The tracking server, "http://host:port" (a path prefix is kept).
  // Default: MLFLOW_TRACKING_URI.
  std::optional<std::string> tracking_uri;
  // The experiment. MLFLOW_EXPERIMENT_NAME takes priority (as in
  // Accelerate); default: the project name given to `Start`.
  std::optional<std::string> experiment_name;
  // A run to resume. MLFLOW_RUN_ID takes priority.
  std::optional<std::string> run_id;
  // The name of a new run (or the new name of a resumed one); default: the
  // server picks one.
  std::optional<std::string> run_name;
  // The run's tags. MLFLOW_TAGS (a JSON object) takes priority.
  std::optional<std::map<std::string, std::string>> tags;
  // The run's description (its `mlflow.note.content` tag).
  std::optional<std::string> description;
  // Creates the run nested under this one (its `mlflow.parentRunId` tag).
  // Not used when resuming.
  std::optional<std::string> parent_run_id;
  // The `mlflow.user` tag. Default: MLFLOW_TRACKING_USERNAME, else LOGNAME,
  // USER, LNAME or USERNAME, else the account's name.
  std::optional<std::string> user;

  // Credentials and TLS; defaults from MLFLOW_TRACKING_USERNAME,
  // MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN,
  // MLFLOW_TRACKING_INSECURE_TLS ("true"/"false"/"1"/"0"),
  // MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_CLIENT_CERT_PATH.
  std::optional<std::string> username;
  std::optional<std::string> password;
  std::optional<std::string> token;
  std::optional<bool> insecure_tls;
  std::optional<std::string> server_cert_path;
  std::optional<std::string> client_cert_path;

  // Metric points logged but not yet acknowledged by the server, at most;
  // beyond it `Log` returns `ResourceExhausted`. Default 100000.
  int64_t max_pending_points = 100000;
  // How often queued points are sent when fewer than a full batch (1000)
  // wait. Default 1 s.
  absl::Duration flush_interval = absl::Seconds(1);
  // Backoff between attempts while the server is unreachable or answers
  // 5xx/429: from `retry_initial_backoff`, doubling up to
  // `retry_max_backoff`. Defaults 250 ms and 10 s.
  absl::Duration retry_initial_backoff = absl::Milliseconds(250);
  absl::Duration retry_max_backoff = absl::Seconds(10);
  // How long `Start` and `StoreInitConfiguration` keep retrying an
  // unreachable server before they fail. Default 15 s.
  absl::Duration start_timeout = absl::Seconds(15);
  // How long `Finish` may take to send what is queued and end the run.
  // Default 60 s.
  absl::Duration finish_timeout = absl::Seconds(60);
  // One HTTP request, at most; and establishing its connection. Defaults
  // 30 s and 10 s.
  absl::Duration request_timeout = absl::Seconds(30);
  absl::Duration connect_timeout = absl::Seconds(10);
};

// `options` with every setting that the environment may give filled in
// (see the top of this file), validated: `InvalidArgument` naming the bad
// value and saying what is valid (no tracking URI, a scheme other than
// http/https, a malformed MLFLOW_TAGS or run id, a tag name MLflow refuses,
// a non-positive buffer or timeout). `experiment_name` stays empty when
// neither source gives one (the project name is used).
[[nodiscard]] absl::StatusOr<MlflowOptions> ResolveMlflowOptions(
    const MlflowOptions& options, const state::Environment& env);

class MlflowTracker;

// A tracker for `options` resolved against `env` (`ResolveMlflowOptions`);
// nothing is contacted before `Start`.
[[nodiscard]] absl::StatusOr<std::unique_ptr<MlflowTracker>> MakeMlflowTracker(
    const MlflowOptions& options,
    const state::Environment& env = state::ProcessEnvironment());

class MlflowTracker final : public Tracker {
 public:
  MlflowTracker(const MlflowTracker&) = delete;
  MlflowTracker& operator=(const MlflowTracker&) = delete;
  // Without `Finish`: stops the background thread (aborting a request in
  // flight) without waiting for the server, and warns about points not
  // sent. The run stays RUNNING.
  ~MlflowTracker() override;

  std::string name() const override { return "mlflow"; }
  bool requires_logging_directory() const override { return false; }
  bool main_process_only() const override { return true; }

  // Finds or creates the experiment and creates the run (or resumes
  // MLFLOW_RUN_ID), synchronously. `Unavailable` naming the URI when the
  // server cannot be reached within `start_timeout`; `NotFound` for a run
  // to resume that does not exist; `FailedPrecondition` for a deleted
  // experiment or run.
  [[nodiscard]] absl::Status Start(const RunInfo& run) override;
  // Logs `config` as the run's params, synchronously, in batches of at most
  // 100. Values longer than MLflow's 6000 characters are dropped with a
  // warning (as Accelerate does). `InvalidArgument` for a name MLflow
  // refuses or given twice (nothing is sent then).
  [[nodiscard]] absl::Status StoreInitConfiguration(
      const Config& config) override;
  // Queues the scalar values as metric points (timestamp now, step `step`
  // or 0) and returns without waiting on the network. Text and histograms
  // are skipped (a warning once per name). `InvalidArgument` naming a
  // metric name MLflow refuses; `ResourceExhausted` naming how many points
  // wait when queueing this call's would exceed `max_pending_points`
  // (typically: the server has been unreachable for long). Either way
  // nothing of this call is queued.
  [[nodiscard]] absl::Status Log(const LogValues& values,
                                 std::optional<int64_t> step) override;
  // Sends everything queued, within `finish_timeout`, then sets the run
  // FINISHED and stops the background thread. OK only when every point was
  // acknowledged. `Unavailable` saying how many points were not sent and to
  // which URI when the server stayed unreachable (the run is then left
  // RUNNING); when the server refused a batch (4xx other than 429, e.g. the
  // run was deleted meanwhile), those points are dropped at once with a
  // warning and reported here with the server's error code.
  [[nodiscard]] absl::Status Finish() override;

  // The run's id, once `Start` succeeded.
  const std::string& run_id() const { return run_id_; }
  // Its experiment's id (empty when a resumed run's is unknown).
  const std::string& experiment_id() const { return experiment_id_; }
  // The tracking server.
  const std::string& tracking_uri() const { return uri_; }
  // Metric points logged and not yet acknowledged by the server.
  int64_t pending_points() const;

 private:
  struct Point {
    std::string key;
    double value;
    int64_t timestamp_ms;
    int64_t step;
  };
  enum class Phase { kCreated, kStarted, kFinished };

  explicit MlflowTracker(MlflowOptions resolved);
  friend absl::StatusOr<std::unique_ptr<MlflowTracker>> MakeMlflowTracker(
      const MlflowOptions& options, const state::Environment& env);

  absl::Status CreateRun(const std::string& experiment_name);
  absl::Status ResumeRun();
  absl::Status LogTagsAndParams(
      const std::vector<std::pair<std::string, std::string>>& tags,
      const std::vector<std::pair<std::string, std::string>>& params,
      absl::Time deadline);
  void SendLoop();
  void StopSender();

  const MlflowOptions options_;
  const std::string uri_;
  // Used by the calling thread (Start, StoreInitConfiguration, Finish).
  std::unique_ptr<trackers_internal::MlflowRestClient> client_;
  // Used by the sender thread.
  std::unique_ptr<trackers_internal::MlflowRestClient> sender_client_;
  std::atomic<bool> cancel_{false};
  std::thread sender_;

  // The calling thread's.
  Phase phase_ = Phase::kCreated;
  std::string run_id_;
  std::string experiment_id_;
  std::set<std::string> skipped_names_;

  mutable absl::Mutex mu_;
  absl::CondVar wake_sender_;
  absl::CondVar progress_;
  std::deque<Point> queue_ ABSL_GUARDED_BY(mu_);
  // Taken from `queue_` by the sender and not yet acknowledged.
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Set by `Finish`: send now, and give up at `give_up_`.
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time give_up_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  int64_t refused_points_ ABSL_GUARDED_BY(mu_) = 0;
  // Points `Log` refused because the queue was full (reported by Finish).
  int64_t not_queued_points_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status first_refusal_ ABSL_GUARDED_BY(mu_);
  absl::Status last_send_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace accelerate::trackers

#endif  // ACCELERATE_TRACKERS_MLFLOW_MLFLOW_TRACKER_H_
