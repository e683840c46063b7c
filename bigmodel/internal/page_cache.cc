// Reading in and giving back the pages of mapped tensors (see
// page_cache.h).

#include "bigmodel/internal/page_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace accelerate::bigmodel_internal {

void DropPages(const at::Tensor& alias) {
  if (alias.nbytes() == 0) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(alias.data_ptr());
  const uintptr_t first = (begin + page - 1) & ~(page - 1);
  const uintptr_t last = (begin + alias.nbytes()) & ~(page - 1);
  if (last > first) {
    ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  }
}

void TouchPages(const at::Tensor& alias) {
  const size_t bytes = alias.nbytes();
  if (bytes == 0) return;
  const auto* data = static_cast<const volatile uint8_t*>(alias.data_ptr());
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  uint8_t sink = 0;
  for (size_t offset = 0; offset < bytes; offset += page) sink ^= data[offset];
  sink ^= data[bytes - 1];
  (void)sink;
}

}  // namespace accelerate::bigmodel_internal
