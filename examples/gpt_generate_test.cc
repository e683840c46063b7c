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

ProcessResult Generate(std::vector<std::string> flags) {
  std::vector<std::string> argv = {Runfile("examples/gpt_generate"),
                                   "--checkpoint=" + Checkpoint(),
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
    EXPECT_THAT(result.output, HasSubstr("placed on disk"));
    const auto summary = Summary(result);
    EXPECT_GT(Number(summary, "offloaded_fraction"), 0.5);
    EXPECT_EQ(Tokens(summary), Tokens(expected));
    EXPECT_EQ(Number(summary, "last_logits_abs_sum"),
              Number(expected, "last_logits_abs_sum"));
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

// The Python twin (Python torch, the same checkpoint and device map, loaded
// and offloaded by Accelerate 1.15's load_checkpoint_and_dispatch) generates
// the same tokens with the same logits: the C++ model is GPT-2's
// architecture, and offloading changes nothing.
TEST_F(GptGenerateTest, PythonTwinAgrees) {
  ASSERT_EQ(in_memory_->exit_code, 0) << in_memory_->output;
  const std::string map =
      TestPath("device_map.json");
  ProcessResult ours = Generate(
      {"--max_memory=cpu=400KB", "--device_map_out=" + map, "--prompt=Hello"});
  ASSERT_EQ(ours.exit_code, 0) << ours.output;
  Subprocess python(
      {PeerPython(), Runfile("examples/gpt_generate_peer.py"),
       Checkpoint(), map, "6", "Hello"},
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

TEST_F(GptGenerateTest, BadBudgetIsNamed) {
  ProcessResult result = Generate({"--max_memory=cpu=lots"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.output, HasSubstr("lots"));
}

}  // namespace
}  // namespace accelerate
