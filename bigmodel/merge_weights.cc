// `accelerate merge-weights CHECKPOINT OUTPUT`: merges a sharded checkpoint
// (safetensors or pytorch_model.bin shards: a folder holding their index, the
// index itself, or one weights file), or a checkpoint saved with
// SHARDED_STATE_DICT (a folder with model.rank-<p>-of-<n>.safetensors part
// files, as Accelerate's merge-weights does for FSDP checkpoints), into one
// safetensors file. OUTPUT is a .safetensors file, or a folder that receives
// model.safetensors. Tensors are read through the mapping (no copy) and
// written atomically.

#include <sys/stat.h>

#include <iostream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "bigmodel/safetensors.h"
#include "bigmodel/sharded_checkpoint.h"
#include "bigmodel/safetensors_parts.h"

int main(int argc, char** argv) {
  using namespace accelerate::bigmodel;  // NOLINT: a small program.
  const bool help = argc == 2 && (std::string(argv[1]) == "--help" ||
                                  std::string(argv[1]) == "-h");
  if (argc != 3) {
    (help ? std::cout : std::cerr)
        << "usage: accelerate merge-weights CHECKPOINT OUTPUT\n"
           "Merges a sharded checkpoint (safetensors or pytorch_model.bin)\n"
           "into one safetensors file.\n";
    return help ? 0 : 2;
  }
  std::string output = argv[2];
  if (!absl::EndsWith(output, ".safetensors")) {
    ::mkdir(output.c_str(), 0755);
    output += "/model.safetensors";
  }
  // Per-process parts (SHARDED_STATE_DICT), assembled whole; else the
  // index-sharded checkpoint's tensors.
  NamedTensors all;
  std::string source;
  auto parts = SafetensorsParts::Open(argv[1], "model");
  if (parts.ok()) {
    for (const std::string& name : (*parts)->names()) {
      auto whole = (*parts)->ReadWhole(name);
      if (!whole.ok()) {
        std::cerr << "merge-weights: " << whole.status() << std::endl;
        return 2;
      }
      all.emplace_back(name, *whole);
    }
    source = absl::StrCat("the parts of ", (*parts)->num_processes(),
                          " processes");
  } else if (!absl::IsNotFound(parts.status())) {
    std::cerr << "merge-weights: " << parts.status() << std::endl;
    return 2;
  } else {
    auto checkpoint = ShardedCheckpoint::Open(argv[1]);
    if (!checkpoint.ok()) {
      std::cerr << "merge-weights: " << checkpoint.status() << std::endl;
      return 2;
    }
    auto tensors = (*checkpoint)->Load((*checkpoint)->names());
    if (!tensors.ok()) {
      std::cerr << "merge-weights: " << tensors.status() << std::endl;
      return 2;
    }
    all.assign(tensors->begin(), tensors->end());
    source = absl::StrCat((*checkpoint)->files_opened(), " shard(s)");
  }
  if (absl::Status saved = SaveSafetensors(output, all, {{"format", "pt"}});
      !saved.ok()) {
    std::cerr << "merge-weights: " << saved << std::endl;
    return 2;
  }
  std::cout << "merged " << all.size() << " tensors from " << source
            << " into " << output << std::endl;
  return 0;
}
