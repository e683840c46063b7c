// CRC-32C (Castagnoli), as TFRecord framing uses it, and TensorFlow's
// "masked" form of it. The SSE 4.2 instruction where the processor has it,
// a table otherwise.

#ifndef ACCELERATE_TRACKERS_TENSORBOARD_INTERNAL_CRC32C_H_
#define ACCELERATE_TRACKERS_TENSORBOARD_INTERNAL_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace accelerate::trackers_internal {

// CRC-32C of `size` bytes at `data`, continuing from `crc` (0 to start).
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);

// The same without the hardware instruction (for tests comparing both).
uint32_t Crc32cPortable(const void* data, size_t size, uint32_t crc = 0);

// TFRecord's mask: rotated right by 15 bits plus a constant, so that the
// CRC of data that holds CRCs stays well distributed.
inline uint32_t MaskCrc32c(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

}  // namespace accelerate::trackers_internal

#endif  // ACCELERATE_TRACKERS_TENSORBOARD_INTERNAL_CRC32C_H_
