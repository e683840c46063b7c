#include "precision/internal/scaled_product.h"

#include <ATen/ATen.h>
#include "gtest/gtest.h"
#include "precision/float8.h"
#include "testing/tensor_testutil.h"

namespace accelerate::precision_internal {
namespace {

using ::accelerate::precision::AmaxToScale;
using ::accelerate::precision::CastToFloat8;
using ::accelerate::precision::Float8Format;

ScaledOperand Quantize(const at::Tensor& x, Float8Format format) {
  const at::Tensor scale = AmaxToScale(x.abs().max(), format);
  return {CastToFloat8(x, scale, format), scale};
}

at::Tensor Random(int64_t rows, int64_t columns, int64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  return at::randn({rows, columns}, generator, at::kFloat) * 3;
}

// `_scaled_mm` (LibTorch implements it on the CPU too) with our operand
// layouts and inverted scales equals the product of the dequantized values:
// what the CUDA path computes, checked where CI runs.
TEST(ScaledProductTest, NativeCallEqualsDequantizedProduct) {
  const ScaledOperand a = Quantize(Random(32, 64, 1), Float8Format::kE4M3);
  const ScaledOperand b = Quantize(Random(48, 64, 2), Float8Format::kE4M3);
  const at::Tensor expected = ScaledProduct(a, b);  // Dequantized on CPU.
  ASSERT_EQ(expected.sizes(), (std::vector<int64_t>{32, 48}));
  EXPECT_TRUE(testing::TensorsClose(NativeScaledProduct(a, b), expected,
                                    {.rtol = 1e-5, .atol = 1e-4}));
}

// The operand layouts of backward: transposed views, E5M2 gradients.
TEST(ScaledProductTest, NativeCallTakesTransposedOperands) {
  const ScaledOperand g = Quantize(Random(32, 48, 3), Float8Format::kE5M2);
  const ScaledOperand x = Quantize(Random(32, 64, 4), Float8Format::kE4M3);
  const ScaledOperand gt{g.bits.t(), g.scale};
  const ScaledOperand xt{x.bits.t(), x.scale};
  const at::Tensor expected =
      at::mm(g.bits.to(at::kFloat).t() / g.scale,
             x.bits.to(at::kFloat) / x.scale);
  EXPECT_TRUE(testing::TensorsClose(ScaledProduct(gt, xt), expected,
                                    {.rtol = 1e-5, .atol = 1e-4}));
  EXPECT_TRUE(
      testing::TensorsClose(NativeScaledProduct(gt, xt), expected,
                            {.rtol = 1e-5, .atol = 1e-4}));
}

TEST(ScaledProductTest, RunsNativelyOnlyOnFloat8MatrixUnits) {
  const ScaledOperand a = Quantize(Random(32, 64, 5), Float8Format::kE4M3);
  const ScaledOperand b = Quantize(Random(48, 64, 6), Float8Format::kE4M3);
  EXPECT_FALSE(RunsNatively(a, b));  // The CPU has none.
}

}  // namespace
}  // namespace accelerate::precision_internal
