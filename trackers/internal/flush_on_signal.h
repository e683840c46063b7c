// Flushing on SIGTERM, SIGINT and SIGHUP: the launcher ends a job's
// processes with SIGTERM (and Ctrl-C sends SIGINT), and what a tracker had
// buffered should reach its file first. A signal handler cannot take locks
// or write a tracker's buffer, so the handler only writes the signal's
// number to a pipe; a watcher thread runs every registered flush, then
// lets the signal do what it did before (ends the process under the
// default action, calls a program's own handler, which the handler already
// called, or nothing when ignored). The same signal again while the flush
// runs acts at once (a second Ctrl-C always ends the program). A child
// forked without exec starts with no registrations of its own.
//
// Thread safety: registration and unregistration from any thread; flushes
// run on the watcher thread, so they take their own locks. Ownership: a
// `FlushOnSignal` owns its registration.

#ifndef ACCELERATE_TRACKERS_INTERNAL_FLUSH_ON_SIGNAL_H_
#define ACCELERATE_TRACKERS_INTERNAL_FLUSH_ON_SIGNAL_H_

#include <cstdint>
#include <functional>

namespace accelerate::trackers_internal {

class FlushOnSignal {
 public:
  // Runs `flush` on the watcher thread when one of the signals arrives
  // while this object lives. The first registration installs the
  // handlers.
  explicit FlushOnSignal(std::function<void()> flush);
  FlushOnSignal(const FlushOnSignal&) = delete;
  FlushOnSignal& operator=(const FlushOnSignal&) = delete;
  // Unregisters; waits for a flush of this registration that is running.
  ~FlushOnSignal();

 private:
  uint64_t id_;
};

}  // namespace accelerate::trackers_internal

#endif  // ACCELERATE_TRACKERS_INTERNAL_FLUSH_ON_SIGNAL_H_
