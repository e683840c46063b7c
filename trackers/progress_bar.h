// A progress bar for long loops (training, evaluation, loading), drawn by
// the main process only: count, percentage, rate and time left, redrawn in
// place on a terminal at most ten times a second, and as a plain line
// every `plain_interval` (and at the end) when the output is a file or a
// pipe, so that logs stay readable. Accelerate's examples use tqdm with
// `disable=not accelerator.is_local_main_process`; this is that.
//
// clang-format off
//   void Example(const state::PartialState& state) {
//     ProgressBar bar(100, &state, {.description = "train"});
//     for (int step = 0; step < 100; ++step) {
//       bar.SetPostfix("loss=0.25");
//       bar.Update();
//     }
//     bar.Close();  // the final line
//   }
// clang-format on
//
// Thread safety: one thread drives a bar. Ownership: borrows the state
// (may be null: one process), which must outlive the bar; writes to `fd`,
// which it does not own.

#ifndef ACCELERATE_TRACKERS_PROGRESS_BAR_H_
#define ACCELERATE_TRACKERS_PROGRESS_BAR_H_

#include <unistd.h>

#include <cstdint>
#include <functional>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "state/partial_state.h"

namespace accelerate::trackers {

struct ProgressBarOptions {
  // Printed before the bar ("train", "epoch 2"). Default none.
  std::string description;
  // Where it draws. Default standard error (as tqdm).
  int fd = STDERR_FILENO;
  // Draw on every process's local main process instead of the main
  // process only (Accelerate's examples' `is_local_main_process`).
  // Default false.
  bool local_main_process = false;
  // Not a terminal: a line at most this often. Default 10 s.
  absl::Duration plain_interval = absl::Seconds(10);
  // A terminal: redraws at most this often. Default 0.1 s.
  absl::Duration redraw_interval = absl::Milliseconds(100);
  // Columns of a terminal; 0: asked of the terminal (80 when it cannot
  // say).
  int columns = 0;
  // The clock (for tests). Default absl::Now.
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

class ProgressBar {
 public:
  // `total`: the count at the end; 0 or less when unknown (the bar shows
  // the count and rate only).
  ProgressBar(int64_t total, const state::PartialState* state,
              ProgressBarOptions options = {});
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  // Closes the bar if not yet closed.
  ~ProgressBar();

  // Advances by `n` and redraws when it is time.
  void Update(int64_t n = 1);
  // Text shown after the rate ("loss=0.25"), from the next draw on.
  void SetPostfix(std::string postfix) { postfix_ = std::move(postfix); }
  // Draws the final state and ends the line. Further calls do nothing.
  void Close();

  int64_t count() const { return count_; }
  // Whether this process draws at all.
  bool enabled() const { return enabled_; }
  // Whether it draws in place (the output is a terminal).
  bool terminal() const { return terminal_; }

 private:
  // The text of the bar now (without the leading carriage return).
  std::string Render(bool final_line) const;
  void Draw(bool final_line);

  int64_t total_;
  ProgressBarOptions options_;
  bool enabled_;
  bool terminal_;
  int columns_;
  absl::Time start_;
  absl::Time last_draw_;
  int64_t count_ = 0;
  std::string postfix_;
  bool closed_ = false;
};

// "1:02:03" or "02:03" (tqdm's format).
std::string FormatElapsed(absl::Duration duration);

}  // namespace accelerate::trackers

#endif  // ACCELERATE_TRACKERS_PROGRESS_BAR_H_
