// Where a model's weights can go, as Accelerate's device maps and memory
// budgets name it: a GPU by index ("0", "1", ...), "cpu" or "disk"; and
// device maps, from module names to devices. The one place device names are
// parsed and printed.
//
// clang-format off
//   absl::Status Example(absl::string_view user_text) {
//     // "01" is GPU 1.
//     absl::StatusOr<Device> device = Device::Parse(user_text);
//     if (!device.ok()) return device.status();  // InvalidArgument
//     // Devices spelled in code convert implicitly, as in Accelerate's maps.
//     const DeviceMap map = {
//         {"embed", "0"}, {"layers", "cpu"}, {"head", *device}};
//     for (const auto& [module, placed] : map) {
//       if (placed.is_gpu() && placed.gpu_index() > 7) {
//         return absl::OutOfRangeError(placed.ToString());  // "8", "cpu", ...
//       }
//     }
//     return absl::OkStatus();
//   }
// clang-format on
//
// Thread safety: a value type.

#ifndef ACCELERATE_BIGMODEL_DEVICE_H_
#define ACCELERATE_BIGMODEL_DEVICE_H_

#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accelerate::bigmodel {

// A GPU (by index), the CPU, or the disk. Ordered as Accelerate places
// modules: GPUs by index, then the CPU, then the disk.
class Device {
 public:
  enum class Kind { kGpu, kCpu, kDisk };

  // REQUIRES: `index` >= 0.
  static constexpr Device Gpu(int index) { return Device(Kind::kGpu, index); }
  static constexpr Device Cpu() { return Device(Kind::kCpu, 0); }
  static constexpr Device Disk() { return Device(Kind::kDisk, 0); }

  // "cpu", "disk", or a GPU index in decimal digits ("01" is GPU 1).
  // `InvalidArgument` naming `text` for anything else ("gpu", "+1", "").
  [[nodiscard]] static absl::StatusOr<Device> Parse(absl::string_view text);

  // A device spelled in code, as Parse reads it (`{{"embed", "0"}, {"head",
  // "cpu"}}`): implicit, like `c10::Device("cuda:0")`, so that maps and
  // budgets written in code read as Accelerate's. Text from users and files
  // goes through Parse instead.
  // REQUIRES: Parse accepts `spelling` (a CHECK).
  Device(const char* spelling);  // NOLINT(google-explicit-constructor)
  // Not from numbers: `{{"embed", 0}}` would pass 0 as a null `spelling`.
  // GPUs are "0" or Device::Gpu(0).
  template <typename Integer,
            typename = std::enable_if_t<std::is_integral_v<Integer>>>
  Device(Integer) = delete;

  Kind kind() const { return kind_; }
  bool is_gpu() const { return kind_ == Kind::kGpu; }
  bool is_cpu() const { return kind_ == Kind::kCpu; }
  bool is_disk() const { return kind_ == Kind::kDisk; }
  // REQUIRES: is_gpu().
  int gpu_index() const;

  // "0", "cpu" or "disk": what Parse reads back.
  std::string ToString() const;

  friend bool operator==(const Device& a, const Device& b) {
    return a.kind_ == b.kind_ && a.index_ == b.index_;
  }
  friend bool operator!=(const Device& a, const Device& b) { return !(a == b); }
  friend bool operator<(const Device& a, const Device& b) {
    return a.kind_ != b.kind_ ? a.kind_ < b.kind_ : a.index_ < b.index_;
  }
  friend std::ostream& operator<<(std::ostream& out, const Device& device) {
    return out << device.ToString();
  }

 private:
  constexpr Device(Kind kind, int index) : kind_(kind), index_(index) {}

  Kind kind_;
  int index_;  // The GPU's index; 0 for the CPU and the disk.
};

// Module (or tensor) full name -> device: where InferAutoDeviceMap places
// the model and where LoadCheckpointAndDispatch puts it. "" names the whole
// model.
using DeviceMap = std::vector<std::pair<std::string, Device>>;

}  // namespace accelerate::bigmodel

#endif  // ACCELERATE_BIGMODEL_DEVICE_H_
