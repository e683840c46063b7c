// MLflow's REST tracking API (`/api/2.0/mlflow/...`): one method per call,
// requests and answers as the messages of mlflow_service.proto in
// protobuf's JSON mapping. No retries here: a status says what happened
// (`Unavailable` when retrying may help, see http_client.h); the tracker
// decides.
//
//   MlflowRestClient client({.base_url = "http://127.0.0.1:5000"});
//   absl::StatusOr<mlflow::Run> run = client.GetRun(run_id, absl::Seconds(5));
//
// Thread safety: one thread uses a client at a time. Ownership: see
// `HttpClient`.

#ifndef ACCELERATE_TRACKERS_MLFLOW_INTERNAL_REST_CLIENT_H_
#define ACCELERATE_TRACKERS_MLFLOW_INTERNAL_REST_CLIENT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "trackers/mlflow/internal/http_client.h"
#include "trackers/mlflow/internal/mlflow_service.pb.h"

namespace accelerate::trackers_internal {

class MlflowRestClient {
 public:
  explicit MlflowRestClient(HttpClientOptions options);
  MlflowRestClient(const MlflowRestClient&) = delete;
  MlflowRestClient& operator=(const MlflowRestClient&) = delete;

  // experiments/get-by-name: `NotFound` when there is none (deleted ones
  // are found, with lifecycle_stage "deleted").
  [[nodiscard]] absl::StatusOr<mlflow::Experiment> GetExperimentByName(
      absl::string_view name, absl::Duration timeout);
  // experiments/create: the new experiment's id; `AlreadyExists` when the
  // name is taken.
  [[nodiscard]] absl::StatusOr<std::string> CreateExperiment(
      const mlflow::CreateExperiment& request, absl::Duration timeout);
  // runs/create: the new run.
  [[nodiscard]] absl::StatusOr<mlflow::Run> CreateRun(
      const mlflow::CreateRun& request, absl::Duration timeout);
  // runs/get: `NotFound` when there is no such run.
  [[nodiscard]] absl::StatusOr<mlflow::Run> GetRun(absl::string_view run_id,
                                                   absl::Duration timeout);
  // runs/update: status, end time, name.
  [[nodiscard]] absl::Status UpdateRun(const mlflow::UpdateRun& request,
                                       absl::Duration timeout);
  // runs/log-batch. REQUIRES: the request holds at most 1000 metrics, 100
  // params, 100 tags (validation.h).
  [[nodiscard]] absl::Status LogBatch(const mlflow::LogBatch& request,
                                      absl::Duration timeout);
  // metrics/get-history, every page: each logged point of `key`.
  [[nodiscard]] absl::StatusOr<std::vector<mlflow::Metric>> GetMetricHistory(
      absl::string_view run_id, absl::string_view key, absl::Duration timeout);

  const std::string& base_url() const { return http_.base_url(); }

 private:
  absl::Status Post(absl::string_view endpoint,
                    const google::protobuf::Message& request,
                    google::protobuf::Message* response,
                    absl::Duration timeout);
  absl::Status Get(absl::string_view endpoint_and_query,
                   google::protobuf::Message* response, absl::Duration timeout);

  HttpClient http_;
};

// `message` in protobuf's JSON mapping with MLflow's (snake_case) field
// names, as the requests carry it.
[[nodiscard]] absl::StatusOr<std::string> ToJson(
    const google::protobuf::Message& message);

}  // namespace accelerate::trackers_internal

#endif  // ACCELERATE_TRACKERS_MLFLOW_INTERNAL_REST_CLIENT_H_
