// Tests of module trees: described from modules and from checkpoints, JSON
// both ways, sizes.

#include "bigmodel/module_tree.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <torch/torch.h>
#include "bigmodel/safetensors.h"
#include "testing/files.h"
#include "testing/status_matchers.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TestPath;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// An embedding whose matrix the output layer reuses (tied weights), a
// batch norm with buffers, and a nested block.
struct TiedImpl : torch::nn::Module {
  TiedImpl() {
    embed = register_module("embed", torch::nn::Embedding(10, 4));
    block = register_module("block",
                            torch::nn::Sequential(torch::nn::Linear(4, 4),
                                                  torch::nn::BatchNorm1d(4)));
    head = register_module("head", std::make_shared<torch::nn::Module>());
    head->register_parameter("weight", embed->weight);  // Tied.
  }
  torch::nn::Embedding embed{nullptr};
  torch::nn::Sequential block{nullptr};
  std::shared_ptr<torch::nn::Module> head;
};
TORCH_MODULE(Tied);

TEST(ModuleTreeTest, DescribesClassesTensorsAndTies) {
  Tied model;
  const ModuleTree tree = DescribeModule(*model);
  EXPECT_EQ(tree.class_name, "Tied");
  ASSERT_EQ(tree.children.size(), 3u);
  EXPECT_EQ(tree.children[0].name, "embed");
  EXPECT_EQ(tree.children[0].class_name, "Embedding");
  EXPECT_EQ(tree.children[1].children[1].class_name, "BatchNorm1d");
  EXPECT_EQ(tree.children[1].children[1].buffers.size(),
            3u);  // mean, var, count
  EXPECT_EQ(tree.children[2].params[0].tied_to, "embed.weight");
  const std::string json = ModuleTreeToJson(tree);
  EXPECT_THAT(
      json,
      HasSubstr(
          R"({"name": "weight", "shape": [10, 4], "dtype": "float32", "tied_to": "embed.weight"})"));
  EXPECT_THAT(
      json,
      HasSubstr(
          R"({"name": "running_mean", "shape": [4], "dtype": "float32", "persistent": true})"));
  // The JSON reads back to the same tree.
  ASSERT_OK_AND_ASSIGN(ModuleTree parsed, ParseModuleTree(json));
  EXPECT_EQ(ModuleTreeToJson(parsed), json);
}

TEST(ModuleTreeTest, SizesCountTiedTensorsOnce) {
  Tied model;
  const auto sizes = ComputeModuleSizes(DescribeModule(*model));
  // embed 40 floats; Linear 16 + 4; BatchNorm weight, bias, mean, var (4
  // floats each) and num_batches_tracked (one int64); head tied: 0.
  EXPECT_EQ(sizes.at("embed"), 160);
  EXPECT_EQ(sizes.at("block.0"), 80);
  EXPECT_EQ(sizes.at("block.1"), 4 * 16 + 8);
  EXPECT_EQ(sizes.at("head"), 0);
  EXPECT_EQ(sizes.at(""), 160 + 80 + 72);
  // In float16 the floats halve; the int64 counter does not.
  const auto half = ComputeModuleSizes(DescribeModule(*model), "float16");
  EXPECT_EQ(half.at("block.1"), 4 * 8 + 8);
}

TEST(ModuleTreeTest, MalformedTreesAreNamed) {
  EXPECT_THAT(ParseModuleTree("[1]").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a JSON object")));
  EXPECT_THAT(
      ParseModuleTree(
          R"({"name": "", "class": "N", "params": [{"name": "w", "shape": [2], "dtype": "float17"}]})")
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("\"w\": unknown dtype \"float17\"")));
  EXPECT_THAT(
      ParseModuleTree(
          R"({"name": "", "class": "N", "children": [{"name": "a", "class": "L", "params": [{"name": "w", "shape": [-1], "dtype": "float32"}]}]})")
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("\"a.w\": has a shape entry")));
  EXPECT_THAT(
      ParseModuleTree(
          R"({"name": "", "class": "N", "params": [{"name": "w", "shape": [1], "dtype": "float32", "tied_to": "later.w"}]})")
          .status(),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr("tied to \"later.w\", which is not a tensor met before")));
}

// Dtype overrides only touch floating-point tensors (the names, sizes and
// types of the dtype table are dtype_test's).
TEST(ModuleTreeTest, DtypeOverridesTouchOnlyFloatingTensors) {
  ModuleTree tree;
  tree.class_name = "Net";
  tree.params = {{"c", {4}, "complex64", ""}, {"w", {4}, "float32", ""}};
  const auto sizes = ComputeModuleSizes(tree, "float16");
  EXPECT_EQ(sizes.at("c"), 32);  // Complex stays complex.
  EXPECT_EQ(sizes.at("w"), 8);
}

// The tensor names of a checkpoint give the modules: numbered blocks in
// numeric order, then the other children by name, dtypes by PyTorch's names.
TEST(ModuleTreeTest, TreesComeFromCheckpointTensorNames) {
  const std::string path =
      TestPath("tree.safetensors");
  ASSERT_OK(
      SaveSafetensors(path, {{"h.10.w", torch::zeros({2})},
                             {"h.2.w", torch::zeros({3}, torch::kHalf)},
                             {"embed.weight", torch::zeros({4, 2})},
                             {"h.2.ln.bias", torch::empty({3}, torch::kUInt16)},
                             {"scale", torch::zeros({1}, torch::kLong)}}));
  ASSERT_OK_AND_ASSIGN(const ModuleTree tree, ModuleTreeFromCheckpoint(path));
  EXPECT_EQ(tree.name, "");
  ASSERT_EQ(tree.params.size(), 1u);
  EXPECT_EQ(tree.params[0].name, "scale");
  EXPECT_EQ(tree.params[0].dtype, "int64");
  std::vector<std::string> children;
  for (const ModuleTree& child : tree.children) children.push_back(child.name);
  EXPECT_THAT(children, ElementsAre("embed", "h"));
  const ModuleTree& h = tree.children[1];
  ASSERT_EQ(h.children.size(), 2u);
  EXPECT_EQ(h.children[0].name, "2");
  EXPECT_EQ(h.children[1].name, "10");
  EXPECT_EQ(h.children[0].params[0].dtype, "float16");
  EXPECT_EQ(h.children[0].children[0].params[0].dtype, "uint16");
  EXPECT_EQ(tree.children[0].params[0].shape, (std::vector<int64_t>{4, 2}));
  // Sizes as for a described module: 8 + 6 + 32 + 6 + 8 bytes.
  EXPECT_EQ(ComputeModuleSizes(tree).at(""), 60);
}

TEST(ModuleTreeTest, CheckpointNamesThatAreNoTreeAreRefused) {
  const std::string dir = TestPath("");
  ASSERT_OK(
      SaveSafetensors(dir + "/both.safetensors",
                      {{"a", torch::zeros({1})}, {"a.b", torch::zeros({1})}}));
  EXPECT_THAT(ModuleTreeFromCheckpoint(dir + "/both.safetensors").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"a\" is both a tensor and a module")));
  ASSERT_OK(SaveSafetensors(dir + "/empty_part.safetensors",
                            {{"a..b", torch::zeros({1})}}));
  EXPECT_THAT(
      ModuleTreeFromCheckpoint(dir + "/empty_part.safetensors").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty part")));
  EXPECT_THAT(ModuleTreeFromCheckpoint(dir + "/none").status(),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace accelerate::bigmodel
