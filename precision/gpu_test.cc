// //precision on a CUDA device (tag `gpu`): autocast, loss scaling and the
// float8 products through `_scaled_mm`. Skips, saying why, without a
// CUDA build or a GPU.

#include <vector>

#include <ATen/ATen.h>
#include <torch/cuda.h>
#ifdef ACCELERATE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif
#include "gtest/gtest.h"
#include "testing/cuda_testutil.h"
#include "precision/autocast.h"
#include "precision/fp8_linear.h"
#include "precision/fp8_recipe.h"
#include "precision/grad_scaler.h"
#include "precision/internal/scaled_product.h"
#include "precision/mixed_precision.h"
#include "testing/status_matchers.h"
#include "testing/tensor_testutil.h"

namespace accelerate::precision {
namespace {

class PrecisionGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ACCELERATE_SKIP_WITHOUT_CUDA();
  }
  const c10::Device gpu_{c10::kCUDA, 0};
};

// Compute capability 8.9 or newer: float8 matrix units.
bool Float8MatrixUnits() {
#ifdef ACCELERATE_WITH_CUDA
  const cudaDeviceProp* properties = at::cuda::getDeviceProperties(0);
  return properties->major * 10 + properties->minor >= 89;
#else
  return false;
#endif
}

at::Tensor Random(std::vector<int64_t> shape, int64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  return at::randn(shape, generator, at::kFloat);
}

TEST_F(PrecisionGpuTest, AutocastComputesInBfloat16OnCuda) {
  const at::Tensor x = Random({16, 32}, 1).to(gpu_);
  const at::Tensor w = Random({8, 32}, 2).to(gpu_);
  {
    AutocastScope scope(MixedPrecision::kBf16, c10::DeviceType::CUDA);
    EXPECT_EQ(at::linear(x, w).scalar_type(), at::kBFloat16);
  }
  EXPECT_EQ(at::linear(x, w).scalar_type(), at::kFloat);
}

TEST_F(PrecisionGpuTest, ScalerSkipsAnInfiniteStepOnCuda) {
  GradScaler scaler;
  at::Tensor p = at::zeros({4}, at::TensorOptions().device(gpu_));
  p.mutable_grad() = at::tensor({1.0f, INFINITY, 2.0f, 3.0f}).to(gpu_);
  ASSERT_OK_AND_ASSIGN(const bool finite, scaler.Unscale(&scaler, {p}));
  EXPECT_FALSE(finite);
  ASSERT_OK(scaler.Update());
  EXPECT_EQ(scaler.scale(), 65536.0 / 2);

  p.mutable_grad() = at::full({4}, 65536.0 / 2, p.options());
  ASSERT_OK_AND_ASSIGN(const bool finite_now, scaler.Unscale(&scaler, {p}));
  EXPECT_TRUE(finite_now);
  EXPECT_TRUE(testing::TensorsClose(p.grad().cpu(), at::ones({4}),
                                    {.rtol = 0, .atol = 0}));
}

// Tensorwise float8 through _scaled_mm on the GPU equals the dequantized
// product on the CPU: the same casts (bit for bit), float32 accumulation
// either way, up to the rounding of Hopper's float8 units, which add their
// partial sums in fewer bits before promoting them to float32 (PyTorch's
// own test of _scaled_mm allows 3e-3 on 16 x 16 x 16).
TEST_F(PrecisionGpuTest, Float8ProductsRunNativelyAndMatchTheCpu) {
  const at::Tensor input = Random({64, 128}, 3);
  const at::Tensor weight = Random({32, 128}, 4);
  precision_internal::ScaledOperand a{
      CastToFloat8(input.to(gpu_), at::ones({}, gpu_), Float8Format::kE4M3),
      at::ones({}, gpu_)};
  precision_internal::ScaledOperand b{
      CastToFloat8(weight.to(gpu_), at::ones({}, gpu_), Float8Format::kE4M3),
      at::ones({}, gpu_)};
  EXPECT_EQ(precision_internal::RunsNatively(a, b), Float8MatrixUnits());
  const at::Tensor cast_on_cpu =
      CastToFloat8(input, at::ones({}), Float8Format::kE4M3);
  EXPECT_TRUE(at::equal(a.bits.cpu().view(at::kByte),
                        cast_on_cpu.view(at::kByte)));

  const Fp8Recipe recipe;  // torchao's dynamic tensorwise.
  auto run = [&](const c10::Device& device) {
    at::Tensor x = input.to(device).requires_grad_();
    at::Tensor w = weight.to(device).requires_grad_();
    at::Tensor out = Fp8Matmul(x, w, recipe);
    out.backward(Random({64, 32}, 5).to(device));
    return std::vector<at::Tensor>{out.detach().cpu(), x.grad().cpu(),
                                   w.grad().cpu()};
  };
  const std::vector<at::Tensor> cpu = run(c10::kCPU);
  const std::vector<at::Tensor> cuda = run(gpu_);
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_TRUE(testing::TensorsClose(cuda[i], cpu[i],
                                      {.rtol = 1e-2, .atol = 1e-2}))
        << "output 0, input 1, weight 2 gradients: " << i;
  }
}

}  // namespace
}  // namespace accelerate::precision
