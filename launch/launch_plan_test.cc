#include "launch/launch_plan.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
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
using ::testing::UnorderedElementsAre;
using Variables = std::map<std::string, std::string>;

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

// A DEEPSPEED config as `accelerate config` writes it, and the variables
// Accelerate 1.15's launcher exports for it (prepare_deepspeed_cmd_env, run
// on this file) besides the ones every launch here sets.
constexpr char kDeepSpeedConfig[] = R"(compute_environment: LOCAL_MACHINE
debug: false
deepspeed_config:
  gradient_accumulation_steps: 4
  gradient_clipping: 1.0
  offload_optimizer_device: none
  offload_param_device: none
  zero3_init_flag: false
  zero3_save_16bit_model: true
  zero_stage: 3
distributed_type: DEEPSPEED
downcast_bf16: 'no'
machine_rank: 0
main_training_function: main
mixed_precision: bf16
num_machines: 1
num_processes: 2
rdzv_backend: static
same_network: true
use_cpu: false
)";

TEST_F(LaunchPlanTest, DeepSpeedConfigExportsAcceleratesVariables) {
  const std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/ds_yaml");
  ::mkdir(dir.c_str(), 0755);
  env_.Set("BUILD_WORKING_DIRECTORY", dir);
  const std::string config = WriteConfig("ds.yaml", kDeepSpeedConfig);
  ASSERT_OK_AND_ASSIGN(LaunchPlan plan,
                       Resolve({"--config_file", config, "p"}));
  EXPECT_TRUE(plan.use_deepspeed);
  EXPECT_FALSE(plan.use_fsdp);
  EXPECT_EQ(plan.distributed_type, "DEEPSPEED");
  EXPECT_EQ(plan.num_processes, 2);
  EXPECT_EQ(plan.common_env,
            (Variables{
                // Accelerate's, exactly.
                {"ACCELERATE_CONFIG_DS_FIELDS",
                 "gradient_accumulation_steps,gradient_clipping,offload_"
                 "optimizer_device,offload_param_device,zero3_init_flag,"
                 "zero3_save_16bit_model,zero_stage,mixed_precision"},
                {"ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "none"},
                {"ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "none"},
                {"ACCELERATE_DEEPSPEED_ZERO3_INIT", "false"},
                {"ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL", "true"},
                {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "3"},
                {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4"},
                {"ACCELERATE_GRADIENT_CLIPPING", "1.0"},
                {"ACCELERATE_MIXED_PRECISION", "bf16"},
                {"ACCELERATE_USE_DEEPSPEED", "true"},
                {"PYTHONPATH", dir},
                // Every launch's here (no GPU on this host).
                {"ACCELERATE_USE_CPU", "True"},
                {"ACCELERATE_DYNAMO_BACKEND", "NO"},
                {"ACCELERATE_DYNAMO_MODE", "default"},
                {"ACCELERATE_DYNAMO_USE_DYNAMIC", "False"},
                {"ACCELERATE_DYNAMO_USE_FULLGRAPH", "False"},
                {"OMP_NUM_THREADS", "4"},
            }));
  // What the training side does not act on is said, naming it.
  EXPECT_THAT(plan.warnings,
              UnorderedElementsAre(
                  AllOf(HasSubstr("deepspeed_config.gradient_clipping 1.0"),
                        HasSubstr("ClipGradNorm")),
                  HasSubstr("zero3_save_16bit_model true")));
  // The ranks get torchrun's variables as for any launch.
  const auto rank1 = RankEnvironment(plan, 1, 0);
  EXPECT_THAT(rank1, Contains(Pair("RANK", "1")));
  EXPECT_THAT(rank1, Contains(Pair("WORLD_SIZE", "2")));
  EXPECT_THAT(rank1, Contains(Pair("ACCELERATE_USE_DEEPSPEED", "true")));
}

TEST_F(LaunchPlanTest, DeepSpeedFlagsExportAcceleratesVariables) {
  const std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/ds_flags");
  ::mkdir(dir.c_str(), 0755);
  env_.Set("BUILD_WORKING_DIRECTORY", dir);
  // As Accelerate 1.15 exports for `--use_deepspeed --num_processes 2
  // --zero_stage 2 prog`.
  ASSERT_OK_AND_ASSIGN(
      LaunchPlan plan,
      Resolve({"--use_deepspeed", "--num_processes", "2", "--zero_stage", "2",
               "--main_process_port", "0", "prog"}));
  EXPECT_EQ(plan.distributed_type, "DEEPSPEED");
  EXPECT_EQ(plan.master_port, 40123);
  EXPECT_THAT(plan.warnings, ::testing::IsEmpty());
  Variables deepspeed;
  for (const auto& [name, value] : plan.common_env) {
    if (absl::StartsWith(name, "ACCELERATE_DEEPSPEED") ||
        absl::StartsWith(name, "ACCELERATE_USE_DEEPSPEED") ||
        absl::StartsWith(name, "ACCELERATE_CONFIG_DS") ||
        absl::StartsWith(name, "ACCELERATE_GRADIENT") || name == "PYTHONPATH") {
      deepspeed[name] = value;
    }
  }
  EXPECT_EQ(deepspeed, (Variables{{"ACCELERATE_CONFIG_DS_FIELDS", ""},
                                  {"ACCELERATE_DEEPSPEED_ZERO_STAGE", "2"},
                                  {"ACCELERATE_USE_DEEPSPEED", "true"},
                                  {"PYTHONPATH", dir}}));

  // As Accelerate exports for `--use_deepspeed --gradient_clipping 1
  // --zero3_init_flag True --offload_param_device CPU
  // --deepspeed_config_file x.json --gradient_accumulation_steps 3
  // --mixed_precision fp16`; the PYTHONPATH given is kept, the folder added.
  std::ofstream(dir + "/x.json") << R"({"zero_optimization": {"stage": 3}})";
  env_.Set("PYTHONPATH", "/lib/a::/lib/b");
  ASSERT_OK_AND_ASSIGN(
      plan, Resolve({"--use_deepspeed", "--num_processes", "2",
                     "--gradient_clipping", "1", "--zero3_init_flag", "True",
                     "--offload_param_device", "CPU", "--deepspeed_config_file",
                     "x.json", "--gradient_accumulation_steps", "3",
                     "--mixed_precision", "fp16", "prog"}));
  const Variables& e = plan.common_env;
  EXPECT_THAT(e, Contains(Pair("ACCELERATE_CONFIG_DS_FIELDS", "")));
  EXPECT_THAT(e, Contains(Pair("ACCELERATE_DEEPSPEED_CONFIG_FILE", "x.json")));
  EXPECT_THAT(
      e, Contains(Pair("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "cpu")));
  EXPECT_THAT(e, Contains(Pair("ACCELERATE_DEEPSPEED_ZERO3_INIT", "true")));
  EXPECT_THAT(e, Contains(Pair("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "3")));
  EXPECT_THAT(e, Contains(Pair("ACCELERATE_GRADIENT_CLIPPING", "1.0")));
  EXPECT_THAT(e, Contains(Pair("ACCELERATE_MIXED_PRECISION", "fp16")));
  EXPECT_THAT(e, Contains(Pair("PYTHONPATH", "/lib/a:/lib/b:" + dir)));
  EXPECT_THAT(e, Not(Contains(Key("ACCELERATE_DEEPSPEED_ZERO_STAGE"))));
  EXPECT_EQ(plan.deepspeed_config_file, dir + "/x.json");
  EXPECT_THAT(plan.warnings,
              UnorderedElementsAre(
                  HasSubstr("--gradient_clipping 1: exported"),
                  HasSubstr("zero3_init_flag true"),
                  AllOf(HasSubstr("--offload_param_device has no effect"),
                        HasSubstr("x.json"))));
  // The folder is not added twice.
  env_.Set("PYTHONPATH", dir);
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"--use_deepspeed", "prog"}));
  EXPECT_THAT(plan.common_env, Contains(Pair("PYTHONPATH", dir)));
}

TEST_F(LaunchPlanTest, DeepSpeedValuesAreWrittenAsAccelerateWritesThem) {
  // The flag is a Python float; the config's text is passed on (an integer
  // stays one); devices are lowered; nvme passes (the training side refuses
  // it by name).
  const auto exported = [&](std::vector<std::string> args,
                            const std::string& name) -> std::string {
    args.insert(args.begin(), "--use_deepspeed");
    args.push_back("prog");
    absl::StatusOr<LaunchPlan> plan = Resolve(args);
    if (!plan.ok()) return std::string(plan.status().message());
    auto found = plan->common_env.find(name);
    return found == plan->common_env.end() ? "<unset>" : found->second;
  };
  constexpr char kClip[] = "ACCELERATE_GRADIENT_CLIPPING";
  EXPECT_EQ(exported({"--gradient_clipping", "0.00001"}, kClip), "1e-05");
  EXPECT_EQ(exported({"--gradient_clipping", "1e6"}, kClip), "1000000.0");
  EXPECT_EQ(exported({"--gradient_clipping", "1e16"}, kClip), "1e+16");
  EXPECT_EQ(exported({"--gradient_clipping", "2.5"}, kClip), "2.5");
  EXPECT_EQ(exported({"--gradient_clipping", "123456789012345678"}, kClip),
            "1.2345678901234568e+17");
  EXPECT_EQ(exported({"--offload_optimizer_device", "NVMe"},
                     "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"),
            "nvme");
  EXPECT_EQ(exported({"--zero3_save_16bit_model", "no"},
                     "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"),
            "false");
  const std::string config = WriteConfig(
      "ds_text.yaml",
      "distributed_type: DEEPSPEED\nnum_processes: 2\ndeepspeed_config:\n"
      "  zero_stage: 1\n  gradient_clipping: 1\n"
      "  offload_optimizer_device: NVMe\n  zero3_init_flag: true\n"
      "  deepspeed_moe_layer_cls_names: Block\n");
  // As Accelerate 1.15 exports for this file with --mixed_precision fp16:
  // the keys in the file's order, no mixed_precision (it came from a flag).
  ASSERT_OK_AND_ASSIGN(
      LaunchPlan plan,
      Resolve({"--config_file", config, "--mixed_precision", "fp16", "p"}));
  const Variables& e = plan.common_env;
  EXPECT_THAT(e, Contains(Pair("ACCELERATE_CONFIG_DS_FIELDS",
                               "zero_stage,gradient_clipping,offload_"
                               "optimizer_device,zero3_init_flag,deepspeed_"
                               "moe_layer_cls_names")));
  EXPECT_THAT(e, Contains(Pair("ACCELERATE_GRADIENT_CLIPPING", "1")));
  EXPECT_THAT(e, Contains(Pair("ACCELERATE_DEEPSPEED_ZERO_STAGE", "1")));
  EXPECT_THAT(e, Contains(Pair("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE",
                               "nvme")));
  EXPECT_THAT(e, Contains(Pair("ACCELERATE_DEEPSPEED_ZERO3_INIT", "true")));
  EXPECT_THAT(
      e, Contains(Pair("ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES", "Block")));
  EXPECT_THAT(plan.warnings,
              Contains(HasSubstr("deepspeed_moe_layer_cls_names \"Block\"")));
}

TEST_F(LaunchPlanTest, DeepSpeedIsAModeFlagAndUnusedSettingsAreNamed) {
  EXPECT_THAT(Resolve({"--use_deepspeed", "--use_fsdp", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("only use one of `--cpu`, `--multi_gpu`, "
                                 "`--use_deepspeed`, `--use_fsdp`")));
  // --cpu wins over the config's DEEPSPEED, as in Accelerate; what asked
  // for DeepSpeed is named.
  const std::string config = WriteConfig("ds_cpu.yaml", kDeepSpeedConfig);
  ASSERT_OK_AND_ASSIGN(LaunchPlan plan,
                       Resolve({"--config_file", config, "--cpu", "p"}));
  EXPECT_EQ(plan.distributed_type, "MULTI_CPU");
  EXPECT_FALSE(plan.use_deepspeed);
  EXPECT_THAT(plan.common_env, Not(Contains(Key("ACCELERATE_USE_DEEPSPEED"))));
  EXPECT_THAT(plan.warnings,
              ElementsAre(AllOf(HasSubstr("deepspeed_config has no effect"),
                                HasSubstr("this launch is MULTI_CPU"))));
  ASSERT_OK_AND_ASSIGN(plan,
                       Resolve({"--zero_stage", "3", "--gradient_clipping", "1",
                                "--num_processes", "2", "p"}));
  EXPECT_THAT(plan.warnings,
              ElementsAre(HasSubstr("--zero_stage, --gradient_clipping have "
                                    "no effect: this launch is MULTI_CPU")));
  EXPECT_THAT(plan.common_env,
              Not(Contains(Key("ACCELERATE_DEEPSPEED_ZERO_STAGE"))));
}

TEST_F(LaunchPlanTest, BadDeepSpeedSettingsAreRefusedNamingThem) {
  const auto config = [&](const std::string& name, const std::string& body) {
    return WriteConfig(name,
                       "distributed_type: DEEPSPEED\nnum_processes: 2\n"
                       "deepspeed_config:\n" +
                           body);
  };
  EXPECT_THAT(Resolve({"--use_deepspeed", "--zero_stage", "4", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--zero_stage: \"4\" is not one of 0, 1, 2, "
                                 "3")));
  EXPECT_THAT(
      Resolve({"--config_file", config("z.yaml", "  zero_stage: 5\n"), "p"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("deepspeed_config.zero_stage: \"5\" is not "
                         "one of 0, 1, 2, 3")));
  EXPECT_THAT(
      Resolve({"--config_file",
               config("o.yaml", "  offload_param_device: disk\n"), "p"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("deepspeed_config.offload_param_device: "
                         "\"disk\" is not one of none, cpu, nvme")));
  EXPECT_THAT(Resolve({"--use_deepspeed", "--gradient_clipping", "big", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--gradient_clipping: \"big\" is not a "
                                 "gradient norm")));
  EXPECT_THAT(Resolve({"--use_deepspeed", "--zero3_init_flag", "maybe", "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--zero3_init_flag=\"maybe\"")));
  EXPECT_THAT(
      Resolve({"--config_file",
               config("g.yaml", "  gradient_accumulation_steps: 0\n"), "p"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("deepspeed_config.gradient_accumulation_steps: "
                         "0 is not a positive count")));
  // Several machines: only the standard launcher runs here (pdsh is
  // Accelerate's default).
  const std::vector<std::string> two_machines = {
      "--use_deepspeed",   "--num_processes", "2", "--num_machines", "2",
      "--main_process_ip", "10.0.0.1"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = two_machines;
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back("p");
    return Resolve(args);
  };
  EXPECT_THAT(with({}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("deepspeed_config."
                                       "deepspeed_multinode_launcher: "
                                       "\"pdsh\" (Accelerate's "
                                       "default)"),
                             HasSubstr("set it to standard"))));
  EXPECT_THAT(with({"--deepspeed_multinode_launcher", "slurm"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--deepspeed_multinode_launcher: \"slurm\"")));
  ASSERT_OK_AND_ASSIGN(LaunchPlan plan,
                       with({"--deepspeed_multinode_launcher", "standard",
                             "--deepspeed_hostfile", "/etc/hosts"}));
  EXPECT_EQ(plan.nproc_per_node, 1);
  EXPECT_THAT(plan.warnings,
              ElementsAre(HasSubstr("--deepspeed_hostfile \"/etc/hosts\" has "
                                    "no effect")));
  EXPECT_THAT(
      Resolve({"--config_file",
               config("l.yaml", "  deepspeed_multinode_launcher: ssh\n"), "p"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("\"ssh\" is not one of pdsh, standard")));
  // On one machine the launcher key means nothing, as in Accelerate.
  ASSERT_OK_AND_ASSIGN(plan,
                       Resolve({"--config_file",
                                config("l1.yaml",
                                       "  deepspeed_multinode_launcher: pdsh\n"
                                       "  offload_param_nvme_path: /nvme\n"),
                                "p"}));
  EXPECT_THAT(
      plan.warnings,
      UnorderedElementsAre(HasSubstr("\"pdsh\" has no effect on one machine"),
                           HasSubstr("offload_param_nvme_path \"/nvme\" has no "
                                     "effect")));
}

TEST_F(LaunchPlanTest, DeepSpeedConfigFileDecidesWhatTheConfigMustNotSet) {
  const std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/ds_file");
  ::mkdir(dir.c_str(), 0755);
  const std::string json = dir + "/ds.json";
  std::ofstream(json) << R"({"zero_optimization": {"stage": 1}})";
  // As `accelerate config` writes it with a JSON file: no mixed_precision.
  const std::string good =
      WriteConfig("ds_json.yaml",
                  absl::StrCat("distributed_type: DEEPSPEED\nnum_processes: 2\n"
                               "deepspeed_config:\n  deepspeed_config_file: ",
                               json, "\n  zero3_init_flag: false\n"));
  ASSERT_OK_AND_ASSIGN(LaunchPlan plan, Resolve({"--config_file", good, "p"}));
  EXPECT_THAT(plan.common_env,
              Contains(Pair("ACCELERATE_DEEPSPEED_CONFIG_FILE", json)));
  EXPECT_THAT(plan.common_env,
              Contains(Pair("ACCELERATE_CONFIG_DS_FIELDS",
                            "deepspeed_config_file,zero3_init_flag")));
  EXPECT_EQ(plan.deepspeed_config_file, json);
  EXPECT_THAT(plan.warnings, ::testing::IsEmpty());
  // Keys the file decides, and mixed_precision from the config, are
  // refused as Accelerate's DeepSpeedPlugin refuses them.
  const std::string both = WriteConfig(
      "ds_both.yaml",
      absl::StrCat("distributed_type: DEEPSPEED\nnum_processes: 2\n"
                   "mixed_precision: bf16\ndeepspeed_config:\n"
                   "  deepspeed_config_file: ",
                   json, "\n  zero_stage: 2\n  zero3_init_flag: false\n"));
  EXPECT_THAT(Resolve({"--config_file", both, "p"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("sets zero_stage, mixed_precision "
                                       "beside deepspeed_config_file"),
                             HasSubstr(json))));
  // A missing file is named (a warning for a dry run, which may plan for
  // another machine).
  EXPECT_THAT(Resolve({"--use_deepspeed", "--deepspeed_config_file",
                       "/missing/ds.json", "p"}),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("deepspeed_config_file: cannot read "
                                 "/missing/ds.json: no such file")));
  ASSERT_OK_AND_ASSIGN(
      plan, Resolve({"--use_deepspeed", "--dry_run", "--deepspeed_config_file",
                     "/missing/ds.json", "p"}));
  EXPECT_THAT(plan.warnings,
              ElementsAre(HasSubstr("cannot read /missing/ds.json")));
  // "none" is none, as in Accelerate.
  ASSERT_OK_AND_ASSIGN(plan, Resolve({"--use_deepspeed",
                                      "--deepspeed_config_file", "none", "p"}));
  EXPECT_THAT(plan.common_env,
              Contains(Pair("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none")));
  EXPECT_TRUE(plan.deepspeed_config_file.empty());
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
  EXPECT_THAT(
      Resolve({"--config_file",
               WriteConfig("mlm.yaml", "distributed_type: MEGATRON_LM\n"),
               "p"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("MEGATRON_LM"),
                     HasSubstr("not supported by accelerate-cpp"),
                     HasSubstr("DEEPSPEED"))));
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
