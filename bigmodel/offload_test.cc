// Tests of the offload folder: round trips, pointers, bad folders, and
// folders exchanged with Python Accelerate.

#include "bigmodel/offload.h"

#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "bigmodel/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::FreshTestDir;
using ::accelerate::testing::PeerPython;
using ::accelerate::testing::ProcessResult;
using ::accelerate::testing::ReadFileOrDie;
using ::accelerate::testing::StatusIs;
using ::accelerate::testing::Subprocess;
using ::accelerate::testing::TestPath;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

TEST(OffloadTest, TensorsRoundTripThroughRawFilesAndTheIndex) {
  const std::string dir = FreshTestDir("round_trip");
  const at::Tensor f32 =
      torch::arange(6, torch::kFloat32).reshape({2, 3}).div(4);
  const at::Tensor bf16 = torch::tensor({1.5, -2.0, 3.25}).to(torch::kBFloat16);
  const at::Tensor scalar = torch::tensor(int64_t{-7});
  const at::Tensor flags = torch::tensor({true, false, true});
  const at::Tensor empty = torch::zeros({0, 4}, torch::kFloat16);
  ASSERT_OK(OffloadTensors(dir, {{"a.weight", f32}, {"a.bias", bf16}}));
  // A second call adds to the index.
  ASSERT_OK(OffloadTensors(
      dir, {{"step", scalar}, {"mask", flags}, {"none", empty}}));
  // The raw bytes of the tensor, nothing else.
  EXPECT_EQ(ReadFileOrDie(dir + "/a.weight.dat"),
            std::string(static_cast<const char*>(f32.data_ptr()), 24));
  const std::string index = ReadFileOrDie(dir + "/index.json");
  EXPECT_THAT(index, HasSubstr("\"bfloat16\""));
  EXPECT_THAT(index, HasSubstr("\"float32\""));

  ASSERT_OK_AND_ASSIGN(auto weights, OffloadedWeights::Open(dir));
  EXPECT_THAT(weights->names(), UnorderedElementsAre("a.weight", "a.bias",
                                                     "step", "mask", "none"));
  ASSERT_OK_AND_ASSIGN(at::Tensor w, weights->Get("a.weight"));
  EXPECT_TRUE(w.equal(f32));
  ASSERT_OK_AND_ASSIGN(at::Tensor b, weights->Get("a.bias"));
  EXPECT_EQ(b.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(b.equal(bf16));
  ASSERT_OK_AND_ASSIGN(at::Tensor s, weights->Get("step"));
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item<int64_t>(), -7);
  ASSERT_OK_AND_ASSIGN(at::Tensor m, weights->Get("mask"));
  EXPECT_TRUE(m.equal(flags));
  ASSERT_OK_AND_ASSIGN(at::Tensor e, weights->Get("none"));
  EXPECT_EQ(e.sizes(), empty.sizes());
  // Writing to a loaded tensor never reaches the file (copy on write).
  w.fill_(9);
  ASSERT_OK_AND_ASSIGN(at::Tensor again, weights->Get("a.weight"));
  EXPECT_TRUE(again.equal(f32));
  EXPECT_THAT(weights->Get("missing").status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(OffloadTest, PointersReadStraightFromSafetensors) {
  const std::string dir = FreshTestDir("pointers");
  ASSERT_EQ(std::system(("mkdir -p '" + dir + "'").c_str()), 0);
  const std::string file = dir + "/model.safetensors";
  const at::Tensor w = torch::arange(4, torch::kFloat32);
  ASSERT_OK(SaveSafetensors(file, {{"w", w}, {"v", w.mul(2)}}));
  ASSERT_OK(OffloadPointers(dir, file, {"w", "v"}));
  EXPECT_FALSE(std::ifstream(dir + "/w.dat").good());
  ASSERT_OK_AND_ASSIGN(auto weights, OffloadedWeights::Open(dir));
  ASSERT_OK_AND_ASSIGN(at::Tensor got, weights->Get("v"));
  EXPECT_TRUE(got.equal(w.mul(2)));
  EXPECT_THAT(OffloadPointers(dir, file, {"nope"}),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(OffloadTest, BadFoldersAndTensorsAreErrorsNamingThem) {
  EXPECT_THAT(OffloadedWeights::Open(TestPath("absent")).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("index.json")));
  const std::string dir = FreshTestDir("bad");
  EXPECT_THAT(
      OffloadTensors(dir, {{"../escape", torch::ones({1})}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("../escape")));
  EXPECT_THAT(
      OffloadTensors(dir, {{"c", torch::ones({1}, torch::kComplexDouble)}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"c\"")));
  ASSERT_OK(OffloadTensors(dir, {{"t", torch::ones({4})}}));
  // A truncated data file.
  std::ofstream(dir + "/t.dat", std::ios::trunc) << "abc";
  ASSERT_OK_AND_ASSIGN(auto weights, OffloadedWeights::Open(dir));
  EXPECT_THAT(
      weights->Get("t").status(),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("t.dat holds 3 bytes")));
  std::ofstream(dir + "/index.json", std::ios::trunc)
      << R"({"t": {"dtype": "float128", "shape": [4]}})";
  EXPECT_THAT(
      OffloadedWeights::Open(dir).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("float128")));
  std::ofstream(dir + "/index.json", std::ios::trunc)
      << R"({"t": {"dtype": "float32", "shape": [-1]}})";
  EXPECT_THAT(OffloadedWeights::Open(dir).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"t\"")));
  // 2^62 + 1 float32 elements: the byte count would wrap to 4.
  std::ofstream(dir + "/index.json", std::ios::trunc)
      << R"({"t": {"dtype": "float32", "shape": [5, 5581, 8681, 49477, 384773]}})";
  std::ofstream(dir + "/t.dat", std::ios::trunc) << "abcd";
  ASSERT_OK_AND_ASSIGN(weights, OffloadedWeights::Open(dir));
  EXPECT_THAT(
      weights->Get("t").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
  std::ofstream(dir + "/index.json", std::ios::trunc) << "[1, 2]";
  EXPECT_THAT(OffloadedWeights::Open(dir).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// Python Accelerate 1.15 itself writes a folder (`offload_state_dict`) that
// ours must read, and reads ours with its `OffloadedWeightsLoader`.
constexpr char kPython[] = R"PY(
import sys
import torch
from accelerate.utils import OffloadedWeightsLoader, offload_state_dict
ours, theirs = sys.argv[1], sys.argv[2]
offload_state_dict(theirs, {
    "layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4,
    "layer.bias": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
    "count": torch.tensor(5, dtype=torch.int64),
})
loaded = OffloadedWeightsLoader(save_folder=ours)
assert sorted(loaded.keys()) == ["x", "y", "z"], sorted(loaded.keys())
load = loaded.__getitem__
assert torch.equal(load("x"), torch.tensor([[1, 2], [3, 4]], dtype=torch.float16)), load("x")
assert torch.equal(load("y"), torch.tensor([0.5, 8.0], dtype=torch.bfloat16)), load("y")
assert load("z").dim() == 0 and load("z").item() == -3, load("z")
print("python read ours")
)PY";

TEST(OffloadTest, FoldersInterchangeWithPythonAccelerate) {
  const std::string ours = FreshTestDir("ours");
  const std::string theirs = FreshTestDir("theirs");
  ASSERT_OK(OffloadTensors(
      ours,
      {{"x", torch::tensor({1, 2, 3, 4}).reshape({2, 2}).to(torch::kFloat16)},
       {"y", torch::tensor({0.5, 8.0}).to(torch::kBFloat16)},
       {"z", torch::tensor(int64_t{-3})}}));
  Subprocess python({PeerPython(), "-c", kPython, ours, theirs}, {});
  ASSERT_OK(python.Start());
  ProcessResult result = python.Wait(absl::Seconds(120));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("python read ours"));
  ASSERT_OK_AND_ASSIGN(auto weights, OffloadedWeights::Open(theirs));
  ASSERT_OK_AND_ASSIGN(at::Tensor w, weights->Get("layer.weight"));
  EXPECT_TRUE(
      w.equal(torch::arange(6, torch::kFloat32).reshape({2, 3}).div(4)));
  ASSERT_OK_AND_ASSIGN(at::Tensor b, weights->Get("layer.bias"));
  EXPECT_TRUE(b.equal(torch::tensor({1.5, -2.0}).to(torch::kBFloat16)));
  ASSERT_OK_AND_ASSIGN(at::Tensor c, weights->Get("count"));
  EXPECT_EQ(c.dim(), 0);
  EXPECT_EQ(c.item<int64_t>(), 5);
}

}  // namespace
}  // namespace accelerate::bigmodel
