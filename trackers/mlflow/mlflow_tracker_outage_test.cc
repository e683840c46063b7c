// The MLflow tracker while its server is paused, killed, restarted on the
// same port and database, or gone for good.

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "state/environment.h"
#include "testing/files.h"
#include "testing/free_port.h"
#include "testing/status_matchers.h"
#include "testing/stopwatch.h"
#include "trackers/mlflow/internal/mlflow_service.pb.h"
#include "trackers/mlflow/internal/rest_client.h"
#include "trackers/mlflow/mlflow_server_testutil.h"
#include "trackers/mlflow/mlflow_tracker.h"

namespace accelerate::trackers {
namespace {

namespace api = ::accelerate::trackers_internal::mlflow;
using ::accelerate::testing::StatusIs;
using ::accelerate::trackers_internal::MlflowRestClient;
using ::accelerate::trackers_internal::MlflowTestServer;
using ::testing::AllOf;
using ::testing::HasSubstr;

// One server for the suite; a test that kills it leaves it to the next
// test's `SetUp` to start it again (same port, same database).
class MlflowTrackerOutageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new MlflowTestServer(testing::FreshTestDir("mlflow_server"),
                                   testing::PickFreePort());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (!server_->running()) {
      ASSERT_OK(server_->Start());
    }
  }

  static MlflowOptions Options() {
    MlflowOptions options;
    options.tracking_uri = server_->uri();
    options.flush_interval = absl::Milliseconds(20);
    options.retry_initial_backoff = absl::Milliseconds(50);
    options.retry_max_backoff = absl::Milliseconds(400);
    options.request_timeout = absl::Seconds(1);
    options.start_timeout = absl::Seconds(20);
    options.finish_timeout = absl::Seconds(60);
    return options;
  }

  static std::unique_ptr<MlflowTracker> Started(const MlflowOptions& options) {
    absl::StatusOr<std::unique_ptr<MlflowTracker>> tracker =
        MakeMlflowTracker(options, state::MapEnvironment());
    EXPECT_OK(tracker.status());
    if (!tracker.ok()) return nullptr;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    EXPECT_OK((*tracker)->Start({.project_name = info->name()}));
    return std::move(*tracker);
  }

  // Waits until everything logged so far was acknowledged.
  static void WaitUntilSent(const MlflowTracker& tracker) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (tracker.pending_points() > 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    ASSERT_EQ(tracker.pending_points(), 0);
  }

  static MlflowTestServer* server_;
};

MlflowTestServer* MlflowTrackerOutageTest::server_ = nullptr;

// Logs `loss` = step / 8 at each step of [begin, end) and returns the
// slowest call.
absl::Duration LogSteps(MlflowTracker& tracker, int begin, int end) {
  absl::Duration slowest;
  for (int step = begin; step < end; ++step) {
    const testing::Stopwatch watch;
    EXPECT_OK(tracker.Log({{"loss", step / 8.0}, {"step_copy", step}}, step));
    slowest = std::max(slowest, watch.Elapsed());
  }
  return slowest;
}

TEST_F(MlflowTrackerOutageTest, NothingIsLostWhileTheServerIsDownAndBack) {
  std::unique_ptr<MlflowTracker> tracker = Started(Options());
  ASSERT_NE(tracker, nullptr);
  LogSteps(*tracker, 0, 100);
  WaitUntilSent(*tracker);

  // Paused: connections are accepted and never answered, so every send
  // hangs until its timeout. Log must not notice.
  server_->Pause();
  absl::Duration slowest = LogSteps(*tracker, 100, 300);
  absl::SleepFor(absl::Milliseconds(1500));  // a send times out meanwhile
  slowest = std::max(slowest, LogSteps(*tracker, 300, 500));
  EXPECT_GT(tracker->pending_points(), 0);

  // Killed: connections are refused. Then started again, same database.
  server_->Kill();
  slowest = std::max(slowest, LogSteps(*tracker, 500, 700));
  ASSERT_OK(server_->Start());
  slowest = std::max(slowest, LogSteps(*tracker, 700, 1000));
  // A call that waited on the paused server would take the request timeout
  // (1 s); a queued point takes microseconds. The bound leaves room for a
  // call descheduled on a machine busy with other tests.
  EXPECT_LT(slowest, absl::Milliseconds(500));
  ASSERT_OK(tracker->Finish());

  MlflowRestClient reader({.base_url = server_->uri()});
  absl::StatusOr<std::vector<api::Metric>> history =
      reader.GetMetricHistory(tracker->run_id(), "loss", absl::Seconds(20));
  ASSERT_OK(history.status());
  std::vector<std::pair<int64_t, double>> points;
  for (const api::Metric& metric : *history) {
    points.emplace_back(metric.step(), metric.value());
  }
  std::sort(points.begin(), points.end());
  ASSERT_EQ(points.size(), 1000u);  // each once: no loss, no duplicate
  for (int step = 0; step < 1000; ++step) {
    EXPECT_EQ(points[step], std::make_pair(int64_t{step}, step / 8.0));
  }
  absl::StatusOr<api::Run> run =
      reader.GetRun(tracker->run_id(), absl::Seconds(20));
  ASSERT_OK(run.status());
  EXPECT_EQ(run->info().status(), api::FINISHED);
}

TEST_F(MlflowTrackerOutageTest,
       DestroyingWithoutFinishDoesNotWaitForTheServer) {
  MlflowOptions options = Options();
  options.request_timeout = absl::Seconds(60);
  std::unique_ptr<MlflowTracker> tracker = Started(options);
  ASSERT_NE(tracker, nullptr);
  server_->Pause();
  LogSteps(*tracker, 0, 10);
  absl::SleepFor(absl::Milliseconds(200));  // a send is in flight, hanging
  const testing::Stopwatch watch;
  tracker.reset();
  EXPECT_LT(watch.Elapsed(), absl::Seconds(5));
  server_->Resume();
}

TEST_F(MlflowTrackerOutageTest, FinishSaysWhatWasNotSentWhenTheServerIsGone) {
  MlflowOptions options = Options();
  options.finish_timeout = absl::Seconds(2);
  options.max_pending_points = 55;
  std::unique_ptr<MlflowTracker> tracker = Started(options);
  ASSERT_NE(tracker, nullptr);
  LogSteps(*tracker, 0, 10);
  WaitUntilSent(*tracker);
  server_->Kill();

  LogSteps(*tracker, 10, 35);  // 50 points wait
  // Ten more would exceed the bound of 55: refused whole, said so.
  EXPECT_THAT(tracker->Log({{"a", 1},
                            {"b", 2},
                            {"c", 3},
                            {"d", 4},
                            {"e", 5},
                            {"f", 6},
                            {"g", 7},
                            {"h", 8},
                            {"i", 9},
                            {"j", 10}},
                           35),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("50 metric points already wait"),
                             HasSubstr(server_->uri()))));
  EXPECT_OK(tracker->Log({{"a", 1}}, 35));  // one more still fits
  EXPECT_EQ(tracker->pending_points(), 51);

  const testing::Stopwatch watch;
  EXPECT_THAT(tracker->Finish(),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("51 metric points"),
                             HasSubstr("not sent to " + server_->uri()),
                             HasSubstr(tracker->run_id()))));
  const absl::Duration took = watch.Elapsed();
  EXPECT_GE(took, absl::Seconds(2) - absl::Milliseconds(100));
  EXPECT_LT(took, absl::Seconds(5));
}

}  // namespace
}  // namespace accelerate::trackers
