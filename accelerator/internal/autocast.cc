#include "accelerator/internal/autocast.h"

#include <ATen/autocast_mode.h>

namespace accelerate::accelerator_internal {

AutocastSnapshot EnterAutocast(at::ScalarType dtype, bool cuda) {
  AutocastSnapshot snapshot;
  snapshot.entered = true;
  snapshot.cpu_was = at::autocast::is_autocast_enabled(at::kCPU);
  snapshot.gpu_was = at::autocast::is_autocast_enabled(at::kCUDA);
  snapshot.cpu_dtype_was = at::autocast::get_autocast_dtype(at::kCPU);
  snapshot.gpu_dtype_was = at::autocast::get_autocast_dtype(at::kCUDA);
  const at::DeviceType device = cuda ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_enabled(device, true);
  at::autocast::set_autocast_dtype(device, dtype);
  at::autocast::increment_nesting();
  return snapshot;
}

void ExitAutocast(const AutocastSnapshot& snapshot) {
  if (!snapshot.entered) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  // Back to what was set before (an outer scope's, say).
  at::autocast::set_autocast_enabled(at::kCPU, snapshot.cpu_was);
  at::autocast::set_autocast_enabled(at::kCUDA, snapshot.gpu_was);
  at::autocast::set_autocast_dtype(at::kCPU, snapshot.cpu_dtype_was);
  at::autocast::set_autocast_dtype(at::kCUDA, snapshot.gpu_dtype_was);
}

AutocastDisabled::AutocastDisabled()
    : cpu_was_(at::autocast::is_autocast_enabled(at::kCPU)),
      gpu_was_(at::autocast::is_autocast_enabled(at::kCUDA)) {
  at::autocast::set_autocast_enabled(at::kCPU, false);
  at::autocast::set_autocast_enabled(at::kCUDA, false);
}

AutocastDisabled::~AutocastDisabled() {
  at::autocast::set_autocast_enabled(at::kCPU, cpu_was_);
  at::autocast::set_autocast_enabled(at::kCUDA, gpu_was_);
}

}  // namespace accelerate::accelerator_internal
