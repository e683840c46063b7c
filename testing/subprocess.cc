#include "testing/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "state/child_process.h"
#include "state/logging.h"

namespace accelerate::testing {

Subprocess::Subprocess(std::vector<std::string> argv,
                       std::map<std::string, std::string> env)
    : argv_(std::move(argv)), env_(std::move(env)) {}

Subprocess::~Subprocess() {
  if (pid_ > 0) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  if (reader_.joinable()) reader_.join();
  if (output_fd_ >= 0) ::close(output_fd_);
}

absl::Status Subprocess::Start() {
  ACCELERATE_CHECK(pid_ < 0) << "Start called twice";
  ACCELERATE_CHECK(!argv_.empty());
  // Build everything the child needs before forking: after fork only
  // async-signal-safe calls are allowed.
  std::vector<std::string> env_strings = state::ChildEnvironment(env_);
  std::vector<char*> env_ptrs = state::CStringArray(env_strings);
  std::vector<char*> argv_ptrs = state::CStringArray(argv_);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  start_ = absl::Now();
  pid_ = ::fork();
  if (pid_ < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid_ == 0) {
    ::setpgid(0, 0);  // A group of its own, killed as a whole.
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::execve(argv_ptrs[0], argv_ptrs.data(), env_ptrs.data());
    const char message[] = "execve failed\n";
    ssize_t ignored = ::write(STDERR_FILENO, message, sizeof(message) - 1);
    (void)ignored;
    ::_exit(127);
  }
  ::close(fds[1]);
  output_fd_ = fds[0];
  reader_ = std::thread([this] {
    char buffer[4096];
    while (true) {
      const ssize_t n = ::read(output_fd_, buffer, sizeof(buffer));
      if (n > 0) {
        output_.append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        break;
      }
    }
  });
  return absl::OkStatus();
}

ProcessResult Subprocess::Wait(absl::Duration timeout) {
  return WaitUntil(start_ + timeout);
}

ProcessResult Subprocess::WaitUntil(absl::Time deadline) {
  ACCELERATE_CHECK(pid_ > 0) << "Wait needs a started child";
  ProcessResult result;
  int status = 0;
  while (true) {
    siginfo_t info{};
    if (::waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid_) {
      // Exited but not reaped: its group can still be named safely.
      ::kill(-pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    if (absl::Now() >= deadline) {
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      result.timed_out = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  result.elapsed = absl::Now() - start_;
  pid_ = -1;
  // Grandchildren may hold the pipe open; the reader ends when they do.
  if (reader_.joinable()) reader_.join();
  ::close(output_fd_);
  output_fd_ = -1;
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  result.output = std::move(output_);
  return result;
}

std::string Runfile(const std::string& path) {
  return absl::StrCat(std::getenv("TEST_SRCDIR"), "/",
                      std::getenv("TEST_WORKSPACE"), "/", path);
}

std::string PeerPython() {
  // External repositories sit beside the main one among the runfiles.
  return absl::StrCat(std::getenv("TEST_SRCDIR"), "/torch_venv/python3");
}

absl::StatusOr<std::vector<ProcessResult>> RunLocalJob(
    const std::vector<std::string>& argv, int world_size, int port,
    const std::map<std::string, std::string>& env, absl::Duration timeout) {
  std::vector<std::unique_ptr<Subprocess>> children;
  for (int rank = 0; rank < world_size; ++rank) {
    std::map<std::string, std::string> vars = env;
    vars["RANK"] = absl::StrCat(rank);
    vars["LOCAL_RANK"] = absl::StrCat(rank);
    vars["WORLD_SIZE"] = absl::StrCat(world_size);
    vars["LOCAL_WORLD_SIZE"] = absl::StrCat(world_size);
    vars["GROUP_RANK"] = "0";
    vars["MASTER_ADDR"] = "127.0.0.1";
    vars["MASTER_PORT"] = absl::StrCat(port);
    children.push_back(std::make_unique<Subprocess>(argv, vars));
    absl::Status started = children.back()->Start();
    if (!started.ok()) return started;
  }
  std::vector<ProcessResult> results;
  const absl::Time deadline = absl::Now() + timeout;
  for (auto& child : children) results.push_back(child->WaitUntil(deadline));
  return results;
}

}  // namespace accelerate::testing
