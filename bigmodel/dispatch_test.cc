// Tests of LoadCheckpointAndDispatch and offloaded execution on a small
// language model: placement, prefetch, the offload folder, bad input, and
// peak memory.

#include "bigmodel/dispatch.h"

#include <dirent.h>
#include <malloc.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bigmodel/device.h"
#include "bigmodel/dispatch_testutil.h"
#include "bigmodel/empty_weights.h"
#include "bigmodel/offload.h"
#include "bigmodel/safetensors.h"
#include "gtest/gtest.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TensorsClose;
using ::testing::HasSubstr;

using BlockImpl = TinyBlockImpl;

class DispatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshTestDir(absl::StrCat(
        "dispatch_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::create_directories(dir_ + "/ckpt");
    reference_ = RandomTinyLm(kVocab, kWidth, kDepth, /*seed=*/7);
    ASSERT_OK(SaveTinyLm(reference_, dir_ + "/ckpt", 40'000));
    tokens_ = torch::randint(kVocab, {2, 5});
    expected_ = reference_->forward(tokens_);
  }

  TinyLm EmptyModel() { return EmptyTinyLm(kVocab, kWidth, kDepth); }

  static constexpr int64_t kVocab = 50, kWidth = 16, kDepth = 4;
  std::string dir_;
  TinyLm reference_{nullptr};
  at::Tensor tokens_;
  at::Tensor expected_;
};

constexpr ::accelerate::testing::Tolerance kExact{.rtol = 0, .atol = 1e-6};

TEST_F(DispatchTest, LoadsAnEmptyModelOnTheCpu) {
  TinyLm model = EmptyModel();
  int64_t last_done = 0, total = 0;
  ASSERT_OK_AND_ASSIGN(
      auto dispatched,
      LoadCheckpointAndDispatch(*model, dir_ + "/ckpt", {{"", "cpu"}},
                                {.progress = [&](int64_t done, int64_t all) {
                                  EXPECT_EQ(done, last_done + 1);
                                  last_done = done;
                                  total = all;
                                }}));
  EXPECT_TRUE(MetaTensorNames(*model).empty());
  EXPECT_TRUE(dispatched->offloaded().empty());
  EXPECT_EQ(total, 1 + kDepth * 6 + 2);
  EXPECT_EQ(last_done, total);
  EXPECT_TRUE(dispatched->execution_device().is_cpu());
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(TensorsClose(model->forward(tokens_), expected_, kExact));
}

TEST_F(DispatchTest, DiskOffloadedModelComputesTheSame) {
  TinyLm model = EmptyModel();
  ASSERT_OK_AND_ASSIGN(auto dispatched,
                       LoadCheckpointAndDispatch(*model, dir_ + "/ckpt",
                                                 {{"embed", "cpu"},
                                                  {"blocks.0", "cpu"},
                                                  {"blocks.1", "disk"},
                                                  {"blocks.2", "disk"},
                                                  {"blocks.3", "disk"},
                                                  {"norm", "disk"}}));
  // Offloaded weights are placeholders until used.
  EXPECT_EQ(dispatched->offloaded().size(), 3u * 6 + 2);
  EXPECT_EQ(model->blocks[1]->as<BlockImpl>()->up->weight.device().type(),
            c10::kPrivateUse1);
  EXPECT_TRUE(model->embed->weight.is_cpu());
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(TensorsClose(model->forward(tokens_), expected_, kExact));
  // Only the module used last is still loaded.
  EXPECT_EQ(model->blocks[1]->as<BlockImpl>()->up->weight.device().type(),
            c10::kPrivateUse1);
  const DispatchStats first = dispatched->stats();
  // Modules with weights on disk: norm, up and down of 3 blocks, final norm.
  EXPECT_EQ(first.loads, 3 * 3 + 1);
  EXPECT_EQ(first.releases, first.loads - 1);

  // The second pass knows the order and prepares each module ahead.
  EXPECT_TRUE(TensorsClose(model->forward(tokens_), expected_, kExact));
  const DispatchStats second = dispatched->stats();
  EXPECT_EQ(second.loads - first.loads, 3 * 3 + 1);
  EXPECT_GE(second.prefetch_hits - first.prefetch_hits, 3 * 3);
  dispatched->Release();
  EXPECT_EQ(model->norm->weight.device().type(), c10::kPrivateUse1);
}

TEST_F(DispatchTest, InfersTheMapFromFreeMemoryOrTheBudgetsGiven) {
  TinyLm model = EmptyModel();
  // This machine's free memory holds the tiny model whole: on the CPU (on
  // GPU 0 where there is one).
  ASSERT_OK_AND_ASSIGN(DeviceMap whole, InferDeviceMap(*model));
  ASSERT_EQ(whole.size(), 1u);
  EXPECT_EQ(whole[0].first, "");
  EXPECT_TRUE(whole[0].second.is_gpu() || whole[0].second == Device::Cpu());

  // A CPU budget for about half of it: the rest goes to disk (the
  // checkpoint's own bytes), and the model computes the same.
  int64_t total = 0;
  for (const auto& p : reference_->parameters()) total += p.nbytes();
  ASSERT_OK_AND_ASSIGN(
      DeviceMap half,
      InferDeviceMap(*model, "sequential",
                     {.max_memory = {{Device::Cpu(), total / 2}}}));
  bool on_disk = false;
  for (const auto& [name, device] : half) on_disk |= device == Device::Disk();
  EXPECT_TRUE(on_disk) << DeviceMapToJson(half);
  ASSERT_OK_AND_ASSIGN(auto dispatched,
                       LoadCheckpointAndDispatch(*model, dir_ + "/ckpt", half));
  EXPECT_FALSE(dispatched->offloaded().empty());
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(TensorsClose(model->forward(tokens_), expected_, kExact));

  EXPECT_THAT(InferDeviceMap(*EmptyModel(), "everywhere"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("everywhere")));
}

TEST_F(DispatchTest, AWiderPrefetchWindowPreparesSeveralModulesAhead) {
  TinyLm model = EmptyModel();
  ASSERT_OK_AND_ASSIGN(
      auto dispatched,
      LoadCheckpointAndDispatch(*model, dir_ + "/ckpt", {{"", "disk"}},
                                {.prefetch_bytes = 1 << 20}));
  torch::NoGradGuard no_grad;
  for (int pass = 0; pass < 3; ++pass) {
    EXPECT_TRUE(TensorsClose(model->forward(tokens_), expected_, kExact));
  }
  const DispatchStats stats = dispatched->stats();
  // Only the first pass's two uses of the embedding could not be foreseen:
  // the first of all, and the output layer, which comes after the last
  // registered module.
  EXPECT_EQ(stats.prefetch_hits, stats.loads - 2);
  dispatched->Release();
  EXPECT_TRUE(TensorsClose(model->forward(tokens_), expected_, kExact));
}

TEST_F(DispatchTest, WithoutPrefetchNothingIsPreparedAhead) {
  TinyLm model = EmptyModel();
  ASSERT_OK_AND_ASSIGN(
      auto dispatched,
      LoadCheckpointAndDispatch(*model, dir_ + "/ckpt", {{"", "disk"}},
                                {.prefetch = false}));
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(TensorsClose(model->forward(tokens_), expected_, kExact));
  EXPECT_TRUE(TensorsClose(model->forward(tokens_), expected_, kExact));
  EXPECT_EQ(dispatched->stats().prefetch_hits, 0);
  // The tied embedding is loaded twice per pass (input and output), but the
  // second pass starts with it still loaded from the end of the first.
  EXPECT_EQ(dispatched->stats().loads, 2 * (2 + 3 * kDepth + 1) - 1);
}

TEST_F(DispatchTest, OffloadFolderPointsIntoTheCheckpoint) {
  TinyLm model = EmptyModel();
  const std::string folder = dir_ + "/offload";
  ASSERT_OK_AND_ASSIGN(
      auto dispatched,
      LoadCheckpointAndDispatch(
          *model, dir_ + "/ckpt",
          {{"embed", "cpu"}, {"blocks", "disk"}, {"norm", "cpu"}},
          {.offload_folder = folder}));
  std::ifstream index_file(folder + "/index.json");
  std::string index((std::istreambuf_iterator<char>(index_file)),
                    std::istreambuf_iterator<char>());
  EXPECT_THAT(index, HasSubstr("\"blocks.2.up.weight\""));
  EXPECT_THAT(index, HasSubstr("safetensors_file"));
  EXPECT_THAT(index, ::testing::Not(HasSubstr("\"embed.weight\"")));
  int dat_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    dat_files += entry.path().extension() == ".dat";
  }
  EXPECT_EQ(dat_files, 0);
  ASSERT_OK_AND_ASSIGN(auto weights, OffloadedWeights::Open(folder));
  EXPECT_EQ(weights->names().size(), static_cast<size_t>(kDepth * 6));
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(TensorsClose(model->forward(tokens_), expected_, kExact));
}

TEST_F(DispatchTest, ConvertedDiskWeightsAreWrittenToTheFolder) {
  TinyLm model = EmptyModel();
  const DeviceMap map = {{"embed", "cpu"},     {"blocks.0", "cpu"},
                         {"blocks.1", "disk"}, {"blocks.2", "disk"},
                         {"blocks.3", "disk"}, {"norm", "cpu"}};
  EXPECT_THAT(LoadCheckpointAndDispatch(*model, dir_ + "/ckpt", map,
                                        {.dtype = at::kDouble}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("offload_folder")));
  EXPECT_EQ(MetaTensorNames(*model).size(), 1u + kDepth * 6 + 2);

  const std::string folder = dir_ + "/offload";
  ASSERT_OK_AND_ASSIGN(auto dispatched,
                       LoadCheckpointAndDispatch(
                           *model, dir_ + "/ckpt", map,
                           {.offload_folder = folder, .dtype = at::kDouble}));
  EXPECT_TRUE(std::filesystem::exists(folder + "/blocks.2.down.bias.dat"));
  EXPECT_EQ(std::filesystem::file_size(folder + "/blocks.2.down.bias.dat"),
            kWidth * sizeof(double));
  EXPECT_EQ(model->embed->weight.scalar_type(), at::kDouble);
  torch::NoGradGuard no_grad;
  reference_->to(at::kDouble);
  EXPECT_TRUE(TensorsClose(model->forward(tokens_),
                           reference_->forward(tokens_), kExact));
}

TEST_F(DispatchTest, BadInputNamesTheProblemAndChangesNothing) {
  TinyLm model = EmptyModel();
  const std::string ckpt = dir_ + "/ckpt";
  // An unknown device ("tpu") cannot be in a DeviceMap: Device::Parse
  // refuses it (device_test).
  EXPECT_THAT(LoadCheckpointAndDispatch(*model, ckpt,
                                        {{"embed", "cpu"}, {"blocks", "cpu"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"norm.weight\"")));
  EXPECT_THAT(
      LoadCheckpointAndDispatch(*model, ckpt, {{"", "0"}}),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("GPU 0")));
  EXPECT_THAT(
      LoadCheckpointAndDispatch(
          *model, ckpt, {{"embed", "cpu"}, {"blocks", "1"}, {"norm", "0"}}),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("GPU 1")));
  EXPECT_THAT(LoadCheckpointAndDispatch(*model, dir_ + "/none", {{"", "cpu"}}),
              StatusIs(absl::StatusCode::kNotFound));

  // A wider model: every shape differs.
  TinyLm wider{nullptr};
  {
    InitEmptyWeights scope;
    wider = TinyLm(kVocab, kWidth + 1, kDepth);
  }
  EXPECT_THAT(
      LoadCheckpointAndDispatch(*wider, ckpt, {{"", "cpu"}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[50, 16]")));
  // A deeper model: the checkpoint lacks blocks.4.
  TinyLm deeper{nullptr};
  {
    InitEmptyWeights scope;
    deeper = TinyLm(kVocab, kWidth, kDepth + 1);
  }
  EXPECT_THAT(
      LoadCheckpointAndDispatch(*deeper, ckpt, {{"", "cpu"}}),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("blocks.4.norm.weight")));
  EXPECT_EQ(MetaTensorNames(*model).size(), 1u + kDepth * 6 + 2);
  EXPECT_EQ(MetaTensorNames(*wider).size(), 1u + kDepth * 6 + 2);

  // A shallower model: the extra checkpoint tensors are reported.
  TinyLm shallower{nullptr};
  {
    InitEmptyWeights scope;
    shallower = TinyLm(kVocab, kWidth, kDepth - 1);
  }
  ASSERT_OK_AND_ASSIGN(auto dispatched, LoadCheckpointAndDispatch(
                                            *shallower, ckpt, {{"", "cpu"}}));
  EXPECT_EQ(dispatched->unexpected_keys().size(), 6u);
  EXPECT_THAT(dispatched->unexpected_keys()[0], HasSubstr("blocks.3."));
}

// One operation on a loaded weight and an unloaded one of another module:
// both stay loaded while it runs.
TEST_F(DispatchTest, AnOperationMayMixLoadedAndUnloadedWeights) {
  TinyLm model = EmptyModel();
  ASSERT_OK_AND_ASSIGN(
      auto dispatched,
      LoadCheckpointAndDispatch(*model, dir_ + "/ckpt", {{"", "disk"}}));
  torch::NoGradGuard no_grad;
  const at::Tensor& first = model->blocks[0]->as<BlockImpl>()->up->weight;
  const at::Tensor& second = model->blocks[1]->as<BlockImpl>()->up->weight;
  EXPECT_TRUE(first.sum().defined());  // Loads blocks.0.up.
  ASSERT_TRUE(first.is_cpu());
  ASSERT_EQ(second.device().type(), c10::kPrivateUse1);
  at::Tensor both = torch::cat({first, second});
  EXPECT_TRUE(TensorsClose(
      both,
      torch::cat({reference_->blocks[0]->as<BlockImpl>()->up->weight,
                  reference_->blocks[1]->as<BlockImpl>()->up->weight}),
      kExact));
}

// A file whose tensors start at odd addresses cannot be aliased: those
// weights are copies, which must never be handed back as if they were
// file pages (that would zero them).
TEST_F(DispatchTest, UnalignedCheckpointsAreCopiedAndStayIntact) {
  // Wide enough for whole pages inside each copy (1 MiB weights).
  torch::manual_seed(5);
  TinyLm wide(kVocab, 256, 2);
  std::string header = "{";
  std::string data;
  for (const auto& item : wide->named_parameters()) {
    const at::Tensor tensor = item.value().detach().contiguous();
    absl::StrAppend(&header, header.size() > 1 ? "," : "", "\"", item.key(),
                    "\":{\"dtype\":\"F32\",\"shape\":[",
                    absl::StrJoin(tensor.sizes(), ","), "],\"data_offsets\":[",
                    data.size(), ",", data.size() + tensor.nbytes(), "]}");
    data.append(static_cast<const char*>(tensor.data_ptr()), tensor.nbytes());
  }
  header += "}";
  while ((8 + header.size()) % 4 != 2) header += ' ';
  const uint64_t length = header.size();
  std::string file(reinterpret_cast<const char*>(&length), 8);
  file += header + data;
  const std::string path = dir_ + "/unaligned.safetensors";
  std::ofstream(path, std::ios::binary) << file;

  torch::NoGradGuard no_grad;
  const at::Tensor expected = wide->forward(tokens_);
  TinyLm model{nullptr};
  {
    InitEmptyWeights scope;
    model = TinyLm(kVocab, 256, 2);
  }
  ASSERT_OK_AND_ASSIGN(
      auto dispatched,
      LoadCheckpointAndDispatch(
          *model, path,
          {{"embed", "cpu"}, {"blocks", "disk"}, {"norm", "disk"}}));
  for (int pass = 0; pass < 3; ++pass) {
    EXPECT_TRUE(TensorsClose(model->forward(tokens_), expected,
                             {.rtol = 0, .atol = 1e-5}));
  }
}

TEST_F(DispatchTest, WeightsOfAGoneDispatchAreAnError) {
  TinyLm model = EmptyModel();
  ASSERT_OK_AND_ASSIGN(
      auto dispatched,
      LoadCheckpointAndDispatch(*model, dir_ + "/ckpt", {{"", "disk"}}));
  dispatched.reset();
  torch::NoGradGuard no_grad;
  try {
    model->forward(tokens_);
    ADD_FAILURE() << "forward ran on released weights";
  } catch (const c10::Error& error) {
    EXPECT_THAT(error.what(), HasSubstr("released DispatchedModel"));
  }
}

int64_t PeakResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * 4096;
}

void ResetPeak() { std::ofstream("/proc/self/clear_refs") << "5"; }

TEST(DispatchMemoryTest, PeakIsThePlacedPartPlusOneTensor) {
  const std::string dir = FreshTestDir("dispatch_memory");
  constexpr int64_t kWidth = 512, kDepth = 8;  // 8 MiB per block.
  int64_t block_bytes = 0;
  at::Tensor tokens = torch::randint(100, {1, 8});
  at::Tensor expected;
  {
    torch::manual_seed(3);
    TinyLm model(100, kWidth, kDepth);
    NamedTensors state;
    for (const auto& item : model->named_parameters()) {
      state.emplace_back(item.key(), item.value().detach());
      if (item.key().rfind("blocks.0.", 0) == 0) {
        block_bytes += item.value().nbytes();
      }
    }
    ASSERT_OK(
        SaveShardedSafetensors(dir, state, {.max_shard_bytes = 20 << 20}));
    torch::NoGradGuard no_grad;
    expected = model->forward(tokens);
  }
  const int64_t largest = 4 * kWidth * kWidth * 4;
  TinyLm model{nullptr};
  {
    InitEmptyWeights scope;
    model = TinyLm(100, kWidth, kDepth);
  }
  DeviceMap map = {{"embed", "cpu"}, {"norm", "cpu"}};
  for (int i = 0; i < kDepth; ++i) {
    map.emplace_back("blocks." + std::to_string(i), i < 2 ? "cpu" : "disk");
  }
  const int64_t placed = 2 * block_bytes + 100 * kWidth * 4;
  const int64_t slack = 6 << 20;

  // Freed heap pages (the reference model's) would otherwise be reused
  // without showing in the resident set.
  ::malloc_trim(0);
  const int64_t before = ResidentBytes();
  ResetPeak();
  ASSERT_OK_AND_ASSIGN(
      auto dispatched,
      LoadCheckpointAndDispatch(*model, dir, map, {.zero_copy = false}));
  const int64_t after_load = ResidentBytes();
  EXPECT_LE(PeakResidentBytes() - before, placed + largest + slack);
  // The placed part really is in memory (copied, not mapped).
  EXPECT_GE(after_load - before, placed * 9 / 10);

  ResetPeak();
  torch::NoGradGuard no_grad;
  at::Tensor logits = model->forward(tokens);
  EXPECT_TRUE(TensorsClose(logits, expected, {.rtol = 0, .atol = 1e-5}));
  // Running holds at most two offloaded modules' weights (the current one
  // and the one prepared ahead), not the six blocks on disk.
  EXPECT_LE(PeakResidentBytes() - after_load, 2 * largest + slack);
  dispatched->Release();
  EXPECT_LE(ResidentBytes() - after_load, slack);
}

}  // namespace
}  // namespace accelerate::bigmodel
