#include "trackers/mlflow/mlflow_server_testutil.h"

#include <signal.h>
#include <sys/wait.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "state/logging.h"
#include "trackers/mlflow/internal/http_client.h"

namespace accelerate::trackers_internal {

MlflowTestServer::MlflowTestServer(std::string dir, int port)
    : dir_(std::move(dir)), port_(port) {}

MlflowTestServer::~MlflowTestServer() {
  if (running()) Kill();
}

std::string MlflowTestServer::uri() const {
  return absl::StrCat("http://127.0.0.1:", port_);
}

absl::Status MlflowTestServer::Start(absl::Duration timeout) {
  ACCELERATE_CHECK(!running()) << "the MLflow server is already running";
  // From its folder, so that whatever it writes beside the database stays
  // there; one worker keeps it light.
  const std::string command =
      absl::StrCat("cd '", dir_, "' && exec '", testing::PeerPython(),
                   "' -m mlflow server --backend-store-uri 'sqlite:///", dir_,
                   "/mlflow.db' --default-artifact-root '", dir_,
                   "/artifacts' --no-serve-artifacts --host 127.0.0.1 --port ",
                   port_, " --workers 1");
  process_ = std::make_unique<testing::Subprocess>(
      std::vector<std::string>{"/bin/sh", "-c", command},
      std::map<std::string, std::string>{{"PYTHONUNBUFFERED", "1"}});
  if (absl::Status started = process_->Start(); !started.ok()) {
    process_.reset();
    return started;
  }
  HttpClient health({.base_url = uri(), .connect_timeout = absl::Seconds(1)});
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (health.Get("/health", absl::Seconds(2)).ok()) return absl::OkStatus();
    siginfo_t info{};
    if (::waitid(P_PID, process_->pid(), &info, WEXITED | WNOHANG | WNOWAIT) ==
            0 &&
        info.si_pid == process_->pid()) {
      break;  // It exited.
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  testing::ProcessResult result = process_->WaitUntil(absl::Now());
  process_.reset();
  return absl::DeadlineExceededError(absl::StrCat(
      "the MLflow server on ", uri(), " did not answer /health within ",
      absl::FormatDuration(timeout), " (exit code ", result.exit_code,
      ", signal ", result.signal, "); its output:\n", result.output));
}

void MlflowTestServer::Kill() {
  ACCELERATE_CHECK(running()) << "the MLflow server is not running";
  ::kill(-process_->pid(), SIGKILL);
  process_->WaitUntil(absl::Now() + absl::Seconds(30));
  process_.reset();
}

void MlflowTestServer::Pause() {
  ACCELERATE_CHECK(running()) << "the MLflow server is not running";
  ::kill(-process_->pid(), SIGSTOP);
}

void MlflowTestServer::Resume() {
  ACCELERATE_CHECK(running()) << "the MLflow server is not running";
  ::kill(-process_->pid(), SIGCONT);
}

}  // namespace accelerate::trackers_internal
