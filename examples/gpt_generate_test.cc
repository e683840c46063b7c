// The Big Model Inference example end to end, as separate processes: the
// same tokens and logits whether the weights are all in memory or mostly
// on disk, with and without prefetching, and through an offload folder.

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "testing/files.h"
#include "testing/subprocess.h"

namespace accelerate {
namespace {

using ::accelerate::testing::PeerPython;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::Runfile;
using ::accelerate::testing::Subprocess;
using ::accelerate::testing::TestPath;
using ::testing::HasSubstr;

std::string Checkpoint() {
  return TestPath("gpt");
}

ProcessResult Generate(std::vector<std::string> flags,
                       const std::string& checkpoint = Checkpoint()) {
  std::vector<std::string> argv = {Runfile("examples/gpt_generate"),
                                   "--checkpoint=" + checkpoint,
                                   "--n_embd=64",
                                   "--n_layer=6",
                                   "--n_head=4",
                                   "--max_new_tokens=6"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  Subprocess child(argv, {});
  EXPECT_TRUE(child.Start().ok());
  return child.Wait(absl::Seconds(120));
}

// The example's last line.
google::protobuf::Struct Summary(const ProcessResult& result) {
  std::string output = result.output;
  while (!output.empty() && output.back() == '\n') output.pop_back();
  const size_t newline = output.rfind('\n');
  const std::string last =
      newline == std::string::npos ? output : output.substr(newline + 1);
  google::protobuf::Struct summary;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(last, &summary).ok())
      << output;
  return summary;
}

double Number(const google::protobuf::Struct& summary, const std::string& key) {
  auto it = summary.fields().find(key);
  EXPECT_NE(it, summary.fields().end()) << key;
  return it == summary.fields().end() ? -1 : it->second.number_value();
}

std::string Tokens(const google::protobuf::Struct& summary) {
  std::string tokens;
  auto it = summary.fields().find("tokens");
  if (it == summary.fields().end()) return tokens;
  for (const auto& token : it->second.list_value().values()) {
    absl::StrAppend(&tokens, token.number_value(), " ");
  }
  return tokens;
}

// Checks a run with most weights on disk against `expected` (the run with
// everything in memory): the same tokens, to the same logits. Returns the
// run's summary. REQUIRES: the run succeeded.
google::protobuf::Struct ExpectMostlyOnDiskAndTheSame(
    const ProcessResult& result, const google::protobuf::Struct& expected) {
  EXPECT_THAT(result.output, HasSubstr("placed on disk"));
  google::protobuf::Struct summary = Summary(result);
  EXPECT_GT(Number(summary, "offloaded_fraction"), 0.5);
  EXPECT_EQ(Tokens(summary), Tokens(expected));
  EXPECT_EQ(Number(summary, "last_logits_abs_sum"),
            Number(expected, "last_logits_abs_sum"));
  return summary;
}

// Runs ours on `checkpoint` with most weights on disk, then the Python twin
// (Python torch, the same checkpoint and our device map, loaded and
// offloaded by Accelerate 1.15's load_checkpoint_and_dispatch): the same
// tokens with the same logits.
void ExpectPythonTwinAgrees(const std::string& checkpoint,
                            const std::string& map) {
  ProcessResult ours = Generate(
      {"--max_memory=cpu=400KB", "--device_map_out=" + map, "--prompt=Hello"},
      checkpoint);
  ASSERT_EQ(ours.exit_code, 0) << ours.output;
  Subprocess python({PeerPython(), Runfile("examples/gpt_generate_peer.py"),
                     checkpoint, map, "6", "Hello"},
                    {});
  ASSERT_TRUE(python.Start().ok());
  ProcessResult theirs = python.Wait(absl::Seconds(120));
  ASSERT_EQ(theirs.exit_code, 0) << theirs.output;
  const auto expected = Summary(ours);
  const auto actual = Summary(theirs);
  EXPECT_EQ(Tokens(actual), Tokens(expected));
  EXPECT_FALSE(Tokens(actual).empty());
  const double sum = Number(expected, "last_logits_abs_sum");
  EXPECT_NEAR(Number(actual, "last_logits_abs_sum"), sum, 1e-9 * sum);
}

class GptGenerateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::filesystem::remove_all(Checkpoint());
    // Writes the checkpoint, then generates with everything in memory.
    in_memory_ = new ProcessResult(Generate({}));
  }
  static void TearDownTestSuite() { delete in_memory_; }
  static ProcessResult* in_memory_;
};

ProcessResult* GptGenerateTest::in_memory_ = nullptr;

TEST_F(GptGenerateTest, WritesAShardedCheckpointAndGenerates) {
  ASSERT_EQ(in_memory_->exit_code, 0) << in_memory_->output;
  EXPECT_TRUE(
      std::filesystem::exists(Checkpoint() + "/model.safetensors.index.json"));
  EXPECT_TRUE(std::filesystem::exists(Checkpoint() + "/config.json"));
  const auto summary = Summary(*in_memory_);
  EXPECT_EQ(Number(summary, "offloaded_fraction"), 0);
  EXPECT_EQ(Number(summary, "loads"), 0);
  EXPECT_EQ(summary.fields().at("tokens").list_value().values_size(), 6);
  // The progress bar's last line (the output is a pipe).
  EXPECT_THAT(in_memory_->output, HasSubstr("weights: 100%"));
}

TEST_F(GptGenerateTest, MostlyOnDiskGivesTheSameTokensAndLogits) {
  ASSERT_EQ(in_memory_->exit_code, 0) << in_memory_->output;
  const auto expected = Summary(*in_memory_);
  for (const char* prefetch : {"--prefetch=true", "--prefetch=false"}) {
    SCOPED_TRACE(prefetch);
    ProcessResult result = Generate({"--max_memory=cpu=400KB", prefetch});
    ASSERT_EQ(result.exit_code, 0) << result.output;
    const auto summary = ExpectMostlyOnDiskAndTheSame(result, expected);
    EXPECT_GT(Number(summary, "loads"), 6 * 6);
    if (std::string(prefetch) == "--prefetch=true") {
      EXPECT_GT(Number(summary, "prefetch_hits"), Number(summary, "loads") / 2);
    } else {
      EXPECT_EQ(Number(summary, "prefetch_hits"), 0);
    }
  }
}

TEST_F(GptGenerateTest, OffloadFolderIsWrittenAndUsed) {
  ASSERT_EQ(in_memory_->exit_code, 0) << in_memory_->output;
  const std::string folder =
      TestPath("offload");
  ProcessResult result =
      Generate({"--max_memory=cpu=400KB", "--offload_folder=" + folder});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(std::filesystem::exists(folder + "/index.json"));
  EXPECT_EQ(Tokens(Summary(result)), Tokens(Summary(*in_memory_)));
}

// The Python twin generates the same tokens with the same logits: the C++
// model is GPT-2's architecture, and offloading changes nothing.
TEST_F(GptGenerateTest, PythonTwinAgrees) {
  ASSERT_EQ(in_memory_->exit_code, 0) << in_memory_->output;
  ExpectPythonTwinAgrees(Checkpoint(), TestPath("device_map.json"));
}

// Rewrites the safetensors checkpoint in `src` as transformers'
// `save_pretrained(..., safe_serialization=False)` would have written it
// (`pytorch_model-0000i-of-0000N.bin` shards of `torch.save`d dicts and
// `pytorch_model.bin.index.json`) in `dst`, with the real Python's torch.
constexpr char kToPytorchModelBin[] = R"PY(
import json, os, shutil, sys
import torch
from safetensors.torch import load_file
src, dst = sys.argv[1:3]
os.makedirs(dst, exist_ok=True)
shutil.copy(os.path.join(src, "config.json"), dst)
index = json.load(open(os.path.join(src, "model.safetensors.index.json")))
files = sorted(set(index["weight_map"].values()))
weight_map = {}
for i, f in enumerate(files):
    shard = f"pytorch_model-{i + 1:05d}-of-{len(files):05d}.bin"
    tensors = load_file(os.path.join(src, f))
    torch.save(tensors, os.path.join(dst, shard))
    weight_map.update({name: shard for name in tensors})
with open(os.path.join(dst, "pytorch_model.bin.index.json"), "w") as out:
    json.dump({"metadata": {}, "weight_map": weight_map}, out)
)PY";

// The same model from `pytorch_model.bin` shards (mostly on disk, read in
// place from their mapping or through an offload folder of .dat files)
// generates the same tokens with the same logits, and so does the Python
// twin from those shards.
TEST_F(GptGenerateTest, PytorchModelBinShardsGiveTheSameTokens) {
  ASSERT_EQ(in_memory_->exit_code, 0) << in_memory_->output;
  const std::string bin = TestPath("gpt_bin");
  std::filesystem::remove_all(bin);
  Subprocess convert(
      {PeerPython(), "-c", kToPytorchModelBin, Checkpoint(), bin}, {});
  ASSERT_TRUE(convert.Start().ok());
  ProcessResult converted = convert.Wait(absl::Seconds(120));
  ASSERT_EQ(converted.exit_code, 0) << converted.output;
  ASSERT_TRUE(std::filesystem::exists(bin + "/pytorch_model.bin.index.json"));
  const auto expected = Summary(*in_memory_);
  const std::string map = TestPath("bin_device_map.json");
  const std::string folder = TestPath("bin_offload");
  std::filesystem::remove_all(folder);
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--max_memory=cpu=400KB",
                                 "--device_map_out=" + map},
        std::vector<std::string>{"--max_memory=cpu=400KB",
                                 "--offload_folder=" + folder}}) {
    SCOPED_TRACE(flags.back());
    ProcessResult result = Generate(flags, bin);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    ExpectMostlyOnDiskAndTheSame(result, expected);
  }
  // No pointers into a pickle archive: the disk weights became .dat files.
  bool has_dat = false;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    has_dat |= entry.path().extension() == ".dat";
  }
  EXPECT_TRUE(has_dat);

  ExpectPythonTwinAgrees(bin, map);
}

TEST_F(GptGenerateTest, BadBudgetIsNamed) {
  ProcessResult result = Generate({"--max_memory=cpu=lots"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.output, HasSubstr("lots"));
}

}  // namespace
}  // namespace accelerate
