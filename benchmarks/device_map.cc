// Times InferAutoDeviceMap on a transformer-shaped module tree: an
// embedding, `--blocks` blocks of 8 linear-like leaves, and a head tied to
// the embedding, under memory limits that spread it over two GPUs, the CPU
// and disk. Prints one JSON line (device_map.py runs it at several sizes).

#include "bigmodel/device_map.h"

#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bigmodel/module_tree.h"

namespace {

using accelerate::bigmodel::ModuleTree;

ModuleTree Leaf(const std::string& name, int64_t rows, int64_t cols,
                const std::string& tied_to = "") {
  ModuleTree leaf;
  leaf.name = name;
  leaf.class_name = "Linear";
  leaf.params.push_back({"weight", {rows, cols}, "float32", tied_to});
  return leaf;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t blocks = 1000;
  bool no_split = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--blocks" && i + 1 < argc &&
        absl::SimpleAtoi(argv[i + 1], &blocks)) {
      ++i;
    } else if (arg == "--no_split") {
      no_split = true;
    } else {
      std::cerr << "usage: device_map [--blocks N] [--no_split]\n";
      return 2;
    }
  }
  ModuleTree root;
  root.class_name = "Decoder";
  root.children.push_back(Leaf("embed", 512, 64));
  ModuleTree layers;
  layers.name = "layers";
  layers.class_name = "ModuleList";
  const char* kLeaves[] = {"q", "k", "v", "o", "up", "down", "norm1", "norm2"};
  for (int64_t b = 0; b < blocks; ++b) {
    ModuleTree block;
    block.name = absl::StrCat(b);
    block.class_name = "Block";
    for (const char* leaf : kLeaves)
      block.children.push_back(Leaf(leaf, 64, 64));
    layers.children.push_back(std::move(block));
  }
  root.children.push_back(std::move(layers));
  root.children.push_back(Leaf("head", 512, 64, "embed.weight"));
  const int64_t modules =
      1 + 1 + blocks * 9 + 1 + 1;  // root, embed, blocks, layers, head.
  const int64_t total = blocks * 8 * 64 * 64 * 4 + 512 * 64 * 4;

  accelerate::bigmodel::DeviceMapOptions options;
  options.max_memory = {{"0", total / 4}, {"1", total / 4}, {"cpu", total / 4}};
  if (no_split) options.no_split_module_classes = {"Block"};
  const absl::Time start = absl::Now();
  auto map = accelerate::bigmodel::InferAutoDeviceMap(root, options);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (!map.ok()) {
    std::cerr << map.status() << std::endl;
    return 1;
  }
  std::cout << "{\"modules\": " << modules
            << ", \"no_split\": " << (no_split ? "true" : "false")
            << ", \"entries\": " << map->size() << ", \"seconds\": " << seconds
            << "}" << std::endl;
  return 0;
}
