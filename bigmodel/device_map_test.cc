// Tests of InferAutoDeviceMap, GetBalancedMemory and PlanDeviceMap, with
// vectors from Accelerate's tests/test_modeling_utils.py.

#include "bigmodel/device_map.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "bigmodel/balanced_memory.h"
#include "bigmodel/device.h"
#include "bigmodel/max_memory.h"
#include "bigmodel/module_tree.h"
#include "testing/status_matchers.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::IsOkAndHolds;
using ::accelerate::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// A leaf module holding one float32 parameter of `floats` elements.
ModuleTree Leaf(const std::string& name, int64_t floats,
                const std::string& tied_to = "") {
  ModuleTree leaf;
  leaf.name = name;
  leaf.class_name = "Linear";
  leaf.params.push_back({"weight", {floats}, "float32", tied_to});
  return leaf;
}

ModuleTree Root(std::vector<ModuleTree> children) {
  ModuleTree root;
  root.class_name = "Net";
  root.children = std::move(children);
  return root;
}

DeviceMapOptions Memory(const std::string& spec) {
  DeviceMapOptions options;
  options.max_memory = *ParseMaxMemory(spec);
  return options;
}

TEST(DeviceMapTest, AModelThatFitsGoesWhole) {
  const ModuleTree model = Root({Leaf("a", 100), Leaf("b", 100)});
  EXPECT_THAT(InferAutoDeviceMap(model, Memory("0=1MB")),
              IsOkAndHolds(ElementsAre(Pair("", "0"))));
}

// Three 400-byte layers. GPU 0 and the CPU (the main devices) keep room for
// the largest layer still to place: a fits on GPU 0 beside 400 reserved
// bytes, b does not and goes to the CPU; for c nothing remains to reserve
// for (Accelerate recomputes the largest layer among the modules left), so
// it joins b.
TEST(DeviceMapTest, MainDevicesReserveRoomForTheLargestLayer) {
  const ModuleTree model =
      Root({Leaf("a", 100), Leaf("b", 100), Leaf("c", 100)});
  ASSERT_OK_AND_ASSIGN(DeviceMap map,
                       InferAutoDeviceMap(model, Memory("0=1000,cpu=1000")));
  EXPECT_THAT(map,
              ElementsAre(Pair("a", "0"), Pair("b", "cpu"), Pair("c", "cpu")));
  EXPECT_EQ(DeviceMapToJson(map),
            R"({"device_map": {"a": 0, "b": "cpu", "c": "cpu"}})");
  // Without room anywhere but GPU 0, the rest goes to disk.
  ASSERT_OK_AND_ASSIGN(map, InferAutoDeviceMap(model, Memory("0=1000")));
  EXPECT_THAT(
      map, ElementsAre(Pair("a", "0"), Pair("b", "disk"), Pair("c", "disk")));
  // A second GPU is not a main device: no reservation there.
  ASSERT_OK_AND_ASSIGN(map, InferAutoDeviceMap(model, Memory("0=1000,1=800")));
  EXPECT_THAT(map, ElementsAre(Pair("a", "0"), Pair("b", "1"), Pair("c", "1")));
}

// A block of two 400-byte layers and a 400-byte layer z, on a 1100-byte GPU
// that keeps 400 for the largest layer: the block is split and x stays on
// the GPU; as a no-split class the block moves on whole.
TEST(DeviceMapTest, ModulesSplitUnlessTheirClassMayNotBe) {
  ModuleTree block;
  block.name = "blk";
  block.class_name = "Block";
  block.children = {Leaf("x", 100), Leaf("y", 100)};
  const ModuleTree model = Root({block, Leaf("z", 100)});
  ASSERT_OK_AND_ASSIGN(DeviceMap split,
                       InferAutoDeviceMap(model, Memory("0=1100")));
  EXPECT_THAT(split, ElementsAre(Pair("blk.x", "0"), Pair("blk.y", "disk"),
                                 Pair("z", "disk")));
  DeviceMapOptions options = Memory("0=1100");
  options.no_split_module_classes = {"Block"};
  EXPECT_THAT(InferAutoDeviceMap(model, options),
              IsOkAndHolds(ElementsAre(Pair("", "disk"))));
  // Patterns match whole class names.
  options.no_split_module_classes = {"Bl.*"};
  EXPECT_THAT(InferAutoDeviceMap(model, options),
              IsOkAndHolds(ElementsAre(Pair("", "disk"))));
  options.no_split_module_classes = {"Bl"};
  EXPECT_THAT(InferAutoDeviceMap(model, options), IsOkAndHolds(split));
  options.no_split_module_classes = {"Block("};
  EXPECT_THAT(
      InferAutoDeviceMap(model, options).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"Block(\"")));
}

// Once blk is popped nothing is left to reserve for, yet a and blk (1200
// bytes) overflow GPU 0, so blk is split; its layers then land on the CPU
// together and merge back into one "blk" entry (clean_device_map).
TEST(DeviceMapTest, SplitPartsOnOneDeviceMergeBack) {
  ModuleTree block;
  block.name = "blk";
  block.class_name = "Block";
  block.children = {Leaf("x", 100), Leaf("y", 100)};
  const ModuleTree model = Root({Leaf("a", 100), block});
  EXPECT_THAT(InferAutoDeviceMap(model, Memory("0=1000,cpu=5000")),
              IsOkAndHolds(ElementsAre(Pair("a", "0"), Pair("blk", "cpu"))));
}

// A tied weight is counted once, in the module that owns it (as
// named_parameters() deduplicates it). Untied, the head (400-byte weight and
// 400-byte bias) is the largest layer and GPU 0 keeps 800 of its 1500 bytes
// free: embed fits, mid and head go to the CPU. Tied to embed's weight, the
// head costs only its bias, the largest layer is 400, and the head is placed
// right after embed, beside it on GPU 0, before mid.
TEST(DeviceMapTest, TiedParametersStayTogether) {
  ModuleTree head = Leaf("head", 100, "embed.weight");
  head.params.push_back({"bias", {100}, "float32", ""});
  const ModuleTree tied = Root({Leaf("embed", 100), Leaf("mid", 100), head});
  ASSERT_OK_AND_ASSIGN(DeviceMap tied_map,
                       InferAutoDeviceMap(tied, Memory("0=1500,cpu=2000")));
  EXPECT_THAT(tied_map, ElementsAre(Pair("embed", "0"), Pair("head", "0"),
                                    Pair("mid", "cpu")));
  ModuleTree free_head = Leaf("head", 100);
  free_head.params.push_back({"bias", {100}, "float32", ""});
  const ModuleTree untied =
      Root({Leaf("embed", 100), Leaf("mid", 100), free_head});
  EXPECT_THAT(InferAutoDeviceMap(untied, Memory("0=1500,cpu=2000")),
              IsOkAndHolds(ElementsAre(Pair("embed", "0"), Pair("mid", "cpu"),
                                       Pair("head", "cpu"))));
}

// The head shares both of embed's weights: it comes along once (its own
// 400-byte bias; embed is 800), 1200 bytes in all, which fits in GPU 0's
// 1650 less the 400 kept for the head as the largest layer left. Accelerate
// counts the head once per shared tensor (1600) and would move both to the
// CPU.
TEST(DeviceMapTest, AModuleTiedTwiceComesAlongOnce) {
  ModuleTree embed = Leaf("embed", 100);
  embed.params.push_back({"weight2", {100}, "float32", ""});
  ModuleTree head;
  head.name = "head";
  head.class_name = "Linear";
  head.params = {{"a", {100}, "float32", "embed.weight"},
                 {"b", {100}, "float32", "embed.weight2"},
                 {"bias", {100}, "float32", ""}};
  const ModuleTree model = Root({embed, head});
  EXPECT_THAT(InferAutoDeviceMap(model, Memory("0=1650,cpu=5000")),
              IsOkAndHolds(ElementsAre(Pair("", "0"))));
}

// Four 800-byte blocks (two 400-byte leaves each), 3200 bytes in all.
ModuleTree FourBlocks() {
  std::vector<ModuleTree> blocks;
  for (int b = 0; b < 4; ++b) {
    ModuleTree block;
    block.name = "b" + std::to_string(b);
    block.class_name = "Block";
    block.children = {Leaf("x", 100), Leaf("y", 100)};
    blocks.push_back(block);
  }
  return Root(blocks);
}

// Two GPUs: 3200 / 2 plus 1.25 x the 800-byte no-split block = 2600 for GPU
// 0; the last GPU keeps its budget. GPU 0 keeps 800 for the largest layer,
// so two blocks land on each GPU, where sequential placement puts all four on
// GPU 0.
TEST(DeviceMapTest, BalancedMemorySpreadsOverTheGpus) {
  const ModuleTree model = FourBlocks();
  DeviceMapOptions options = Memory("0=10000,1=10000");
  options.no_split_module_classes = {"Block"};
  EXPECT_THAT(InferAutoDeviceMap(model, options),
              IsOkAndHolds(ElementsAre(Pair("", "0"))));
  ASSERT_OK_AND_ASSIGN(MaxMemory balanced,
                       GetBalancedMemory(model, options, /*low_zero=*/false));
  EXPECT_THAT(balanced, ElementsAre(Pair("0", 2600), Pair("1", 10000)));
  options.max_memory = balanced;
  EXPECT_THAT(InferAutoDeviceMap(model, options),
              IsOkAndHolds(ElementsAre(Pair("b0", "0"), Pair("b1", "0"),
                                       Pair("b2", "1"), Pair("b3", "1"))));
  // The same through the strategy names of load_checkpoint_and_dispatch.
  options.max_memory = *ParseMaxMemory("0=10000,1=10000");
  for (const char* strategy : {"auto", "balanced"}) {
    EXPECT_THAT(PlanDeviceMap(model, options, strategy),
                IsOkAndHolds(ElementsAre(Pair("b0", "0"), Pair("b1", "0"),
                                         Pair("b2", "1"), Pair("b3", "1"))));
  }
  EXPECT_THAT(PlanDeviceMap(model, options),
              IsOkAndHolds(ElementsAre(Pair("", "0"))));
  EXPECT_THAT(
      PlanDeviceMap(model, options, "even").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"even\"")));
  // balanced_low_0: GPU 0 gets what the others cannot hold (nothing here).
  options.max_memory = *ParseMaxMemory("0=10000,1=10000");
  EXPECT_THAT(GetBalancedMemory(model, options, /*low_zero=*/true),
              IsOkAndHolds(ElementsAre(Pair("0", 0), Pair("1", 10000))));
  options.max_memory = *ParseMaxMemory("0=10000,1=3000");
  EXPECT_THAT(GetBalancedMemory(model, options, /*low_zero=*/true),
              IsOkAndHolds(ElementsAre(Pair("0", 200), Pair("1", 3000))));
  // Three GPUs: 3200 / 3 + 1000 = 2066 for all but the last.
  options.max_memory = *ParseMaxMemory("0=10000,1=10000,2=10000,cpu=99");
  EXPECT_THAT(GetBalancedMemory(model, options, /*low_zero=*/false),
              IsOkAndHolds(ElementsAre(Pair("0", 2066), Pair("1", 2066),
                                       Pair("2", 10000), Pair("cpu", 99))));
  // Without no-split classes the margin is 1.25 x the mean leaf module (400).
  options.no_split_module_classes.clear();
  options.max_memory = *ParseMaxMemory("0=10000,1=10000");
  EXPECT_THAT(GetBalancedMemory(model, options, /*low_zero=*/false),
              IsOkAndHolds(ElementsAre(Pair("0", 2100), Pair("1", 10000))));
  // A module holding no tensors (an activation in its own container) is not
  // a module of the mean, as in Accelerate: still 2100.
  ModuleTree activation;
  activation.name = "act";
  activation.class_name = "Sequential";
  ModuleTree relu;
  relu.name = "0";
  relu.class_name = "ReLU";
  activation.children = {relu};
  ModuleTree with_activation = model;
  with_activation.children.push_back(activation);
  EXPECT_THAT(GetBalancedMemory(with_activation, options, /*low_zero=*/false),
              IsOkAndHolds(ElementsAre(Pair("0", 2100), Pair("1", 10000))));
  // One GPU: nothing to balance.
  options.max_memory = *ParseMaxMemory("0=10000,cpu=5");
  EXPECT_THAT(GetBalancedMemory(model, options, /*low_zero=*/true),
              IsOkAndHolds(ElementsAre(Pair("0", 10000), Pair("cpu", 5))));
}

// c is tied to b, which is tied to a: one tensor, one group. b and c each
// add a 400-byte bias, so a brings 1200 bytes, more than GPU 0's 1300 less
// the 400 kept for the largest layer: all three (then mid) go to the CPU.
// Split into two groups, a and b alone (800) would have stayed on GPU 0.
TEST(DeviceMapTest, ChainsOfTiedWeightsAreOneGroup) {
  ModuleTree b = Leaf("b", 100, "a.weight");
  b.params.push_back({"bias", {100}, "float32", ""});
  ModuleTree c = Leaf("c", 100, "b.weight");
  c.params.push_back({"bias", {100}, "float32", ""});
  const ModuleTree model = Root({Leaf("a", 100), b, Leaf("mid", 100), c});
  ASSERT_OK_AND_ASSIGN(DeviceMap map,
                       InferAutoDeviceMap(model, Memory("0=1300,cpu=5000")));
  EXPECT_THAT(map, ElementsAre(Pair("", "cpu"))) << DeviceMapToJson(map);
}

TEST(DeviceMapTest, JsonEscapesNames) {
  EXPECT_EQ(DeviceMapToJson({{"a\"b\\c", "cpu"}, {"x\ny", "0"}}),
            R"({"device_map": {"a\"b\\c": "cpu", "x\u000ay": 0}})");
}

TEST(DeviceMapTest, DtypeOverrideChangesTheFit) {
  const ModuleTree model =
      Root({Leaf("a", 100), Leaf("b", 100), Leaf("c", 100)});
  DeviceMapOptions options = Memory("0=700");
  // float32: 400-byte layers, 300 left after the reservation: none fits.
  EXPECT_THAT(InferAutoDeviceMap(model, options),
              IsOkAndHolds(ElementsAre(Pair("", "disk"))));
  // float16: 200-byte layers all fit.
  options.dtype = "float16";
  EXPECT_THAT(InferAutoDeviceMap(model, options),
              IsOkAndHolds(ElementsAre(Pair("", "0"))));
  options.dtype = "float17";
  EXPECT_THAT(
      InferAutoDeviceMap(model, options).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("float17")));
}

namespace accelerate_vectors {

// Modules of Accelerate's tests/test_modeling_utils.py, in float32.
ModuleTree Linear(const std::string& name, int64_t in, int64_t out) {
  ModuleTree linear;
  linear.name = name;
  linear.class_name = "Linear";
  linear.params = {{"weight", {out, in}, "float32", ""},
                   {"bias", {out}, "float32", ""}};
  return linear;
}

ModuleTree BatchNorm(const std::string& name, int64_t features) {
  ModuleTree norm;
  norm.name = name;
  norm.class_name = "BatchNorm1d";
  norm.params = {{"weight", {features}, "float32", ""},
                 {"bias", {features}, "float32", ""}};
  norm.buffers = {{"running_mean", {features}, "float32", ""},
                  {"running_var", {features}, "float32", ""},
                  {"num_batches_tracked", {}, "int64", ""}};
  return norm;
}

// ModelForTest: linear1 (3->4, 64 bytes), batchnorm (4, 72), linear2 (4->5,
// 100).
ModuleTree ModelForTest(const std::string& name) {
  ModuleTree model;
  model.name = name;
  model.class_name = "ModelForTest";
  model.children = {Linear("linear1", 3, 4), BatchNorm("batchnorm", 4),
                    Linear("linear2", 4, 5)};
  return model;
}

void Tie(ModuleTree& root, const std::vector<std::string>& path,
         const std::string& param, const std::string& to) {
  ModuleTree* module = &root;
  for (const std::string& name : path) {
    for (ModuleTree& child : module->children) {
      if (child.name == name) module = &child;
    }
  }
  for (TensorSpec& spec : module->params) {
    if (spec.name == param) spec.tied_to = to;
  }
}

using ::testing::UnorderedElementsAre;

// test_infer_auto_device_map_with_tied_weights: when a module fits but not
// with the module tied to it, the tied module is split and only its tied
// part comes along.
TEST(DeviceMapAccelerateVectorsTest, TiedModulesAreSplitToFit) {
  ModuleTree model = Root(
      {ModelForTest("layer1"), ModelForTest("layer2"), ModelForTest("layer3")});
  Tie(model, {"layer3", "linear2"}, "weight", "layer1.linear2.weight");
  EXPECT_THAT(
      InferAutoDeviceMap(model, Memory("0=400,1=500")),
      IsOkAndHolds(UnorderedElementsAre(
          Pair("layer1", "0"), Pair("layer3.linear2", "0"), Pair("layer2", "1"),
          Pair("layer3.linear1", "1"), Pair("layer3.batchnorm", "1"))));

  // Three weights tied together.
  Tie(model, {"layer2", "linear2"}, "weight", "layer1.linear2.weight");
  EXPECT_THAT(InferAutoDeviceMap(model, Memory("0=400,1=500")),
              IsOkAndHolds(UnorderedElementsAre(
                  Pair("layer1", "0"), Pair("layer2.linear2", "0"),
                  Pair("layer3.linear2", "0"), Pair("layer2.linear1", "1"),
                  Pair("layer2.batchnorm", "1"), Pair("layer3.linear1", "1"),
                  Pair("layer3.batchnorm", "1"))));

  // Two groups of tied weights.
  Tie(model, {"layer2", "linear1"}, "weight", "layer1.linear1.weight");
  EXPECT_THAT(InferAutoDeviceMap(model, Memory("0=400,1=500")),
              IsOkAndHolds(UnorderedElementsAre(
                  Pair("layer1", "0"), Pair("layer2.linear1", "0"),
                  Pair("layer2.linear2", "0"), Pair("layer3.linear2", "0"),
                  Pair("layer2.batchnorm", "1"), Pair("layer3.linear1", "1"),
                  Pair("layer3.batchnorm", "1"))));
}

TEST(DeviceMapAccelerateVectorsTest, TiedLeavesInOneSequential) {
  ModuleTree model = Root({Linear("linear1", 4, 4), Linear("linear2", 6, 6),
                           Linear("linear3", 4, 4), Linear("linear4", 6, 6)});
  Tie(model, {"linear3"}, "weight", "linear1.weight");
  Tie(model, {"linear3"}, "bias", "linear1.bias");
  EXPECT_THAT(InferAutoDeviceMap(model, Memory("0=250,1=400")),
              IsOkAndHolds(UnorderedElementsAre(
                  Pair("linear1", "0"), Pair("linear2", "1"),
                  Pair("linear3", "0"), Pair("linear4", "1"))));
}

ModuleTree WithBuffer(ModuleTree module, const std::string& name,
                      std::vector<int64_t> shape) {
  module.buffers.push_back({name, std::move(shape), "float32", ""});
  return module;
}

// test_infer_auto_device_map_with_buffer_check(_and_multi_devices):
// placement ignores offload_buffers; the warning says when the buffers of
// offloaded modules fit no GPU.
TEST(DeviceMapAccelerateVectorsTest, WarnsWhenOffloadedBuffersFitNoGpu) {
  ModuleTree model = ModelForTest("");
  model.children[0] = WithBuffer(model.children[0], "test_buffer1", {10, 2});
  model.children[1] = WithBuffer(model.children[1], "test_buffer2", {10, 3});
  model.children[2] = WithBuffer(model.children[2], "test_buffer3", {10, 3});
  for (bool offload_buffers : {false, true}) {
    DeviceMapOptions options = Memory("0=400,cpu=1GB");
    options.offload_buffers = offload_buffers;
    ::testing::internal::CaptureStderr();
    auto map = InferAutoDeviceMap(model, options);
    const std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_THAT(map, IsOkAndHolds(UnorderedElementsAre(
                         Pair("linear1", "0"), Pair("batchnorm", "cpu"),
                         Pair("linear2", "cpu"))));
    if (offload_buffers) {
      EXPECT_THAT(log, ::testing::Not(HasSubstr("buffers")));
    } else {
      EXPECT_THAT(log, HasSubstr("offload_buffers"));
    }
  }

  model.children.push_back(
      WithBuffer(Linear("linear3", 4, 5), "test_buffer4", {10, 2}));
  for (const char* spec : {"0=400,1=400,cpu=1GB", "0=400,1=200,cpu=1GB"}) {
    ::testing::internal::CaptureStderr();
    auto map = InferAutoDeviceMap(model, Memory(spec));
    const std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_THAT(map, IsOkAndHolds(UnorderedElementsAre(
                         Pair("linear1", "0"), Pair("batchnorm", "1"),
                         Pair("linear2", "cpu"), Pair("linear3", "cpu"))));
    // The second GPU holds the 200 bytes of offloaded buffers only when
    // its budget is 400.
    EXPECT_EQ(log.find("offload_buffers") != std::string::npos,
              std::string(spec) == "0=400,1=200,cpu=1GB")
        << spec << ": " << log;
  }
}

// test_infer_auto_device_map_with_fallback_allocation(_tied_weights,
// _and_buffers).
TEST(DeviceMapAccelerateVectorsTest, FallbackAllocationFillsAnEmptyDevice) {
  ModuleTree inner;
  inner.name = "module";
  inner.class_name = "Sequential";
  inner.children = {Linear("linear1", 10, 4), Linear("linear2", 4, 4),
                    Linear("linear3", 4, 8)};
  const ModuleTree model = Root({inner});
  DeviceMapOptions options = Memory("0=256");
  ::testing::internal::CaptureStderr();
  auto without = InferAutoDeviceMap(model, options);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_OK(without.status());
  for (const auto& [name, device] : *without) EXPECT_NE(device, "0") << name;
  EXPECT_THAT(log, HasSubstr("0: "));
  EXPECT_THAT(log, HasSubstr("bytes required"));

  options.fallback_allocation = true;
  EXPECT_THAT(InferAutoDeviceMap(model, options),
              IsOkAndHolds(UnorderedElementsAre(
                  Pair("module.linear1", "disk"), Pair("module.linear2", "0"),
                  Pair("module.linear3", "disk"))));

  ModuleTree tied =
      Root({Linear("linear1", 10, 10), Linear("linear2", 10, 10)});
  Tie(tied, {"linear2"}, "weight", "linear1.weight");
  DeviceMapOptions tied_options = Memory("0=600");
  tied_options.fallback_allocation = true;
  EXPECT_THAT(InferAutoDeviceMap(tied, tied_options),
              IsOkAndHolds(ElementsAre(Pair("", "0"))));

  const ModuleTree buffered =
      Root({WithBuffer(Linear("linear1", 10, 10), "buffer1", {5}),
            WithBuffer(BatchNorm("batchnorm", 10), "buffer2", {5}),
            WithBuffer(Linear("linear2", 10, 10), "buffer3", {5})});
  DeviceMapOptions buffered_options = Memory("0=678");
  buffered_options.fallback_allocation = true;
  ::testing::internal::CaptureStderr();
  auto buffered_map = InferAutoDeviceMap(buffered, buffered_options);
  EXPECT_THAT(::testing::internal::GetCapturedStderr(),
              HasSubstr("offload_buffers"));
  EXPECT_THAT(buffered_map, IsOkAndHolds(UnorderedElementsAre(
                                Pair("batchnorm", "0"), Pair("linear1", "disk"),
                                Pair("linear2", "disk"))));
}

TEST(DeviceMapAccelerateVectorsTest, FallbackFindsNothingTooSmall) {
  ModuleTree inner;
  inner.name = "module";
  inner.class_name = "Sequential";
  inner.children = {Linear("linear1", 10, 10), Linear("linear2", 10, 10),
                    Linear("linear3", 10, 10)};
  DeviceMapOptions options = Memory("0=30");
  options.fallback_allocation = true;
  ASSERT_OK_AND_ASSIGN(DeviceMap map,
                       InferAutoDeviceMap(Root({inner}), options));
  for (const auto& [name, device] : map) EXPECT_EQ(device, "disk") << name;
}

}  // namespace accelerate_vectors

}  // namespace
}  // namespace accelerate::bigmodel
