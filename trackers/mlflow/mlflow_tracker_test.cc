#include "trackers/mlflow/mlflow_tracker.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
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
#include "trackers/mlflow/internal/http_client.h"
#include "trackers/mlflow/internal/mlflow_service.pb.h"
#include "trackers/mlflow/internal/rest_client.h"
#include "trackers/mlflow/mlflow_server_testutil.h"

namespace accelerate::trackers {
namespace {

namespace api = ::accelerate::trackers_internal::mlflow;
using ::accelerate::testing::IsOk;
using ::accelerate::testing::StatusIs;
using ::accelerate::trackers_internal::MlflowRestClient;
using ::accelerate::trackers_internal::MlflowTestServer;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// One MLflow server for the whole binary: it takes seconds to start.
MlflowTestServer* server = nullptr;

class ServerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    server = new MlflowTestServer(testing::FreshTestDir("mlflow_server"),
                                  testing::PickFreePort());
    ASSERT_OK(server->Start());
  }
  void TearDown() override {
    delete server;
    server = nullptr;
  }
};

[[maybe_unused]] const auto* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new ServerEnvironment);

// Short intervals, so that the tests do not wait on defaults meant for
// training runs.
MlflowOptions FastOptions() {
  MlflowOptions options;
  options.flush_interval = absl::Milliseconds(50);
  options.retry_initial_backoff = absl::Milliseconds(50);
  options.retry_max_backoff = absl::Milliseconds(500);
  options.start_timeout = absl::Seconds(20);
  options.finish_timeout = absl::Seconds(30);
  options.request_timeout = absl::Seconds(20);
  return options;
}

state::MapEnvironment ServerEnv(std::map<std::string, std::string> extra = {}) {
  extra.emplace("MLFLOW_TRACKING_URI", server->uri());
  extra.emplace("USER", "tester");
  return state::MapEnvironment(extra);
}

// Each test its own experiment.
std::string UniqueName(absl::string_view prefix = "") {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return absl::StrCat(prefix, info->test_suite_name(), ".", info->name());
}

std::unique_ptr<MlflowTracker> StartedTracker(const MlflowOptions& options,
                                              const state::Environment& env,
                                              const std::string& project) {
  absl::StatusOr<std::unique_ptr<MlflowTracker>> tracker =
      MakeMlflowTracker(options, env);
  EXPECT_OK(tracker.status());
  if (!tracker.ok()) return nullptr;
  absl::Status started = (*tracker)->Start({.project_name = project});
  EXPECT_OK(started);
  if (!started.ok()) return nullptr;
  return std::move(*tracker);
}

MlflowRestClient& Reader() {
  static MlflowRestClient* client =
      new MlflowRestClient({.base_url = server->uri()});
  return *client;
}

api::Run GetRun(const std::string& run_id) {
  absl::StatusOr<api::Run> run = Reader().GetRun(run_id, absl::Seconds(20));
  EXPECT_OK(run.status());
  return run.value_or(api::Run());
}

std::map<std::string, std::string> Tags(const api::Run& run) {
  std::map<std::string, std::string> tags;
  for (const api::RunTag& tag : run.data().tags())
    tags[tag.key()] = tag.value();
  return tags;
}

std::map<std::string, std::string> Params(const api::Run& run) {
  std::map<std::string, std::string> params;
  for (const api::Param& param : run.data().params()) {
    params[param.key()] = param.value();
  }
  return params;
}

// (step, value) of every point of `key`, in step order.
std::vector<std::pair<int64_t, double>> History(const std::string& run_id,
                                                const std::string& key) {
  absl::StatusOr<std::vector<api::Metric>> metrics =
      Reader().GetMetricHistory(run_id, key, absl::Seconds(20));
  EXPECT_OK(metrics.status());
  std::vector<std::pair<int64_t, double>> points;
  if (!metrics.ok()) return {};
  for (const api::Metric& metric : *metrics) {
    points.emplace_back(metric.step(), metric.value());
  }
  std::sort(points.begin(), points.end());
  return points;
}

TEST(MlflowTrackerTest, EverythingLoggedArrives) {
  MlflowOptions options = FastOptions();
  options.run_name = "first";
  options.description = "what this run tries";
  options.tags = std::map<std::string, std::string>{{"team", "vision"}};
  const state::MapEnvironment env = ServerEnv();
  const int64_t before_ms = absl::ToUnixMillis(absl::Now());
  std::unique_ptr<MlflowTracker> tracker =
      StartedTracker(options, env, UniqueName());
  ASSERT_NE(tracker, nullptr);
  EXPECT_EQ(tracker->name(), "mlflow");
  EXPECT_TRUE(tracker->main_process_only());
  EXPECT_FALSE(tracker->requires_logging_directory());
  EXPECT_EQ(tracker->tracking_uri(), server->uri());

  ASSERT_OK(tracker->StoreInitConfiguration({{"lr", 1e-3},
                                             {"batch_size", 32},
                                             {"use_amp", true},
                                             {"optimizer", "adamw"}}));
  Histogram histogram;
  histogram.bucket_limits = {1.0};
  histogram.bucket_counts = {3.0};
  for (int step = 1; step <= 3; ++step) {
    ASSERT_OK(tracker->Log({{"loss", 1.0 / step},
                            {"eval/accuracy", 0.5 + 0.1 * step},
                            {"note", "warm-up"},
                            {"weights", histogram}},
                           step));
  }
  ASSERT_OK(tracker->Log({{"loss", 7.5}}, std::nullopt));  // step 0
  // More than one batch (1000 points each) of one metric.
  for (int step = 0; step < 2500; ++step) {
    ASSERT_OK(tracker->Log({{"many", step * 0.5}}, step));
  }
  ASSERT_OK(tracker->Finish());
  EXPECT_EQ(tracker->pending_points(), 0);
  const int64_t after_ms = absl::ToUnixMillis(absl::Now());

  const api::Run run = GetRun(tracker->run_id());
  EXPECT_EQ(run.info().status(), api::FINISHED);
  EXPECT_GT(run.info().end_time(), 0);
  EXPECT_EQ(run.info().run_name(), "first");
  EXPECT_EQ(run.info().experiment_id(), tracker->experiment_id());
  const std::map<std::string, std::string> tags = Tags(run);
  EXPECT_EQ(tags.at("mlflow.runName"), "first");
  EXPECT_EQ(tags.at("mlflow.note.content"), "what this run tries");
  EXPECT_EQ(tags.at("team"), "vision");
  EXPECT_EQ(tags.at("mlflow.user"), "tester");
  EXPECT_EQ(tags.at("mlflow.source.type"), "LOCAL");
  EXPECT_THAT(Params(run), UnorderedElementsAre(Pair("lr", "0.001"),
                                                Pair("batch_size", "32"),
                                                Pair("use_amp", "True"),
                                                Pair("optimizer", "adamw")));
  EXPECT_THAT(
      History(tracker->run_id(), "loss"),
      ElementsAre(Pair(0, 7.5), Pair(1, 1.0), Pair(2, 0.5), Pair(3, 1.0 / 3)));
  // Stamped when logged, in milliseconds since the epoch.
  absl::StatusOr<std::vector<api::Metric>> raw =
      Reader().GetMetricHistory(tracker->run_id(), "loss", absl::Seconds(20));
  ASSERT_OK(raw.status());
  for (const api::Metric& metric : *raw) {
    EXPECT_GE(metric.timestamp(), before_ms);
    EXPECT_LE(metric.timestamp(), after_ms);
  }
  EXPECT_THAT(
      History(tracker->run_id(), "eval/accuracy"),
      ElementsAre(Pair(1, 0.5 + 0.1), Pair(2, 0.5 + 0.2), Pair(3, 0.5 + 0.3)));
  // Text and histograms are not metrics.
  EXPECT_THAT(History(tracker->run_id(), "note"), IsEmpty());
  EXPECT_THAT(History(tracker->run_id(), "weights"), IsEmpty());
  const auto many = History(tracker->run_id(), "many");
  ASSERT_EQ(many.size(), 2500u);
  for (int step = 0; step < 2500; ++step) {
    EXPECT_EQ(many[step], std::make_pair(int64_t{step}, step * 0.5));
  }

  absl::StatusOr<api::Experiment> experiment =
      Reader().GetExperimentByName(UniqueName(), absl::Seconds(20));
  ASSERT_OK(experiment.status());
  EXPECT_EQ(experiment->experiment_id(), tracker->experiment_id());
}

TEST(MlflowTrackerTest, AnExistingExperimentIsReused) {
  const state::MapEnvironment env = ServerEnv();
  std::unique_ptr<MlflowTracker> first =
      StartedTracker(FastOptions(), env, UniqueName());
  std::unique_ptr<MlflowTracker> second =
      StartedTracker(FastOptions(), env, UniqueName());
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(first->experiment_id(), second->experiment_id());
  EXPECT_NE(first->run_id(), second->run_id());
  EXPECT_OK(first->Finish());
  EXPECT_OK(second->Finish());
}

TEST(MlflowTrackerTest, EnvironmentVariablesTakePriority) {
  MlflowOptions options = FastOptions();
  options.experiment_name = "not this one";
  options.tags = std::map<std::string, std::string>{{"from", "options"},
                                                    {"only_options", "x"}};
  const std::string experiment_name = UniqueName("env.");
  const state::MapEnvironment env = ServerEnv({
      {"MLFLOW_EXPERIMENT_NAME", experiment_name},
      {"MLFLOW_TAGS", R"({"from": "env", "n": 3, "ratio": 0.5, "flag": true})"},
  });
  std::unique_ptr<MlflowTracker> tracker =
      StartedTracker(options, env, "not the project either");
  ASSERT_NE(tracker, nullptr);
  ASSERT_OK(tracker->Finish());

  absl::StatusOr<api::Experiment> experiment =
      Reader().GetExperimentByName(experiment_name, absl::Seconds(20));
  ASSERT_OK(experiment.status());
  EXPECT_EQ(experiment->experiment_id(), tracker->experiment_id());
  EXPECT_THAT(Reader().GetExperimentByName("not this one", absl::Seconds(20)),
              StatusIs(absl::StatusCode::kNotFound));
  const std::map<std::string, std::string> tags =
      Tags(GetRun(tracker->run_id()));
  EXPECT_EQ(tags.at("from"), "env");
  EXPECT_EQ(tags.at("n"), "3");
  EXPECT_EQ(tags.at("ratio"), "0.5");
  EXPECT_EQ(tags.at("flag"), "True");  // Python's str(True)
  EXPECT_EQ(tags.count("only_options"), 0u);
}

TEST(MlflowTrackerTest, ResumesTheRunOfMlflowRunId) {
  const state::MapEnvironment env = ServerEnv();
  std::unique_ptr<MlflowTracker> first =
      StartedTracker(FastOptions(), env, UniqueName());
  ASSERT_NE(first, nullptr);
  ASSERT_OK(first->StoreInitConfiguration({{"lr", 0.1}}));
  ASSERT_OK(first->Log({{"loss", 2.0}}, 0));
  ASSERT_OK(first->Finish());
  const std::string run_id = first->run_id();
  ASSERT_EQ(GetRun(run_id).info().status(), api::FINISHED);

  MlflowOptions options = FastOptions();
  options.description = "resumed after a crash";
  options.run_id = "ignored-because-the-environment-wins";
  const state::MapEnvironment resume_env = ServerEnv(
      {{"MLFLOW_RUN_ID", run_id}, {"MLFLOW_TAGS", R"({"attempt": "2"})"}});
  std::unique_ptr<MlflowTracker> second =
      StartedTracker(options, resume_env, "some other project");
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->run_id(), run_id);
  EXPECT_EQ(second->experiment_id(), first->experiment_id());
  EXPECT_EQ(GetRun(run_id).info().status(), api::RUNNING);
  ASSERT_OK(second->StoreInitConfiguration({{"lr", 0.1}}));  // same value
  ASSERT_OK(second->Log({{"loss", 1.0}}, 1));
  ASSERT_OK(second->Finish());

  const api::Run run = GetRun(run_id);
  EXPECT_EQ(run.info().status(), api::FINISHED);
  EXPECT_EQ(Tags(run).at("mlflow.note.content"), "resumed after a crash");
  EXPECT_EQ(Tags(run).at("attempt"), "2");
  EXPECT_THAT(History(run_id, "loss"), ElementsAre(Pair(0, 2.0), Pair(1, 1.0)));
}

TEST(MlflowTrackerTest, ResumingARunThatDoesNotExistIsNotFound) {
  const state::MapEnvironment env =
      ServerEnv({{"MLFLOW_RUN_ID", "0123456789abcdef0123456789abcdef"}});
  absl::StatusOr<std::unique_ptr<MlflowTracker>> tracker =
      MakeMlflowTracker(FastOptions(), env);
  ASSERT_OK(tracker.status());
  EXPECT_THAT((*tracker)->Start({.project_name = UniqueName()}),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("0123456789abcdef0123456789abcdef"),
                             HasSubstr(server->uri()))));
}

TEST(MlflowTrackerTest, NanAndInfinitiesArrive) {
  const state::MapEnvironment env = ServerEnv();
  std::unique_ptr<MlflowTracker> tracker =
      StartedTracker(FastOptions(), env, UniqueName());
  ASSERT_NE(tracker, nullptr);
  const double inf = std::numeric_limits<double>::infinity();
  const double max = std::numeric_limits<double>::max();
  ASSERT_OK(tracker->Log({{"nan", std::nan("")},
                          {"inf", inf},
                          {"minus_inf", -inf},
                          {"tiny", 5e-324},
                          {"max", max},
                          {"zero", 0.0},
                          {"third", 1.0 / 3}},
                         4));
  ASSERT_OK(tracker->Finish());
  const std::string& run = tracker->run_id();
  const auto nan = History(run, "nan");
  ASSERT_EQ(nan.size(), 1u);
  EXPECT_EQ(nan[0].first, 4);
  EXPECT_TRUE(std::isnan(nan[0].second));
  // MLflow's SQL store keeps infinities as the largest finite doubles.
  EXPECT_THAT(History(run, "inf"), ElementsAre(Pair(4, max)));
  EXPECT_THAT(History(run, "minus_inf"), ElementsAre(Pair(4, -max)));
  EXPECT_THAT(History(run, "tiny"), ElementsAre(Pair(4, 5e-324)));
  EXPECT_THAT(History(run, "max"), ElementsAre(Pair(4, max)));
  EXPECT_THAT(History(run, "zero"), ElementsAre(Pair(4, 0.0)));
  EXPECT_THAT(History(run, "third"), ElementsAre(Pair(4, 1.0 / 3)));
}

TEST(MlflowTrackerTest, AMetricNameMlflowRefusesIsInvalidArgument) {
  const state::MapEnvironment env = ServerEnv();
  std::unique_ptr<MlflowTracker> tracker =
      StartedTracker(FastOptions(), env, UniqueName());
  ASSERT_NE(tracker, nullptr);
  EXPECT_THAT(
      tracker->Log({{"good", 1.0}, {"bad!name", 2.0}}, 1),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"bad!name\"")));
  EXPECT_THAT(
      tracker->Log({{"/abs", 1.0}}, 1),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"/abs\"")));
  EXPECT_EQ(tracker->pending_points(), 0);  // nothing of those calls
  ASSERT_OK(tracker->Log({{"good", 3.0}, {"ünïcode/ok", 4.0}}, 2));
  ASSERT_OK(tracker->Finish());
  EXPECT_THAT(History(tracker->run_id(), "good"), ElementsAre(Pair(2, 3.0)));
  EXPECT_THAT(History(tracker->run_id(), "ünïcode/ok"),
              ElementsAre(Pair(2, 4.0)));
}

TEST(MlflowTrackerTest, ParamsAreCheckedBatchedAndLongValuesDropped) {
  const state::MapEnvironment env = ServerEnv();
  std::unique_ptr<MlflowTracker> tracker =
      StartedTracker(FastOptions(), env, UniqueName());
  ASSERT_NE(tracker, nullptr);
  EXPECT_THAT(
      tracker->StoreInitConfiguration({{"ok", 1}, {"bad key!", 2}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"bad key!\"")));
  EXPECT_THAT(
      tracker->StoreInitConfiguration({{"twice", 1}, {"twice", 2}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"twice\"")));
  Config config;
  for (int i = 0; i < 250; ++i) config.emplace_back(absl::StrCat("p", i), i);
  config.emplace_back("longest", std::string(6000, 'x'));
  config.emplace_back("too_long", std::string(6001, 'x'));
  config.emplace_back("quoted", "say \"hi\"\n\\ é");
  ASSERT_OK(tracker->StoreInitConfiguration(config));
  ASSERT_OK(tracker->Finish());

  const std::map<std::string, std::string> params =
      Params(GetRun(tracker->run_id()));
  EXPECT_EQ(params.size(), 252u);
  for (int i = 0; i < 250; ++i) {
    EXPECT_EQ(params.at(absl::StrCat("p", i)), absl::StrCat(i));
  }
  EXPECT_EQ(params.at("longest"), std::string(6000, 'x'));
  EXPECT_EQ(params.count("too_long"), 0u);
  EXPECT_EQ(params.at("quoted"), "say \"hi\"\n\\ é");
  EXPECT_EQ(params.count("ok"), 0u);  // the refused call sent nothing
}

TEST(MlflowTrackerTest, ABatchTheServerRefusesIsDroppedAndReported) {
  const state::MapEnvironment env = ServerEnv();
  std::unique_ptr<MlflowTracker> tracker =
      StartedTracker(FastOptions(), env, UniqueName());
  ASSERT_NE(tracker, nullptr);
  // A deleted run takes no more metrics: the server answers 400.
  trackers_internal::HttpClient http({.base_url = server->uri()});
  ASSERT_OK(
      http.PostJson("/api/2.0/mlflow/runs/delete",
                    absl::StrCat(R"({"run_id": ")", tracker->run_id(), R"("})"),
                    absl::Seconds(20))
          .status());
  ASSERT_OK(tracker->Log({{"loss", 1.0}, {"acc", 0.5}}, 1));
  const testing::Stopwatch watch;
  EXPECT_THAT(tracker->Finish(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("refused 2 metric points"),
                             HasSubstr(tracker->run_id()),
                             HasSubstr("INVALID_PARAMETER_VALUE"))));
  EXPECT_LT(watch.Elapsed(), absl::Seconds(10));  // not retried forever
}

TEST(MlflowTrackerTest, CallsOutOfOrderAreFailedPrecondition) {
  const state::MapEnvironment env = ServerEnv();
  absl::StatusOr<std::unique_ptr<MlflowTracker>> made =
      MakeMlflowTracker(FastOptions(), env);
  ASSERT_OK(made.status());
  MlflowTracker& tracker = **made;
  EXPECT_THAT(tracker.Log({{"loss", 1.0}}, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(tracker.Finish(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(tracker.Start({.project_name = UniqueName()}));
  EXPECT_THAT(tracker.Start({.project_name = UniqueName()}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(tracker.Finish());
  EXPECT_THAT(tracker.Log({{"loss", 1.0}}, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("after Finish")));
}

TEST(MlflowTrackerTest, LogQueuesWithoutARoundTripAndEveryPointArrives) {
  const state::MapEnvironment env = ServerEnv();
  std::unique_ptr<MlflowTracker> tracker =
      StartedTracker(FastOptions(), env, UniqueName());
  ASSERT_NE(tracker, nullptr);
  const LogValues values = {{"loss", 0.5},     {"lr", 1e-3},   {"acc", 0.9},
                            {"grad_norm", 1.}, {"epoch", 1},   {"tokens", 4096},
                            {"ppl", 12.5},     {"scale", 2.0}, {"mem", 1e9},
                            {"step_time", 0.1}};
  constexpr int kCalls = 3000;
  const testing::Stopwatch watch;
  for (int step = 0; step < kCalls; ++step)
    ASSERT_OK(tracker->Log(values, step));
  const absl::Duration per_call = watch.Elapsed() / kCalls;
  std::printf("Log of 10 scalars: %.2f us per call\n",
              absl::ToDoubleMicroseconds(per_call));
  // One request per call to the server on loopback takes milliseconds (the
  // Python peer's 8 ms in BENCHMARKS.md); a queued call takes about a
  // microsecond. The bound only tells the two apart, with room for a
  // machine busy with other tests: the speed itself is measured by
  // //benchmarks:trackers_log, not here.
  EXPECT_LT(per_call, absl::Milliseconds(1));
  ASSERT_OK(tracker->Finish());
  EXPECT_EQ(History(tracker->run_id(), "step_time").size(), size_t{kCalls});
}

TEST(MlflowTrackerTest, StartNamesTheUriWhenNoServerAnswers) {
  MlflowOptions options = FastOptions();
  options.start_timeout = absl::Seconds(1);
  const std::string uri =
      absl::StrCat("http://127.0.0.1:", testing::PickFreePort());
  options.tracking_uri = uri;
  absl::StatusOr<std::unique_ptr<MlflowTracker>> tracker =
      MakeMlflowTracker(options, state::MapEnvironment());
  ASSERT_OK(tracker.status());
  const testing::Stopwatch watch;
  EXPECT_THAT((*tracker)->Start({.project_name = "nowhere"}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(uri)));
  EXPECT_LT(watch.Elapsed(), absl::Seconds(5));
}

TEST(ResolveMlflowOptionsTest, OnlyHttpAndHttpsServersAreSupported) {
  for (const std::string uri :
       {"file:///tmp/mlruns", "sqlite:///mlflow.db", "databricks",
        "/local/mlruns", "ftp://host/x", "databricks://profile"}) {
    MlflowOptions options;
    options.tracking_uri = uri;
    EXPECT_THAT(ResolveMlflowOptions(options, state::MapEnvironment()),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("\"" + uri + "\""),
                               HasSubstr("http:// or https://"))))
        << uri;
  }
  const state::MapEnvironment no_host(
      std::map<std::string, std::string>{{"MLFLOW_TRACKING_URI", "http://"}});
  EXPECT_THAT(
      MakeMlflowTracker({}, no_host),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("names no host")));
  EXPECT_THAT(ResolveMlflowOptions({}, state::MapEnvironment()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("MLFLOW_TRACKING_URI")));
}

TEST(ResolveMlflowOptionsTest, ReadsTheEnvironmentAsMlflowAndAccelerateDo) {
  MlflowOptions options;
  options.experiment_name = "from-options";
  const state::MapEnvironment env({
      {"MLFLOW_TRACKING_URI", "HTTPS://mlflow.example.com/prefix/"},
      {"MLFLOW_EXPERIMENT_NAME", "from-env"},
      {"MLFLOW_RUN_ID", "abc123"},
      {"MLFLOW_TRACKING_USERNAME", "ada"},
      {"MLFLOW_TRACKING_PASSWORD", "pw"},
      {"MLFLOW_TRACKING_TOKEN", "tok"},
      {"MLFLOW_TRACKING_INSECURE_TLS", "True"},
      {"MLFLOW_TAGS", R"({"a": "b"})"},
  });
  absl::StatusOr<MlflowOptions> resolved = ResolveMlflowOptions(options, env);
  ASSERT_OK(resolved.status());
  EXPECT_EQ(resolved->tracking_uri, "HTTPS://mlflow.example.com/prefix");
  EXPECT_EQ(resolved->experiment_name, "from-env");
  EXPECT_EQ(resolved->run_id, "abc123");
  EXPECT_EQ(resolved->username, "ada");
  EXPECT_EQ(resolved->password, "pw");
  EXPECT_EQ(resolved->token, "tok");
  EXPECT_EQ(resolved->insecure_tls, true);
  EXPECT_EQ(resolved->user, "ada");  // MLflow's user is the login's
  ASSERT_TRUE(resolved->tags.has_value());
  EXPECT_THAT(*resolved->tags, ElementsAre(Pair("a", "b")));

  // The options' URI wins over the environment's.
  options.tracking_uri = "http://127.0.0.1:5000";
  EXPECT_EQ(ResolveMlflowOptions(options, env)->tracking_uri,
            "http://127.0.0.1:5000");
}

TEST(ResolveMlflowOptionsTest, RefusesMalformedValues) {
  const auto resolve = [](std::map<std::string, std::string> vars) {
    vars.emplace("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000");
    return ResolveMlflowOptions({}, state::MapEnvironment(vars)).status();
  };
  EXPECT_THAT(resolve({{"MLFLOW_TAGS", "{not json"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("MLFLOW_TAGS is not a JSON object")));
  EXPECT_THAT(resolve({{"MLFLOW_TAGS", R"({"a": [1]})"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"a\" is a list or an object")));
  EXPECT_THAT(resolve({{"MLFLOW_TAGS", R"({"bad key!": "x"})"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tag name \"bad key!\"")));
  EXPECT_THAT(resolve({{"MLFLOW_RUN_ID", "../../etc"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"../../etc\" is not an MLflow run id")));
  EXPECT_THAT(resolve({{"MLFLOW_TRACKING_INSECURE_TLS", "maybe"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"maybe\" is not one of true, false")));
  EXPECT_THAT(resolve({{"MLFLOW_TRACKING_INSECURE_TLS", "1"},
                       {"MLFLOW_TRACKING_SERVER_CERT_PATH", "/ca.pem"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("exclude each other")));
  MlflowOptions options;
  options.tracking_uri = "http://127.0.0.1:5000";
  options.max_pending_points = 0;
  EXPECT_THAT(ResolveMlflowOptions(options, state::MapEnvironment()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("max_pending_points")));
  options.max_pending_points = 10;
  options.finish_timeout = absl::ZeroDuration();
  EXPECT_THAT(ResolveMlflowOptions(options, state::MapEnvironment()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("finish_timeout")));
}

}  // namespace
}  // namespace accelerate::trackers
