#include "state/host_malloc.h"

#include <map>
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "state/environment.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace accelerate::state {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::Runfile;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::Subprocess;
using ::testing::HasSubstr;

HostMallocTuning Plan(std::optional<bool> requested,
                      const std::map<std::string, std::string>& env) {
  absl::StatusOr<HostMallocTuning> plan =
      PlanHostMallocTuning(requested, MapEnvironment(env));
  EXPECT_THAT(plan.status(), IsOk());
  return plan.value_or(HostMallocTuning{});
}

TEST(HostMallocTest, TunesByDefault) {
  const HostMallocTuning plan = Plan(std::nullopt, {});
  EXPECT_TRUE(plan.applied);
  EXPECT_EQ(plan.reason, "");
}

TEST(HostMallocTest, EnvironmentSwitchesItOffAndTheOptionWins) {
  const HostMallocTuning off =
      Plan(std::nullopt, {{"ACCELERATE_TUNE_MALLOC", "no"}});
  EXPECT_FALSE(off.applied);
  EXPECT_THAT(off.reason, HasSubstr("ACCELERATE_TUNE_MALLOC=no"));
  EXPECT_TRUE(Plan(true, {{"ACCELERATE_TUNE_MALLOC", "0"}}).applied);
  const HostMallocTuning option_off =
      Plan(false, {{"ACCELERATE_TUNE_MALLOC", "true"}});
  EXPECT_FALSE(option_off.applied);
  EXPECT_THAT(option_off.reason, HasSubstr("options"));
}

TEST(HostMallocTest, RefusesAValueThatIsNotABoolean) {
  const MapEnvironment env(
      std::map<std::string, std::string>{{"ACCELERATE_TUNE_MALLOC", "maybe"}});
  EXPECT_THAT(PlanHostMallocTuning(true, env).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ACCELERATE_TUNE_MALLOC=\"maybe\"")));
}

TEST(HostMallocTest, LeavesTheUsersOwnMallocSettingsAlone) {
  const HostMallocTuning variable =
      Plan(true, {{"MALLOC_TRIM_THRESHOLD_", "131072"}});
  EXPECT_FALSE(variable.applied);
  EXPECT_THAT(variable.reason, HasSubstr("MALLOC_TRIM_THRESHOLD_=131072"));

  const HostMallocTuning tunable =
      Plan(std::nullopt, {{"GLIBC_TUNABLES",
                           "glibc.cpu.hwcaps=-AVX:glibc.malloc.mmap_threshold="
                           "65536"}});
  EXPECT_FALSE(tunable.applied);
  EXPECT_THAT(tunable.reason, HasSubstr("glibc.malloc.mmap_threshold=65536"));
  // Tunables that are not malloc thresholds do not count.
  EXPECT_TRUE(
      Plan(std::nullopt, {{"GLIBC_TUNABLES", "glibc.malloc.check=0"}}).applied);

  const HostMallocTuning preloaded = Plan(
      std::nullopt,
      {{"LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}});
  EXPECT_FALSE(preloaded.applied);
  EXPECT_THAT(preloaded.reason, HasSubstr("jemalloc"));
}

struct ProbeResult {
  bool applied = false;
  long faults_per_step = -1;
  long pages_per_step = -1;  // what a step touches, in this machine's pages
  std::string output;
};

// The number after `key` in `output`, or -1.
long NumberAfter(const std::string& output, const std::string& key) {
  const size_t at = output.find(key);
  long value = -1;
  if (at == std::string::npos) return value;
  const size_t begin = at + key.size();
  const size_t end = output.find(' ', begin);
  if (!absl::SimpleAtoi(output.substr(begin, end - begin), &value)) return -1;
  return value;
}

// Runs host_malloc_probe (a fresh process creating a PartialState) with
// `env` added to ours.
ProbeResult RunProbe(std::map<std::string, std::string> env) {
  // Neutral defaults for what the test's own environment might carry.
  env.try_emplace("GLIBC_TUNABLES", "");
  env.try_emplace("LD_PRELOAD", "");
  env.try_emplace("ACCELERATE_TUNE_MALLOC", "true");
  Subprocess probe({Runfile("state/host_malloc_probe")}, env);
  ProbeResult result;
  if (absl::Status started = probe.Start(); !started.ok()) {
    ADD_FAILURE() << started;
    return result;
  }
  const testing::ProcessResult done = probe.Wait(absl::Seconds(60));
  result.output = done.output;
  EXPECT_EQ(done.exit_code, 0) << done.output;
  result.applied = NumberAfter(done.output, "applied=") == 1;
  result.faults_per_step = NumberAfter(done.output, "faults_per_step=");
  result.pages_per_step = NumberAfter(done.output, "pages_per_step=");
  EXPECT_GE(result.faults_per_step, 0) << done.output;
  EXPECT_GT(result.pages_per_step, 0) << done.output;
  return result;
}

// A "step" touches 25 MiB (6400 pages of 4 KiB): untuned, glibc returns
// most of it to the kernel when it is freed and faults it in again on the
// next step; tuned, the heap keeps it.
TEST(HostMallocTest, PartialStateStopsAStepFromFaultingItsMemoryInAgain) {
  const ProbeResult tuned = RunProbe({});
  EXPECT_TRUE(tuned.applied) << tuned.output;
  EXPECT_LT(tuned.faults_per_step, tuned.pages_per_step / 50) << tuned.output;

  const ProbeResult untuned = RunProbe({{"ACCELERATE_TUNE_MALLOC", "false"}});
  EXPECT_FALSE(untuned.applied) << untuned.output;
  EXPECT_THAT(untuned.output, HasSubstr("ACCELERATE_TUNE_MALLOC=false"));
  EXPECT_GT(untuned.faults_per_step, untuned.pages_per_step / 2)
      << untuned.output;
}

TEST(HostMallocTest, PartialStateKeepsTheUsersGlibcTunables) {
  const ProbeResult kept = RunProbe(
      {{"GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072"}});
  EXPECT_FALSE(kept.applied) << kept.output;
  EXPECT_THAT(kept.output, HasSubstr("glibc.malloc.trim_threshold=131072"));
  // glibc honours the user's small trim threshold: the memory goes back.
  EXPECT_GT(kept.faults_per_step, kept.pages_per_step / 2) << kept.output;
}

}  // namespace
}  // namespace accelerate::state
