#include "testing/tensor_testutil.h"

#include <sstream>

#include <ATen/ATen.h>

namespace accelerate::testing {

::testing::AssertionResult TensorsClose(const at::Tensor& actual,
                                        const at::Tensor& expected,
                                        const Tolerance& tolerance) {
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure()
           << "shape " << actual.sizes() << " != expected "
           << expected.sizes();
  }
  if (actual.scalar_type() != expected.scalar_type()) {
    return ::testing::AssertionFailure()
           << "dtype " << actual.scalar_type() << " != expected "
           << expected.scalar_type();
  }
  const at::Tensor a = actual.cpu().to(at::kDouble);
  const at::Tensor e = expected.cpu().to(at::kDouble);
  if (!at::allclose(a, e, tolerance.rtol, tolerance.atol,
                    /*equal_nan=*/true)) {
    std::ostringstream message;
    message << "values differ beyond rtol=" << tolerance.rtol
            << " atol=" << tolerance.atol << "\nactual:\n"
            << actual << "\nexpected:\n"
            << expected;
    return ::testing::AssertionFailure() << message.str();
  }
  return ::testing::AssertionSuccess();
}

std::vector<double> TensorValues(const at::Tensor& tensor) {
  const at::Tensor flat = tensor.cpu().to(at::kDouble).contiguous().flatten();
  return std::vector<double>(flat.data_ptr<double>(),
                             flat.data_ptr<double>() + flat.numel());
}

}  // namespace accelerate::testing
