#include "launch/config.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "state/environment.h"
#include "testing/status_matchers.h"

namespace accelerate::launch {
namespace {

using ::accelerate::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// What recent Accelerate (0.29 and later) writes for `accelerate config` on a
// CPU-only machine.
constexpr char kRecent[] = R"(compute_environment: LOCAL_MACHINE
debug: false
distributed_type: 'NO'
downcast_bf16: 'no'
enable_cpu_affinity: false
machine_rank: 0
main_training_function: main
mixed_precision: 'no'
num_machines: 1
num_processes: 1
rdzv_backend: static
same_network: true
tpu_env: []
tpu_use_cluster: false
tpu_use_sudo: false
use_cpu: true
)";

// Accelerate 0.13/0.14 `config default`, written as JSON content (YAML reads
// it).
constexpr char kOldJsonStyle[] = R"({
  "compute_environment": "LOCAL_MACHINE",
  "deepspeed_config": {},
  "distributed_type": "NO",
  "downcast_bf16": false,
  "fsdp_config": {},
  "gpu_ids": null,
  "machine_rank": 0,
  "main_process_ip": null,
  "main_process_port": null,
  "main_training_function": "main",
  "mixed_precision": "no",
  "num_machines": 1,
  "num_processes": 1,
  "rdzv_backend": "static",
  "same_network": false,
  "use_cpu": true
})";

// Accelerate 0.15/0.16: a top-level dynamo_backend and the megatron/TPU keys.
constexpr char kV015[] = R"(command_file: null
commands: null
compute_environment: LOCAL_MACHINE
deepspeed_config: {}
distributed_type: MULTI_CPU
downcast_bf16: 'no'
dynamo_backend: 'NO'
fsdp_config: {}
gpu_ids: null
machine_rank: 0
main_process_ip: null
main_process_port: null
main_training_function: main
megatron_lm_config: {}
mixed_precision: bf16
num_machines: 1
num_processes: 4
rdzv_backend: static
same_network: true
tpu_name: null
tpu_zone: null
use_cpu: true
)";

// Accelerate 0.11/0.12 multi-GPU FSDP with the old prefetch key and a numeric
// sharding strategy.
constexpr char kV011Fsdp[] = R"(compute_environment: LOCAL_MACHINE
deepspeed_config: {}
distributed_type: FSDP
fsdp_config:
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_backward_prefetch_policy: BACKWARD_PRE
  fsdp_offload_params: false
  fsdp_sharding_strategy: 1
  fsdp_state_dict_type: FULL_STATE_DICT
  fsdp_transformer_layer_cls_to_wrap: T5Block
machine_rank: 0
main_process_ip: null
main_process_port: null
main_training_function: main
mixed_precision: fp16
num_machines: 1
num_processes: 2
use_cpu: false
)";

// Accelerate <= 0.5: `fp16: true` instead of mixed_precision.
constexpr char kV05[] = R"(compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
fp16: true
machine_rank: 0
main_process_ip: null
main_process_port: null
main_training_function: main
num_machines: 1
num_processes: 2
)";

// Recent FSDP2 with fp8 and mpirun sections.
constexpr char kRecentFsdp2[] = R"(compute_environment: LOCAL_MACHINE
debug: true
distributed_type: FSDP
downcast_bf16: 'no'
enable_cpu_affinity: false
fp8_config:
  amax_compute_algorithm: max
  amax_history_length: 1024
  backend: TE
  fp8_format: HYBRID
  interval: 1
  margin: 0
  override_linear_precision: (false, false, false)
  use_autocast_during_eval: false
fsdp_config:
  fsdp_activation_checkpointing: false
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_cpu_ram_efficient_loading: true
  fsdp_offload_params: false
  fsdp_reshard_after_forward: true
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_version: 2
gpu_ids: 0,1
machine_rank: 0
main_training_function: main
mixed_precision: fp8
mpirun_config:
  mpirun_hostfile: /etc/hosts.mpi
num_machines: 1
num_processes: 2
rdzv_backend: static
same_network: true
use_cpu: false
)";

TEST(ConfigTest, LoadsRecentCpuConfig) {
  ASSERT_OK_AND_ASSIGN(LoadedConfig loaded, ParseConfig(kRecent, "recent"));
  const LaunchConfig& c = loaded.config;
  EXPECT_EQ(c.distributed_type(), "NO");
  EXPECT_EQ(c.mixed_precision(), "no");
  EXPECT_TRUE(c.use_cpu());
  EXPECT_FALSE(c.downcast_bf16());
  EXPECT_TRUE(c.same_network());
  EXPECT_EQ(c.num_processes(), 1);
  EXPECT_EQ(c.rdzv_backend(), "static");
  // tpu_* keys are Accelerate's, but off: nothing to report.
  EXPECT_THAT(loaded.unsupported_keys, IsEmpty());
}

TEST(ConfigTest, LoadsOldJsonStyleConfigWithNulls) {
  ASSERT_OK_AND_ASSIGN(LoadedConfig loaded, ParseConfig(kOldJsonStyle, "old"));
  EXPECT_FALSE(loaded.config.has_gpu_ids());
  EXPECT_FALSE(loaded.config.has_main_process_port());
  EXPECT_TRUE(loaded.config.has_fsdp_config());
  EXPECT_THAT(loaded.unsupported_keys, IsEmpty());
}

TEST(ConfigTest, LoadsV015WithTopLevelDynamoBackend) {
  ASSERT_OK_AND_ASSIGN(LoadedConfig loaded, ParseConfig(kV015, "v0.15"));
  EXPECT_EQ(loaded.config.distributed_type(), "MULTI_CPU");
  EXPECT_EQ(loaded.config.num_processes(), 4);
  EXPECT_EQ(loaded.config.mixed_precision(), "bf16");
  EXPECT_THAT(loaded.unsupported_keys, IsEmpty());
}

TEST(ConfigTest, LoadsV011FsdpSection) {
  ASSERT_OK_AND_ASSIGN(LoadedConfig loaded, ParseConfig(kV011Fsdp, "v0.11"));
  const FsdpConfig& fsdp = loaded.config.fsdp_config();
  EXPECT_EQ(fsdp.fsdp_sharding_strategy(), "1");
  EXPECT_EQ(fsdp.fsdp_backward_prefetch_policy(), "BACKWARD_PRE");
  EXPECT_EQ(fsdp.fsdp_transformer_layer_cls_to_wrap(), "T5Block");
  EXPECT_FALSE(fsdp.fsdp_offload_params());
}

TEST(ConfigTest, LoadsV05Fp16Flag) {
  ASSERT_OK_AND_ASSIGN(LoadedConfig loaded, ParseConfig(kV05, "v0.5"));
  EXPECT_TRUE(loaded.config.fp16());
  EXPECT_FALSE(loaded.config.has_mixed_precision());
}

TEST(ConfigTest, LoadsRecentFsdp2AndReportsUnsupportedSections) {
  ASSERT_OK_AND_ASSIGN(LoadedConfig loaded, ParseConfig(kRecentFsdp2, "fsdp2"));
  EXPECT_EQ(loaded.config.fsdp_config().fsdp_version(), 2);
  EXPECT_EQ(loaded.config.fsdp_config().fsdp_reshard_after_forward(), "true");
  EXPECT_EQ(loaded.config.fp8_config().backend(), "TE");
  EXPECT_EQ(loaded.config.fp8_config().amax_history_length(), 1024);
  EXPECT_EQ(loaded.config.gpu_ids(), "0,1");
  EXPECT_TRUE(loaded.config.debug());
  EXPECT_THAT(loaded.unsupported_keys, ElementsAre("mpirun_config"));
}

TEST(ConfigTest, ReportsUnsupportedKeysThatAskForSomething) {
  ASSERT_OK_AND_ASSIGN(
      LoadedConfig loaded,
      ParseConfig("distributed_type: NO\nmegatron_lm_config:\n  "
                  "megatron_lm_tp_degree: 2\ntpu_name: my-tpu\n"
                  "tpu_use_sudo: false\ncommands: []\n",
                  "x"));
  EXPECT_THAT(loaded.unsupported_keys,
              UnorderedElementsAre("megatron_lm_config", "tpu_name"));
}

// What `accelerate config` writes for DeepSpeed on two machines (keys
// sorted), with a key of a later Accelerate.
constexpr char kDeepSpeed[] = R"(compute_environment: LOCAL_MACHINE
deepspeed_config:
  deepspeed_hostfile: /etc/hostfile
  deepspeed_multinode_launcher: standard
  gradient_accumulation_steps: 2
  gradient_clipping: 1.0
  offload_optimizer_device: cpu
  offload_param_device: nvme
  offload_param_nvme_path: /nvme
  zero3_init_flag: true
  zero3_save_16bit_model: false
  zero_stage: 3
  zero_future_option: 1
distributed_type: DEEPSPEED
mixed_precision: bf16
num_machines: 2
num_processes: 16
)";

TEST(ConfigTest, LoadsDeepSpeedSectionKeepingItsKeyOrder) {
  ASSERT_OK_AND_ASSIGN(LoadedConfig loaded, ParseConfig(kDeepSpeed, "ds"));
  const DeepSpeedConfig& ds = loaded.config.deepspeed_config();
  EXPECT_EQ(loaded.config.distributed_type(), "DEEPSPEED");
  EXPECT_EQ(ds.zero_stage(), 3);
  EXPECT_EQ(ds.offload_optimizer_device(), "cpu");
  EXPECT_EQ(ds.offload_param_device(), "nvme");
  EXPECT_EQ(ds.offload_param_nvme_path(), "/nvme");
  EXPECT_EQ(ds.gradient_accumulation_steps(), 2);
  EXPECT_EQ(ds.gradient_clipping(), "1.0");  // As written.
  EXPECT_TRUE(ds.zero3_init_flag());
  EXPECT_TRUE(ds.has_zero3_save_16bit_model());
  EXPECT_FALSE(ds.zero3_save_16bit_model());
  EXPECT_EQ(ds.deepspeed_multinode_launcher(), "standard");
  EXPECT_EQ(ds.deepspeed_hostfile(), "/etc/hostfile");
  EXPECT_FALSE(ds.has_deepspeed_config_file());
  EXPECT_THAT(loaded.unsupported_keys, IsEmpty());
  EXPECT_THAT(loaded.unknown_section_keys,
              ElementsAre("deepspeed_config.zero_future_option"));
  // Accelerate passes these on as they stand in the file, unknown included.
  EXPECT_THAT(loaded.deepspeed_config_keys,
              ElementsAre("deepspeed_hostfile", "deepspeed_multinode_launcher",
                          "gradient_accumulation_steps", "gradient_clipping",
                          "offload_optimizer_device", "offload_param_device",
                          "offload_param_nvme_path", "zero3_init_flag",
                          "zero3_save_16bit_model", "zero_stage",
                          "zero_future_option"));
  // Written back, Python reads the same values.
  ASSERT_OK_AND_ASSIGN(LoadedConfig again,
                       ParseConfig(ConfigToYaml(loaded.config), "again"));
  EXPECT_EQ(again.config.SerializeAsString(),
            loaded.config.SerializeAsString());
  EXPECT_THAT(ParseConfig("deepspeed_config:\n  zero_stage: two\n", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("deepspeed_config.zero_stage: \"two\" is not "
                                 "an integer")));
}

TEST(ConfigTest, UnknownTopLevelKeyIsAnErrorNamingIt) {
  EXPECT_THAT(ParseConfig("distributed_type: NO\nnum_procesess: 2\n", "my.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("my.yaml"),
                             HasSubstr("unknown key \"num_procesess\""),
                             HasSubstr("num_processes"))));
}

TEST(ConfigTest, UnknownSectionKeysAreListedNotFatal) {
  ASSERT_OK_AND_ASSIGN(
      LoadedConfig loaded,
      ParseConfig("fsdp_config:\n  fsdp_future_option: 3\n", "x"));
  EXPECT_THAT(loaded.unknown_section_keys,
              ElementsAre("fsdp_config.fsdp_future_option"));
}

TEST(ConfigTest, WrongTypesNameKeyAndValue) {
  EXPECT_THAT(ParseConfig("num_processes: two\n", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("num_processes: \"two\" is not an integer")));
  EXPECT_THAT(ParseConfig("use_cpu: maybe\n", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("use_cpu=\"maybe\"")));
  EXPECT_THAT(ParseConfig("fsdp_config: 3\n", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("fsdp_config: expected a mapping")));
  EXPECT_THAT(ParseConfig("num_processes: [1, 2]\n", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("num_processes: expected a single value")));
}

TEST(ConfigTest, MalformedYamlAndNonMappingAreErrors) {
  EXPECT_THAT(ParseConfig("a: [1, 2\n", "bad.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("bad.yaml: not valid YAML")));
  EXPECT_THAT(ParseConfig("- 1\n- 2\n", "list.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expected a mapping")));
}

TEST(ConfigTest, WrittenYamlReadsBackAndQuotesAmbiguousStrings) {
  ASSERT_OK_AND_ASSIGN(LoadedConfig loaded, ParseConfig(kRecentFsdp2, "x"));
  const std::string yaml = ConfigToYaml(loaded.config);
  EXPECT_THAT(yaml, HasSubstr("distributed_type: 'FSDP'"));
  EXPECT_THAT(yaml, HasSubstr("fsdp_version: 2"));
  // Keys come sorted, as Python's yaml.safe_dump writes them.
  EXPECT_LT(yaml.find("compute_environment"), yaml.find("use_cpu"));
  ASSERT_OK_AND_ASSIGN(LoadedConfig again, ParseConfig(yaml, "again"));
  EXPECT_EQ(again.config.SerializeAsString(),
            loaded.config.SerializeAsString());

  LaunchConfig no;
  no.set_mixed_precision("no");
  no.set_distributed_type("NO");
  EXPECT_THAT(ConfigToYaml(no), HasSubstr("mixed_precision: 'no'"));
}

TEST(ConfigTest, WriteConfigFileCreatesFoldersAndReplacesAtomically) {
  const std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/a/b";
  const std::string path = dir + "/default_config.yaml";
  LaunchConfig config;
  config.set_num_processes(3);
  ASSERT_OK(WriteConfigFile(config, path));
  config.set_num_processes(5);
  ASSERT_OK(WriteConfigFile(config, path));
  ASSERT_OK_AND_ASSIGN(LoadedConfig loaded, LoadConfigFile(path));
  EXPECT_EQ(loaded.config.num_processes(), 5);
  EXPECT_NE(::access((path + ".tmp." + std::to_string(::getpid())).c_str(),
                     F_OK),
            0);
}

TEST(ConfigTest, MissingFileIsNotFound) {
  EXPECT_THAT(LoadConfigFile("/nonexistent/config.yaml"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/nonexistent/config.yaml")));
}

using Vars = std::map<std::string, std::string>;

TEST(ConfigTest, DefaultPathFollowsHfHomeAndXdgCache) {
  EXPECT_EQ(DefaultConfigPath(state::MapEnvironment(Vars{{"HOME", "/home/u"}})),
            "/home/u/.cache/huggingface/accelerate/default_config.yaml");
  EXPECT_EQ(DefaultConfigPath(state::MapEnvironment(
                Vars{{"HOME", "/home/u"}, {"XDG_CACHE_HOME", "/xdg"}})),
            "/xdg/huggingface/accelerate/default_config.yaml");
  EXPECT_EQ(DefaultConfigPath(state::MapEnvironment(
                Vars{{"HOME", "/home/u"}, {"HF_HOME", "/hf"}})),
            "/hf/accelerate/default_config.yaml");
}

}  // namespace
}  // namespace accelerate::launch
