#include "trackers/progress_bar.h"

#include <fcntl.h>
#include <pty.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/distributed_testutil.h"
#include "testing/status_matchers.h"

namespace accelerate::trackers {
namespace {

using ::testing::Each;
using ::testing::HasSubstr;

// A clock the test moves.
struct FakeClock {
  absl::Time now = absl::FromUnixSeconds(1000);
  std::function<absl::Time()> Fn() {
    return [this] { return now; };
  }
};

// Everything readable on `fd` now.
std::string Drain(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::string out;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

TEST(ProgressBarTest, FormatsDurationsAsTqdm) {
  EXPECT_EQ(FormatElapsed(absl::Seconds(62)), "01:02");
  EXPECT_EQ(FormatElapsed(absl::Seconds(3723)), "1:02:03");
  EXPECT_EQ(FormatElapsed(absl::Seconds(-5)), "00:00");
}

TEST(ProgressBarTest, RedrawsInPlaceOnATerminal) {
  int master = -1, slave = -1;
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  FakeClock clock;
  {
    ProgressBar bar(20, nullptr,
                    {.description = "train", .fd = slave, .columns = 100,
                     .now = clock.Fn()});
    EXPECT_TRUE(bar.terminal());
    for (int i = 0; i < 10; ++i) {
      clock.now += absl::Milliseconds(500);
      bar.SetPostfix("loss=0.5");
      bar.Update();
    }
    const std::string half = Drain(master);
    // One draw at the start and one per update (each 0.5 s apart).
    EXPECT_EQ(std::count(half.begin(), half.end(), '\r'), 11) << half;
    EXPECT_THAT(half, HasSubstr("train:  50%|####################"
                                "                    | 10/20 "
                                "[00:05<00:05, 2.00it/s, loss=0.5]"));
    EXPECT_EQ(half.find('\n'), std::string::npos);
    // Updates closer together than the redraw interval draw nothing.
    for (int i = 0; i < 5; ++i) bar.Update();
    EXPECT_EQ(Drain(master), "");
  }
  const std::string last = Drain(master);  // Closed by the destructor.
  EXPECT_THAT(last, HasSubstr("15/20"));
  EXPECT_TRUE(absl::EndsWith(last, "\r\n") || absl::EndsWith(last, "\n"))
      << last;
  ::close(master);
  ::close(slave);
}

TEST(ProgressBarTest, PrintsPlainLinesToAPipe) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  FakeClock clock;
  ProgressBar bar(100, nullptr,
                  {.description = "eval", .fd = pipe_fds[1],
                   .plain_interval = absl::Seconds(10), .now = clock.Fn()});
  EXPECT_FALSE(bar.terminal());
  for (int i = 0; i < 100; ++i) {
    clock.now += absl::Seconds(1);
    bar.Update();
  }
  bar.Close();
  bar.Close();  // Nothing more.
  const std::string out = Drain(pipe_fds[0]);
  EXPECT_EQ(out.find('\r'), std::string::npos);
  std::vector<std::string> lines =
      absl::StrSplit(out, '\n', absl::SkipEmpty());
  // Every 10 s over 100 s, and the final line.
  ASSERT_EQ(lines.size(), 11u) << out;
  EXPECT_EQ(lines[0], "eval:  10% 10/100 [00:10<01:30, 1.00it/s]");
  EXPECT_EQ(lines.back(), "eval: 100% 100/100 [01:40, 1.00it/s]");
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST(ProgressBarTest, UnknownTotalShowsCountAndRate) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  FakeClock clock;
  ProgressBar bar(0, nullptr, {.fd = pipe_fds[1], .now = clock.Fn()});
  clock.now += absl::Seconds(4);
  bar.Update(2);
  bar.Close();
  EXPECT_EQ(Drain(pipe_fds[0]), "2it [00:04, 2.00s/it]\n");
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST(ProgressBarTest, OnlyTheMainProcessDraws) {
  std::vector<int> read_ends(2), write_ends(2);
  for (int rank = 0; rank < 2; ++rank) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    read_ends[rank] = fds[0];
    write_ends[rank] = fds[1];
  }
  std::vector<absl::Status> statuses = testing::RunOnRanks(
      2, [&](const state::PartialState& state) -> absl::Status {
        ProgressBar bar(3, &state,
                        {.fd = write_ends[state.process_index()]});
        EXPECT_EQ(bar.enabled(), state.is_main_process());
        bar.Update(3);
        return absl::OkStatus();
      });
  ASSERT_THAT(statuses, Each(testing::IsOk()));
  EXPECT_THAT(Drain(read_ends[0]), HasSubstr("3/3"));
  EXPECT_EQ(Drain(read_ends[1]), "");
  for (int fd : read_ends) ::close(fd);
  for (int fd : write_ends) ::close(fd);
}

}  // namespace
}  // namespace accelerate::trackers
