#include "trackers/internal/buffered_file.h"

#include <sys/resource.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/files.h"
#include "testing/status_matchers.h"

namespace accelerate::trackers_internal {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::StatusIs;
using ::testing::HasSubstr;

double CpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec * 1e-6 +
         usage.ru_stime.tv_sec + usage.ru_stime.tv_usec * 1e-6;
}

TEST(BufferedFileTest, WritesOnCloseAndAppendsWhenAsked) {
  const std::string path = accelerate::testing::FreshTestDir("bf") + "/a/log";
  {
    auto file = BufferedFile::Open(path);
    ASSERT_THAT(file, IsOk());
    ASSERT_THAT((*file)->Append("one\n"), IsOk());
    ASSERT_THAT((*file)->Close(), IsOk());
    EXPECT_THAT((*file)->Append("late\n"),
                StatusIs(absl::StatusCode::kFailedPrecondition));
  }
  auto again = BufferedFile::Open(path, {.append = true});
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ((*again)->initial_size(), 4u);
  ASSERT_THAT((*again)->Append("two\n"), IsOk());
  ASSERT_THAT((*again)->Close(), IsOk());
  EXPECT_EQ(accelerate::testing::ReadFileOrDie(path), "one\ntwo\n");
  EXPECT_THAT(BufferedFile::Open(path, {.flush_interval = absl::ZeroDuration()}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("flush_interval")));
}

// /dev/full fails every write with ENOSPC, as a full disk does.
TEST(BufferedFileTest, AFullDiskIsReportedRetriedCalmlyAndBounded) {
  auto file = BufferedFile::Open(
      "/dev/full", {.flush_interval = absl::Milliseconds(20),
                    .max_pending = 10,
                    .max_buffered = 1000});
  ASSERT_THAT(file, IsOk());
  ASSERT_THAT((*file)->Append(std::string(100, 'x')), IsOk());
  EXPECT_THAT((*file)->Flush(), StatusIs(absl::StatusCode::kResourceExhausted,
                                         HasSubstr("/dev/full")));
  // The error is returned to the appender; the bytes stay queued.
  EXPECT_THAT((*file)->Append("y"), StatusIs(absl::StatusCode::kResourceExhausted,
                                             HasSubstr("cannot write")));
  // The writer retries every flush_interval, not in a loop.
  const double cpu_before = CpuSeconds();
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_LT(CpuSeconds() - cpu_before, 0.2) << "the writer spins";
  // Beyond max_buffered, bytes are dropped and counted.
  EXPECT_THAT((*file)->Append(std::string(2000, 'z')),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("2000 bytes for /dev/full were dropped")));
  EXPECT_THAT((*file)->Close(),
              StatusIs(::testing::_, HasSubstr("/dev/full")));
}

TEST(BufferedFileTest, CloseFromTwoThreadsAtOnce) {
  const std::string path = accelerate::testing::FreshTestDir("bf2") + "/log";
  auto file = BufferedFile::Open(path);
  ASSERT_THAT(file, IsOk());
  ASSERT_THAT((*file)->Append("x\n"), IsOk());
  std::vector<absl::Status> statuses(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] { statuses[i] = (*file)->Close(); });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(statuses[0], IsOk());
  EXPECT_THAT(statuses[1], IsOk());
  EXPECT_EQ(accelerate::testing::ReadFileOrDie(path), "x\n");
}

}  // namespace
}  // namespace accelerate::trackers_internal
