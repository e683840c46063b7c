// A histogram of a tensor's values for `Log` (TensorBoard draws it; the
// JSON Lines tracker writes it): `bins` equal buckets between the finite
// minimum and maximum, as PyTorch's `add_histogram` with an integer `bins`
// computes them. NaN and infinite values are left out (counted in none).
//
// clang-format off
//   #include <ATen/ops/randn.h>
//   LogValues Example() {
//     return {{"weights", HistogramOf(at::randn({1000}))}};
//   }
// clang-format on
//
// Thread safety: a pure function.

#ifndef ACCELERATE_TRACKERS_HISTOGRAM_H_
#define ACCELERATE_TRACKERS_HISTOGRAM_H_

#include <ATen/core/Tensor.h>

#include "trackers/tracker.h"

namespace accelerate::trackers {

// REQUIRES: bins > 0.
Histogram HistogramOf(const at::Tensor& values, int bins = 30);

}  // namespace accelerate::trackers

#endif  // ACCELERATE_TRACKERS_HISTOGRAM_H_
