// Loading a sharded safetensors checkpoint with //bigmodel, for
// benchmarks/checkpoint_load.py. Modes:
//   write DIR GB        writes a GB-sized checkpoint of 32 MiB float tensors
//                       in 256 MB shards
//   zero_copy DIR       opens the index and gets every tensor (mapped, no copy)
//   touch DIR           as zero_copy, then reads every byte (sums them)
//   read DIR            plain read() of every shard file: the page-cache
//                       bandwidth bound
// Prints one JSON line: {"mode", "seconds", "peak_rss_mb", "bytes"}.

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include "benchmarks/clock.h"
#include "bigmodel/safetensors.h"
#include "bigmodel/sharded_checkpoint.h"

namespace {

using ::accelerate::benchmarks::Now;

using ::accelerate::bigmodel::NamedTensors;

double PeakRssMb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "VmHWM:")) {
      int64_t kb = 0;
      absl::SimpleAtoi(absl::StripAsciiWhitespace(
                           absl::string_view(line).substr(6, line.size() - 9)),
                       &kb);
      return kb / 1024.0;
    }
  }
  return -1;
}

std::vector<std::string> Shards(const std::string& dir) {
  std::vector<std::string> files;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (absl::EndsWith(e->d_name, ".safetensors")) {
        files.push_back(dir + "/" + e->d_name);
      }
    }
    ::closedir(d);
  }
  return files;
}

int Report(const std::string& mode, double seconds, int64_t bytes) {
  std::printf("{\"mode\": \"%s\", \"seconds\": %.6f, \"peak_rss_mb\": %.1f, "
              "\"bytes\": %lld}\n",
              mode.c_str(), seconds, PeakRssMb(), static_cast<long long>(bytes));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: checkpoint_load write|zero_copy|touch|read DIR [GB]\n";
    return 64;
  }
  const std::string mode = argv[1];
  const std::string dir = argv[2];
  if (mode == "write") {
    double gb = 1;
    if (argc > 3) absl::SimpleAtod(argv[3], &gb);
    const int64_t count = static_cast<int64_t>(gb * 1e9 / (32 << 20));
    NamedTensors tensors;
    at::manual_seed(0);
    for (int64_t i = 0; i < count; ++i) {
      tensors.emplace_back(absl::StrCat("layers.", i, ".weight"),
                           at::randn({(32 << 20) / 4}));
    }
    auto status = accelerate::bigmodel::SaveShardedSafetensors(
        dir, tensors, {.max_shard_bytes = 256'000'000});
    if (!status.ok()) {
      std::cerr << status << std::endl;
      return 1;
    }
    return 0;
  }
  if (mode == "read") {
    std::vector<char> buffer(8 << 20);
    int64_t bytes = 0;
    const double start = Now();
    for (const std::string& file : Shards(dir)) {
      const int fd = ::open(file.c_str(), O_RDONLY);
      ssize_t n = 0;
      while ((n = ::read(fd, buffer.data(), buffer.size())) > 0) bytes += n;
      ::close(fd);
    }
    return Report(mode, Now() - start, bytes);
  }
  const double start = Now();
  auto checkpoint = accelerate::bigmodel::ShardedCheckpoint::Open(dir);
  if (!checkpoint.ok()) {
    std::cerr << checkpoint.status() << std::endl;
    return 1;
  }
  auto tensors = (*checkpoint)->Load((*checkpoint)->names());
  if (!tensors.ok()) {
    std::cerr << tensors.status() << std::endl;
    return 1;
  }
  int64_t bytes = 0;
  double checksum = 0;
  for (const auto& [name, tensor] : *tensors) {
    bytes += tensor.nbytes();
    if (mode == "touch") checksum += tensor.sum().item<double>();
  }
  const double seconds = Now() - start;
  if (checksum == 12345.678) std::cerr << "";  // Keep the sums.
  return Report(mode, seconds, bytes);
}
