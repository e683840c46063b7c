// `accelerate estimate-memory CHECKPOINT [--dtypes float32 float16 int8 int4]`:
// Accelerate's memory table for a local checkpoint, safetensors or
// `pytorch_model.bin` (a file, an index, or a folder holding one), from the
// headers (and pickles) alone.

#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "bigmodel/estimate.h"
#include "bigmodel/safetensors.h"
#include "bigmodel/sharded_checkpoint.h"

int main(int argc, char** argv) {
  using namespace accelerate::bigmodel;  // NOLINT: a small program.
  std::string checkpoint;
  std::vector<std::string> dtypes;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << "usage: accelerate estimate-memory CHECKPOINT "
                   "[--dtypes {float32,float16,int8,int4} ...]\n"
                   "Prints the largest layer, total size and training memory "
                   "with Adam of a local checkpoint (safetensors or "
                   "pytorch_model.bin), per dtype.\n";
      return 0;
    }
    if (arg == "--dtypes") {
      while (i + 1 < argc && !absl::StartsWith(argv[i + 1], "--")) {
        dtypes.push_back(argv[++i]);
      }
      if (dtypes.empty()) {
        std::cerr << "estimate-memory: --dtypes needs at least one dtype\n";
        return 2;
      }
    } else if (absl::StartsWith(arg, "--")) {
      std::cerr << "estimate-memory: unknown flag " << arg << "\n";
      return 2;
    } else if (checkpoint.empty()) {
      checkpoint = arg;
    } else {
      std::cerr << "estimate-memory: unexpected argument \"" << arg << "\"\n";
      return 2;
    }
  }
  if (checkpoint.empty()) {
    std::cerr << "estimate-memory: give a checkpoint (file, index or "
                 "folder)\n";
    return 2;
  }
  if (dtypes.empty()) dtypes = {"float32", "float16", "int8", "int4"};
  auto opened = ShardedCheckpoint::Open(checkpoint);
  if (!opened.ok()) {
    std::cerr << "estimate-memory: " << opened.status() << std::endl;
    return 2;
  }
  auto entries = (*opened)->Entries();
  if (!entries.ok()) {
    std::cerr << "estimate-memory: " << entries.status() << std::endl;
    return 2;
  }
  auto rows = EstimateMemory(*entries, dtypes);
  if (!rows.ok()) {
    std::cerr << "estimate-memory: " << rows.status().message() << std::endl;
    return 2;
  }
  std::cout << MemoryTable(*rows,
                           "Memory Usage for loading `" + checkpoint + "`");
  return 0;
}
