// The GPU figures of BENCHMARKS.md, measured on one GPU (tools/gpu_check
// runs it on the lent H200): host-to-device loading of a safetensors
// checkpoint (ours, staged; and plain copies from the mapping, for
// reference) against the pinned-memory copy bandwidth of the same run, and
// float8 (`_scaled_mm`) against bfloat16 matrix-product throughput.
// Prints one JSON line.
//
//   gpu_figures [--checkpoint_gib 2] [--dir /tmp]

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <torch/cuda.h>
#include "benchmarks/clock.h"
#include "bigmodel/safetensors.h"

namespace accelerate::benchmarks {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

// Best of `runs` timings of `fn`, GPU work finished each time.
template <typename Fn>
double BestSeconds(int runs, Fn&& fn) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    torch::cuda::synchronize();
    const double start = Now();
    fn();
    torch::cuda::synchronize();
    best = std::min(best, Now() - start);
  }
  return best;
}

int Run(int64_t checkpoint_gib, const std::string& dir) {
  if (!torch::cuda::is_available()) {
    std::cerr << "gpu_figures: no CUDA device\n";
    return 2;
  }
  const c10::Device gpu(c10::kCUDA, 0);
  const int64_t bytes = checkpoint_gib * kGiB;

  // Pinned host memory to the GPU: the ceiling of any load.
  const at::Tensor pinned = at::empty(
      {bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  pinned.fill_(1);
  at::Tensor on_gpu =
      at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(gpu));
  const double pinned_s =
      BestSeconds(3, [&] { on_gpu.copy_(pinned, /*non_blocking=*/true); });
  on_gpu = at::Tensor();

  // A checkpoint of 256 MiB bfloat16 tensors, read back onto the GPU (the
  // file in the page cache, as after the first load).
  const int64_t tensor_elements = 128 * (int64_t{1} << 20);  // 256 MiB bf16
  bigmodel::NamedTensors tensors;
  for (int64_t i = 0; i < bytes / (2 * tensor_elements); ++i) {
    tensors.emplace_back(absl::StrCat("layer.", i, ".weight"),
                         at::full({tensor_elements}, 0.5, at::kBFloat16));
  }
  const std::string path =
      absl::StrCat(dir, "/gpu_figures_", getpid(), ".safetensors");
  if (absl::Status saved = bigmodel::SaveSafetensors(path, tensors);
      !saved.ok()) {
    std::cerr << "gpu_figures: " << saved << "\n";
    return 1;
  }
  tensors.clear();
  absl::StatusOr<std::unique_ptr<bigmodel::SafetensorsFile>> file =
      bigmodel::SafetensorsFile::Open(path);
  if (!file.ok()) {
    std::cerr << "gpu_figures: " << file.status() << "\n";
    return 1;
  }
  // Ours: one load, staged through page-locked buffers.
  const double load_s = BestSeconds(3, [&] {
    absl::StatusOr<std::map<std::string, at::Tensor>> loaded =
        (*file)->Load((*file)->names(), {.device = gpu});
    if (!loaded.ok()) {
      std::cerr << "gpu_figures: " << loaded.status() << "\n";
      std::exit(1);
    }
  });
  // Plain copies from the mapping (pageable memory), tensor by tensor, as
  // `safe_open(..., device="cuda")` reads.
  std::vector<at::Tensor> plain;
  const double plain_s = BestSeconds(3, [&] {
    plain.clear();
    for (const std::string& name : (*file)->names()) {
      plain.push_back((*(*file)->Get(name)).to(gpu));
    }
  });
  plain.clear();
  std::filesystem::remove(path);

  // Matrix products: bf16 against float8 E4M3 with per-tensor scales.
  const int64_t n = 8192;
  const at::Tensor a =
      at::randn({n, n}, at::TensorOptions().device(gpu)).to(at::kBFloat16);
  const at::Tensor b = at::randn({n, n}, a.options());
  const double bf16_s = BestSeconds(10, [&] { (void)at::mm(a, b); });
  const at::Tensor a8 = a.to(at::kFloat8_e4m3fn);
  const at::Tensor b8 = b.to(at::kFloat8_e4m3fn).t().contiguous().t();
  const at::Tensor one = at::ones({}, at::TensorOptions().device(gpu));
  const double fp8_s = BestSeconds(10, [&] {
    (void)at::_scaled_mm(a8, b8, one, one, std::nullopt, std::nullopt,
                         at::kBFloat16, /*use_fast_accum=*/true);
  });
  const double flops = 2.0 * n * n * n;

  const double pinned_gbs = bytes / pinned_s / 1e9;
  const double load_gbs = bytes / load_s / 1e9;
  const double plain_gbs = bytes / plain_s / 1e9;
  std::printf(
      "{\"checkpoint_bytes\": %lld, \"pinned_h2d_gb_s\": %.2f, "
      "\"safetensors_load_gb_s\": %.2f, \"load_vs_pinned\": %.3f, "
      "\"plain_copies_gb_s\": %.2f, \"plain_vs_pinned\": %.3f, "
      "\"bf16_tflops\": %.1f, \"fp8_tflops\": %.1f, \"fp8_vs_bf16\": %.2f}\n",
      static_cast<long long>(bytes), pinned_gbs, load_gbs,
      load_gbs / pinned_gbs, plain_gbs, plain_gbs / pinned_gbs,
      flops / bf16_s / 1e12, flops / fp8_s / 1e12, bf16_s / fp8_s);
  return 0;
}

}  // namespace
}  // namespace accelerate::benchmarks

int main(int argc, char** argv) {
  int64_t gib = 2;
  std::string dir = "/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--checkpoint_gib" && absl::SimpleAtoi(argv[i + 1], &gib) &&
        gib > 0) {
      continue;
    }
    if (flag == "--dir") {
      dir = argv[i + 1];
      continue;
    }
    std::cerr << "gpu_figures: bad flag " << flag << " " << argv[i + 1]
              << " (valid: --checkpoint_gib N>0, --dir DIR)\n";
    return 64;
  }
  return accelerate::benchmarks::Run(gib, dir);
}
