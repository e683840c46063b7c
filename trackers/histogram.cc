#include "trackers/histogram.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "state/logging.h"

namespace accelerate::trackers {

Histogram HistogramOf(const at::Tensor& values, int bins) {
  ACCELERATE_CHECK(bins > 0) << "bins " << bins;
  torch::NoGradGuard no_grad;
  at::Tensor flat = values.detach().reshape({-1}).to(at::kCPU, at::kDouble);
  flat = flat.masked_select(flat.isfinite());
  Histogram histogram;
  histogram.num = static_cast<double>(flat.numel());
  if (flat.numel() == 0) return histogram;
  histogram.min = flat.min().item<double>();
  histogram.max = flat.max().item<double>();
  histogram.sum = flat.sum().item<double>();
  histogram.sum_squares = flat.square().sum().item<double>();
  double low = histogram.min;
  double high = histogram.max;
  if (low == high) {  // One value: buckets around it.
    const double half = std::max(0.5, std::abs(low) * 1e-6);
    low -= half;
    high += half;
  }
  const at::Tensor counts = at::histc(flat, bins, low, high).contiguous();
  const double* count = counts.data_ptr<double>();
  histogram.bucket_limits.reserve(bins);
  histogram.bucket_counts.reserve(bins);
  for (int i = 0; i < bins; ++i) {
    histogram.bucket_limits.push_back(low + (high - low) * (i + 1) / bins);
    histogram.bucket_counts.push_back(count[i]);
  }
  return histogram;
}

}  // namespace accelerate::trackers
