// Tests of safetensors files: hand-made and damaged files, round trips,
// zero copy (sharded checkpoints: sharded_checkpoint_test.cc).

#include "bigmodel/safetensors.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <ATen/ATen.h>
#include "bigmodel/dtype.h"
#include "bigmodel/safetensors_header.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::IsOk;
using ::accelerate::testing::ReadFileOrDie;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::TensorsClose;
using ::accelerate::testing::TestPath;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr ::accelerate::testing::Tolerance kExact = {0, 0};

// A file built by hand from the format's specification: header length,
// JSON, bytes.
std::string HandMade(const std::string& json, const std::string& data) {
  std::string file(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i, n >>= 8) file[i] = static_cast<char>(n & 0xff);
  return file + json + data;
}

std::string Floats(std::initializer_list<float> values) {
  std::string bytes;
  for (float v : values) bytes.append(reinterpret_cast<const char*>(&v), 4);
  return bytes;
}

TEST(SafetensorsTest, ReadsAHandMadeFile) {
  const std::string path = TestPath("hand.safetensors");
  std::ofstream(path, std::ios::binary) << HandMade(
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}})",
      Floats({1, 2, 3, 4, 5}));
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  EXPECT_THAT(file->names(), ElementsAre("b", "w"));
  EXPECT_EQ(file->metadata().at("format"), "pt");
  ASSERT_OK_AND_ASSIGN(at::Tensor w, file->Get("w"));
  EXPECT_TRUE(TensorsClose(w, at::tensor({1.f, 2.f, 3.f, 4.f}).reshape({2, 2}),
                           kExact));
  ASSERT_OK_AND_ASSIGN(at::Tensor b, file->Get("b"));
  EXPECT_TRUE(TensorsClose(b, at::tensor({5.f}), kExact));
  EXPECT_THAT(file->Get("missing").status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"missing\"")));
}

TEST(SafetensorsTest, RoundTripsEveryDtypeAndShape) {
  at::manual_seed(3);
  const NamedTensors tensors = {
      {"f32", at::randn({3, 4})},
      {"f64", at::randn({2}, at::kDouble)},
      {"f16", at::randn({5}).to(at::kHalf)},
      {"bf16", at::randn({2, 3}).to(at::kBFloat16)},
      {"i64", at::arange(7, at::kLong)},
      {"i32", at::arange(3, at::kInt)},
      {"i16", at::arange(4, at::kShort)},
      {"i8", at::arange(-2, 2, at::kChar)},
      {"u8", at::arange(9, at::kByte)},
      {"bool", at::arange(4, at::kLong).remainder(2).to(at::kBool)},
      {"scalar", at::scalar_tensor(2.5)},
      {"empty", at::zeros({0, 3})},
      {"strided", at::randn({4, 4}).t()},  // Not contiguous.
  };
  const std::string path = TestPath("round.safetensors");
  ASSERT_OK(SaveSafetensors(path, tensors,
                            {{"format", "pt"}, {"note", "a \"quote\""}}));
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  EXPECT_EQ(file->metadata().at("note"), "a \"quote\"");
  for (const auto& [name, tensor] : tensors) {
    ASSERT_OK_AND_ASSIGN(at::Tensor read, file->Get(name));
    EXPECT_TRUE(TensorsClose(read, tensor, kExact)) << name;
  }
  // Complex numbers (C64) round trip as pairs of floats.
  const at::Tensor complex = at::view_as_complex(at::randn({3, 2}));
  ASSERT_OK(SaveSafetensors(TestPath("complex.safetensors"), {{"c", complex}}));
  ASSERT_OK_AND_ASSIGN(auto complex_file,
                       SafetensorsFile::Open(TestPath("complex.safetensors")));
  EXPECT_EQ(complex_file->header().tensors[0].dtype, "C64");
  ASSERT_OK_AND_ASSIGN(at::Tensor complex_read, complex_file->Get("c"));
  ASSERT_EQ(complex_read.scalar_type(), at::kComplexFloat);
  EXPECT_TRUE(TensorsClose(at::view_as_real(complex_read),
                           at::view_as_real(complex), kExact));
  // Every tensor starts aligned to its element size.
  for (const TensorEntry& entry : file->header().tensors) {
    EXPECT_EQ((file->header().data_start + entry.begin) %
                  DtypeBySafetensorsName(entry.dtype)->bytes,
              0u)
        << entry.name;
  }
  EXPECT_EQ(file->header().data_start % 8, 0u);
}

TEST(SafetensorsTest, CpuReadsAliasTheMappingAndNeverChangeTheFile) {
  const std::string path = TestPath("alias.safetensors");
  ASSERT_OK(SaveSafetensors(path, {{"x", at::ones({1000})}}));
  const std::string before = ReadFileOrDie(path);
  {
    ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
    ASSERT_OK_AND_ASSIGN(at::Tensor x, file->Get("x"));
    ASSERT_OK_AND_ASSIGN(at::Tensor again, file->Get("x"));
    EXPECT_EQ(x.data_ptr(), again.data_ptr());  // Zero copy: the same bytes.
    ASSERT_OK_AND_ASSIGN(at::Tensor copied, file->Get("x", {.copy = true}));
    EXPECT_NE(copied.data_ptr(), x.data_ptr());
    EXPECT_TRUE(AliasesMapping(x));
    EXPECT_TRUE(AliasesMapping(x.view({10, 100})));
    EXPECT_FALSE(AliasesMapping(copied));
    x.fill_(7);    // Copy-on-write: the file keeps its ones.
    file.reset();  // The tensor keeps the mapping alive.
    EXPECT_EQ(x.sum().item<float>(), 7000);
  }
  EXPECT_EQ(ReadFileOrDie(path), before);
}

TEST(SafetensorsTest, LoadGivesWhatGetGivesAndNamesAMissingTensor) {
  const std::string path = TestPath("load.safetensors");
  ASSERT_OK(SaveSafetensors(path, {{"a", at::ones({3})},
                                   {"b", at::arange(10, at::kLong)}}));
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  ASSERT_OK_AND_ASSIGN(auto loaded, file->Load({"b", "a"}));
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_TRUE(AliasesMapping(loaded.at("a")));
  EXPECT_TRUE(TensorsClose(loaded.at("a"), at::ones({3}), kExact));
  EXPECT_TRUE(
      TensorsClose(loaded.at("b"), at::arange(10, at::kLong), kExact));
  ASSERT_OK_AND_ASSIGN(auto copied, file->Load({"a"}, {.copy = true}));
  EXPECT_FALSE(AliasesMapping(copied.at("a")));
  EXPECT_THAT(file->Load({"a", "zz"}).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"zz\"")));
}

struct Corruption {
  std::string label;
  std::string file;
  absl::StatusCode code;
  std::string message;
};

TEST(SafetensorsTest, DamagedFilesAreRefusedWithTheProblemNamed) {
  const std::string ok_json =
      R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string huge(8, '\0');
  huge[4] = 1;  // 2^32-byte header.
  const std::vector<Corruption> cases = {
      {"short", "abc", absl::StatusCode::kDataLoss, "shorter than the 8-byte"},
      {"length past end", HandMade(ok_json, Floats({1, 2})).substr(0, 20),
       absl::StatusCode::kDataLoss, "runs past the end"},
      {"huge header", huge + "{}", absl::StatusCode::kInvalidArgument,
       "exceeds the limit"},
      {"not json", HandMade("{nope", ""), absl::StatusCode::kDataLoss,
       "not valid JSON"},
      {"not an object", HandMade("[1,2]", ""), absl::StatusCode::kDataLoss,
       "not a JSON object"},
      {"truncated data", HandMade(ok_json, Floats({1})),
       absl::StatusCode::kDataLoss, "hold 8 bytes but the file has 4"},
      {"extra data", HandMade(ok_json, Floats({1, 2, 3})),
       absl::StatusCode::kDataLoss, "hold 8 bytes but the file has 12"},
      {"unknown dtype",
       HandMade(R"({"t":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})",
                Floats({1, 2})),
       absl::StatusCode::kInvalidArgument,
       "tensor \"t\" has unknown dtype \"F17\""},
      {"shape mismatch",
       HandMade(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                Floats({1, 2})),
       absl::StatusCode::kDataLoss, "needs 12 bytes, but data_offsets hold 8"},
      {"overlap",
       HandMade(
           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
           Floats({1, 2})),
       absl::StatusCode::kDataLoss, "overlapping"},
      {"gap",
       HandMade(
           R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
           Floats({1, 2, 3})),
       absl::StatusCode::kDataLoss, "leaving a gap"},
      {"negative shape",
       HandMade(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                Floats({1, 2})),
       absl::StatusCode::kDataLoss, "not a non-negative integer"},
      {"descending offsets",
       HandMade(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})",
                ""),
       absl::StatusCode::kDataLoss, "two ascending"},
      {"overflowing shape",
       HandMade(
           R"({"t":{"dtype":"F64","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}})",
           Floats({1, 2})),
       absl::StatusCode::kInvalidArgument, "impossibly large shape"},
      {"metadata value", HandMade(R"({"__metadata__":{"k":1}})", ""),
       absl::StatusCode::kDataLoss, "value of \"k\" is not a string"},
  };
  for (const Corruption& c : cases) {
    EXPECT_THAT(ParseSafetensors(c.file).status(),
                StatusIs(c.code, HasSubstr(c.message)))
        << c.label;
    const std::string path = TestPath("bad.safetensors");
    std::ofstream(path, std::ios::binary | std::ios::trunc) << c.file;
    EXPECT_THAT(SafetensorsFile::Open(path).status(),
                StatusIs(c.code, AllOf(HasSubstr(path), HasSubstr(c.message))))
        << c.label;
  }
  EXPECT_THAT(SafetensorsFile::Open(TestPath("does-not-exist")).status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(SafetensorsTest, ReadsUnsignedAndFp8Dtypes) {
  // Types LibTorch 2 added: unsigned integers and FP8 (weights and scales).
  struct Case {
    const char* dtype;
    at::ScalarType type;
  };
  for (const Case& c :
       {Case{"U16", at::kUInt16}, Case{"U32", at::kUInt32},
        Case{"U64", at::kUInt64}, Case{"F8_E4M3", at::kFloat8_e4m3fn},
        Case{"F8_E5M2", at::kFloat8_e5m2},
        Case{"F8_E8M0", at::kFloat8_e8m0fnu}}) {
    const int64_t size = c10::elementSize(c.type);
    const std::string path = TestPath(absl::StrCat(c.dtype, ".safetensors"));
    const std::string bytes(2 * size, '\x01');
    std::ofstream(path, std::ios::binary | std::ios::trunc) << HandMade(
        absl::StrCat(R"({"t":{"dtype":")", c.dtype,
                     R"(","shape":[2],"data_offsets":[0,)", 2 * size, "]}}"),
        bytes);
    ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
    ASSERT_OK_AND_ASSIGN(at::Tensor t, file->Get("t"));
    EXPECT_EQ(t.scalar_type(), c.type) << c.dtype;
    EXPECT_EQ(t.numel(), 2) << c.dtype;
    EXPECT_EQ(std::string(static_cast<const char*>(t.data_ptr()), 2 * size),
              bytes)
        << c.dtype;
  }
}

}  // namespace
}  // namespace accelerate::bigmodel
