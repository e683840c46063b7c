// Save and load of a whole training state with the Accelerator: a model of
// about 500 MB (8 float32 Linear layers of width 3968, 126M parameters)
// with its AdamW state after one step (exp_avg and exp_avg_sq: 1 GB more),
// through `SaveState`, then `LoadState` twice, each into a fresh setup (a
// new model and a new AdamW without state, prepared): cold (the
// checkpoint's files evicted from the page cache, so read from the disk,
// and the memory freed left to go back to the VM's host) and warm (the
// same files again, now cached); each load followed by the first training
// step on the loaded setup (forward, backward, optimizer step, `zero_grad`
// on a fixed input). Loads are plain (the optimizer state read into new
// memory) or, with --map_files, mapped (`{.map_files = true}`: the state
// aliases a copy-on-write mapping of optimizer.bin, and the first step
// faults its pages in). checkpoint_save_load.py runs it on 2 processes, once
// per mode, beside Python Accelerate's `save_state` / `load_state`
// (checkpoint_save_load_peer.py, which does the same with its plain load).
//
// Usage: checkpoint_save_load [--map_files] DIR (DIR: the checkpoint folder;
// it must not exist). Each process times `SaveState`, `LoadState` and
// `LoadState` + first step from the return of a barrier to its own return
// (the check of the loaded state between the load and the step, a few
// microseconds, left out), and measures the growth of its peak RSS during
// the save (the peak reset through /proc/self/clear_refs, VmHWM after the
// save minus VmRSS before). After the timed save the main process syncs
// the file systems (nothing is dirty after ours; the peer's files are) so
// that both sides' loads start alike; before the cold load it checks that
// the eviction left at most 1% of the files cached. The loaded weights and
// optimizer state are checked against the saved ones, and the two first
// steps' results against each other.
//
// stdout (the main process): one JSON line {"save_seconds",
// "cold_load_seconds", "warm_load_seconds", "cold_load_step_seconds",
// "warm_load_step_seconds", "save_peak_growth_mb": each the largest over
// processes, "model_mb", "processes", "map_files", "stepped_checksum": the
// sum of the weights after the first step, the same whichever the mode}.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include <torch/torch.h>
#include "accelerator/accelerator.h"
#include "benchmarks/clock.h"
#include "state/status_macros.h"

namespace accelerate {
namespace {

using ::accelerate::benchmarks::Now;

constexpr int kColdWaitSeconds = 5;
constexpr int kLayers = 8;
constexpr int64_t kWidth = 3968;

struct StackImpl : torch::nn::Module {
  StackImpl() {
    for (int i = 0; i < kLayers; ++i) {
      layers->push_back(torch::nn::Linear(kWidth, kWidth));
    }
    register_module("layers", layers);
  }
  at::Tensor forward(at::Tensor x) {
    for (const auto& layer : *layers) {
      x = torch::relu(layer->as<torch::nn::Linear>()->forward(x));
    }
    return x;
  }
  torch::nn::ModuleList layers;
};
TORCH_MODULE(Stack);

// A field of /proc/self/status in bytes ("VmRSS", "VmHWM"); -1 if absent.
int64_t StatusBytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, field + ":")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, " kB");
    int64_t kb = -1;
    if (absl::SimpleAtoi(rest, &kb)) return kb * 1024;
  }
  return -1;
}

// Resets VmHWM to the current RSS.
absl::Status ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  if (!out) return absl::InternalError("cannot write /proc/self/clear_refs");
  return absl::OkStatus();
}

// Drops the pages of the files in `dir` from the page cache (they are
// clean: synced), so that the next read comes from the disk.
absl::Status EvictFromPageCache(const std::string& dir) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const int advised = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
    if (advised != 0) {
      return absl::InternalError(
          absl::StrCat("posix_fadvise ", entry.path().string(), " failed"));
    }
  }
  if (error) return absl::InternalError("cannot list " + dir);
  return absl::OkStatus();
}

// The bytes of the files in `dir` held in the page cache (mincore over a
// read-only mapping of each).
absl::StatusOr<int64_t> CachedBytes(const std::string& dir) {
  const int64_t page = ::sysconf(_SC_PAGESIZE);
  int64_t cached = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat info {};
    const bool sized = ::fstat(fd, &info) == 0;
    const size_t size = sized ? static_cast<size_t>(info.st_size) : 0;
    void* base = size > 0 ? ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0)
                          : nullptr;
    ::close(fd);
    if (!sized || base == MAP_FAILED) {
      return absl::InternalError("cannot map " + entry.path().string());
    }
    if (base == nullptr) continue;
    std::vector<unsigned char> in_core((size + page - 1) / page);
    const int checked = ::mincore(base, size, in_core.data());
    ::munmap(base, size);
    if (checked != 0) {
      return absl::InternalError("mincore " + entry.path().string() +
                                 " failed");
    }
    for (unsigned char c : in_core) cached += (c & 1) * page;
  }
  if (error) return absl::InternalError("cannot list " + dir);
  return cached;
}

// A new model, AdamW and their preparation, on `seed`'s weights.
struct Setup {
  Stack model{nullptr};
  std::shared_ptr<torch::optim::AdamW> adamw;
  PreparedOptimizer* optimizer = nullptr;
};

absl::StatusOr<Setup> Prepare(Accelerator& accelerator, uint64_t seed) {
  Setup setup;
  torch::manual_seed(seed);
  setup.model = Stack();
  setup.adamw = std::make_shared<torch::optim::AdamW>(
      setup.model->parameters(), torch::optim::AdamWOptions(1e-3));
  ACCELERATE_RETURN_IF_ERROR(
      accelerator.PrepareModel(setup.model.ptr()).status());
  setup.optimizer = accelerator.PrepareOptimizer(setup.adamw);
  return setup;
}

// The last layer's bias and its exp_avg: what the load must bring back.
std::pair<at::Tensor, at::Tensor> Probe(const Setup& setup) {
  const at::Tensor bias = setup.model->parameters().back();
  auto found = setup.adamw->state().find(bias.unsafeGetTensorImpl());
  at::Tensor exp_avg;
  if (found != setup.adamw->state().end()) {
    exp_avg = static_cast<const torch::optim::AdamWParamState&>(*found->second)
                  .exp_avg()
                  .clone();
  }
  return {bias.detach().clone(), exp_avg};
}

// The sum of all the model's weights, in float64.
double Checksum(const Setup& setup) {
  double sum = 0;
  for (const auto& p : setup.model->parameters()) {
    sum += p.detach().to(torch::kDouble).sum().item<double>();
  }
  return sum;
}

absl::Status Run(const std::string& dir, bool map_files) {
  AcceleratorOptions options;
  options.cpu = true;
  ACCELERATE_ASSIGN_OR_RETURN(auto accelerator, Accelerator::Create(options));
  Accelerator& acc = *accelerator;

  // The state to save: one training step.
  ACCELERATE_ASSIGN_OR_RETURN(Setup setup, Prepare(acc, 0));
  int64_t model_bytes = 0;
  for (const auto& p : setup.model->parameters()) model_bytes += p.nbytes();
  // The input of every training step (the peer draws the same).
  torch::manual_seed(1);
  const at::Tensor x = torch::randn({4, kWidth});
  {
    AccumulateScope step = acc.Accumulate(*setup.model);
    ACCELERATE_RETURN_IF_ERROR(step.status());
    ACCELERATE_RETURN_IF_ERROR(
        acc.Backward(setup.model->forward(x).pow(2).mean()));
    ACCELERATE_RETURN_IF_ERROR(setup.optimizer->step());
    setup.optimizer->zero_grad();
  }
  const auto [bias, exp_avg] = Probe(setup);
  if (!exp_avg.defined()) return absl::InternalError("AdamW has no state");

  // Save.
  ACCELERATE_RETURN_IF_ERROR(ResetPeakRss());
  const int64_t rss_before = StatusBytes("VmRSS");
  ACCELERATE_RETURN_IF_ERROR(acc.WaitForEveryone());
  double start = Now();
  ACCELERATE_RETURN_IF_ERROR(acc.SaveState(dir).status());
  const double save_seconds = Now() - start;
  const int64_t peak_growth = StatusBytes("VmHWM") - rss_before;
  if (acc.IsMainProcess()) ::sync();
  int64_t checkpoint_bytes = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    checkpoint_bytes += entry.file_size(error);
  }
  if (error) return absl::InternalError("cannot list " + dir);

  // Loads, each into a fresh setup (the previous one released first):
  // cold, the checkpoint's files evicted from the page cache (read from
  // the disk), then warm (the same files, now cached); each followed by
  // the first training step on the same input.
  double load_seconds[2] = {0, 0};
  double load_step_seconds[2] = {0, 0};
  at::Tensor stepped_bias;  // The first step's result, the same for both.
  for (int warm = 0; warm < 2; ++warm) {
    acc.ClearPrepared();
    setup = Setup();
    ACCELERATE_ASSIGN_OR_RETURN(setup, Prepare(acc, 2 + warm));
    if (torch::equal(Probe(setup).first, bias)) {
      return absl::InternalError("the fresh model already holds the weights");
    }
    if (!warm && acc.IsMainProcess()) {
      ACCELERATE_RETURN_IF_ERROR(EvictFromPageCache(dir));
      ACCELERATE_ASSIGN_OR_RETURN(const int64_t cached, CachedBytes(dir));
      if (cached > checkpoint_bytes / 100) {
        return absl::InternalError(absl::StrCat(
            "the eviction left ", cached / 1000000, " MB of ", dir,
            " in the page cache"));
      }
      // This VM hands free memory back to its host after about 2 s and
      // then pays to fault it in again: the wait gives both sides the same
      // memory to load into, whether or not the eviction freed any.
      ::sleep(kColdWaitSeconds);
    }
    ACCELERATE_RETURN_IF_ERROR(acc.WaitForEveryone());
    start = Now();
    ACCELERATE_RETURN_IF_ERROR(
        acc.LoadState(dir, {.map_files = map_files}).status());
    const double loaded = Now();
    load_seconds[warm] = loaded - start;
    const auto [loaded_bias, loaded_exp_avg] = Probe(setup);
    if (!torch::equal(loaded_bias, bias) || !loaded_exp_avg.defined() ||
        !torch::equal(loaded_exp_avg, exp_avg)) {
      return absl::DataLossError("LoadState did not restore the saved state");
    }
    const double checked = Now();
    {
      AccumulateScope step = acc.Accumulate(*setup.model);
      ACCELERATE_RETURN_IF_ERROR(step.status());
      ACCELERATE_RETURN_IF_ERROR(
          acc.Backward(setup.model->forward(x).pow(2).mean()));
      ACCELERATE_RETURN_IF_ERROR(setup.optimizer->step());
      setup.optimizer->zero_grad();
    }
    load_step_seconds[warm] = Now() - start - (checked - loaded);
    const at::Tensor stepped = Probe(setup).first;
    if (torch::equal(stepped, bias)) {
      return absl::InternalError("the first step left the weights unchanged");
    }
    if (!stepped_bias.defined()) {
      stepped_bias = stepped;
    } else if (!torch::equal(stepped, stepped_bias)) {
      return absl::DataLossError(
          "the first step after the warm load differs from the cold one's");
    }
  }
  const double stepped_checksum = Checksum(setup);

  ACCELERATE_ASSIGN_OR_RETURN(
      at::Tensor all,
      acc.Gather(torch::tensor({save_seconds, load_seconds[0],
                                load_seconds[1], load_step_seconds[0],
                                load_step_seconds[1],
                                static_cast<double>(peak_growth)},
                               torch::kDouble)
                     .reshape({1, 6})));
  const at::Tensor worst = std::get<0>(all.max(0));
  if (acc.IsMainProcess()) {
    std::printf(
        "{\"save_seconds\": %.4f, \"cold_load_seconds\": %.4f, "
        "\"warm_load_seconds\": %.4f, \"cold_load_step_seconds\": %.4f, "
        "\"warm_load_step_seconds\": %.4f, \"save_peak_growth_mb\": %.1f, "
        "\"model_mb\": %.1f, \"processes\": %d, \"map_files\": %s, "
        "\"stepped_checksum\": %.17g}\n",
        worst[0].item<double>(), worst[1].item<double>(),
        worst[2].item<double>(), worst[3].item<double>(),
        worst[4].item<double>(), worst[5].item<double>() / 1e6,
        model_bytes / 1e6, acc.State().num_processes(),
        map_files ? "true" : "false", stepped_checksum);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace accelerate

int main(int argc, char** argv) {
  const bool map_files = argc == 3 && std::string(argv[1]) == "--map_files";
  if (argc != 2 && !map_files) {
    std::cerr << "usage: checkpoint_save_load [--map_files] DIR" << std::endl;
    return 2;
  }
  if (absl::Status status = accelerate::Run(argv[argc - 1], map_files);
      !status.ok()) {
    std::cerr << "checkpoint_save_load: " << status << std::endl;
    return 1;
  }
  return 0;
}
