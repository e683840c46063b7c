// Tests of Hugging Face checkpoints read as Accelerate's
// `load_checkpoint_in_model` finds them: safetensors shards written here,
// and `pytorch_model.bin` files (one, or shards with their index) that the
// real Python's `torch.save` wrote, with tied weights, views and dtypes.

#include "bigmodel/sharded_checkpoint.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/ATen.h>
#include "bigmodel/safetensors.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "testing/tensor_testutil.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::PeerPython;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::ReadFileOrDie;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::Subprocess;
using ::accelerate::testing::TensorsClose;
using ::accelerate::testing::TestPath;
using ::accelerate::testing::WriteFileOrDie;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr ::accelerate::testing::Tolerance kExact = {0, 0};

TEST(ShardedCheckpointTest, ShardsWithAnIndexAndLoadsOnlyWhatIsAsked) {
  const std::string dir = TestPath("sharded");
  NamedTensors tensors;
  for (int i = 0; i < 6; ++i) {
    tensors.emplace_back(absl::StrCat("layer.", i, ".w"),
                         at::full({256}, static_cast<float>(i)));  // 1 KiB
  }
  ASSERT_OK(SaveShardedSafetensors(dir, tensors, {.max_shard_bytes = 2048}));
  // Two tensors per shard: three shards and the index.
  for (int shard = 1; shard <= 3; ++shard) {
    EXPECT_EQ(::access(absl::StrCat(dir, "/model-0000", shard,
                                    "-of-00003.safetensors")
                           .c_str(),
                       R_OK),
              0);
  }
  const std::string index =
      ReadFileOrDie(dir + "/model.safetensors.index.json");
  EXPECT_THAT(
      index,
      AllOf(HasSubstr("\"total_size\": 6144"),
            HasSubstr("\"layer.5.w\": \"model-00003-of-00003.safetensors\"")));
  ASSERT_OK_AND_ASSIGN(auto checkpoint, ShardedCheckpoint::Open(dir));
  EXPECT_EQ(checkpoint->names().size(), 6u);
  ASSERT_OK_AND_ASSIGN(auto some, checkpoint->Load({"layer.4.w", "layer.5.w"}));
  EXPECT_EQ(checkpoint->files_opened(), 1);
  EXPECT_TRUE(TensorsClose(some.at("layer.4.w"), at::full({256}, 4.f), kExact));
  ASSERT_OK_AND_ASSIGN(auto first, checkpoint->Load({"layer.0.w"}));
  EXPECT_EQ(checkpoint->files_opened(), 2);
  // One load across shards.
  ASSERT_OK_AND_ASSIGN(auto across,
                       checkpoint->Load({"layer.5.w", "layer.2.w"}));
  EXPECT_EQ(checkpoint->files_opened(), 3);
  EXPECT_TRUE(
      TensorsClose(across.at("layer.2.w"), at::full({256}, 2.f), kExact));
  EXPECT_TRUE(
      TensorsClose(across.at("layer.5.w"), at::full({256}, 5.f), kExact));
  EXPECT_THAT(checkpoint->Load({"layer.9.w"}).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("layer.9.w")));
  // Saving the same folder again as one file leaves no stale index behind.
  NamedTensors updated = {{"layer.0.w", at::full({4}, 9.f)}};
  ASSERT_OK(SaveShardedSafetensors(dir, updated));
  EXPECT_NE(::access((dir + "/model.safetensors.index.json").c_str(), F_OK), 0);
  ASSERT_OK_AND_ASSIGN(auto fresh, ShardedCheckpoint::Open(dir));
  EXPECT_EQ(fresh->names().size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto nine, fresh->Load({"layer.0.w"}));
  EXPECT_TRUE(TensorsClose(nine.at("layer.0.w"), at::full({4}, 9.f), kExact));
  // One shard is written without an index, and opens the same way.
  const std::string single = TestPath("single");
  ASSERT_OK(SaveShardedSafetensors(single, tensors));
  ASSERT_OK_AND_ASSIGN(auto one, ShardedCheckpoint::Open(single));
  EXPECT_EQ(one->names().size(), 6u);
}

TEST(ShardedCheckpointTest, BadIndexesAreRefused) {
  const std::string dir = TestPath("badindex");
  ::mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/model.safetensors.index.json")
      << R"({"weight_map": {"w": "../../etc/passwd"}})";
  EXPECT_THAT(
      ShardedCheckpoint::Open(dir).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("\"../../etc/passwd\", not a file beside the index")));
  std::ofstream(dir + "/model.safetensors.index.json", std::ios::trunc)
      << R"({"weight_map": {"w": "missing.safetensors"}})";
  ASSERT_OK_AND_ASSIGN(auto checkpoint, ShardedCheckpoint::Open(dir));
  EXPECT_THAT(
      checkpoint->Load({"w"}).status(),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.safetensors")));
  std::ofstream(dir + "/model.safetensors.index.json", std::ios::trunc) << "{";
  EXPECT_THAT(
      ShardedCheckpoint::Open(dir).status(),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not valid JSON")));
}


TEST(ShardedCheckpointTest, AFolderWithoutWeightsOrWithSeveralIndexesIsNamed) {
  const std::string dir = FreshTestDir("no_weights");
  WriteFileOrDie(dir + "/config.json", "{}");
  EXPECT_THAT(ShardedCheckpoint::Open(dir).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr(dir), HasSubstr("pytorch_model.bin"),
                             HasSubstr("model.safetensors"))));
  WriteFileOrDie(dir + "/a.index.json", R"({"weight_map": {}})");
  WriteFileOrDie(dir + "/b.index.json", R"({"weight_map": {}})");
  EXPECT_THAT(ShardedCheckpoint::Open(dir).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("a.index.json, b.index.json")));
  std::filesystem::remove(dir + "/b.index.json");
  ASSERT_OK_AND_ASSIGN(auto one_index, ShardedCheckpoint::Open(dir));
  EXPECT_TRUE(one_index->names().empty());
}

// Writes, with the real Python, what transformers' `save_pretrained(...,
// safe_serialization=False)` leaves: `one/pytorch_model.bin` (a
// `state_dict()` with tied weights, a transposed view, bf16, f16 and int64
// tensors), the same split into two shards with
// `pytorch_model.bin.index.json` (`sharded/`), and, for comparison, every
// tensor made contiguous in `expected.safetensors`. Also: `both/` (a
// `model.safetensors` of ones beside a `pytorch_model.bin` of zeros),
// `list/pytorch_model.bin` (a list, not a dict), `complex/` (a
// complex128 tensor, which safetensors has no name for).
constexpr char kPythonBinCheckpoints[] = R"PY(
import collections, json, os, sys
import torch
from safetensors.torch import save_file
root = sys.argv[1]
def folder(name):
    os.makedirs(os.path.join(root, name), exist_ok=True)
    return os.path.join(root, name)
torch.manual_seed(0)
wte = torch.randn(8, 4)
sd = collections.OrderedDict()
sd["wte.weight"] = wte
sd["proj.weight"] = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()
sd["ln.weight"] = torch.randn(4).to(torch.bfloat16)
sd["mask"] = torch.arange(5, dtype=torch.int64)
sd["scale"] = torch.tensor(0.5, dtype=torch.float16)
sd["lm_head.weight"] = wte  # tied: one storage in the file
sd._metadata = collections.OrderedDict({"": {"version": 1}})
torch.save(sd, os.path.join(folder("one"), "pytorch_model.bin"))
shards = {
    "pytorch_model-00001-of-00002.bin": ["wte.weight", "proj.weight"],
    "pytorch_model-00002-of-00002.bin": ["ln.weight", "mask", "scale",
                                         "lm_head.weight"],
}
weight_map = {}
for file, names in shards.items():
    torch.save({n: sd[n] for n in names}, os.path.join(folder("sharded"), file))
    weight_map.update({n: file for n in names})
total = sum(t.numel() * t.element_size() for t in sd.values())
index = os.path.join(root, "sharded", "pytorch_model.bin.index.json")
with open(index, "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
save_file({k: v.contiguous().clone() for k, v in sd.items()},
          os.path.join(root, "expected.safetensors"))
both = folder("both")
save_file({"w": torch.ones(3)}, os.path.join(both, "model.safetensors"))
torch.save({"w": torch.zeros(3)}, os.path.join(both, "pytorch_model.bin"))
torch.save([torch.ones(2)], os.path.join(folder("list"), "pytorch_model.bin"))
torch.save({"c": torch.ones(2, dtype=torch.complex128)},
           os.path.join(folder("complex"), "pytorch_model.bin"))
)PY";

class TorchShardsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(FreshTestDir("torch_shards"));
    Subprocess python({PeerPython(), "-c", kPythonBinCheckpoints, *root_}, {});
    ASSERT_OK(python.Start());
    const ProcessResult result = python.Wait(absl::Seconds(120));
    ASSERT_EQ(result.exit_code, 0) << result.output;
  }
  static void TearDownTestSuite() { delete root_; }

  static std::string Path(const std::string& name) {
    return absl::StrCat(*root_, "/", name);
  }

  // Every tensor of expected.safetensors.
  static std::map<std::string, at::Tensor> Expected() {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(Path("expected.safetensors"));
    EXPECT_OK(file.status());
    absl::StatusOr<std::map<std::string, at::Tensor>> tensors =
        (*file)->Load((*file)->names(), {.copy = true});
    EXPECT_OK(tensors.status());
    return *tensors;
  }

  static std::string* root_;
};

std::string* TorchShardsTest::root_ = nullptr;

TEST_F(TorchShardsTest, ReadsOnePytorchModelBinAsPythonSavedIt) {
  const std::map<std::string, at::Tensor> expected = Expected();
  for (const std::string& path :
       {Path("one"), Path("one/pytorch_model.bin")}) {
    SCOPED_TRACE(path);
    ASSERT_OK_AND_ASSIGN(auto checkpoint, ShardedCheckpoint::Open(path));
    EXPECT_THAT(checkpoint->names(),
                ElementsAre("lm_head.weight", "ln.weight", "mask",
                            "proj.weight", "scale", "wte.weight"));
    ASSERT_OK_AND_ASSIGN(std::string file, checkpoint->FileOf("mask"));
    EXPECT_EQ(file, "pytorch_model.bin");
    EXPECT_FALSE(ShardedCheckpoint::IsSafetensors(file));
    ASSERT_OK_AND_ASSIGN(auto loaded, checkpoint->Load(checkpoint->names()));
    ASSERT_EQ(loaded.size(), expected.size());
    for (const auto& [name, tensor] : expected) {
      EXPECT_EQ(loaded.at(name).scalar_type(), tensor.scalar_type()) << name;
      EXPECT_TRUE(TensorsClose(loaded.at(name), tensor, kExact)) << name;
      // Zero copy: the tensors are the file's pages.
      EXPECT_TRUE(AliasesMapping(loaded.at(name))) << name;
    }
    // The view keeps Python's strides; tied weights keep one storage.
    EXPECT_EQ(loaded.at("proj.weight").strides(), at::IntArrayRef({1, 4}));
    EXPECT_EQ(loaded.at("lm_head.weight").data_ptr(),
              loaded.at("wte.weight").data_ptr());
    // A copy is memory of its own, with the same values.
    ASSERT_OK_AND_ASSIGN(auto copied,
                         checkpoint->Load({"proj.weight"}, {.copy = true}));
    EXPECT_FALSE(AliasesMapping(copied.at("proj.weight")));
    EXPECT_TRUE(TensorsClose(copied.at("proj.weight"),
                             expected.at("proj.weight"), kExact));
  }
}

TEST_F(TorchShardsTest, EntriesGiveDtypesAndShapesOfTorchShards) {
  ASSERT_OK_AND_ASSIGN(auto checkpoint, ShardedCheckpoint::Open(Path("one")));
  ASSERT_OK_AND_ASSIGN(const std::vector<TensorEntry> entries,
                       checkpoint->Entries());
  std::map<std::string, TensorEntry> by_name;
  for (const TensorEntry& entry : entries) by_name[entry.name] = entry;
  ASSERT_EQ(by_name.size(), 6u);
  EXPECT_EQ(by_name["proj.weight"].dtype, "F32");
  EXPECT_THAT(by_name["proj.weight"].shape, ElementsAre(4, 3));
  EXPECT_EQ(by_name["ln.weight"].dtype, "BF16");
  EXPECT_EQ(by_name["mask"].dtype, "I64");
  EXPECT_EQ(by_name["scale"].dtype, "F16");
  EXPECT_TRUE(by_name["scale"].shape.empty());
  EXPECT_EQ(by_name["wte.weight"].end - by_name["wte.weight"].begin,
            uint64_t{8 * 4 * 4});
  // A dtype safetensors has no name for is named with its tensor.
  ASSERT_OK_AND_ASSIGN(auto complex, ShardedCheckpoint::Open(Path("complex")));
  EXPECT_THAT(complex->Entries().status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("\"c\""),
                             HasSubstr("pytorch_model.bin"))));
}

TEST_F(TorchShardsTest, ShardsOfAnIndexOpenWhenAsked) {
  const std::map<std::string, at::Tensor> expected = Expected();
  for (const std::string& path :
       {Path("sharded"), Path("sharded/pytorch_model.bin.index.json")}) {
    SCOPED_TRACE(path);
    ASSERT_OK_AND_ASSIGN(auto checkpoint, ShardedCheckpoint::Open(path));
    EXPECT_EQ(checkpoint->names().size(), 6u);
    EXPECT_EQ(checkpoint->files_opened(), 0);
    ASSERT_OK_AND_ASSIGN(auto ln, checkpoint->Load({"ln.weight"}));
    EXPECT_EQ(checkpoint->files_opened(), 1);
    EXPECT_TRUE(TensorsClose(ln.at("ln.weight"), expected.at("ln.weight"),
                             kExact));
    ASSERT_OK_AND_ASSIGN(const std::vector<TensorEntry> entries,
                         checkpoint->Entries());
    EXPECT_EQ(entries.size(), 6u);
    EXPECT_EQ(checkpoint->files_opened(), 2);
    ASSERT_OK_AND_ASSIGN(auto all, checkpoint->Load(checkpoint->names()));
    for (const auto& [name, tensor] : expected) {
      EXPECT_TRUE(TensorsClose(all.at(name), tensor, kExact)) << name;
    }
  }
}

TEST_F(TorchShardsTest, SafetensorsWinsInAFolderHoldingBoth) {
  ASSERT_OK_AND_ASSIGN(auto checkpoint, ShardedCheckpoint::Open(Path("both")));
  ASSERT_OK_AND_ASSIGN(auto loaded, checkpoint->Load({"w"}));
  EXPECT_TRUE(TensorsClose(loaded.at("w"), at::ones({3}), kExact));
  ASSERT_OK_AND_ASSIGN(auto bin, ShardedCheckpoint::Open(
                                     Path("both/pytorch_model.bin")));
  ASSERT_OK_AND_ASSIGN(auto zeros, bin->Load({"w"}));
  EXPECT_TRUE(TensorsClose(zeros.at("w"), at::zeros({3}), kExact));
}

TEST_F(TorchShardsTest, BadTorchShardsAreDataLossNamingTheFile) {
  EXPECT_THAT(ShardedCheckpoint::Open(Path("list")).status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(Path("list/pytorch_model.bin")),
                             HasSubstr("not a state_dict"))));
  // A shard cut short: the index opens, the shard's tensors do not.
  const std::string dir = FreshTestDir("cut_shard");
  std::filesystem::copy(Path("sharded"), dir);
  const std::string shard = dir + "/pytorch_model-00002-of-00002.bin";
  const std::string bytes = ReadFileOrDie(shard);
  WriteFileOrDie(shard, bytes.substr(0, bytes.size() / 2));
  ASSERT_OK_AND_ASSIGN(auto checkpoint, ShardedCheckpoint::Open(dir));
  ASSERT_OK(checkpoint->Load({"wte.weight"}).status());
  EXPECT_THAT(checkpoint->Load({"mask"}).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr(shard)));
  // An index naming a tensor its shard lacks.
  WriteFileOrDie(
      dir + "/pytorch_model.bin.index.json",
      R"({"weight_map": {"ghost": "pytorch_model-00001-of-00002.bin"}})");
  ASSERT_OK_AND_ASSIGN(auto ghost, ShardedCheckpoint::Open(dir));
  EXPECT_THAT(ghost->Load({"ghost"}).status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("which does not hold it")));
}

}  // namespace
}  // namespace accelerate::bigmodel
