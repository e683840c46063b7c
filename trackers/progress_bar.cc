#include "trackers/progress_bar.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace accelerate::trackers {
namespace {

void WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // A progress bar never fails the loop.
    done += static_cast<size_t>(n);
  }
}

}  // namespace

std::string FormatElapsed(absl::Duration duration) {
  int64_t seconds = absl::ToInt64Seconds(duration);
  if (seconds < 0) seconds = 0;
  const int64_t hours = seconds / 3600;
  const int64_t minutes = seconds / 60 % 60;
  if (hours > 0) {
    return absl::StrFormat("%d:%02d:%02d", hours, minutes, seconds % 60);
  }
  return absl::StrFormat("%02d:%02d", minutes, seconds % 60);
}

ProgressBar::ProgressBar(int64_t total, const state::PartialState* state,
                         ProgressBarOptions options)
    : total_(total), options_(std::move(options)) {
  enabled_ = state == nullptr ||
             (options_.local_main_process ? state->is_local_main_process()
                                          : state->is_main_process());
  terminal_ = enabled_ && ::isatty(options_.fd) == 1;
  columns_ = options_.columns;
  if (columns_ <= 0) {
    struct winsize size {};
    columns_ = terminal_ && ::ioctl(options_.fd, TIOCGWINSZ, &size) == 0 &&
                       size.ws_col > 0
                   ? size.ws_col
                   : 80;
  }
  start_ = options_.now();
  last_draw_ = start_;
  if (terminal_) Draw(false);
}

ProgressBar::~ProgressBar() { Close(); }

void ProgressBar::Update(int64_t n) {
  count_ += n;
  if (!enabled_ || closed_) return;
  const absl::Time now = options_.now();
  const absl::Duration interval =
      terminal_ ? options_.redraw_interval : options_.plain_interval;
  if (now - last_draw_ >= interval) {
    last_draw_ = now;
    Draw(false);
  }
}

void ProgressBar::Close() {
  if (closed_) return;
  closed_ = true;
  if (enabled_) Draw(true);
}

std::string ProgressBar::Render(bool final_line) const {
  const absl::Duration elapsed = options_.now() - start_;
  const double seconds = absl::ToDoubleSeconds(elapsed);
  const double rate = seconds > 0 ? static_cast<double>(count_) / seconds : 0;
  std::string rate_text =
      rate >= 1 || rate == 0 ? absl::StrFormat("%.2fit/s", rate)
                             : absl::StrFormat("%.2fs/it", 1 / rate);
  std::string prefix =
      options_.description.empty() ? "" : options_.description + ": ";
  std::string times = FormatElapsed(elapsed);
  if (total_ > 0 && rate > 0 && !final_line) {
    const double left = static_cast<double>(total_ - count_) / rate;
    absl::StrAppend(&times, "<", FormatElapsed(absl::Seconds(std::max(0.0, left))));
  }
  std::string tail = absl::StrCat(" [", times, ", ", rate_text,
                                  postfix_.empty() ? "" : ", ", postfix_, "]");
  if (total_ <= 0) {
    return absl::StrCat(prefix, count_, "it", tail);
  }
  const double fraction =
      std::clamp(static_cast<double>(count_) / static_cast<double>(total_),
                 0.0, 1.0);
  const std::string counts = absl::StrCat(count_, "/", total_);
  const std::string percent =
      absl::StrFormat("%3d%%", static_cast<int>(fraction * 100));
  if (!terminal_) {
    return absl::StrCat(prefix, percent, " ", counts, tail);
  }
  // prefix + percent + "|" + bar + "| " + counts + tail fits the columns.
  const int fixed = static_cast<int>(prefix.size() + percent.size() + 3 +
                                     counts.size() + tail.size());
  const int width = std::max(1, std::min(40, columns_ - fixed - 1));
  const int filled = static_cast<int>(fraction * width);
  return absl::StrCat(prefix, percent, "|", std::string(filled, '#'),
                      std::string(width - filled, ' '), "| ", counts, tail);
}

void ProgressBar::Draw(bool final_line) {
  const std::string text = Render(final_line);
  if (terminal_) {
    // Carriage return, the bar, and clear to the end of the line.
    WriteAll(options_.fd, absl::StrCat("\r", text, "\x1b[K",
                                       final_line ? "\n" : ""));
  } else {
    WriteAll(options_.fd, text + "\n");
  }
}

}  // namespace accelerate::trackers
