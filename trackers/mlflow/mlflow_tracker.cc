#include "trackers/mlflow/mlflow_tracker.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "state/logging.h"
#include "state/status_macros.h"
#include "trackers/mlflow/internal/http_client.h"
#include "trackers/mlflow/internal/mlflow_service.pb.h"
#include "trackers/mlflow/internal/rest_client.h"
#include "trackers/mlflow/internal/validation.h"

namespace accelerate::trackers {
namespace {

namespace api = ::accelerate::trackers_internal::mlflow;
using ::accelerate::trackers_internal::CheckKey;
using ::accelerate::trackers_internal::CountCharacters;
using ::accelerate::trackers_internal::IsValidRunId;
using ::accelerate::trackers_internal::IsValidUtf8;
using ::accelerate::trackers_internal::kMaxBatchRequestBytes;
using ::accelerate::trackers_internal::kMaxExperimentNameLength;
using ::accelerate::trackers_internal::kMaxMetricsPerBatch;
using ::accelerate::trackers_internal::kMaxParamsTagsPerBatch;
using ::accelerate::trackers_internal::kMaxParamValueLength;
using ::accelerate::trackers_internal::MlflowRestClient;

constexpr char kRunNameTag[] = "mlflow.runName";
constexpr char kNoteTag[] = "mlflow.note.content";
constexpr char kParentRunTag[] = "mlflow.parentRunId";
constexpr char kUserTag[] = "mlflow.user";
constexpr char kSourceNameTag[] = "mlflow.source.name";
constexpr char kSourceTypeTag[] = "mlflow.source.type";

// A variable's value; set to "" counts as unset.
std::optional<std::string> NonEmpty(const state::Environment& env,
                                    absl::string_view name) {
  std::optional<std::string> value = env.Get(name);
  if (value.has_value() && value->empty()) return std::nullopt;
  return value;
}

// `uri` without trailing slashes when it is an http(s) URL with a host.
absl::StatusOr<std::string> CheckTrackingUri(const std::string& uri) {
  const size_t separator = uri.find("://");
  const std::string scheme =
      separator == std::string::npos
          ? ""
          : absl::AsciiStrToLower(uri.substr(0, separator));
  if (scheme != "http" && scheme != "https") {
    return absl::InvalidArgumentError(absl::StrCat(
        "mlflow: the tracking URI \"", uri,
        "\" is not supported: the MLflow tracker talks to a tracking server "
        "over its REST API, so it takes http:// or https:// URIs (e.g. "
        "http://127.0.0.1:5000, where `mlflow server` listens); file stores, "
        "sqlite: and databricks URIs are not supported"));
  }
  const std::string rest = uri.substr(separator + 3);
  if (rest.empty() || rest[0] == '/' || rest[0] == '?' || rest[0] == '#') {
    return absl::InvalidArgumentError(
        absl::StrCat("mlflow: the tracking URI \"", uri,
                     "\" names no host; expected e.g. http://127.0.0.1:5000"));
  }
  std::string normalized = uri;
  while (normalized.back() == '/') normalized.pop_back();
  return normalized;
}

// A JSON number as Python's `str` writes the value `json.loads` gives:
// integers without a decimal point, others as the shortest round trip.
std::string NumberText(double value) {
  if (std::isfinite(value) && value == std::trunc(value) &&
      std::fabs(value) < 9.007199254740992e15) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

// MLFLOW_TAGS: a JSON object whose values are strings, numbers, booleans or
// null, as Python's `str` writes them (MLflow's `RunTag(key, str(value))`).
absl::StatusOr<std::map<std::string, std::string>> ParseTags(
    const std::string& json) {
  google::protobuf::Struct parsed;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &parsed);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("mlflow: MLFLOW_TAGS is not a JSON object (",
                     status.message().as_string(), "): '", json,
                     "'; expected e.g. {\"team\": \"vision\"}"));
  }
  std::map<std::string, std::string> tags;
  for (const auto& [key, value] : parsed.fields()) {
    switch (value.kind_case()) {
      case google::protobuf::Value::kStringValue:
        tags[key] = value.string_value();
        break;
      case google::protobuf::Value::kNumberValue:
        tags[key] = NumberText(value.number_value());
        break;
      case google::protobuf::Value::kBoolValue:
        tags[key] = value.bool_value() ? "True" : "False";
        break;
      case google::protobuf::Value::kNullValue:
        tags[key] = "None";
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            "mlflow: MLFLOW_TAGS: the value of \"", key,
            "\" is a list or an object; tag values are strings, numbers or "
            "booleans"));
    }
  }
  return tags;
}

absl::StatusOr<bool> ParseBool(absl::string_view name,
                               const std::string& text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true" || lower == "1") return true;
  if (lower == "false" || lower == "0") return false;
  return absl::InvalidArgumentError(absl::StrCat(
      "mlflow: ", name, "=\"", text, "\" is not one of true, false, 1, 0"));
}

// Python's getpass.getuser(): LOGNAME, USER, LNAME, USERNAME, else the
// account of the effective user id.
std::string CurrentUser(const state::Environment& env) {
  for (const char* name : {"LOGNAME", "USER", "LNAME", "USERNAME"}) {
    if (std::optional<std::string> value = NonEmpty(env, name)) return *value;
  }
  passwd entry;
  passwd* found = nullptr;
  std::vector<char> buffer(16384);
  if (::getpwuid_r(::geteuid(), &entry, buffer.data(), buffer.size(), &found) ==
          0 &&
      found != nullptr && found->pw_name != nullptr) {
    return found->pw_name;
  }
  return "unknown";
}

// The running program, MLflow's `mlflow.source.name` (Python: sys.argv[0]).
std::string ProgramPath() {
  char path[4096];
  const ssize_t size = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  return size > 0 ? std::string(path, static_cast<size_t>(size)) : "";
}

absl::Status CheckPositive(absl::string_view name, absl::Duration value) {
  if (value <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("mlflow: MlflowOptions::", name, " is ",
                     absl::FormatDuration(value), "; it must be positive"));
  }
  return absl::OkStatus();
}

absl::Status StatusOf(const absl::Status& status) { return status; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// `status` with `context` before its message, same code.
absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, status.message()));
}

// Calls `call(timeout)` until it answers anything but `Unavailable` or
// `deadline` is near, sleeping with exponential backoff in between. Each
// attempt's timeout is the request timeout, cut to what is left before
// `deadline` (at least one second, so that one attempt is always made).
template <typename Call>
auto WithRetries(const MlflowOptions& options, absl::Time deadline, Call call) {
  absl::Duration backoff = options.retry_initial_backoff;
  while (true) {
    const absl::Duration left =
        std::max(deadline - absl::Now(), absl::Seconds(1));
    auto result = call(std::min(options.request_timeout, left));
    if (StatusOf(result).code() != absl::StatusCode::kUnavailable ||
        absl::Now() + backoff >= deadline) {
      return result;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, options.retry_max_backoff);
  }
}

std::string CountOf(int64_t count, absl::string_view noun) {
  return absl::StrCat(count, " ", noun, count == 1 ? "" : "s");
}

}  // namespace

absl::StatusOr<MlflowOptions> ResolveMlflowOptions(
    const MlflowOptions& options, const state::Environment& env) {
  MlflowOptions out = options;
  if (!out.tracking_uri.has_value()) {
    out.tracking_uri = NonEmpty(env, "MLFLOW_TRACKING_URI");
  }
  if (!out.tracking_uri.has_value()) {
    return absl::InvalidArgumentError(
        "mlflow: no tracking URI: set MlflowOptions::tracking_uri or "
        "MLFLOW_TRACKING_URI to the http:// or https:// address of an MLflow "
        "tracking server (e.g. http://127.0.0.1:5000)");
  }
  ACCELERATE_ASSIGN_OR_RETURN(out.tracking_uri,
                              CheckTrackingUri(*out.tracking_uri));

  // As Accelerate: the environment takes priority over the arguments.
  if (auto name = NonEmpty(env, "MLFLOW_EXPERIMENT_NAME")) {
    out.experiment_name = std::move(name);
  }
  if (out.experiment_name.has_value() &&
      (out.experiment_name->empty() ||
       CountCharacters(*out.experiment_name) > kMaxExperimentNameLength)) {
    return absl::InvalidArgumentError(
        absl::StrCat("mlflow: the experiment name \"", *out.experiment_name,
                     "\" is not usable: MLflow takes 1 to ",
                     kMaxExperimentNameLength, " characters"));
  }
  if (auto run_id = NonEmpty(env, "MLFLOW_RUN_ID")) {
    out.run_id = std::move(run_id);
  }
  for (const auto& [what, id] :
       {std::pair{"run id", &out.run_id},
        std::pair{"parent run id", &out.parent_run_id}}) {
    if (id->has_value() && !IsValidRunId(**id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mlflow: the ", what, " \"", **id,
          "\" is not an MLflow run id (a letter or digit, then up to 255 "
          "letters, digits, underscores or dashes)"));
    }
  }
  if (auto tags = NonEmpty(env, "MLFLOW_TAGS")) {
    ACCELERATE_ASSIGN_OR_RETURN(out.tags, ParseTags(*tags));
  }
  if (out.tags.has_value()) {
    for (const auto& [key, value] : *out.tags) {
      ACCELERATE_RETURN_IF_ERROR(CheckKey("tag", key));
      if (!IsValidUtf8(value)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "mlflow: the value of tag \"", key, "\" is not valid UTF-8"));
      }
    }
    if (out.description.has_value() && out.tags->count(kNoteTag) > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mlflow: the description is given twice, as `description` and as "
          "the tag ",
          kNoteTag, "; keep one"));
    }
  }
  if (!out.username.has_value()) {
    out.username = NonEmpty(env, "MLFLOW_TRACKING_USERNAME");
  }
  if (!out.password.has_value()) {
    out.password = NonEmpty(env, "MLFLOW_TRACKING_PASSWORD");
  }
  if (!out.token.has_value())
    out.token = NonEmpty(env, "MLFLOW_TRACKING_TOKEN");
  if (!out.insecure_tls.has_value()) {
    if (auto text = NonEmpty(env, "MLFLOW_TRACKING_INSECURE_TLS")) {
      ACCELERATE_ASSIGN_OR_RETURN(
          out.insecure_tls, ParseBool("MLFLOW_TRACKING_INSECURE_TLS", *text));
    }
  }
  if (!out.server_cert_path.has_value()) {
    out.server_cert_path = NonEmpty(env, "MLFLOW_TRACKING_SERVER_CERT_PATH");
  }
  if (!out.client_cert_path.has_value()) {
    out.client_cert_path = NonEmpty(env, "MLFLOW_TRACKING_CLIENT_CERT_PATH");
  }
  if (out.insecure_tls.value_or(false) && out.server_cert_path.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mlflow: insecure TLS (MLFLOW_TRACKING_INSECURE_TLS) and a server "
        "certificate (MLFLOW_TRACKING_SERVER_CERT_PATH=",
        *out.server_cert_path, ") exclude each other; set one"));
  }
  if (!out.user.has_value()) {
    out.user = out.username.has_value() ? *out.username : CurrentUser(env);
  }

  if (out.max_pending_points <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("mlflow: MlflowOptions::max_pending_points is ",
                     out.max_pending_points, "; it must be positive"));
  }
  ACCELERATE_RETURN_IF_ERROR(
      CheckPositive("flush_interval", out.flush_interval));
  ACCELERATE_RETURN_IF_ERROR(
      CheckPositive("retry_initial_backoff", out.retry_initial_backoff));
  ACCELERATE_RETURN_IF_ERROR(
      CheckPositive("retry_max_backoff", out.retry_max_backoff));
  ACCELERATE_RETURN_IF_ERROR(CheckPositive("start_timeout", out.start_timeout));
  ACCELERATE_RETURN_IF_ERROR(
      CheckPositive("finish_timeout", out.finish_timeout));
  ACCELERATE_RETURN_IF_ERROR(
      CheckPositive("request_timeout", out.request_timeout));
  ACCELERATE_RETURN_IF_ERROR(
      CheckPositive("connect_timeout", out.connect_timeout));
  out.retry_max_backoff =
      std::max(out.retry_max_backoff, out.retry_initial_backoff);
  return out;
}

absl::StatusOr<std::unique_ptr<MlflowTracker>> MakeMlflowTracker(
    const MlflowOptions& options, const state::Environment& env) {
  ACCELERATE_ASSIGN_OR_RETURN(MlflowOptions resolved,
                              ResolveMlflowOptions(options, env));
  return std::unique_ptr<MlflowTracker>(new MlflowTracker(std::move(resolved)));
}

MlflowTracker::MlflowTracker(MlflowOptions resolved)
    : options_(std::move(resolved)), uri_(*options_.tracking_uri) {
  trackers_internal::HttpClientOptions http{
      .base_url = uri_,
      .username = options_.username,
      .password = options_.password,
      .token = options_.token,
      .insecure_tls = options_.insecure_tls.value_or(false),
      .server_cert_path = options_.server_cert_path,
      .client_cert_path = options_.client_cert_path,
      .connect_timeout = options_.connect_timeout,
  };
  client_ = std::make_unique<MlflowRestClient>(http);
  http.cancel = &cancel_;
  sender_client_ = std::make_unique<MlflowRestClient>(http);
}

MlflowTracker::~MlflowTracker() {
  if (sender_.joinable()) StopSender();
  if (phase_ == Phase::kStarted) {
    const int64_t unsent = pending_points();
    if (unsent > 0) {
      ACCELERATE_LOG(WARNING)
          << "mlflow: the tracker was destroyed without Finish: "
          << CountOf(unsent, "metric point") << " of run " << run_id_
          << " were not sent to " << uri_;
    }
  }
}

int64_t MlflowTracker::pending_points() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(queue_.size()) + in_flight_;
}

absl::Status MlflowTracker::Start(const RunInfo& run) {
  if (phase_ != Phase::kCreated) {
    return absl::FailedPreconditionError("mlflow: Start was already called");
  }
  if (options_.run_id.has_value()) {
    ACCELERATE_RETURN_IF_ERROR(ResumeRun());
  } else {
    const std::string experiment =
        options_.experiment_name.value_or(run.project_name);
    if (experiment.empty()) {
      return absl::InvalidArgumentError(
          "mlflow: no experiment name: give a project name, "
          "MlflowOptions::experiment_name or MLFLOW_EXPERIMENT_NAME");
    }
    ACCELERATE_RETURN_IF_ERROR(CreateRun(experiment));
  }
  phase_ = Phase::kStarted;
  sender_ = std::thread([this] { SendLoop(); });
  return absl::OkStatus();
}

absl::Status MlflowTracker::CreateRun(const std::string& experiment_name) {
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  const std::string where =
      absl::StrCat("mlflow: cannot start a run on ", uri_, ": ");
  absl::StatusOr<api::Experiment> experiment =
      WithRetries(options_, deadline, [&](absl::Duration timeout) {
        return client_->GetExperimentByName(experiment_name, timeout);
      });
  if (experiment.status().code() == absl::StatusCode::kNotFound) {
    api::CreateExperiment create;
    create.set_name(experiment_name);
    if (options_.tags.has_value()) {
      for (const auto& [key, value] : *options_.tags) {
        api::ExperimentTag* tag = create.add_tags();
        tag->set_key(key);
        tag->set_value(value);
      }
    }
    absl::StatusOr<std::string> id =
        WithRetries(options_, deadline, [&](absl::Duration timeout) {
          return client_->CreateExperiment(create, timeout);
        });
    if (id.ok()) {
      experiment = api::Experiment();
      experiment->set_experiment_id(*id);
    } else if (id.status().code() == absl::StatusCode::kAlreadyExists) {
      // Another process created it meanwhile.
      experiment = WithRetries(options_, deadline, [&](absl::Duration timeout) {
        return client_->GetExperimentByName(experiment_name, timeout);
      });
    } else {
      return Annotate(id.status(), where);
    }
  }
  if (!experiment.ok()) return Annotate(experiment.status(), where);
  if (experiment->lifecycle_stage() == "deleted") {
    return absl::FailedPreconditionError(absl::StrCat(
        "mlflow: the experiment \"", experiment_name, "\" (id ",
        experiment->experiment_id(), ") on ", uri_,
        " is deleted; restore it (mlflow experiments restore --experiment-id ",
        experiment->experiment_id(), ") or use another name"));
  }
  experiment_id_ = experiment->experiment_id();

  // MLflow's `start_run`: the context's tags, then the user's, then the
  // description, parent and name.
  std::map<std::string, std::string> tags = {
      {kUserTag, *options_.user},
      {kSourceNameTag, ProgramPath()},
      {kSourceTypeTag, "LOCAL"},
  };
  if (options_.tags.has_value()) {
    for (const auto& [key, value] : *options_.tags) tags[key] = value;
  }
  if (options_.description.has_value()) tags[kNoteTag] = *options_.description;
  if (options_.parent_run_id.has_value()) {
    tags[kParentRunTag] = *options_.parent_run_id;
  }
  if (options_.run_name.has_value()) tags[kRunNameTag] = *options_.run_name;

  api::CreateRun create;
  create.set_experiment_id(experiment_id_);
  create.set_user_id(*options_.user);
  create.set_start_time(absl::ToUnixMillis(absl::Now()));
  if (options_.run_name.has_value()) create.set_run_name(*options_.run_name);
  for (const auto& [key, value] : tags) {
    api::RunTag* tag = create.add_tags();
    tag->set_key(key);
    tag->set_value(value);
  }
  absl::StatusOr<api::Run> created =
      WithRetries(options_, deadline, [&](absl::Duration timeout) {
        return client_->CreateRun(create, timeout);
      });
  if (!created.ok()) return Annotate(created.status(), where);
  run_id_ = created->info().run_id();
  if (run_id_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, "runs/create answered without a run id"));
  }
  return absl::OkStatus();
}

absl::Status MlflowTracker::ResumeRun() {
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  const std::string& run_id = *options_.run_id;
  const std::string where = absl::StrCat("mlflow: cannot resume run ", run_id,
                                         " (MLFLOW_RUN_ID or "
                                         "MlflowOptions::run_id) on ",
                                         uri_, ": ");
  absl::StatusOr<api::Run> run = WithRetries(
      options_, deadline,
      [&](absl::Duration timeout) { return client_->GetRun(run_id, timeout); });
  if (!run.ok()) return Annotate(run.status(), where);
  if (run->info().lifecycle_stage() == "deleted") {
    return absl::FailedPreconditionError(
        absl::StrCat(where, "the run is deleted"));
  }
  api::UpdateRun update;
  update.set_run_id(run_id);
  update.set_status(api::RUNNING);
  if (run->info().has_end_time()) update.set_end_time(run->info().end_time());
  if (options_.run_name.has_value()) update.set_run_name(*options_.run_name);
  ACCELERATE_RETURN_IF_ERROR(Annotate(WithRetries(options_, deadline,
                                                  [&](absl::Duration timeout) {
                                                    return client_->UpdateRun(
                                                        update, timeout);
                                                  }),
                                      where));
  run_id_ = run_id;
  experiment_id_ = run->info().experiment_id();

  std::vector<std::pair<std::string, std::string>> tags;
  if (options_.tags.has_value()) {
    tags.assign(options_.tags->begin(), options_.tags->end());
  }
  if (options_.description.has_value()) {
    tags.emplace_back(kNoteTag, *options_.description);
  }
  return Annotate(LogTagsAndParams(tags, {}, deadline), where);
}

absl::Status MlflowTracker::LogTagsAndParams(
    const std::vector<std::pair<std::string, std::string>>& tags,
    const std::vector<std::pair<std::string, std::string>>& params,
    absl::Time deadline) {
  // Batches of at most 100 tags and 100 params whose JSON stays under
  // MLflow's request limit.
  std::vector<api::LogBatch> batches;
  size_t bytes = 0;
  auto batch_for = [&](size_t entry_bytes, bool is_tag) -> api::LogBatch& {
    const bool full =
        batches.empty() ||
        (is_tag ? batches.back().tags_size() : batches.back().params_size()) >=
            static_cast<int>(kMaxParamsTagsPerBatch) ||
        bytes + entry_bytes > kMaxBatchRequestBytes - 1024;
    if (full) {
      batches.emplace_back().set_run_id(run_id_);
      bytes = 0;
    }
    bytes += entry_bytes;
    return batches.back();
  };
  for (const auto& [key, value] : tags) {
    api::RunTag tag;
    tag.set_key(key);
    tag.set_value(value);
    ACCELERATE_ASSIGN_OR_RETURN(const std::string json,
                                trackers_internal::ToJson(tag));
    *batch_for(json.size() + 1, /*is_tag=*/true).add_tags() = std::move(tag);
  }
  for (const auto& [key, value] : params) {
    api::Param param;
    param.set_key(key);
    param.set_value(value);
    ACCELERATE_ASSIGN_OR_RETURN(const std::string json,
                                trackers_internal::ToJson(param));
    *batch_for(json.size() + 1, /*is_tag=*/false).add_params() =
        std::move(param);
  }
  for (const api::LogBatch& batch : batches) {
    ACCELERATE_RETURN_IF_ERROR(
        WithRetries(options_, deadline, [&](absl::Duration timeout) {
          return client_->LogBatch(batch, timeout);
        }));
  }
  return absl::OkStatus();
}

absl::Status MlflowTracker::StoreInitConfiguration(const Config& config) {
  if (phase_ != Phase::kStarted) {
    return absl::FailedPreconditionError(
        phase_ == Phase::kCreated
            ? "mlflow: StoreInitConfiguration before Start"
            : "mlflow: StoreInitConfiguration after Finish");
  }
  std::vector<std::pair<std::string, std::string>> params;
  std::set<std::string> seen;
  for (const auto& [key, value] : config) {
    ACCELERATE_RETURN_IF_ERROR(CheckKey("param", key));
    if (!seen.insert(key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("mlflow: the param \"", key,
                       "\" is given twice; MLflow keeps one value per param"));
    }
    std::string text = value.ToString();
    if (!IsValidUtf8(text)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mlflow: the value of param \"", key, "\" is not valid UTF-8"));
    }
    const size_t length = CountCharacters(text);
    if (length > kMaxParamValueLength) {
      ACCELERATE_LOG(WARNING)
          << "mlflow: the value of param \"" << key << "\" is " << length
          << " characters long; MLflow's params take at most "
          << kMaxParamValueLength << ", so it is not logged";
      continue;
    }
    params.emplace_back(key, std::move(text));
  }
  return Annotate(
      LogTagsAndParams({}, params, absl::Now() + options_.start_timeout),
      absl::StrCat("mlflow: cannot log the configuration as params of run ",
                   run_id_, " on ", uri_, ": "));
}

absl::Status MlflowTracker::Log(const LogValues& values,
                                std::optional<int64_t> step) {
  if (phase_ != Phase::kStarted) {
    return absl::FailedPreconditionError(phase_ == Phase::kCreated
                                             ? "mlflow: Log before Start"
                                             : "mlflow: Log after Finish");
  }
  int64_t scalars = 0;
  for (const auto& [key, value] : values) {
    if (value.scalar() != nullptr) {
      ACCELERATE_RETURN_IF_ERROR(CheckKey("metric", key));
      ++scalars;
    }
  }
  for (const auto& [key, value] : values) {
    if (value.scalar() == nullptr && skipped_names_.insert(key).second) {
      ACCELERATE_LOG(WARNING)
          << "mlflow: \"" << key << "\" is "
          << (value.text() != nullptr ? "a text" : "a histogram")
          << ", and MLflow's metrics take only numbers, so it is not logged "
             "(warned once per name)";
    }
  }
  if (scalars == 0) return absl::OkStatus();
  const int64_t timestamp = absl::ToUnixMillis(absl::Now());
  const int64_t at_step = step.value_or(0);
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    const int64_t pending = static_cast<int64_t>(queue_.size()) + in_flight_;
    if (pending + scalars > options_.max_pending_points) {
      std::string message =
          absl::StrCat("mlflow: ", CountOf(pending, "metric point"),
                       " already wait to be sent to ", uri_,
                       " (max_pending_points is ", options_.max_pending_points,
                       "), so this call's ", scalars, " were not queued");
      if (!last_send_error_.ok()) {
        absl::StrAppend(&message,
                        "; last send error: ", last_send_error_.message());
      }
      not_queued_points_ += scalars;
      return absl::ResourceExhaustedError(message);
    }
    for (const auto& [key, value] : values) {
      if (const double* scalar = value.scalar()) {
        queue_.push_back(Point{key, *scalar, timestamp, at_step});
      }
    }
    const size_t full = kMaxMetricsPerBatch;
    wake = queue_.size() >= full &&
           queue_.size() - static_cast<size_t>(scalars) < full;
  }
  if (wake) wake_sender_.Signal();
  return absl::OkStatus();
}

void MlflowTracker::SendLoop() {
  std::vector<Point> batch;
  absl::Duration backoff = options_.retry_initial_backoff;
  absl::MutexLock lock(&mu_);
  while (true) {
    if (batch.empty()) {
      const bool send_now = queue_.size() >= kMaxMetricsPerBatch ||
                            (finishing_ && !queue_.empty());
      if (!stop_ && !send_now) {
        wake_sender_.WaitWithTimeout(&mu_, options_.flush_interval);
      }
      if (stop_) break;
      if (queue_.empty()) continue;
      const size_t count = std::min(queue_.size(), kMaxMetricsPerBatch);
      batch.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + count));
      queue_.erase(queue_.begin(), queue_.begin() + count);
      in_flight_ = static_cast<int64_t>(count);
    }
    const absl::Duration timeout =
        std::max(std::min(options_.request_timeout, give_up_ - absl::Now()),
                 absl::Milliseconds(100));
    mu_.Unlock();
    api::LogBatch request;
    request.set_run_id(run_id_);
    request.mutable_metrics()->Reserve(static_cast<int>(batch.size()));
    for (const Point& point : batch) {
      api::Metric* metric = request.add_metrics();
      metric->set_key(point.key);
      metric->set_value(point.value);
      metric->set_timestamp(point.timestamp_ms);
      metric->set_step(point.step);
    }
    const absl::Status status = sender_client_->LogBatch(request, timeout);
    mu_.Lock();
    if (status.ok()) {
      batch.clear();
      in_flight_ = 0;
      backoff = options_.retry_initial_backoff;
      last_send_error_ = absl::OkStatus();
      progress_.SignalAll();
      continue;
    }
    if (status.code() == absl::StatusCode::kUnavailable ||
        status.code() == absl::StatusCode::kCancelled) {
      // Kept; tried again after the backoff, or at once when `Finish`
      // begins.
      last_send_error_ = status;
      const bool was_finishing = finishing_;
      const absl::Time until = absl::Now() + backoff;
      while (!stop_ && finishing_ == was_finishing && absl::Now() < until) {
        wake_sender_.WaitWithDeadline(&mu_, until);
      }
      if (stop_) break;
      backoff = std::min(backoff * 2, options_.retry_max_backoff);
      continue;
    }
    // Refused (a 4xx other than 408/429): retrying cannot help.
    if (first_refusal_.ok()) {
      first_refusal_ = status;
      ACCELERATE_LOG(WARNING)
          << "mlflow: the server refused "
          << CountOf(batch.size(), "metric point") << " of run " << run_id_
          << ", which are dropped (reported again by "
          << "Finish): " << status;
    }
    refused_points_ += static_cast<int64_t>(batch.size());
    batch.clear();
    in_flight_ = 0;
    progress_.SignalAll();
  }
  // A batch not acknowledged stays counted in `in_flight_`.
}

void MlflowTracker::StopSender() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  cancel_.store(true);
  wake_sender_.SignalAll();
  sender_.join();
}

absl::Status MlflowTracker::Finish() {
  if (phase_ != Phase::kStarted) {
    return absl::FailedPreconditionError(
        phase_ == Phase::kCreated ? "mlflow: Finish before Start"
                                  : "mlflow: Finish was already called");
  }
  phase_ = Phase::kFinished;
  const absl::Time deadline = absl::Now() + options_.finish_timeout;
  {
    absl::MutexLock lock(&mu_);
    finishing_ = true;
    give_up_ = deadline;
    wake_sender_.SignalAll();
    while ((!queue_.empty() || in_flight_ > 0) && absl::Now() < deadline) {
      progress_.WaitWithDeadline(&mu_, deadline);
    }
  }
  StopSender();

  int64_t unsent;
  int64_t refused;
  int64_t not_queued;
  absl::Status first_refusal;
  absl::Status last_error;
  {
    absl::MutexLock lock(&mu_);
    unsent = static_cast<int64_t>(queue_.size()) + in_flight_;
    refused = refused_points_;
    not_queued = not_queued_points_;
    first_refusal = first_refusal_;
    last_error = last_send_error_;
  }
  if (unsent > 0) {
    std::string message = absl::StrCat(
        "mlflow: ", CountOf(unsent, "metric point"), " of run ", run_id_,
        " were not sent to ", uri_, " within the finish timeout (",
        absl::FormatDuration(options_.finish_timeout),
        "); the run is left RUNNING");
    if (!last_error.ok()) {
      absl::StrAppend(&message, "; last error: ", last_error.message());
    }
    if (refused > 0) {
      absl::StrAppend(&message, "; besides, the server refused ",
                      CountOf(refused, "point"), ": ", first_refusal.message());
    }
    if (not_queued > 0) {
      absl::StrAppend(&message, "; and ", CountOf(not_queued, "point"),
                      " were never queued (the queue was full)");
    }
    return absl::UnavailableError(message);
  }

  api::UpdateRun update;
  update.set_run_id(run_id_);
  update.set_status(api::FINISHED);
  update.set_end_time(absl::ToUnixMillis(absl::Now()));
  // Ending the run gets a few seconds of its own when sending used up the
  // finish timeout.
  const absl::Status ended = WithRetries(
      options_, std::max(deadline, absl::Now() + absl::Seconds(5)),
      [&](absl::Duration timeout) {
        return client_->UpdateRun(update, timeout);
      });
  if (refused > 0) {
    return absl::Status(
        first_refusal.code(),
        absl::StrCat("mlflow: the server at ", uri_, " refused ",
                     CountOf(refused, "metric point"), " of run ", run_id_,
                     ", which were dropped: ", first_refusal.message(),
                     ended.ok() ? "" : "; ending the run failed too: ",
                     ended.ok() ? "" : ended.message()));
  }
  if (not_queued > 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "mlflow: ", CountOf(not_queued, "metric point"), " of run ", run_id_,
        " were never queued for ", uri_,
        " (Log refused them: the queue was full)",
        ended.ok() ? "" : "; ending the run failed too: ",
        ended.ok() ? "" : ended.message()));
  }
  return Annotate(
      ended,
      absl::StrCat("mlflow: every metric point was sent, but run ", run_id_,
                   " could not be set FINISHED on ", uri_, ": "));
}

}  // namespace accelerate::trackers
