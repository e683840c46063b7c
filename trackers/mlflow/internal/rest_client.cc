#include "trackers/mlflow/internal/rest_client.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "state/status_macros.h"

namespace accelerate::trackers_internal {
namespace {

constexpr absl::string_view kApi = "/api/2.0/mlflow/";

absl::Status FromJson(absl::string_view json, absl::string_view url,
                      google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), message,
      options);
  if (!parsed.ok()) {
    std::string excerpt(json.substr(0, 200));
    return absl::FailedPreconditionError(absl::StrCat(
        url, " answered with something that is not MLflow's JSON (",
        parsed.message().as_string(), "): \"", excerpt,
        "\"; is this an MLflow tracking server?"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  const auto printed =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!printed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("mlflow: cannot write a ", message.GetTypeName(),
                     " request as JSON: ", printed.message().as_string()));
  }
  return json;
}

MlflowRestClient::MlflowRestClient(HttpClientOptions options)
    : http_(std::move(options)) {}

absl::Status MlflowRestClient::Post(absl::string_view endpoint,
                                    const google::protobuf::Message& request,
                                    google::protobuf::Message* response,
                                    absl::Duration timeout) {
  ACCELERATE_ASSIGN_OR_RETURN(const std::string json, ToJson(request));
  const std::string path = absl::StrCat(kApi, endpoint);
  ACCELERATE_ASSIGN_OR_RETURN(const std::string body,
                              http_.PostJson(path, json, timeout));
  return FromJson(body, absl::StrCat(base_url(), path), response);
}

absl::Status MlflowRestClient::Get(absl::string_view endpoint_and_query,
                                   google::protobuf::Message* response,
                                   absl::Duration timeout) {
  const std::string path = absl::StrCat(kApi, endpoint_and_query);
  ACCELERATE_ASSIGN_OR_RETURN(const std::string body, http_.Get(path, timeout));
  return FromJson(body, absl::StrCat(base_url(), path), response);
}

absl::StatusOr<mlflow::Experiment> MlflowRestClient::GetExperimentByName(
    absl::string_view name, absl::Duration timeout) {
  mlflow::GetExperimentByName::Response response;
  ACCELERATE_RETURN_IF_ERROR(Get(
      absl::StrCat("experiments/get-by-name?experiment_name=", UrlEncode(name)),
      &response, timeout));
  return response.experiment();
}

absl::StatusOr<std::string> MlflowRestClient::CreateExperiment(
    const mlflow::CreateExperiment& request, absl::Duration timeout) {
  mlflow::CreateExperiment::Response response;
  ACCELERATE_RETURN_IF_ERROR(
      Post("experiments/create", request, &response, timeout));
  return response.experiment_id();
}

absl::StatusOr<mlflow::Run> MlflowRestClient::CreateRun(
    const mlflow::CreateRun& request, absl::Duration timeout) {
  mlflow::CreateRun::Response response;
  ACCELERATE_RETURN_IF_ERROR(Post("runs/create", request, &response, timeout));
  return response.run();
}

absl::StatusOr<mlflow::Run> MlflowRestClient::GetRun(absl::string_view run_id,
                                                     absl::Duration timeout) {
  mlflow::GetRun::Response response;
  ACCELERATE_RETURN_IF_ERROR(Get(
      absl::StrCat("runs/get?run_id=", UrlEncode(run_id)), &response, timeout));
  return response.run();
}

absl::Status MlflowRestClient::UpdateRun(const mlflow::UpdateRun& request,
                                         absl::Duration timeout) {
  mlflow::UpdateRun::Response response;
  return Post("runs/update", request, &response, timeout);
}

absl::Status MlflowRestClient::LogBatch(const mlflow::LogBatch& request,
                                        absl::Duration timeout) {
  mlflow::LogBatch::Response response;
  return Post("runs/log-batch", request, &response, timeout);
}

absl::StatusOr<std::vector<mlflow::Metric>> MlflowRestClient::GetMetricHistory(
    absl::string_view run_id, absl::string_view key, absl::Duration timeout) {
  std::vector<mlflow::Metric> metrics;
  std::string page_token;
  do {
    std::string query =
        absl::StrCat("metrics/get-history?run_id=", UrlEncode(run_id),
                     "&metric_key=", UrlEncode(key), "&max_results=25000");
    if (!page_token.empty()) {
      absl::StrAppend(&query, "&page_token=", UrlEncode(page_token));
    }
    mlflow::GetMetricHistory::Response response;
    ACCELERATE_RETURN_IF_ERROR(Get(query, &response, timeout));
    for (mlflow::Metric& metric : *response.mutable_metrics()) {
      metrics.push_back(std::move(metric));
    }
    page_token = response.next_page_token();
  } while (!page_token.empty());
  return metrics;
}

}  // namespace accelerate::trackers_internal
