// `accelerate merge-weights CHECKPOINT OUTPUT`: merges a sharded safetensors
// checkpoint (a folder with model.safetensors.index.json, or the index
// itself) into one safetensors file. OUTPUT is a .safetensors file, or a
// folder that receives model.safetensors. Tensors are read through the
// mapping (no copy) and written atomically.

#include <sys/stat.h>

#include <iostream>
#include <string>

#include "absl/strings/match.h"
#include "bigmodel/safetensors.h"

int main(int argc, char** argv) {
  using namespace accelerate::bigmodel;  // NOLINT: a small program.
  const bool help = argc == 2 && (std::string(argv[1]) == "--help" ||
                                  std::string(argv[1]) == "-h");
  if (argc != 3) {
    (help ? std::cout : std::cerr)
        << "usage: accelerate merge-weights CHECKPOINT OUTPUT\n"
           "Merges a sharded safetensors checkpoint into one file.\n";
    return help ? 0 : 2;
  }
  std::string output = argv[2];
  if (!absl::EndsWith(output, ".safetensors")) {
    ::mkdir(output.c_str(), 0755);
    output += "/model.safetensors";
  }
  auto checkpoint = ShardedCheckpoint::Open(argv[1]);
  if (!checkpoint.ok()) {
    std::cerr << "merge-weights: " << checkpoint.status() << std::endl;
    return 2;
  }
  const std::vector<std::string> names = (*checkpoint)->names();
  auto tensors = (*checkpoint)->Load(names);
  if (!tensors.ok()) {
    std::cerr << "merge-weights: " << tensors.status() << std::endl;
    return 2;
  }
  NamedTensors all(tensors->begin(), tensors->end());
  if (absl::Status saved = SaveSafetensors(output, all, {{"format", "pt"}});
      !saved.ok()) {
    std::cerr << "merge-weights: " << saved << std::endl;
    return 2;
  }
  std::cout << "merged " << names.size() << " tensors from "
            << (*checkpoint)->files_opened() << " shard(s) into " << output
            << std::endl;
  return 0;
}
