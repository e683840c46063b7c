// A small command for looking into safetensors files and for the Python
// interoperability test:
//   safetensors_tool dump FILE     one line per tensor: name dtype shape values
//   safetensors_tool sample FILE   writes a file with one tensor per dtype

#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <ATen/ATen.h>
#include "bigmodel/safetensors.h"

namespace {

using ::accelerate::bigmodel::NamedTensors;

int Dump(const std::string& path) {
  auto file = accelerate::bigmodel::SafetensorsFile::Open(path);
  if (!file.ok()) {
    std::cerr << file.status() << std::endl;
    return 1;
  }
  for (const auto& [key, value] : (*file)->metadata()) {
    std::cout << "metadata " << key << "=" << value << "\n";
  }
  for (const auto& entry : (*file)->header().tensors) {
    auto tensor = (*file)->Get(entry.name);
    if (!tensor.ok()) {
      std::cerr << tensor.status() << std::endl;
      return 1;
    }
    const at::Tensor flat = tensor->to(at::kDouble).flatten();
    std::vector<std::string> values;
    for (int64_t i = 0; i < flat.numel(); ++i) {
      values.push_back(absl::StrCat(flat[i].item<double>()));
    }
    std::cout << entry.name << " " << entry.dtype << " ["
              << absl::StrJoin(entry.shape, ",") << "] "
              << absl::StrJoin(values, ",") << "\n";
  }
  return 0;
}

int Sample(const std::string& path) {
  const NamedTensors tensors = {
      {"f32", at::arange(6, at::kFloat).reshape({2, 3}) / 4},
      {"f64", at::tensor({1.5, -2.25}, at::kDouble)},
      {"f16", at::tensor({0.5f, 2.0f}).to(at::kHalf)},
      {"bf16", at::tensor({3.0f, -1.0f}).to(at::kBFloat16)},
      {"i64", at::tensor({-7, 9}, at::kLong)},
      {"i32", at::tensor({4, 5, 6}, at::kInt)},
      {"i16", at::tensor({-3}, at::kShort)},
      {"i8", at::tensor({-1, 1}, at::kChar)},
      {"u8", at::tensor({200, 1}, at::kByte)},
      {"bool", at::tensor({1, 0, 1}, at::kLong).to(at::kBool)},
  };
  const absl::Status saved =
      accelerate::bigmodel::SaveSafetensors(path, tensors, {{"format", "pt"}});
  if (!saved.ok()) {
    std::cerr << saved << std::endl;
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "dump") return Dump(argv[2]);
  if (argc == 3 && std::string(argv[1]) == "sample") return Sample(argv[2]);
  std::cerr << "usage: safetensors_tool dump|sample FILE\n";
  return 64;
}
