#include "launch/host.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "state/free_port.h"

namespace accelerate::launch {
namespace {

constexpr char kNvidiaGpus[] = "/proc/driver/nvidia/gpus";
// What `pick_free_port` answers when the system gives no port.
constexpr int kDefaultPort = 29500;

// The driver's folders of the NVIDIA GPUs (one per GPU, named by PCI
// address), sorted; empty without the driver.
std::vector<std::string> NvidiaGpuFolders() {
  std::vector<std::string> folders;
  DIR* dir = ::opendir(kNvidiaGpus);
  if (dir == nullptr) return folders;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') {
      folders.push_back(std::string(kNvidiaGpus) + "/" + entry->d_name);
    }
  }
  ::closedir(dir);
  std::sort(folders.begin(), folders.end());
  return folders;
}

// The "Model:" line of a GPU folder's `information` file; empty when absent.
std::string GpuModel(const std::string& folder) {
  std::ifstream in(folder + "/information");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "Model")) {
      return std::string(absl::StripAsciiWhitespace(
          absl::string_view(line).substr(line.find(':') + 1)));
    }
  }
  return "";
}

int CountPhysicalCores() {
  // Distinct (physical id, core id) pairs of /proc/cpuinfo; the logical CPU
  // count when those fields are missing.
  std::ifstream in("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, physical = "0";
  while (std::getline(in, line)) {
    std::vector<std::string> parts =
        absl::StrSplit(line, absl::MaxSplits(':', 1));
    if (parts.size() != 2) continue;
    const std::string key(absl::StripAsciiWhitespace(parts[0]));
    const std::string value(absl::StripAsciiWhitespace(parts[1]));
    if (key == "physical id") physical = value;
    if (key == "core id") cores.insert({physical, value});
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  const long logical = ::sysconf(_SC_NPROCESSORS_ONLN);
  return logical > 0 ? static_cast<int>(logical) : 1;
}

}  // namespace

LaunchHost LocalHost(const state::Environment& env) {
  LaunchHost host;
  const std::vector<std::string> gpus = NvidiaGpuFolders();
  host.gpu_count = static_cast<int>(gpus.size());
  if (std::optional<std::string> visible = env.Get("CUDA_VISIBLE_DEVICES")) {
    const std::string text(absl::StripAsciiWhitespace(*visible));
    const int listed =
        text.empty()
            ? 0
            : static_cast<int>(std::count(text.begin(), text.end(), ',')) + 1;
    host.gpu_count = std::min(host.gpu_count, listed);
  }
  if (!gpus.empty()) host.gpu_model = GpuModel(gpus.front());
  host.cpu_cores = CountPhysicalCores();
  host.port_is_free = state::PortIsFree;
  host.pick_free_port = [] {
    return state::PickFreePort().value_or(kDefaultPort);
  };
  return host;
}

}  // namespace accelerate::launch
