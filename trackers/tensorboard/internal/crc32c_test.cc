#include "trackers/tensorboard/internal/crc32c.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace accelerate::trackers_internal {
namespace {

// Check values from RFC 3720 (iSCSI), appendix B.4, and the catalogue's
// "123456789" check value.
TEST(Crc32cTest, MatchesPublishedCheckValues) {
  const std::string digits = "123456789";
  EXPECT_EQ(Crc32c(digits.data(), digits.size()), 0xE3069283u);
  const std::vector<uint8_t> zeros(32, 0x00);
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  const std::vector<uint8_t> ones(32, 0xFF);
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  std::vector<uint8_t> ascending(32);
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(Crc32c(ascending.data(), ascending.size()), 0x46DD794Eu);
}

TEST(Crc32cTest, HardwareAndPortableAgreeOnEveryLengthAndSplit) {
  std::mt19937 random(7);
  std::vector<uint8_t> bytes(300);
  for (auto& byte : bytes) byte = static_cast<uint8_t>(random());
  for (size_t size = 0; size <= bytes.size(); ++size) {
    const uint32_t whole = Crc32c(bytes.data(), size);
    ASSERT_EQ(whole, Crc32cPortable(bytes.data(), size)) << size;
    const size_t half = size / 3;
    EXPECT_EQ(Crc32c(bytes.data() + half, size - half,
                     Crc32c(bytes.data(), half)),
              whole)
        << size;
  }
}

// TensorFlow's masked CRC of an 8-byte little-endian record length 0 (the
// first word of an empty record).
TEST(Crc32cTest, MasksAsTensorFlow) {
  EXPECT_EQ(MaskCrc32c(0), 0xa282ead8u);
  EXPECT_EQ(MaskCrc32c(0x8000u), 0xa282ead9u);  // rotated right by 15
}

}  // namespace
}  // namespace accelerate::trackers_internal
