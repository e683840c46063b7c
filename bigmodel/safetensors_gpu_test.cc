// Safetensors loads onto a GPU (tag `gpu`; skipped, saying why, without
// one): staged through page-locked buffers, usable on the current stream
// at once, equal to what the CPU reads.

#include <torch/torch.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bigmodel/safetensors.h"
#include "bigmodel/sharded_checkpoint.h"
#include "gtest/gtest.h"
#include "testing/cuda_testutil.h"
#include "testing/files.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::bigmodel {
namespace {

using ::accelerate::testing::TensorsClose;
using ::accelerate::testing::TestPath;

constexpr ::accelerate::testing::Tolerance kExact = {0, 0};

// Tensors of several dtypes and sizes: empty, tiny, larger than a staging
// buffer (32 MiB), zero-dimensional.
// "big" first.
NamedTensors Mixed() {
  torch::manual_seed(11);
  return {{"big", torch::randn({40 << 20}).to(torch::kBFloat16)},  // 80 MiB
          {"empty", torch::empty({0, 7})},
          {"ids", torch::randint(0, 50000, {3, 1001}, torch::kLong)},
          {"mask", torch::rand({513}) > 0.5},
          {"norm", torch::randn({4097})},
          {"scalar", torch::tensor(3.5, torch::kFloat16)}};
}

TEST(SafetensorsGpuTest, LoadsEveryTensorOntoTheGpuAsTheCpuReadsIt) {
  ACCELERATE_SKIP_WITHOUT_CUDA();
  const std::string path = TestPath("mixed.safetensors");
  ASSERT_OK(SaveSafetensors(path, Mixed()));
  ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  for (int threads : {1, 0}) {
    SCOPED_TRACE(absl::StrCat("staging_threads ", threads));
    ASSERT_OK_AND_ASSIGN(
        auto loaded,
        file->Load(file->names(),
                   {.device = torch::Device(torch::kCUDA, 0),
                    .staging_threads = threads}));
    // Read back at once on the current stream: the copies on the copy
    // stream must be ordered before these reads.
    for (const std::string& name : file->names()) {
      const at::Tensor& gpu = loaded.at(name);
      EXPECT_TRUE(gpu.is_cuda()) << name;
      ASSERT_OK_AND_ASSIGN(at::Tensor cpu, file->Get(name));
      EXPECT_TRUE(TensorsClose(gpu, cpu, kExact)) << name;
    }
  }
}

TEST(SafetensorsGpuTest, GetOfALargeTensorIsStagedAndShardsLoadTogether) {
  ACCELERATE_SKIP_WITHOUT_CUDA();
  const std::string dir = TestPath("gpu_sharded");
  NamedTensors tensors = Mixed();
  ASSERT_OK(SaveShardedSafetensors(dir, tensors,
                                   {.max_shard_bytes = 16 << 20}));
  ASSERT_OK_AND_ASSIGN(auto checkpoint, ShardedCheckpoint::Open(dir));
  ASSERT_OK_AND_ASSIGN(
      auto loaded, checkpoint->Load(checkpoint->names(),
                                    {.device = torch::Device(torch::kCUDA)}));
  EXPECT_GE(checkpoint->files_opened(), 2);
  for (const auto& [name, expected] : tensors) {
    EXPECT_TRUE(TensorsClose(loaded.at(name).cpu(), expected, kExact))
        << name;
  }
  // 80 MiB: over the size from which a single `Get` is staged.
  ASSERT_OK_AND_ASSIGN(auto file,
                       SafetensorsFile::Open(dir + "/" +
                                             *checkpoint->FileOf("big")));
  ASSERT_OK_AND_ASSIGN(at::Tensor big,
                       file->Get("big", {.device = torch::Device("cuda:0")}));
  EXPECT_TRUE(big.is_cuda());
  EXPECT_TRUE(TensorsClose(big, tensors[0].second, kExact));
}

}  // namespace
}  // namespace accelerate::bigmodel
