#include "launch/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "state/child_process.h"

namespace accelerate::launch {
namespace {

constexpr int kForwardedSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

void WriteAll(int fd, absl::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    text.remove_prefix(static_cast<size_t>(n));
  }
}

void Say(absl::string_view text) {
  WriteAll(STDERR_FILENO, absl::StrCat("accelerate launch: ", text, "\n"));
}

bool MakeDirs(const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return false;
    if (slash == std::string::npos) return true;
  }
}

struct Stream {
  int fd = -1;
  std::string partial;
  std::unique_ptr<std::ofstream> log;
};

struct Child {
  int rank = 0;
  pid_t pid = -1;
  bool exited = false;
  int status = 0;
  Stream out;
  Stream err;
  std::deque<std::string> err_tail;
};

class Attempt {
 public:
  Attempt(const SupervisorOptions& options, int attempt, int signal_fd)
      : options_(options), attempt_(attempt), signal_fd_(signal_fd) {}

  // Starts every rank; false when one cannot be started (the others are then
  // brought down by the caller through Run()).
  bool Start(const std::vector<RankProcess>& ranks, const sigset_t& old_mask);
  // Supervises until every rank has ended and its output is drained.
  void Run();

  int failed_index() const { return failed_index_; }
  bool poll_failed() const { return poll_failed_; }
  int received_signal() const { return received_signal_; }
  const Child& child(int index) const { return *children_[index]; }

 private:
  void Spawn(const RankProcess& spec, const sigset_t& old_mask);
  void Relay(Child& child, Stream& stream, bool is_err, bool eof);
  void ReapExited();
  void StopAll(int signal);
  bool AllExited() const;
  bool AllDone() const;

  const SupervisorOptions& options_;
  const int attempt_;
  const int signal_fd_;
  std::vector<std::unique_ptr<Child>> children_;
  int failed_index_ = -1;
  int received_signal_ = 0;
  bool stopping_ = false;
  bool killed_ = false;
  bool poll_failed_ = false;
  absl::Time kill_deadline_ = absl::InfiniteFuture();
};

void Attempt::Spawn(const RankProcess& spec, const sigset_t& old_mask) {
  auto child = std::make_unique<Child>();
  child->rank = spec.rank;
  // Everything the child needs is built before fork.
  std::vector<std::string> env_strings = state::ChildEnvironment(spec.env);
  std::vector<char*> envp = state::CStringArray(env_strings);
  std::vector<std::string> argv_strings = spec.argv;
  std::vector<char*> argv = state::CStringArray(argv_strings);
  const std::string exec_error = absl::StrCat(
      "accelerate launch: cannot execute ", spec.argv[0], "\n");
  const std::string chdir_error = absl::StrCat(
      "accelerate launch: cannot start in ", spec.working_dir, "\n");

  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    Say(absl::StrCat("pipe failed: ", std::strerror(errno)));
    children_.push_back(std::move(child));
    children_.back()->exited = true;
    children_.back()->status = 127 << 8;
    return;
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // A session of its own: the rank's process group can be signalled as a
    // whole, and a rank that reads the terminal gets an error instead of
    // being stopped as a background job.
    ::setsid();
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    for (int sig : kForwardedSignals) ::signal(sig, SIG_DFL);
    ::signal(SIGCHLD, SIG_DFL);
    ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    if (!spec.working_dir.empty() && ::chdir(spec.working_dir.c_str()) != 0) {
      const ssize_t ignored =
          ::write(STDERR_FILENO, chdir_error.data(), chdir_error.size());
      (void)ignored;
      ::_exit(127);
    }
    ::execvpe(argv[0], argv.data(), envp.data());
    const ssize_t ignored =
        ::write(STDERR_FILENO, exec_error.data(), exec_error.size());
    (void)ignored;
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (pid < 0) {
    Say(absl::StrCat("fork failed: ", std::strerror(errno)));
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    child->exited = true;
    child->status = 127 << 8;
    children_.push_back(std::move(child));
    return;
  }
  child->pid = pid;
  child->out.fd = out_pipe[0];
  child->err.fd = err_pipe[0];
  if (!options_.log_dir.empty() && options_.tee != 0) {
    const std::string dir = absl::StrCat(options_.log_dir, "/attempt_",
                                         attempt_, "/rank_", spec.rank);
    if (MakeDirs(dir)) {
      if (options_.tee & 1) {
        child->out.log = std::make_unique<std::ofstream>(dir + "/stdout.log");
      }
      if (options_.tee & 2) {
        child->err.log = std::make_unique<std::ofstream>(dir + "/stderr.log");
      }
    } else {
      Say(absl::StrCat("cannot create log folder ", dir));
    }
  }
  children_.push_back(std::move(child));
}

bool Attempt::Start(const std::vector<RankProcess>& ranks,
                    const sigset_t& old_mask) {
  for (const RankProcess& rank : ranks) Spawn(rank, old_mask);
  for (size_t i = 0; i < children_.size(); ++i) {
    if (children_[i]->pid < 0) {
      failed_index_ = static_cast<int>(i);
      return false;
    }
  }
  return true;
}

void Attempt::Relay(Child& child, Stream& stream, bool is_err, bool eof) {
  const std::string prefix =
      options_.prefix_output ? absl::StrCat("[rank", child.rank, "]: ") : "";
  std::string batch;  // Prefixed, for the console.
  std::string raw;    // The rank's own bytes, for its log file.
  // A line ends with \n, or with \r for progress bars that redraw
  // themselves: each redraw is passed on at once, with the prefix, and keeps
  // its \r so that terminals overwrite it in place.
  const auto take = [&](absl::string_view line, char end) {
    absl::StrAppend(&batch, prefix, line, absl::string_view(&end, 1));
    if (stream.log) absl::StrAppend(&raw, line, absl::string_view(&end, 1));
    if (is_err && end == '\n') {
      child.err_tail.emplace_back(line);
      while (static_cast<int>(child.err_tail.size()) > options_.tail_lines) {
        child.err_tail.pop_front();
      }
    }
  };
  size_t start = 0;
  for (size_t end = stream.partial.find_first_of("\r\n");
       end != std::string::npos;
       end = stream.partial.find_first_of("\r\n", start)) {
    const absl::string_view line =
        absl::string_view(stream.partial).substr(start, end - start);
    if (stream.partial[end] == '\r' && end + 1 < stream.partial.size() &&
        stream.partial[end + 1] == '\n') {
      take(line, '\n');  // A CRLF line end.
      start = end + 2;
      continue;
    }
    take(line, stream.partial[end]);
    start = end + 1;
  }
  stream.partial.erase(0, start);
  // Output without any line end is passed on in pieces rather than held
  // without bound.
  if (stream.partial.size() >= 65536) eof = true;
  if (eof && !stream.partial.empty()) {
    take(stream.partial, '\n');
    stream.partial.clear();
  }
  if (batch.empty()) return;
  WriteAll(is_err ? STDERR_FILENO : STDOUT_FILENO, batch);
  if (stream.log) {
    *stream.log << raw;
    stream.log->flush();
  }
}

void Attempt::StopAll(int signal) {
  for (auto& child : children_) {
    if (!child->exited && child->pid > 0) {
      // A rank that has not reached setsid() yet has no group of its own:
      // signal the process itself (the signal waits until it unblocks).
      if (::kill(-child->pid, signal) != 0 && errno == ESRCH) {
        ::kill(child->pid, signal);
      }
      // A stopped rank would never see the signal.
      if (signal != SIGKILL) ::kill(-child->pid, SIGCONT);
    }
  }
}

void Attempt::ReapExited() {
  for (size_t i = 0; i < children_.size(); ++i) {
    Child& child = *children_[i];
    if (child.exited || child.pid < 0) continue;
    siginfo_t info{};
    if (::waitid(P_PID, child.pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
        info.si_pid != child.pid) {
      continue;
    }
    // The rank is a zombie: its process group still exists, so whatever it
    // left behind can be killed before the pid is released.
    ::kill(-child.pid, SIGKILL);
    ::waitpid(child.pid, &child.status, 0);
    child.exited = true;
    const bool failed =
        !WIFEXITED(child.status) || WEXITSTATUS(child.status) != 0;
    if (failed && failed_index_ < 0 && received_signal_ == 0 && !stopping_) {
      failed_index_ = static_cast<int>(i);
      stopping_ = true;
      kill_deadline_ = absl::Now() + options_.grace_period;
      StopAll(SIGTERM);
    }
  }
}

bool Attempt::AllExited() const {
  for (const auto& child : children_) {
    if (!child->exited) return false;
  }
  return true;
}

bool Attempt::AllDone() const {
  if (!AllExited()) return false;
  for (const auto& child : children_) {
    if (child->out.fd >= 0 || child->err.fd >= 0) return false;
  }
  return true;
}

void Attempt::Run() {
  if (failed_index_ >= 0 && !stopping_) {
    stopping_ = true;
    kill_deadline_ = absl::Now() + options_.grace_period;
    StopAll(SIGTERM);
  }
  char buffer[65536];
  // Once every rank has exited, output still in flight is drained for at
  // most a grace period: a descendant in a session of its own may hold the
  // pipes open for ever.
  absl::Time drain_deadline = absl::InfiniteFuture();
  while (!AllDone()) {
    if (AllExited()) {
      if (drain_deadline == absl::InfiniteFuture()) {
        drain_deadline = absl::Now() + options_.grace_period;
      } else if (absl::Now() >= drain_deadline) {
        for (auto& child : children_) {
          for (Stream* stream : {&child->out, &child->err}) {
            if (stream->fd < 0) continue;
            Relay(*child, *stream, stream == &child->err, /*eof=*/true);
            ::close(stream->fd);
            stream->fd = -1;
          }
        }
        break;
      }
    }
    std::vector<pollfd> fds = {{signal_fd_, POLLIN, 0}};
    std::vector<std::pair<Child*, bool>> owners = {{nullptr, false}};
    for (auto& child : children_) {
      if (child->out.fd >= 0) {
        fds.push_back({child->out.fd, POLLIN, 0});
        owners.push_back({child.get(), false});
      }
      if (child->err.fd >= 0) {
        fds.push_back({child->err.fd, POLLIN, 0});
        owners.push_back({child.get(), true});
      }
    }
    absl::Duration wait = options_.monitor_interval;
    if (stopping_ && !killed_) {
      wait = std::min(wait, std::max(kill_deadline_ - absl::Now(),
                                     absl::ZeroDuration()));
    }
    const int ready = ::poll(fds.data(), fds.size(),
                             static_cast<int>(absl::ToInt64Milliseconds(wait)));
    if (ready < 0 && errno != EINTR) {
      Say(absl::StrCat("poll failed: ", std::strerror(errno),
                       "; stopping every rank"));
      poll_failed_ = true;
      StopAll(SIGKILL);
      for (auto& child : children_) {
        if (child->exited || child->pid < 0) continue;
        ::waitpid(child->pid, &child->status, 0);
        child->exited = true;
      }
      break;
    }

    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
        const int sig = static_cast<int>(info.ssi_signo);
        if (sig == SIGCHLD) continue;  // Reaped below.
        if (received_signal_ == 0) {
          received_signal_ = sig;
          Say(absl::StrCat("received ", strsignal(sig),
                           "; passing it to every rank"));
        }
        StopAll(sig);
        if (!stopping_) {
          stopping_ = true;
          kill_deadline_ = absl::Now() + options_.grace_period;
        }
      }
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Child& child = *owners[i].first;
      Stream& stream = owners[i].second ? child.err : child.out;
      const ssize_t n = ::read(stream.fd, buffer, sizeof(buffer));
      if (n > 0) {
        stream.partial.append(buffer, static_cast<size_t>(n));
        Relay(child, stream, owners[i].second, /*eof=*/false);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        Relay(child, stream, owners[i].second, /*eof=*/true);
        ::close(stream.fd);
        stream.fd = -1;
      }
    }
    ReapExited();
    if (stopping_ && !killed_ && absl::Now() >= kill_deadline_) {
      killed_ = true;
      StopAll(SIGKILL);
    }
  }
}

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) {
    return absl::StrCat("exited with code ", WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return absl::StrCat("was killed by signal ", WTERMSIG(status), " (",
                        strsignal(WTERMSIG(status)), ")");
  }
  return "ended";
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int RunSupervised(
    const std::function<std::vector<RankProcess>(int attempt)>& make_ranks,
    const SupervisorOptions& options) {
  // An inherited SIGCHLD=SIG_IGN would reap the ranks behind our back.
  ::signal(SIGCHLD, SIG_DFL);
  sigset_t handled, old_mask;
  sigemptyset(&handled);
  sigaddset(&handled, SIGCHLD);
  for (int sig : kForwardedSignals) sigaddset(&handled, sig);
  ::sigprocmask(SIG_BLOCK, &handled, &old_mask);
  const int signal_fd = ::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);

  int exit_code = 0;
  for (int attempt = 0;; ++attempt) {
    Attempt run(options, attempt, signal_fd);
    run.Start(make_ranks(attempt), old_mask);
    run.Run();
    if (run.poll_failed()) {
      exit_code = 1;
      break;
    }
    if (run.received_signal() != 0) {
      Say(absl::StrCat("stopped every rank after ",
                       strsignal(run.received_signal())));
      exit_code = 128 + run.received_signal();
      break;
    }
    if (run.failed_index() < 0) {
      exit_code = 0;
      break;
    }
    const Child& failed = run.child(run.failed_index());
    Say(absl::StrCat("rank ", failed.rank, " (pid ", failed.pid, ") ",
                     DescribeStatus(failed.status),
                     "; the other ranks were stopped"));
    if (!failed.err_tail.empty()) {
      std::string tail = absl::StrCat("last lines of rank ", failed.rank,
                                      "'s stderr:");
      for (const std::string& line : failed.err_tail) {
        absl::StrAppend(&tail, "\n  | ", line);
      }
      Say(tail);
    }
    exit_code = ExitCodeOf(failed.status);
    if (attempt >= options.max_restarts) break;
    Say(absl::StrCat("restarting the group (restart ", attempt + 1, " of ",
                     options.max_restarts, ")"));
  }
  ::close(signal_fd);
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  return exit_code;
}

}  // namespace accelerate::launch
