// A real MLflow tracking server for tests: the `.venv`'s `mlflow server`
// (MLflow 3.17) on 127.0.0.1, over a sqlite database in a folder of the
// test's, started in a process group of its own so that it can be paused
// (SIGSTOP: connections hang), killed (SIGKILL: connections refused) and
// started again on the same port and database.
//
//   MlflowTestServer server(FreshTestDir("mlflow"), PickFreePort());
//   ASSERT_OK(server.Start());
//   // ... MLFLOW_TRACKING_URI=server.uri() ...
//
// Thread safety: one thread uses a server at a time. Ownership: the object
// owns the server's processes; destroying it kills them.

#ifndef ACCELERATE_TRACKERS_MLFLOW_MLFLOW_SERVER_TESTUTIL_H_
#define ACCELERATE_TRACKERS_MLFLOW_MLFLOW_SERVER_TESTUTIL_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "testing/subprocess.h"

namespace accelerate::trackers_internal {

class MlflowTestServer {
 public:
  // REQUIRES: the test has `data = ["//third_party:python3"]`; `dir`
  // exists.
  MlflowTestServer(std::string dir, int port);
  MlflowTestServer(const MlflowTestServer&) = delete;
  MlflowTestServer& operator=(const MlflowTestServer&) = delete;
  ~MlflowTestServer();

  // Starts the server (again, after `Kill`) and waits until GET /health
  // answers. `DeadlineExceeded` with the server's output when it does not
  // within `timeout`. REQUIRES: not running.
  [[nodiscard]] absl::Status Start(absl::Duration timeout = absl::Seconds(90));
  // Kills the server's process group (SIGKILL) and reaps it.
  void Kill();
  // SIGSTOP / SIGCONT the group: while paused, connections are accepted by
  // the kernel but never answered.
  void Pause();
  void Resume();

  // "http://127.0.0.1:<port>".
  std::string uri() const;
  bool running() const { return process_ != nullptr; }

 private:
  std::string dir_;
  int port_;
  std::unique_ptr<testing::Subprocess> process_;
};

}  // namespace accelerate::trackers_internal

#endif  // ACCELERATE_TRACKERS_MLFLOW_MLFLOW_SERVER_TESTUTIL_H_
