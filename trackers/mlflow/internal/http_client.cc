#include "trackers/mlflow/internal/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "state/logging.h"
#include "trackers/mlflow/internal/mlflow_service.pb.h"

namespace accelerate::trackers_internal {
namespace {

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    const CURLcode code = curl_global_init(CURL_GLOBAL_DEFAULT);
    ACCELERATE_CHECK(code == CURLE_OK)
        << "curl_global_init: " << curl_easy_strerror(code);
  });
}

size_t AppendBody(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

// Aborts the transfer once the cancel flag is set. libcurl calls it often
// while data moves and about once a second while waiting.
int CheckCancel(void* cancel, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* flag = static_cast<const std::atomic<bool>*>(cancel);
  return flag != nullptr && flag->load(std::memory_order_relaxed) ? 1 : 0;
}

long Millis(absl::Duration duration) {
  return static_cast<long>(
      std::max<int64_t>(1, absl::ToInt64Milliseconds(duration)));
}

// A failed transfer (no HTTP answer) as a status: what retrying cannot fix
// gets its own code, the rest (no connection, reset, timeout) is
// `Unavailable`.
absl::Status TransferStatus(CURLcode code, const char* method,
                            const std::string& url, const char* detail) {
  std::string message =
      absl::StrCat(method, " ", url, ": ", curl_easy_strerror(code));
  if (detail[0] != '\0') absl::StrAppend(&message, " (", detail, ")");
  switch (code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return absl::InvalidArgumentError(message);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
      return absl::FailedPreconditionError(message);
    default:
      return absl::UnavailableError(message);
  }
}

absl::StatusCode CodeOfMlflowError(absl::string_view error_code) {
  if (error_code == "INVALID_PARAMETER_VALUE" ||
      error_code == "MALFORMED_REQUEST" || error_code == "BAD_REQUEST" ||
      error_code == "INVALID_REQUEST") {
    return absl::StatusCode::kInvalidArgument;
  }
  if (error_code == "RESOURCE_DOES_NOT_EXIST" || error_code == "NOT_FOUND" ||
      error_code == "ENDPOINT_NOT_FOUND") {
    return absl::StatusCode::kNotFound;
  }
  if (error_code == "RESOURCE_ALREADY_EXISTS" ||
      error_code == "ALREADY_EXISTS") {
    return absl::StatusCode::kAlreadyExists;
  }
  if (error_code == "PERMISSION_DENIED") {
    return absl::StatusCode::kPermissionDenied;
  }
  if (error_code == "UNAUTHENTICATED" ||
      error_code == "CUSTOMER_UNAUTHORIZED") {
    return absl::StatusCode::kUnauthenticated;
  }
  if (error_code == "INVALID_STATE") {
    return absl::StatusCode::kFailedPrecondition;
  }
  if (error_code == "RESOURCE_LIMIT_EXCEEDED" ||
      error_code == "QUOTA_EXCEEDED") {
    return absl::StatusCode::kResourceExhausted;
  }
  if (error_code == "NOT_IMPLEMENTED") return absl::StatusCode::kUnimplemented;
  return absl::StatusCode::kUnknown;
}

absl::StatusCode CodeOfHttpStatus(long http_status) {
  switch (http_status) {
    case 400:
    case 413:
    case 415:
    case 422:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
    case 410:
      return absl::StatusCode::kNotFound;
    case 405:
      return absl::StatusCode::kUnimplemented;
    case 409:
      return absl::StatusCode::kAlreadyExists;
    default:
      return absl::StatusCode::kFailedPrecondition;
  }
}

// The first `limit` bytes of `body` on one line, for messages.
std::string Excerpt(absl::string_view body, size_t limit = 200) {
  std::string out(body.substr(0, limit));
  for (char& c : out) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (body.size() > limit) out += "...";
  return out;
}

}  // namespace

HttpClient::HttpClient(HttpClientOptions options)
    : options_(std::move(options)) {
  InitCurlOnce();
  curl_ = curl_easy_init();
  ACCELERATE_CHECK(curl_ != nullptr) << "curl_easy_init failed";
}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

absl::StatusOr<std::string> HttpClient::Get(absl::string_view path_and_query,
                                            absl::Duration timeout) {
  return Perform("GET", path_and_query, nullptr, timeout);
}

absl::StatusOr<std::string> HttpClient::PostJson(absl::string_view path,
                                                 absl::string_view json,
                                                 absl::Duration timeout) {
  const std::string body(json);
  return Perform("POST", path, &body, timeout);
}

absl::StatusOr<std::string> HttpClient::Perform(const char* method,
                                                absl::string_view path,
                                                const std::string* json,
                                                absl::Duration timeout) {
  CURL* curl = static_cast<CURL*>(curl_);
  // Options are set afresh for every request; the connection cache stays.
  curl_easy_reset(curl);
  const std::string url = absl::StrCat(options_.base_url, path);
  std::string body;
  char error[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Accept: application/json");
  // No "Expect: 100-continue" round trip before large bodies.
  headers = curl_slist_append(headers, "Expect:");
  if (json != nullptr) {
    headers = curl_slist_append(headers, "Content-Type: application/json");
  }

  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "accelerate-cpp");
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  // MLflow's client follows redirects and keeps POST a POST.
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl, CURLOPT_POSTREDIR,
                   static_cast<long>(CURL_REDIR_POST_ALL));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, Millis(timeout));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   Millis(std::min(timeout, options_.connect_timeout)));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  if (options_.cancel != nullptr) {
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &CheckCancel);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, options_.cancel);
  }
  if (options_.username.has_value() && options_.password.has_value()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
    curl_easy_setopt(curl, CURLOPT_USERNAME, options_.username->c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, options_.password->c_str());
  } else if (options_.token.has_value()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH,
                     static_cast<long>(CURLAUTH_BEARER));
    curl_easy_setopt(curl, CURLOPT_XOAUTH2_BEARER, options_.token->c_str());
  }
  if (options_.insecure_tls) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (options_.server_cert_path.has_value()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, options_.server_cert_path->c_str());
  }
  if (options_.client_cert_path.has_value()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, options_.client_cert_path->c_str());
  }
  if (json != nullptr) {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(json->size()));
  } else {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  }

  const CURLcode code = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (code != CURLE_OK) {
    if (code == CURLE_ABORTED_BY_CALLBACK) {
      return absl::CancelledError(
          absl::StrCat(method, " ", url, ": cancelled"));
    }
    return TransferStatus(code, method, url, error);
  }
  long http_status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
  if (http_status >= 200 && http_status < 300) return body;
  if (http_status >= 400) {
    return HttpErrorStatus(method, url, http_status, body);
  }
  return absl::FailedPreconditionError(
      absl::StrCat(method, " ", url, ": unexpected HTTP ", http_status, ": ",
                   Excerpt(body)));
}

std::string UrlEncode(absl::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') ||
        (byte >= '0' && byte <= '9') || byte == '-' || byte == '_' ||
        byte == '.' || byte == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0xF];
    }
  }
  return out;
}

absl::Status HttpErrorStatus(absl::string_view method, absl::string_view url,
                             long http_status, absl::string_view body) {
  mlflow::ErrorResponse error;
  google::protobuf::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = true;
  const bool is_mlflow_error =
      google::protobuf::util::JsonStringToMessage(
          google::protobuf::StringPiece(body.data(), body.size()), &error,
          parse)
          .ok() &&
      error.has_error_code();
  std::string message = absl::StrCat(method, " ", url, ": HTTP ", http_status);
  if (is_mlflow_error) {
    absl::StrAppend(&message, " ", error.error_code(), ": ",
                    Excerpt(error.message(), 1000));
  } else if (!body.empty()) {
    absl::StrAppend(&message, ": ", Excerpt(body));
  }
  absl::StatusCode code;
  if (http_status == 408 || http_status == 429 || http_status >= 500) {
    code = absl::StatusCode::kUnavailable;
  } else {
    code = is_mlflow_error ? CodeOfMlflowError(error.error_code())
                           : absl::StatusCode::kUnknown;
    if (code == absl::StatusCode::kUnknown)
      code = CodeOfHttpStatus(http_status);
  }
  return absl::Status(code, message);
}

}  // namespace accelerate::trackers_internal
