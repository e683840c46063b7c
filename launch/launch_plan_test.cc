#include "launch/launch_plan.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launch/flags.h"
#include "launch/host.h"
#include "launch/launch_flags.h"
#include "state/environment.h"
#include "testing/status_matchers.h"

namespace accelerate::launch {
namespace {

using ::accelerate::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Key;
using ::testing::Not;
using ::testing::Pair;

class LaunchPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    home_ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/",
                         ::testing::UnitTest::GetInstance()
                             ->current_test_info()
                             ->name());
    env_.Set("HF_HOME", home_);
    host_.gpu_count = 0;
    host_.cpu_cores = 8;
    host_.port_is_free = [this](int port) { return busy_port_ != port; };
    host_.pick_free_port = [] { return 40123; };
  }

  std::string WriteConfig(const std::string& name, const std::string& yaml) {
    const std::string path = absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
    std::ofstream(path) << yaml;
    return path;
  }

  void WriteDefaultConfig(const std::string& yaml) {
    const std::string dir = home_ + "/accelerate";
    std::system(absl::StrCat("mkdir -p ", dir).c_str());
    std::ofstream(dir + "/default_config.yaml") << yaml;
  }

  absl::StatusOr<LaunchPlan> Resolve(const std::vector<std::string>& args) {
    absl::StatusOr<ParsedFlags> flags = LaunchFlagParser().Parse(args);
    if (!flags.ok()) return flags.status();
    return ResolveLaunch(*flags, env_, host_);
  }

  std::string home_;
  state::MapEnvironment env_;
  LaunchHost host_;
  int busy_port_ = -1;
};

TEST_F(LaunchPlanTest, DefaultsWithoutConfigAreWarnedAbout) {
  ASSERT_OK_AND_ASSIGN(LaunchPlan plan, Resolve({"prog", "--flag"}));
  EXPECT_EQ(plan.num_processes, 1);
  EXPECT_EQ(plan.num_machines, 1);
  EXPECT_EQ(plan.mixed_precision, "no");
  EXPECT_EQ(plan.distributed_type, "NO");
  EXPECT_TRUE(plan.use_cpu);
  EXPECT_EQ(plan.master_port, 29500);
  EXPECT_THAT(plan.command, ElementsAre("prog", "--flag"));
  const std::string warning = DefaultsWarning(plan);
  EXPECT_THAT(warning,
              AllOf(HasSubstr("had defaults used instead"),
                    HasSubstr("`--num_processes` was set to a value of `1`"),
                    HasSubstr("`--num_machines` was set to a value of `1`"),
                    HasSubstr("`--mixed_precision` was set to a value of "
                              "`'no'`")));
  // 8 cores, 1 process: Accelerate's CPU thread default.
  EXPECT_EQ(plan.num_cpu_threads_per_process, 8);
}

TEST_F(LaunchPlanTest, FlagsBeatConfigWhichBeatsDefaults) {
  const std::string config = WriteConfig(
      "c.yaml",
      "distributed_type: MULTI_CPU\nnum_processes: 4\nmixed_precision: bf16\n"
      "main_process_port: 12000\nuse_cpu: true\n");
  ASSERT_OK_AND_ASSIGN(
      LaunchPlan plan,
      Resolve({"--config_file", config, "--num_processes", "2", "prog"}));
  EXPECT_EQ(plan.config_file, config);
  EXPECT_EQ(plan.num_processes, 2);         // flag
  EXPECT_EQ(plan.mixed_precision, "bf16");  // config
  EXPECT_EQ(plan.master_port, 12000);       // config
  EXPECT_EQ(plan.distributed_type, "MULTI_CPU");
  // With a config, only Accelerate's CPU-threads note remains (8 cores, 2
  // processes).
  EXPECT_THAT(plan.defaults_used,
              ElementsAre(HasSubstr("`--num_cpu_threads_per_process` was set "
                                    "to `4`")));
}

TEST_F(LaunchPlanTest, DefaultConfigFileIsReadUnlessCpuIsGiven) {
  WriteDefaultConfig("distributed_type: MULTI_CPU\nnum_processes: 3\n");
  ASSERT_OK_AND_ASSIGN(LaunchPlan plan, Resolve({"prog"}));
  EXPECT_EQ(plan.num_processes, 3);
  EXPECT_THAT(plan.config_file, HasSubstr("default_config.yaml"));
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"--cpu", "prog"}));
  EXPECT_EQ(plan.num_processes, 1);
  EXPECT_TRUE(plan.config_file.empty());
}

TEST_F(LaunchPlanTest, OldFp16KeyBecomesMixedPrecision) {
  const std::string config = WriteConfig(
      "old.yaml", "distributed_type: MULTI_CPU\nnum_processes: 2\nfp16: true\n");
  ASSERT_OK_AND_ASSIGN(LaunchPlan plan, Resolve({"--config_file", config, "p"}));
  EXPECT_EQ(plan.mixed_precision, "fp16");
  EXPECT_EQ(plan.common_env.at("ACCELERATE_MIXED_PRECISION"), "fp16");
}

TEST_F(LaunchPlanTest, EveryRankGetsTorchrunAndAccelerateVariables) {
  ASSERT_OK_AND_ASSIGN(
      LaunchPlan plan,
      Resolve({"--num_processes", "4", "--num_machines", "2", "--machine_rank",
               "1", "--main_process_ip", "10.0.0.1", "--main_process_port",
               "1234", "--mixed_precision", "bf16", "--debug",
               "--gradient_accumulation_steps", "8",
               "--num_cpu_threads_per_process", "3", "prog"}));
  EXPECT_EQ(plan.nproc_per_node, 2);
  const auto env = RankEnvironment(plan, /*local_rank=*/1, /*restart_count=*/2);
  EXPECT_THAT(env, Contains(Pair("RANK", "3")));
  EXPECT_THAT(env, Contains(Pair("LOCAL_RANK", "1")));
  EXPECT_THAT(env, Contains(Pair("WORLD_SIZE", "4")));
  EXPECT_THAT(env, Contains(Pair("LOCAL_WORLD_SIZE", "2")));
  EXPECT_THAT(env, Contains(Pair("GROUP_RANK", "1")));
  EXPECT_THAT(env, Contains(Pair("GROUP_WORLD_SIZE", "2")));
  EXPECT_THAT(env, Contains(Pair("MASTER_ADDR", "10.0.0.1")));
  EXPECT_THAT(env, Contains(Pair("MASTER_PORT", "1234")));
  EXPECT_THAT(env, Contains(Pair("TORCHELASTIC_RESTART_COUNT", "2")));
  EXPECT_THAT(env, Contains(Pair("TORCHELASTIC_USE_AGENT_STORE", "False")));
  EXPECT_THAT(env, Contains(Pair("ACCELERATE_MIXED_PRECISION", "bf16")));
  EXPECT_THAT(env, Contains(Pair("ACCELERATE_USE_CPU", "True")));
  EXPECT_THAT(env, Contains(Pair("ACCELERATE_DEBUG_MODE", "true")));
  EXPECT_THAT(env, Contains(Pair("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "8")));
  EXPECT_THAT(env, Contains(Pair("OMP_NUM_THREADS", "3")));
  EXPECT_THAT(env, Contains(Pair("ACCELERATE_DYNAMO_BACKEND", "NO")));
}

TEST_F(LaunchPlanTest, PythonScriptsAndModulesGetAnInterpreter) {
  env_.Set("ACCELERATE_PYTHON", "/usr/bin/python3");
  ASSERT_OK_AND_ASSIGN(LaunchPlan plan, Resolve({"train.py", "--lr", "1"}));
  EXPECT_THAT(plan.command,
              ElementsAre("/usr/bin/python3", "train.py", "--lr", "1"));
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"-m", "pkg.train"}));
  EXPECT_THAT(plan.command, ElementsAre("/usr/bin/python3", "-m", "pkg.train"));
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"--no_python", "tool.py"}));
  EXPECT_THAT(plan.command, ElementsAre("tool.py"));
  EXPECT_THAT(Resolve({"-m", "--no_python", "x"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--module and --no_python")));
}

TEST_F(LaunchPlanTest, BusyDefaultPortIsReplacedButAGivenPortIsKept) {
  busy_port_ = 29500;
  ASSERT_OK_AND_ASSIGN(LaunchPlan plan, Resolve({"prog"}));
  EXPECT_EQ(plan.master_port, 40123);
  EXPECT_TRUE(plan.port_picked);
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"--main_process_port", "29500", "prog"}));
  EXPECT_EQ(plan.master_port, 29500);
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"--main_process_port", "0", "prog"}));
  EXPECT_EQ(plan.master_port, 40123);
}

TEST_F(LaunchPlanTest, FsdpSettingsBecomeAccelerateVariables) {
  const std::string config = WriteConfig(
      "fsdp.yaml",
      "distributed_type: FSDP\nnum_processes: 2\nfsdp_config:\n"
      "  fsdp_sharding_strategy: 2\n  fsdp_backward_prefetch_policy: "
      "BACKWARD_POST\n  fsdp_offload_params: true\n");
  ASSERT_OK_AND_ASSIGN(
      LaunchPlan plan,
      Resolve({"--config_file", config, "--fsdp_state_dict_type",
               "SHARDED_STATE_DICT", "prog"}));
  EXPECT_TRUE(plan.use_fsdp);
  const auto& env = plan.common_env;
  EXPECT_THAT(env, Contains(Pair("ACCELERATE_USE_FSDP", "true")));
  EXPECT_THAT(env, Contains(Pair("FSDP_SHARDING_STRATEGY", "SHARD_GRAD_OP")));
  EXPECT_THAT(env, Contains(Pair("FSDP_BACKWARD_PREFETCH", "BACKWARD_POST")));
  EXPECT_THAT(env, Contains(Pair("FSDP_OFFLOAD_PARAMS", "true")));
  EXPECT_THAT(env, Contains(Pair("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT")));
  EXPECT_THAT(env, Contains(Pair("FSDP_MIN_NUM_PARAMS", "100000000")));
  EXPECT_THAT(env, Contains(Pair("FSDP_VERSION", "1")));
  EXPECT_THAT(env, Not(Contains(Key("FSDP_AUTO_WRAP_POLICY"))));
}

TEST_F(LaunchPlanTest, BadInputIsNamed) {
  EXPECT_THAT(Resolve({}), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("no program given")));
  EXPECT_THAT(Resolve({"--num_processes", "two", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--num_processes: \"two\" is not an integer")));
  EXPECT_THAT(Resolve({"--num_processes", "0", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--num_processes: 0 is below the minimum 1")));
  EXPECT_THAT(Resolve({"--num_processes", "3", "--num_machines", "2",
                       "--main_process_ip", "h", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not divisible by num_machines 2")));
  EXPECT_THAT(Resolve({"--num_processes", "2", "--num_machines", "2", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--main_process_ip is required")));
  EXPECT_THAT(Resolve({"--num_processes", "2", "--num_machines", "2",
                       "--machine_rank", "2", "--main_process_ip", "h", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("machine_rank 2 is outside [0, num_machines=2)")));
  EXPECT_THAT(Resolve({"--cpu", "--multi_gpu", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("only use one of")));
  EXPECT_THAT(Resolve({"--multi_gpu", "--num_processes", "1", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("at least 2 processes")));
  EXPECT_THAT(Resolve({"--multi_gpu", "--num_processes", "2", "p"}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("this machine has none")));
  EXPECT_THAT(Resolve({"--tee", "3", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("give --log_dir")));
  EXPECT_THAT(Resolve({"--monitor_interval", "-1", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--monitor_interval: \"-1\"")));
  EXPECT_THAT(Resolve({"--config_file", "/missing.yaml", "p"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/missing.yaml")));
}

TEST_F(LaunchPlanTest, ConfigValuesAreValidated) {
  EXPECT_THAT(Resolve({"--config_file",
                       WriteConfig("ds.yaml", "distributed_type: DEEPSPEED\n"),
                       "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("DEEPSPEED"),
                             HasSubstr("not supported by accelerate-cpp"))));
  EXPECT_THAT(Resolve({"--config_file",
                       WriteConfig("typo.yaml", "distributed_type: MULTI_CPUS\n"),
                       "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"MULTI_CPUS\" is not one of NO, MULTI_CPU")));
  EXPECT_THAT(Resolve({"--config_file",
                       WriteConfig("mp.yaml", "mixed_precision: fp17\n"), "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("mixed_precision: \"fp17\" is not one of no, "
                                 "fp16, bf16, fp8")));
  EXPECT_THAT(Resolve({"--config_file",
                       WriteConfig("np.yaml", "distributed_type: MULTI_CPU\n"),
                       "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("pass --num_processes")));
  EXPECT_THAT(Resolve({"--config_file",
                       WriteConfig("sm.yaml",
                                   "compute_environment: AMAZON_SAGEMAKER\n"),
                       "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("AMAZON_SAGEMAKER")));
}

TEST_F(LaunchPlanTest, DescribePlanShowsEachRanksCommandAndEnvironment) {
  ASSERT_OK_AND_ASSIGN(LaunchPlan plan,
                       Resolve({"--num_processes", "2", "--dry_run", "prog", "a"}));
  EXPECT_TRUE(plan.dry_run);
  const std::string text = DescribePlan(plan);
  EXPECT_THAT(text, AllOf(HasSubstr("num_processes: 2"), HasSubstr("rank 0: prog a"),
                          HasSubstr("rank 1: prog a"), HasSubstr("RANK=1"),
                          HasSubstr("MASTER_PORT=29500")));
}

TEST_F(LaunchPlanTest, ADryRunOfAGpuPlanWarnsInsteadOfStopping) {
  const std::string config = WriteConfig(
      "gpus.yaml", "distributed_type: MULTI_GPU\nnum_processes: 4\n");
  // A launch on this machine (no GPUs) stops, as before.
  EXPECT_THAT(Resolve({"--config_file", config, "p"}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("this machine has none")));
  // A dry run prints the GPU machine's plan and says what is missing here.
  ASSERT_OK_AND_ASSIGN(LaunchPlan plan,
                       Resolve({"--config_file", config, "--dry_run", "p"}));
  EXPECT_EQ(plan.distributed_type, "MULTI_GPU");
  EXPECT_EQ(plan.num_processes, 4);
  EXPECT_FALSE(plan.use_cpu);
  EXPECT_EQ(plan.common_env.at("ACCELERATE_USE_CPU"), "False");
  EXPECT_THAT(plan.warnings,
              ElementsAre(AllOf(HasSubstr("needs GPUs"),
                                HasSubstr("this machine has none"))));
  // Without a dry run or a GPU need there is nothing to warn about.
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"--cpu", "--dry_run", "p"}));
  EXPECT_THAT(plan.warnings, ::testing::IsEmpty());
}

TEST_F(LaunchPlanTest, UserPathsAreTakenFromBazelRunsWorkingDirectory) {
  const std::string dir =
      absl::StrCat(std::getenv("TEST_TMPDIR"), "/bazel_run_folder");
  ::mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/two.yaml")
      << "distributed_type: MULTI_CPU\nnum_processes: 2\n";
  env_.Set("BUILD_WORKING_DIRECTORY", dir);
  ASSERT_OK_AND_ASSIGN(
      LaunchPlan plan,
      Resolve({"--config_file", "two.yaml", "--log_dir", "logs",
               "bazel-bin/train", "--out", "out"}));
  EXPECT_EQ(plan.config_file, dir + "/two.yaml");
  EXPECT_EQ(plan.num_processes, 2);
  EXPECT_EQ(plan.log_dir, dir + "/logs");
  // The program is the user's path; its arguments are its own business, and
  // the ranks start in the user's folder.
  EXPECT_THAT(plan.command,
              ElementsAre(dir + "/bazel-bin/train", "--out", "out"));
  EXPECT_EQ(plan.working_dir, dir);
  // A name without a slash is looked up in PATH; absolute paths stay.
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"hostname"}));
  EXPECT_THAT(plan.command, ElementsAre("hostname"));
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"/bin/true"}));
  EXPECT_THAT(plan.command, ElementsAre("/bin/true"));
  // A Python script is opened by the interpreter in the ranks' folder.
  env_.Set("ACCELERATE_PYTHON", "/usr/bin/python3");
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"train.py"}));
  EXPECT_THAT(plan.command, ElementsAre("/usr/bin/python3", dir + "/train.py"));
  EXPECT_EQ(plan.script, dir + "/train.py");
}

TEST_F(LaunchPlanTest, CheckCommandNamesTheResolvedProgram) {
  const std::string dir =
      absl::StrCat(std::getenv("TEST_TMPDIR"), "/programs");
  ::mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/not_executable.sh") << "#!/bin/sh\n";
  env_.Set("BUILD_WORKING_DIRECTORY", dir);
  env_.Set("PATH", "/bin:/usr/bin");
  ASSERT_OK_AND_ASSIGN(LaunchPlan plan, Resolve({"./missing", "a"}));
  EXPECT_THAT(CheckCommand(plan, env_),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("cannot execute " + dir +
                                 "/./missing: no such file")));
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"not_executable.sh"}));
  EXPECT_THAT(CheckCommand(plan, env_),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("not_executable.sh: not found in PATH")));
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"./not_executable.sh"}));
  EXPECT_THAT(CheckCommand(plan, env_),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("not_executable.sh: is not executable")));
  env_.Set("ACCELERATE_PYTHON", "/bin/sh");
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"gone.py"}));
  EXPECT_THAT(CheckCommand(plan, env_),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("cannot open the Python script " + dir +
                                 "/gone.py")));
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"sh", "-c", "true"}));
  EXPECT_OK(CheckCommand(plan, env_));
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"--dry_run"}));
  EXPECT_OK(CheckCommand(plan, env_));
}

}  // namespace
}  // namespace accelerate::launch
