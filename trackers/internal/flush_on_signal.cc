#include "trackers/internal/flush_on_signal.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <new>
#include <thread>
#include <utility>

namespace accelerate::trackers_internal {
namespace {

constexpr int kSignals[] = {SIGTERM, SIGINT, SIGHUP};
constexpr int kMaxSignal = 65;

struct Registry {
  std::mutex mutex;
  std::map<uint64_t, std::function<void()>> flushes;
  uint64_t next_id = 1;
  // The actions before ours, by signal number.
  struct sigaction previous[kMaxSignal] = {};
  bool handlers_installed = false;
  // The process whose watcher reads the pipe: a child forked without exec
  // inherits the handlers and the pipe but not the thread, and must
  // neither wake its parent's watcher nor flush its parent's files.
  std::atomic<pid_t> watcher_pid{0};
  std::atomic<int> pipe_write{-1};
  // Signals whose flush is under way: a second one acts at once (a second
  // Ctrl-C always ends the program).
  volatile sig_atomic_t flushing[kMaxSignal] = {};
};
static_assert(std::atomic<pid_t>::is_always_lock_free);
static_assert(std::atomic<int>::is_always_lock_free);

Registry& GetRegistry() {
  static auto* registry = new Registry;  // Lives as long as the process.
  return *registry;
}

bool IsDefault(const struct sigaction& action) {
  return !(action.sa_flags & SA_SIGINFO) && action.sa_handler == SIG_DFL;
}

// Restores the default action of `signal_number` and raises it on this
// thread, unblocked. Async-signal-safe.
void RaiseDefault(int signal_number, const struct sigaction& previous) {
  ::sigaction(signal_number, &previous, nullptr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signal_number);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(signal_number);
}

// Async-signal-safe: one write of one byte, then the program's own handler
// where it had one.
void Handle(int signal_number, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  Registry& registry = GetRegistry();
  const struct sigaction& previous = registry.previous[signal_number];
  const bool watched = registry.watcher_pid.load() == ::getpid();
  if (!watched || registry.flushing[signal_number]) {
    // No watcher in this process, or the flush is taking too long for
    // whoever sent the signal again: the signal does what it did before.
    if (IsDefault(previous)) {
      RaiseDefault(signal_number, previous);
      errno = saved_errno;
      return;
    }
  } else {
    registry.flushing[signal_number] = 1;
    const unsigned char byte = static_cast<unsigned char>(signal_number);
    (void)!::write(registry.pipe_write.load(), &byte, 1);
  }
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction != nullptr) {
      previous.sa_sigaction(signal_number, info, context);
    }
  } else if (previous.sa_handler != SIG_DFL &&
             previous.sa_handler != SIG_IGN && previous.sa_handler != nullptr) {
    previous.sa_handler(signal_number);
  }
  errno = saved_errno;
}

void Watch(int pipe_read) {
  // Process-directed signals go to other threads.
  sigset_t all;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
  Registry& registry = GetRegistry();
  while (true) {
    unsigned char byte = 0;
    const ssize_t n = ::read(pipe_read, &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    const int signal_number = byte;
    if (signal_number <= 0 || signal_number >= kMaxSignal) continue;
    {
      std::lock_guard<std::mutex> lock(registry.mutex);
      for (auto& [id, flush] : registry.flushes) flush();
    }
    // Under the default action the process ends now, as it would have.
    const struct sigaction& previous = registry.previous[signal_number];
    if (IsDefault(previous)) RaiseDefault(signal_number, previous);
    registry.flushing[signal_number] = 0;
  }
}

// In a child forked without exec: the parent's registrations, lock and
// watcher are not this process's.
void AfterForkInChild() {
  Registry& registry = GetRegistry();
  new (&registry.mutex) std::mutex;  // It may have been held at the fork.
  // The parent's functions stay reachable only through the parent.
  new (&registry.flushes) std::map<uint64_t, std::function<void()>>;
  registry.watcher_pid.store(0);
  for (volatile sig_atomic_t& flag : registry.flushing) flag = 0;
}

// Starts this process's watcher and, the first time, installs the
// handlers. REQUIRES: `registry.mutex` held.
void InstallInThisProcess(Registry& registry) {
  if (registry.watcher_pid.load() == ::getpid()) return;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;  // No flush on signals then.
  ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
  std::thread(Watch, fds[0]).detach();
  registry.pipe_write.store(fds[1]);
  registry.watcher_pid.store(::getpid());
  if (registry.handlers_installed) return;
  registry.handlers_installed = true;
  ::pthread_atfork(nullptr, nullptr, AfterForkInChild);
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
