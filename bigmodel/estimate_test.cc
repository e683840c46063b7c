// Tests of the memory estimate against Accelerate's arithmetic and table.

#include "bigmodel/estimate.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TensorEntry Entry(const std::string& name, std::vector<int64_t> shape,
                  const std::string& dtype = "F32") {
  TensorEntry entry;
  entry.name = name;
  entry.shape = std::move(shape);
  entry.dtype = dtype;
  return entry;
}

// A small model: embeddings, two blocks of two linears, a head, an int64
// buffer; stored in fp16 (sizes count float32, as Accelerate's empty model).
std::vector<TensorEntry> Model() {
  return {
      Entry("embed.weight", {1000, 64}, "F16"),
      Entry("blocks.0.fc1.weight", {256, 64}, "F16"),
      Entry("blocks.0.fc1.bias", {256}, "F16"),
      Entry("blocks.0.fc2.weight", {64, 256}, "F16"),
      Entry("blocks.1.fc1.weight", {256, 64}, "F16"),
      Entry("blocks.1.fc1.bias", {256}, "F16"),
      Entry("blocks.1.fc2.weight", {64, 256}, "F16"),
      Entry("head.weight", {10, 64}, "F16"),
      Entry("position_ids", {512}, "I64"),
  };
}

TEST(EstimateTest, SizesCountFloat32AndFindTheLargestLeafModule) {
  const ModelSizes sizes = ComputeModelSizes(Model());
  // (64000 + 2 * (16384 + 256 + 16384) + 640) * 4 + 512 * 8
  EXPECT_EQ(sizes.total_bytes, (64000 + 2 * 33024 + 640) * 4 + 4096);
  EXPECT_EQ(sizes.largest_layer_bytes, 64000 * 4);
  EXPECT_THAT(sizes.largest_layers, ElementsAre("embed"));
}

TEST(EstimateTest, NumberedBlocksCountAsOneLayer) {
  // Two decoder blocks of three linears each: a block (3 * 64 = 192 floats)
  // is larger than any single tensor (the 100-float embedding).
  std::vector<TensorEntry> model = {Entry("embed.weight", {100})};
  for (int block = 0; block < 2; ++block) {
    for (const char* part : {"q", "k", "v"}) {
      model.push_back(
          Entry("layers." + std::to_string(block) + ".attn." + part + ".weight",
                {64}));
    }
  }
  const ModelSizes sizes = ComputeModelSizes(model);
  EXPECT_EQ(sizes.largest_layer_bytes, 192 * 4);
  EXPECT_THAT(sizes.largest_layers, ElementsAre("layers.0", "layers.1"));
}

TEST(EstimateTest, TiedLargestLayersAreAllNamed) {
  const ModelSizes sizes = ComputeModelSizes(
      {Entry("a.w", {8}), Entry("b.inner.w", {8}), Entry("c", {2})});
  EXPECT_THAT(sizes.largest_layers, ElementsAre("a", "b.inner"));
}

TEST(EstimateTest, RowsFollowAcceleratesArithmetic) {
  ASSERT_OK_AND_ASSIGN(
      std::vector<MemoryRow> rows,
      EstimateMemory(Model(), {"float32", "float16", "int8", "int4"}));
  const double total = (64000 + 2 * 33024 + 640) * 4 + 4096;
  EXPECT_EQ(rows[0].total_bytes, total);
  EXPECT_EQ(rows[0].training_bytes, total * 4);
  EXPECT_EQ(rows[1].total_bytes, total / 2);
  EXPECT_EQ(rows[1].training_bytes, total * 2);
  EXPECT_EQ(rows[2].largest_layer_bytes, 64000.0);
  EXPECT_EQ(rows[3].total_bytes, total / 8);
  EXPECT_EQ(rows[3].training_bytes, -1);
  EXPECT_THAT(
      EstimateMemory(Model(), {"float8"}).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"float8\"")));
}

TEST(EstimateTest, ConvertBytesMatchesPython) {
  EXPECT_EQ(ConvertBytes(512, true), "512 bytes");
  EXPECT_EQ(ConvertBytes(1536), "1.5 KB");
  EXPECT_EQ(ConvertBytes(438498304), "418.18 MB");
  EXPECT_EQ(ConvertBytes(2048, true), "2.0 KB");
  EXPECT_EQ(ConvertBytes(1024.0 * 1024 * 1024 * 1.61), "1.61 GB");
  // Python rounds the exact binary value: 1.125 -> 1.12, 2.675 -> 2.67.
  EXPECT_EQ(ConvertBytes(1152), "1.12 KB");
  EXPECT_EQ(ConvertBytes(2739.2), "2.67 KB");
}

TEST(EstimateTest, TableHasAcceleratesLayout) {
  ASSERT_OK_AND_ASSIGN(std::vector<MemoryRow> rows,
                       EstimateMemory(Model(), {"float32", "int4"}));
  const std::string table = MemoryTable(rows, "Memory Usage for loading `m`");
  // Worked by hand: total (64000 + 2 * 33024 + 640) * 4 + 512 * 8 = 526848
  // bytes = 514.5 KB; Adam 4x = 2.01 MB; int4 an eighth; Python's
  // str.center puts an odd margin's extra space on the left for odd widths.
  EXPECT_EQ(table,
            "┌────────────────────────────────────────────────────┐\n"
            "│            Memory Usage for loading `m`            │\n"
            "├───────┬─────────────┬──────────┬───────────────────┤\n"
            "│ dtype │Largest Layer│Total Size│Training using Adam│\n"
            "├───────┼─────────────┼──────────┼───────────────────┤\n"
            "│float32│   250.0 KB  │ 514.5 KB │      2.01 MB      │\n"
            "│  int4 │   31.25 KB  │ 64.31 KB │        N/A        │\n"
            "└───────┴─────────────┴──────────┴───────────────────┘\n");
  // A title wider than the columns widens the last column by twice the
  // difference (62 - 54 = 8, so 16 more), as Accelerate's table does.
  const std::string wide = MemoryTable(
      rows, "Memory Usage for loading `a-checkpoint-with-a-long-name/model`");
  EXPECT_THAT(wide, HasSubstr("│   Memory Usage for loading "
                              "`a-checkpoint-with-a-long-name/model`   │"));
  EXPECT_THAT(wide, HasSubstr("│        Training using Adam        │"));
}

}  // namespace
}  // namespace accelerate::bigmodel
