#include "trackers/internal/flush_on_signal.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

namespace accelerate::trackers_internal {
namespace {

constexpr int kSignals[] = {SIGTERM, SIGINT, SIGHUP};

struct Registry {
  std::mutex mutex;
  std::map<uint64_t, std::function<void()>> flushes;
  uint64_t next_id = 1;
  // The actions before ours, by signal number.
  struct sigaction previous[65] = {};
  bool handlers_installed = false;
  // The process whose watcher reads the pipe: a child forked without
  // exec inherits the handlers and the pipe but not the thread, and must
  // neither wake its parent's watcher nor flush its parent's files.
  volatile pid_t watcher_pid = 0;
  volatile int pipe_write = -1;
};

Registry& GetRegistry() {
  static auto* registry = new Registry;  // Lives as long as the process.
  return *registry;
}

// Async-signal-safe: one write of one byte, then the program's own handler
// where it had one.
void Handle(int signal_number, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  Registry& registry = GetRegistry();
  const struct sigaction& previous = registry.previous[signal_number];
  if (registry.watcher_pid != ::getpid()) {
    // No watcher in this process: the signal does what it did before.
    if (!(previous.sa_flags & SA_SIGINFO) && previous.sa_handler == SIG_DFL) {
      ::sigaction(signal_number, &previous, nullptr);
      ::raise(signal_number);
      errno = saved_errno;
      return;
    }
  } else {
    const unsigned char byte = static_cast<unsigned char>(signal_number);
    (void)!::write(registry.pipe_write, &byte, 1);
  }
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction != nullptr) {
      previous.sa_sigaction(signal_number, info, context);
    }
  } else if (previous.sa_handler != SIG_DFL &&
             previous.sa_handler != SIG_IGN &&
             previous.sa_handler != nullptr) {
    previous.sa_handler(signal_number);
  }
  errno = saved_errno;
}

void Watch(int pipe_read) {
  Registry& registry = GetRegistry();
  while (true) {
    unsigned char byte = 0;
    const ssize_t n = ::read(pipe_read, &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    const int signal_number = byte;
    {
      std::lock_guard<std::mutex> lock(registry.mutex);
      for (auto& [id, flush] : registry.flushes) flush();
    }
    // Under the default action the process ends now, as it would have.
    const struct sigaction& previous = registry.previous[signal_number];
    if (!(previous.sa_flags & SA_SIGINFO) && previous.sa_handler == SIG_DFL) {
      ::sigaction(signal_number, &previous, nullptr);
      ::raise(signal_number);
    }
  }
}

// Starts this process's watcher and, the first time, installs the
// handlers. REQUIRES: `registry.mutex` held.
void InstallInThisProcess(Registry& registry) {
  if (registry.watcher_pid == ::getpid()) return;
  // Registrations copied from a parent are the parent's.
  registry.flushes.clear();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;  // No flush on signals then.
  ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
  registry.pipe_write = fds[1];
  std::thread(Watch, fds[0]).detach();
  registry.watcher_pid = ::getpid();
  if (registry.handlers_installed) return;
  registry.handlers_installed = true;
  for (int signal_number : kSignals) {
    struct sigaction previous = {};
    ::sigaction(signal_number, nullptr, &previous);
    // An ignored signal stays ignored (nohup'ed jobs keep SIGHUP off).
    if (!(previous.sa_flags & SA_SIGINFO) && previous.sa_handler == SIG_IGN) {
      continue;
    }
    registry.previous[signal_number] = previous;
    struct sigaction action = {};
    action.sa_sigaction = Handle;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    ::sigaction(signal_number, &action, nullptr);
  }
}

}  // namespace

FlushOnSignal::FlushOnSignal(std::function<void()> flush) {
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  InstallInThisProcess(registry);
  id_ = registry.next_id++;
  registry.flushes.emplace(id_, std::move(flush));
}

FlushOnSignal::~FlushOnSignal() {
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  registry.flushes.erase(id_);
}

}  // namespace accelerate::trackers_internal
