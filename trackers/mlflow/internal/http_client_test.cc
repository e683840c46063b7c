#include "trackers/mlflow/internal/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/stopwatch.h"

namespace accelerate::trackers_internal {
namespace {

using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// An HTTP server on 127.0.0.1 that answers each connection's request with
// the next scripted answer (or never, for `hang`) and records the requests.
class ScriptedServer {
 public:
  struct Answer {
    int status = 200;
    std::string body = "{}";
    bool hang = false;
  };

  explicit ScriptedServer(std::vector<Answer> answers)
      : answers_(std::move(answers)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address),
                     sizeof(address)),
              0);
    EXPECT_EQ(::listen(listener_, 16), 0);
    socklen_t length = sizeof(address);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }

  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    ::close(listener_);
  }

  std::string base_url() const {
    return absl::StrCat("http://127.0.0.1:", port_);
  }

  std::vector<std::string> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  // Waits until `fd` is readable or the server stops.
  bool WaitReadable(int fd) {
    while (!stop_) {
      pollfd entry{fd, POLLIN, 0};
      if (::poll(&entry, 1, 20) > 0) return true;
    }
    return false;
  }

  void Serve() {
    size_t next = 0;
    while (WaitReadable(listener_)) {
      const int connection = ::accept(listener_, nullptr, nullptr);
      if (connection < 0) continue;
      std::string request;
      char buffer[4096];
      size_t wanted = std::string::npos;
      while (request.size() < wanted && WaitReadable(connection)) {
        const ssize_t n = ::read(connection, buffer, sizeof(buffer));
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
        const size_t end = request.find("\r\n\r\n");
        if (end != std::string::npos && wanted == std::string::npos) {
          size_t body = 0;
          const size_t at = absl::AsciiStrToLower(request.substr(0, end))
                                .find("content-length: ");
          if (at != std::string::npos) {
            const size_t eol = request.find("\r\n", at);
            (void)absl::SimpleAtoi(request.substr(at + 16, eol - at - 16),
                                   &body);
          }
          wanted = end + 4 + body;
        }
      }
      {
        absl::MutexLock lock(&mu_);
        requests_.push_back(request);
      }
      const Answer answer =
          next < answers_.size() ? answers_[next++] : Answer{};
      if (answer.hang) {
        while (!stop_) absl::SleepFor(absl::Milliseconds(10));
      } else {
        const std::string response = absl::StrCat(
            "HTTP/1.1 ", answer.status,
            " Scripted\r\nContent-Type: "
            "application/json\r\nContent-Length: ",
            answer.body.size(), "\r\nConnection: close\r\n\r\n", answer.body);
        (void)!::write(connection, response.data(), response.size());
      }
      ::close(connection);
    }
  }

  std::vector<Answer> answers_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::string> requests_;
};

TEST(HttpClientTest, PostsJsonWithBasicAuth) {
  ScriptedServer server({{200, R"({"run_id": "abc"})"}});
  HttpClient client({.base_url = server.base_url(),
                     .username = "ada",
                     .password = "s3cret",
                     .token = "ignored-when-basic"});
  EXPECT_THAT(client.PostJson("/api/2.0/mlflow/runs/update",
                              R"({"status":"FINISHED"})", absl::Seconds(10)),
              IsOkAndHolds(R"({"run_id": "abc"})"));
  ASSERT_EQ(server.requests().size(), 1u);
  const std::string request = server.requests()[0];
  EXPECT_TRUE(absl::StartsWith(request, "POST /api/2.0/mlflow/runs/update "))
      << request;
  // base64("ada:s3cret")
  EXPECT_THAT(request, HasSubstr("Authorization: Basic YWRhOnMzY3JldA==\r\n"));
  EXPECT_THAT(request, HasSubstr("Content-Type: application/json\r\n"));
  EXPECT_TRUE(absl::EndsWith(request, "\r\n\r\n{\"status\":\"FINISHED\"}"))
      << request;
}

TEST(HttpClientTest, SendsABearerTokenWithoutBasicCredentials) {
  ScriptedServer server({{200, "{}"}});
  HttpClient client({.base_url = server.base_url(), .token = "tok-123"});
  EXPECT_OK(client.Get("/api/2.0/mlflow/runs/get?run_id=x", absl::Seconds(10)));
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_THAT(server.requests()[0],
              HasSubstr("GET /api/2.0/mlflow/runs/get?run_id=x HTTP/1.1"));
  EXPECT_THAT(server.requests()[0],
              HasSubstr("Authorization: Bearer tok-123\r\n"));
}

TEST(HttpClientTest, AnswersBecomeStatuses) {
  ScriptedServer server({
      {503, "upstream down"},
      {429, R"({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow"})"},
      {500, R"({"error_code": "INTERNAL_ERROR", "message": "db locked"})"},
      {408, ""},
      {404,
       R"({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run with id=x not found"})"},
      {400,
       R"({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad name"})"},
      {400, R"({"error_code": "RESOURCE_ALREADY_EXISTS", "message": "taken"})"},
      {403, ""},
      {401, "<html>login</html>"},
  });
  HttpClient client({.base_url = server.base_url()});
  auto post = [&] {
    return client.PostJson("/api/2.0/mlflow/x", "{}", absl::Seconds(10))
        .status();
  };
  EXPECT_THAT(post(), StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("HTTP 503: upstream down")));
  EXPECT_THAT(post(), StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("HTTP 429 REQUEST_LIMIT_EXCEEDED")));
  EXPECT_THAT(post(), StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("INTERNAL_ERROR: db locked")));
  EXPECT_THAT(post(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 408")));
  EXPECT_THAT(
      post(),
      StatusIs(absl::StatusCode::kNotFound,
               AllOf(HasSubstr(server.base_url() + "/api/2.0/mlflow/x"),
                     HasSubstr("HTTP 404 RESOURCE_DOES_NOT_EXIST: Run with "
                               "id=x not found"))));
  EXPECT_THAT(post(), StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("INVALID_PARAMETER_VALUE: bad name")));
  EXPECT_THAT(post(), StatusIs(absl::StatusCode::kAlreadyExists,
                               HasSubstr("RESOURCE_ALREADY_EXISTS: taken")));
  EXPECT_THAT(post(), StatusIs(absl::StatusCode::kPermissionDenied,
                               HasSubstr("HTTP 403")));
  EXPECT_THAT(post(), StatusIs(absl::StatusCode::kUnauthenticated,
                               HasSubstr("HTTP 401: <html>login</html>")));
}

TEST(HttpClientTest, NoServerIsUnavailable) {
  // A port nobody listens on: bound, never listened to.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)),
            0);
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  const std::string url =
      absl::StrCat("http://127.0.0.1:", ntohs(address.sin_port));
  HttpClient client({.base_url = url});
  EXPECT_THAT(client.Get("/health", absl::Seconds(10)),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("GET " + url + "/health"),
                             HasSubstr("connect"))));
  ::close(fd);
}

TEST(HttpClientTest, ASilentServerTimesOutAsUnavailable) {
  ScriptedServer server(std::vector<ScriptedServer::Answer>(1, {.hang = true}));
  HttpClient client({.base_url = server.base_url()});
  const testing::Stopwatch watch;
  EXPECT_THAT(client.Get("/health", absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("Timeout was reached")));
  EXPECT_LT(watch.Elapsed(), absl::Seconds(5));
}

TEST(HttpClientTest, CancelEndsARequestInFlight) {
  ScriptedServer server(std::vector<ScriptedServer::Answer>(1, {.hang = true}));
  std::atomic<bool> cancel{false};
  HttpClient client({.base_url = server.base_url(), .cancel = &cancel});
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(200));
    cancel = true;
  });
  const testing::Stopwatch watch;
  EXPECT_THAT(client.PostJson("/api/2.0/mlflow/runs/log-batch", "{}",
                              absl::Seconds(60)),
              StatusIs(absl::StatusCode::kCancelled));
  // libcurl looks at the flag about once a second while it waits.
  EXPECT_LT(watch.Elapsed(), absl::Seconds(5));
  canceller.join();
}

TEST(HttpClientTest, UrlEncodeKeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(UrlEncode("a-b_c.d~E9"), "a-b_c.d~E9");
  EXPECT_EQ(UrlEncode("my exp/1&x=é"), "my%20exp%2F1%26x%3D%C3%A9");
}

}  // namespace
}  // namespace accelerate::trackers_internal
