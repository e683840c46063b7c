// libFuzzer target for the safetensors header parser: any bytes must give a
// header or a status, never a crash, a sanitizer report or a large
// allocation. Built and run for a bounded number of inputs by fuzz_test.sh.

#include <cstddef>
#include <cstdint>

#include "bigmodel/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view file(reinterpret_cast<const char*>(data), size);
  auto header = accelerate::bigmodel::ParseSafetensors(file);
  if (header.ok()) {
    // A header that parsed must describe bytes inside the file.
    for (const auto& entry : header->tensors) {
      if (header->data_start + entry.end > size) __builtin_trap();
    }
  }
  return 0;
}
