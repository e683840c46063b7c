// A small HTTP client on libcurl for JSON APIs: GET and POST with a JSON
// body, per-request timeouts, basic or bearer authentication, TLS options,
// and a cancel flag that aborts a request in flight. Errors become
// statuses: `Unavailable` for what is worth retrying (no connection, a
// timeout, HTTP 408, 429 and 5xx), the canonical code that fits for other
// 4xx answers, with MLflow's `error_code` and `message` when the body has
// them.
//
//   HttpClient client({.base_url = "http://127.0.0.1:5000"});
//   absl::StatusOr<std::string> body =
//       client.Get("/health", absl::Seconds(5));
//
// Thread safety: one thread uses a client at a time (it owns one curl
// handle and its connections); different clients may be used concurrently.
// Ownership: the client owns its curl handle; `cancel`, when set, is
// borrowed and must outlive the client.

#ifndef ACCELERATE_TRACKERS_MLFLOW_INTERNAL_HTTP_CLIENT_H_
#define ACCELERATE_TRACKERS_MLFLOW_INTERNAL_HTTP_CLIENT_H_

#include <atomic>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace accelerate::trackers_internal {

struct HttpClientOptions {
  // "http://host:port" or "https://host/prefix"; request paths are appended
  // to it. No trailing slash.
  std::string base_url;
  // Basic authentication when both are set (as MLflow's client does)...
  std::optional<std::string> username;
  std::optional<std::string> password;
  // ...otherwise a bearer token when set.
  std::optional<std::string> token;
  // Skip TLS certificate and host name verification.
  bool insecure_tls = false;
  // A CA bundle to verify the server with; the system's when unset.
  std::optional<std::string> server_cert_path;
  // A client certificate (PEM, with its key) to present.
  std::optional<std::string> client_cert_path;
  // How long establishing a connection may take.
  absl::Duration connect_timeout = absl::Seconds(10);
  // When set and true, requests in flight end at once with `Cancelled`.
  const std::atomic<bool>* cancel = nullptr;
};

class HttpClient {
 public:
  explicit HttpClient(HttpClientOptions options);
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  ~HttpClient();

  // GET `base_url + path_and_query`; the body of a 2xx answer. `timeout`
  // bounds the whole request.
  [[nodiscard]] absl::StatusOr<std::string> Get(
      absl::string_view path_and_query, absl::Duration timeout);
  // POST `json` (Content-Type: application/json) to `base_url + path`; the
  // body of a 2xx answer.
  [[nodiscard]] absl::StatusOr<std::string> PostJson(absl::string_view path,
                                                     absl::string_view json,
                                                     absl::Duration timeout);

  const std::string& base_url() const { return options_.base_url; }

 private:
  absl::StatusOr<std::string> Perform(const char* method,
                                      absl::string_view path,
                                      const std::string* json,
                                      absl::Duration timeout);

  HttpClientOptions options_;
  void* curl_;  // CURL*
};

// `text` percent-encoded for a URL query value (RFC 3986 unreserved
// characters kept).
std::string UrlEncode(absl::string_view text);

// The status for an HTTP answer `http_status` (>= 400) with `body` to
// `method url`: `Unavailable` for 408, 429 and 5xx; otherwise from MLflow's
// `error_code` when the body is its JSON error, else from the HTTP status.
absl::Status HttpErrorStatus(absl::string_view method, absl::string_view url,
                             long http_status, absl::string_view body);

}  // namespace accelerate::trackers_internal

#endif  // ACCELERATE_TRACKERS_MLFLOW_INTERNAL_HTTP_CLIENT_H_
