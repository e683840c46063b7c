// The `accelerate` subcommands besides `launch`, run through the binary:
// `config` (questions and `config default`), `env`, `test`, `checkpoint`
// (its behaviour is checkpoint_command_test's), and the helper commands
// (`plan-shards`, `merge-weights`, `estimate-memory`, `plan-device-map`)
// with the one flag parser and help format.

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "launch/launcher_testutil.h"
#include "testing/files.h"
#include "testing/subprocess.h"

namespace accelerate::launch {
namespace {

using ::accelerate::testing::PeerPython;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::Runfile;
using ::accelerate::testing::Subprocess;
using ::accelerate::testing::TestDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(CliTest, ConfigQuestionnaireWritesTheAnswers) {
  const std::string path = TestDir("config") + "/answers.yaml";
  // multi-CPU, 1 machine, debug yes, 4 processes, bf16.
  Subprocess process({"/bin/sh", "-c",
                      absl::StrCat("printf '1\\n1\\nyes\\n4\\nbf16\\n' | ",
                                   Accelerate(), " config --config_file ", path)},
                     {});
  ASSERT_TRUE(process.Start().ok());
  ProcessResult result = process.Wait(absl::Seconds(30));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("accelerate configuration saved at " + path));
  std::stringstream yaml;
  yaml << std::ifstream(path).rdbuf();
  EXPECT_THAT(yaml.str(), AllOf(HasSubstr("distributed_type: 'MULTI_CPU'"),
                                HasSubstr("num_processes: 4"),
                                HasSubstr("debug: true"),
                                HasSubstr("mixed_precision: 'bf16'"),
                                HasSubstr("use_cpu: true")));
  // The written file drives a launch.
  ProcessResult launched = RunAccelerate(
      {"launch", "--config_file", path, RankProgram(), "env"});
  ASSERT_EQ(launched.exit_code, 0) << launched.output;
  EXPECT_TRUE(HasLine(launched.output, "[rank3]: ENV WORLD_SIZE=4"));
  EXPECT_TRUE(HasLine(launched.output, "[rank3]: ENV ACCELERATE_DEBUG_MODE=true"));
  EXPECT_TRUE(HasLine(launched.output,
                      "[rank0]: ENV ACCELERATE_MIXED_PRECISION=bf16"));
}

TEST(CliTest, ConfigRejectsBadAnswersByName) {
  const std::string path = TestDir("config") + "/bad.yaml";
  Subprocess process({"/bin/sh", "-c",
                      absl::StrCat("printf 'quantum\\n' | ", Accelerate(),
                                   " config --config_file ", path)},
                     {});
  ASSERT_TRUE(process.Start().ok());
  ProcessResult result = process.Wait(absl::Seconds(30));
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.output, HasSubstr("got \"quantum\""));
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
}

TEST(CliTest, ConfigDefaultWritesOnceAndEnvReportsIt) {
  const std::string home = TestDir("default_home");
  ProcessResult first = RunAccelerate({"config", "default"}, {{"HF_HOME", home}});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_THAT(first.output, HasSubstr("saved at " + home +
                                      "/accelerate/default_config.yaml"));
  ProcessResult second = RunAccelerate({"config", "default"}, {{"HF_HOME", home}});
  EXPECT_THAT(second.output, HasSubstr("already exists"));
  ProcessResult env = RunAccelerate({"env"}, {{"HF_HOME", home}});
  ASSERT_EQ(env.exit_code, 0);
  EXPECT_THAT(env.output,
              AllOf(HasSubstr("- `accelerate-cpp` version: "),
                    HasSubstr("- Platform: Linux"),
                    HasSubstr("- LibTorch version (built against): 2.13"),
                    HasSubstr("- System RAM: "),
                    HasSubstr("- `Accelerate` default config:"),
                    HasSubstr("\t- distributed_type: NO"),
                    HasSubstr("\t- use_cpu: true"),
                    HasSubstr("- glibc malloc tuning for tensors: on\n")));
  ProcessResult untuned = RunAccelerate(
      {"env"}, {{"HF_HOME", home}, {"ACCELERATE_TUNE_MALLOC", "off"}});
  EXPECT_THAT(untuned.output,
              HasSubstr("- glibc malloc tuning for tensors: off "
                        "(ACCELERATE_TUNE_MALLOC=off)"));
}

TEST(CliTest, PlanShardsPrintsTheLibrarysPlan) {
  ProcessResult plan = RunAccelerate({"plan-shards", "--dataset_length=22",
                                      "--batch_size=3", "--num_processes=2"});
  ASSERT_EQ(plan.exit_code, 0) << plan.output;
  EXPECT_EQ(plan.output,
            "{\"ranks\": [[[0, 1, 2], [6, 7, 8], [12, 13, 14], [18, 19, 20]], "
            "[[3, 4, 5], [9, 10, 11], [15, 16, 17], [21, 0, 1]]]}\n");
  ProcessResult split = RunAccelerate(
      {"plan-shards", "--dataset_length=21", "--batch_size=4",
       "--num_processes=2", "--split_batches", "--even_batches=false",
       "--skip_batches=4"});
  ASSERT_EQ(split.exit_code, 0) << split.output;
  EXPECT_EQ(split.output,
            "{\"ranks\": [[[16, 17], [20]], [[18, 19]]]}\n");
  ProcessResult stream = RunAccelerate({"plan-shards", "--dataset_length=10",
                                        "--batch_size=2", "--num_processes=2",
                                        "--iterable"});
  ASSERT_EQ(stream.exit_code, 0) << stream.output;
  EXPECT_EQ(stream.output,
            "{\"ranks\": [[[0, 1], [4, 5], [8, 9]], [[2, 3], [6, 7], [0, 1]]]}\n");
  ProcessResult shuffled = RunAccelerate(
      {"plan-shards", "--dataset_length=10", "--batch_size=5",
       "--num_processes=2", "--shuffle", "--seed=42"});
  ASSERT_EQ(shuffled.exit_code, 0) << shuffled.output;
  // torch.randperm(10) with seed 42 (checked against Python torch in
  // //data:sampler_test): [2, 6, 1, 8, 4, 5, 0, 9, 3, 7].
  EXPECT_EQ(shuffled.output,
            "{\"ranks\": [[[2, 6, 1, 8, 4]], [[5, 0, 9, 3, 7]]]}\n");
  ProcessResult bad = RunAccelerate({"plan-shards", "--dataset_length=3",
                                     "--batch_size=1", "--num_processes=4"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("3 samples cannot give each of 4 processes"));
}

TEST(CliTest, MergeWeightsJoinsTheShards) {
  const std::string dir = TestDir("merge");
  // Two shards and an index, written by hand with the sample tool's files.
  const std::string tool = Runfile("bigmodel/safetensors_tool");
  for (const char* shard : {"a.safetensors", "b.safetensors"}) {
    Subprocess sample({tool, "sample", dir + "/" + shard}, {});
    ASSERT_TRUE(sample.Start().ok());
    ASSERT_EQ(sample.Wait(absl::Seconds(30)).exit_code, 0);
  }
  std::ofstream(dir + "/model.safetensors.index.json")
      << R"({"metadata": {}, "weight_map": {"f32": "a.safetensors", )"
      << R"("i64": "b.safetensors", "bool": "b.safetensors"}})";
  ProcessResult merged = RunAccelerate(
      {"merge-weights", dir, TestDir("merged") + "/one.safetensors"});
  ASSERT_EQ(merged.exit_code, 0) << merged.output;
  EXPECT_THAT(merged.output, HasSubstr("merged 3 tensors from 2 shard(s)"));
  Subprocess dump({tool, "dump", TestDir("merged") + "/one.safetensors"}, {});
  ASSERT_TRUE(dump.Start().ok());
  ProcessResult result = dump.Wait(absl::Seconds(30));
  EXPECT_THAT(result.output, AllOf(HasSubstr("f32 F32 [2,3] 0,0.25,0.5"),
                                   HasSubstr("i64 I64 [2] -7,9"),
                                   HasSubstr("bool BOOL [3] 1,0,1")));
  EXPECT_THAT(result.output, Not(HasSubstr("f64")));
  ProcessResult estimate = RunAccelerate(
      {"estimate-memory", TestDir("merged") + "/one.safetensors", "--dtypes",
       "float32", "int8"});
  ASSERT_EQ(estimate.exit_code, 0) << estimate.output;
  // f32 [2,3] + i64 [2] + bool [3]: 24 + 16 + 3 = 43 bytes; the largest
  // layer is f32's 24.
  EXPECT_THAT(estimate.output,
              AllOf(HasSubstr("Memory Usage for loading"),
                    HasSubstr("│float32│   24 bytes  │  43 bytes │"),
                    HasSubstr(" 172 bytes "), HasSubstr("│  int8 │  6.0 bytes  │10.75 bytes│"),
                    HasSubstr(" N/A ")));
  ProcessResult missing = RunAccelerate({"merge-weights", TestDir("nothing"), "x"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.output, HasSubstr("holds no weights"));
}

// pytorch_model.bin shards written by Python's torch.save (a transposed
// view, tied weights, bf16 and int64 among them), merged, read back by
// Python's safetensors: every tensor equal, nothing more.
TEST(CliTest, MergeWeightsJoinsPytorchModelBinShards) {
  const std::string dir = TestDir("merge_bin");
  constexpr char kWrite[] = R"PY(
import json, os, sys
import torch
torch.manual_seed(0)
wte = torch.randn(8, 4)
sd = {"wte.weight": wte,
      "proj.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
      "ln.weight": torch.randn(4).to(torch.bfloat16),
      "mask": torch.arange(5),
      "lm_head.weight": wte}
files = {"pytorch_model-00001-of-00002.bin": ["wte.weight", "proj.weight"],
         "pytorch_model-00002-of-00002.bin": ["ln.weight", "mask",
                                              "lm_head.weight"]}
for file, names in files.items():
    torch.save({n: sd[n] for n in names}, os.path.join(sys.argv[1], file))
with open(os.path.join(sys.argv[1], "pytorch_model.bin.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": {n: file for file, names in
                                              files.items() for n in names}}, f)
torch.save(sd, sys.argv[2])
)PY";
  constexpr char kCheck[] = R"PY(
import sys
import torch
from safetensors.torch import load_file
merged = load_file(sys.argv[1])
expected = torch.load(sys.argv[2])
assert sorted(merged) == sorted(expected), (sorted(merged), sorted(expected))
for name, tensor in expected.items():
    assert merged[name].dtype == tensor.dtype, name
    assert torch.equal(merged[name], tensor), name
print("all", len(merged), "equal")
)PY";
  const std::string expected = TestDir("merge_bin_expected") + "/all.pt";
  Subprocess write({PeerPython(), "-c", kWrite, dir, expected}, {});
  ASSERT_TRUE(write.Start().ok());
  ProcessResult written = write.Wait(absl::Seconds(120));
  ASSERT_EQ(written.exit_code, 0) << written.output;

  const std::string output = TestDir("merged_bin");
  ProcessResult merged = RunAccelerate({"merge-weights", dir, output});
  ASSERT_EQ(merged.exit_code, 0) << merged.output;
  EXPECT_THAT(merged.output, HasSubstr("merged 5 tensors from 2 shard(s)"));
  Subprocess check(
      {PeerPython(), "-c", kCheck, output + "/model.safetensors", expected}, {});
  ASSERT_TRUE(check.Start().ok());
  ProcessResult checked = check.Wait(absl::Seconds(120));
  EXPECT_EQ(checked.exit_code, 0) << checked.output;
  EXPECT_THAT(checked.output, HasSubstr("all 5 equal"));
}

// A module tree (JSON) of float32 leaves named a, b, c, ... with these
// element counts.
std::string LeavesTree(const std::vector<int>& floats) {
  std::string children;
  for (size_t i = 0; i < floats.size(); ++i) {
    absl::StrAppend(&children, i ? ", " : "", R"({"name": ")",
                    std::string(1, static_cast<char>('a' + i)),
                    R"(", "class": "Linear", "params": [{"name": "weight", )",
                    R"("shape": [)", floats[i],
                    R"(], "dtype": "float32"}], "buffers": [], "children": []})");
  }
  return absl::StrCat(
      R"({"name": "", "class": "Net", "params": [], "buffers": [], "children": [)",
      children, "]}");
}

TEST(CliTest, PlanDeviceMapPlacesAModuleTree) {
  const std::string path = TestDir("tree") + "/model.json";
  std::ofstream(path) << LeavesTree({100, 100, 100});
  // GPU 0 keeps 400 bytes for the largest layer, so only a fits; GPU 1 is
  // not a main device and takes the rest.
  ProcessResult result =
      RunAccelerate({"plan-device-map", path, "--max_memory", "0=1000,1=800"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output,
              HasSubstr(R"({"device_map": {"a": 0, "b": 1, "c": 1}})"));
  result = RunAccelerate({"plan-device-map", path, "--max_memory",
                          "0=1000,1=800", "--dtype", "float16"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr(R"({"device_map": {"": 0}})"));
  // Balanced over the two GPUs: GPU 0 keeps 1200 / 2 + 1.25 x 400 = 1100,
  // 400 of it for the largest layer: only a fits there.
  result = RunAccelerate({"plan-device-map", path, "--max_memory", "0=5000,1=5000",
                          "--device_map", "balanced"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr(R"({"device_map": {"a": 0, "b": 1, "c": 1}})"));
  result = RunAccelerate({"plan-device-map", path, "--max_memory", "0=5000", "--device_map",
                          "even"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.output, HasSubstr("--device_map \"even\""));
  ProcessResult bad =
      RunAccelerate({"plan-device-map", path, "--max_memory", "0=lots"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("\"lots\""));
  // GPU 0 keeps 400 of its 500 bytes for the largest layer: a does not
  // fit, and without a fallback nothing goes there (a needed its 400 bytes
  // plus the 400 kept); with one, the small c does.
  const std::string uneven = TestDir("uneven") + "/model.json";
  std::ofstream(uneven) << LeavesTree({100, 100, 10});
  result = RunAccelerate({"plan-device-map", uneven, "--max_memory", "0=500"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr(R"({"device_map": {"": "disk"}})"));
  EXPECT_THAT(result.output, HasSubstr("0: 800 bytes required"));
  result = RunAccelerate({"plan-device-map", uneven, "--max_memory", "0=500",
                          "--fallback_allocation", "--offload_buffers"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output,
              HasSubstr(R"({"device_map": {"c": 0, "a": "disk", "b": "disk"}})"));
  // No budgets given: what is free now (no GPU selected here: the CPU's
  // MemAvailable holds the 1200 bytes), said on stderr.
  ProcessResult free_now = RunAccelerate({"plan-device-map", path},
                                         {{"CUDA_VISIBLE_DEVICES", ""}});
  ASSERT_EQ(free_now.exit_code, 0) << free_now.output;
  EXPECT_THAT(free_now.output, HasSubstr(R"({"device_map": {"": "cpu"}})"));
  EXPECT_THAT(free_now.output, HasSubstr("planning with what is free now: cpu="));
  ProcessResult mig = RunAccelerate({"plan-device-map", path},
                                    {{"CUDA_VISIBLE_DEVICES", "MIG-5"}});
  EXPECT_EQ(mig.exit_code, 2);
  EXPECT_THAT(mig.output, HasSubstr("\"MIG-5\""));
}

TEST(CliTest, HelperCommandsTakeTheUsersPathsUnderBazelRun) {
  const std::string user = TestDir("helper_user_folder");
  std::ofstream(user + "/model.json") << LeavesTree({100, 100, 100});
  ProcessResult planned = RunAccelerateAsBazelRun(
      TestDir("helper_runfiles_like"), user,
      {"plan-device-map", "model.json", "--max_memory=cpu=1GB"});
  ASSERT_EQ(planned.exit_code, 0) << planned.output;
  EXPECT_THAT(planned.output, HasSubstr(R"({"device_map": {"": "cpu"}})"));
}

TEST(CliTest, HelperCommandsTakeEitherFlagSpellingAndNameUnknownFlags) {
  const std::string path = TestDir("spellings") + "/model.json";
  std::ofstream(path) << LeavesTree({100, 100, 100});
  // --flag=value whose value holds '=' signs, as argparse takes it.
  ProcessResult result =
      RunAccelerate({"plan-device-map", path, "--max_memory=cpu=1GB"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr(R"({"device_map": {"": "cpu"}})"));
  // Flags before the model, hyphenated names, both spellings mixed.
  result = RunAccelerate({"plan-device-map", "--max-memory", "cpu=1GB",
                          "--device-map=sequential", path});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr(R"({"device_map": {"": "cpu"}})"));
  result = RunAccelerate({"plan-device-map", path, "--max_memory=0=1000",
                          "--max_memroy", "1=800"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.output, HasSubstr("unknown flag --max_memroy"));
  result = RunAccelerate({"plan-device-map", "--max_memory=0=1000"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.output, HasSubstr("missing MODEL"));

  ProcessResult shards =
      RunAccelerate({"plan-shards", "--dataset-length", "4", "--batch_size=2",
                     "--num_processes", "2", "--even-batches=false"});
  ASSERT_EQ(shards.exit_code, 0) << shards.output;
  EXPECT_EQ(shards.output, "{\"ranks\": [[[0, 1]], [[2, 3]]]}\n");
  shards = RunAccelerate({"plan-shards", "--dataset_length=4", "--batchsize=2"});
  EXPECT_EQ(shards.exit_code, 2);
  EXPECT_THAT(shards.output, HasSubstr("unknown flag --batchsize"));

  ProcessResult merge = RunAccelerate({"merge-weights", "--unsafe", "a", "b"});
  EXPECT_EQ(merge.exit_code, 2);
  EXPECT_THAT(merge.output, HasSubstr("unknown flag --unsafe"));
  ProcessResult estimate =
      RunAccelerate({"estimate-memory", "x.safetensors", "--dtypes", "int3"});
  EXPECT_EQ(estimate.exit_code, 2);
  EXPECT_THAT(estimate.output, HasSubstr("--dtypes \"int3\" is not one of"));
}

TEST(CliTest, EveryCommandHasTheSameHelpFormat) {
  for (const char* command :
       {"launch", "config", "env", "test", "checkpoint", "plan-shards",
        "estimate-memory", "merge-weights", "plan-device-map"}) {
    ProcessResult result = RunAccelerate({command, "--help"});
    EXPECT_EQ(result.exit_code, 0) << command << result.output;
    EXPECT_THAT(result.output,
                AllOf(HasSubstr(absl::StrCat("usage: accelerate ", command,
                                             " [flags]")),
                      HasSubstr("-h, --help")))
        << command;
  }
  ProcessResult help = RunAccelerate({"plan-device-map", "--help"});
  EXPECT_THAT(help.output,
              AllOf(HasSubstr("usage: accelerate plan-device-map [flags] "
                              "MODEL"),
                    HasSubstr("--max_memory DEVICE=SIZE,..."),
                    HasSubstr("--no_split_module_classes CLASS [...]")));
}

TEST(CliTest, TestCommandRunsTheSelfCheck) {
  ProcessResult result = RunAccelerate({"test"}, {}, absl::Seconds(120));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output,
              AllOf(HasSubstr("[rank0]: PASS gather"),
                    HasSubstr("[rank1]: PASS reduce mean"),
                    HasSubstr("Test is a success!")));
}

}  // namespace
}  // namespace accelerate::launch
