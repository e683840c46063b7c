// The one way tests compare tensors: same shape and dtype, and values equal
// within explicit tolerances (|actual - expected| <= atol + rtol * |expected|).
//
// clang-format off
//   void Example(const at::Tensor& result, const at::Tensor& expected) {
//     EXPECT_TRUE(TensorsClose(result, expected, {.rtol = 0, .atol = 1e-6}));
//   }
// clang-format on

#ifndef ACCELERATE_TESTING_TENSOR_TESTUTIL_H_
#define ACCELERATE_TESTING_TENSOR_TESTUTIL_H_

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include <ATen/core/Tensor.h>

namespace accelerate::testing {

struct Tolerance {
  double rtol = 0.0;
  double atol = 0.0;
};

// Success when `actual` matches `expected`; otherwise a message with both.
::testing::AssertionResult TensorsClose(const at::Tensor& actual,
                                        const at::Tensor& expected,
                                        const Tolerance& tolerance);

// The values of a tensor as doubles, flattened, for readable expectations.
std::vector<double> TensorValues(const at::Tensor& tensor);

}  // namespace accelerate::testing

#endif  // ACCELERATE_TESTING_TENSOR_TESTUTIL_H_
