#include "precision/autocast.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <cstdint>

#include <ATen/autocast_mode.h>

namespace accelerate::precision {

#if defined(__x86_64__) || defined(__i386__)
namespace {

// XCR0: the register states the operating system saves, and so lets
// programs use (0 when it does not say: no OSXSAVE).
uint64_t EnabledRegisterStates() {
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || ((ecx >> 27) & 1u) == 0) {
    return 0;
  }
  uint32_t low = 0, high = 0;
  __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  return (uint64_t{high} << 32) | low;
}

}  // namespace
#endif

bool CpuHasFastFloat16Matmul() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  const unsigned int max_subleaf = eax;
  const uint64_t states = EnabledRegisterStates();
  // AVX-512 needs the SSE, AVX, opmask and both ZMM states (bits 1, 2, 5-7);
  // AMX the tile configuration and data states (bits 17, 18).
  const bool avx512_usable = (states & 0xE6u) == 0xE6u;
  const bool amx_usable = (states & 0x60000u) == 0x60000u;
  // Leaf 7, subleaf 0: EDX bit 23 is AVX512-FP16.
  if (avx512_usable && ((edx >> 23) & 1u) != 0) return true;
  // Leaf 7, subleaf 1: EAX bit 21 is AMX-FP16.
  if (!amx_usable || max_subleaf < 1 ||
      __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) == 0) {
    return false;
  }
  return ((eax >> 21) & 1u) != 0;
#else
  return true;
#endif
}

at::ScalarType AutocastDtype(MixedPrecision precision) {
  switch (precision) {
    case MixedPrecision::kFp16:
      return at::kHalf;
    case MixedPrecision::kBf16:
    case MixedPrecision::kFp8:
      return at::kBFloat16;
    case MixedPrecision::kNo:
      break;
  }
  return at::ScalarType::Undefined;
}

AutocastScope::AutocastScope(MixedPrecision precision,
                             c10::DeviceType device) {
  const at::ScalarType dtype = AutocastDtype(precision);
  if (dtype == at::ScalarType::Undefined) return;
  active_ = true;
  cpu_was_ = at::autocast::is_autocast_enabled(at::kCPU);
  gpu_was_ = at::autocast::is_autocast_enabled(at::kCUDA);
  cpu_dtype_was_ = at::autocast::get_autocast_dtype(at::kCPU);
  gpu_dtype_was_ = at::autocast::get_autocast_dtype(at::kCUDA);
  const c10::DeviceType target =
      device == c10::DeviceType::CUDA ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_enabled(target, true);
  at::autocast::set_autocast_dtype(target, dtype);
  at::autocast::increment_nesting();
}

AutocastScope::AutocastScope(AutocastScope&& other) noexcept
    : active_(other.active_),
      cpu_was_(other.cpu_was_),
      gpu_was_(other.gpu_was_),
      cpu_dtype_was_(other.cpu_dtype_was_),
      gpu_dtype_was_(other.gpu_dtype_was_) {
  other.active_ = false;
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  // Back to what was set before (an outer scope's, say).
  at::autocast::set_autocast_enabled(at::kCPU, cpu_was_);
  at::autocast::set_autocast_enabled(at::kCUDA, gpu_was_);
  at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype_was_);
  at::autocast::set_autocast_dtype(at::kCUDA, gpu_dtype_was_);
}

AutocastOff::AutocastOff()
    : cpu_was_(at::autocast::is_autocast_enabled(at::kCPU)),
      gpu_was_(at::autocast::is_autocast_enabled(at::kCUDA)) {
  at::autocast::set_autocast_enabled(at::kCPU, false);
  at::autocast::set_autocast_enabled(at::kCUDA, false);
}

AutocastOff::~AutocastOff() {
  at::autocast::set_autocast_enabled(at::kCPU, cpu_was_);
  at::autocast::set_autocast_enabled(at::kCUDA, gpu_was_);
}

}  // namespace accelerate::precision
