// Hugging Face checkpoints of safetensors or `torch.save` shards (see
// sharded_checkpoint.h): finding the weights, the index, shards opened on
// demand.

#include "bigmodel/sharded_checkpoint.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include <ATen/ATen.h>
#include "bigmodel/internal/staged_upload.h"
#include "bigmodel/torch_file.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::bigmodel {
namespace {

constexpr char kSafetensorsWeights[] = "model.safetensors";
constexpr char kTorchWeights[] = "pytorch_model.bin";
constexpr char kIndexSuffix[] = ".index.json";

std::string Basename(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

bool IsReadableFile(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

// The weights file or index to read in folder `dir` (a name inside it), as
// ShardedCheckpoint::Open describes.
absl::StatusOr<std::string> FindWeights(const std::string& dir) {
  for (const std::string& name :
       {std::string(kSafetensorsWeights), std::string(kTorchWeights),
        absl::StrCat(kSafetensorsWeights, kIndexSuffix),
        absl::StrCat(kTorchWeights, kIndexSuffix)}) {
    if (IsReadableFile(absl::StrCat(dir, "/", name))) return name;
  }
  DIR* listing = ::opendir(dir.c_str());
  if (listing == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot list ", dir, ": ", std::strerror(errno)));
  }
  std::vector<std::string> indexes;
  while (const dirent* entry = ::readdir(listing)) {
    if (absl::EndsWith(entry->d_name, kIndexSuffix)) {
      indexes.push_back(entry->d_name);
    }
  }
  ::closedir(listing);
  std::sort(indexes.begin(), indexes.end());
  if (indexes.size() == 1) return indexes[0];
  if (indexes.empty()) {
    return absl::NotFoundError(absl::StrCat(
        dir, " holds no weights: none of ", kSafetensorsWeights, ", ",
        kTorchWeights, " or an index (", kSafetensorsWeights, kIndexSuffix,
        ", ", kTorchWeights, kIndexSuffix, ", *", kIndexSuffix, ")"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      dir, " holds several indexes (", absl::StrJoin(indexes, ", "),
      "): remove the ones that do not belong"));
}

// The `weight_map` of index `path`: tensor name -> file beside the index.
absl::StatusOr<std::map<std::string, std::string>> ReadIndex(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  google::protobuf::Struct index;
  if (!google::protobuf::util::JsonStringToMessage(text.str(), &index).ok()) {
    return absl::DataLossError(absl::StrCat(path, " is not valid JSON"));
  }
  auto map = index.fields().find("weight_map");
  if (map == index.fields().end() ||
      map->second.kind_case() != google::protobuf::Value::kStructValue) {
    return absl::DataLossError(absl::StrCat(path, " has no weight_map object"));
  }
  std::map<std::string, std::string> weight_map;
  for (const auto& [name, file] : map->second.struct_value().fields()) {
    if (file.kind_case() != google::protobuf::Value::kStringValue) {
      return absl::DataLossError(absl::StrCat(
          path, ": weight_map entry \"", name, "\" is not a file name"));
    }
    const std::string& value = file.string_value();
    // Shards live beside the index: no paths out of the folder.
    if (value.empty() || absl::StrContains(value, "/") || value == "." ||
        value == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": weight_map entry \"", name, "\" names \"",
                       value, "\", not a file beside the index"));
    }
    weight_map[name] = value;
  }
  return weight_map;
}

absl::Status NotInShard(const std::string& name, const std::string& file) {
  return absl::DataLossError(absl::StrCat(
      "the index puts \"", name, "\" in ", file, ", which does not hold it"));
}

}  // namespace

// One open shard: a safetensors file, or the tensors of a `torch.save`
// archive (aliasing its mapping) by name.
struct ShardedCheckpoint::Shard {
  std::unique_ptr<SafetensorsFile> safetensors;
  NamedTensors tensors;                  // In the file's order.
  std::map<std::string, size_t> index;  // Into `tensors`.

  bool Contains(const std::string& name) const {
    return safetensors ? safetensors->Contains(name) : index.count(name) > 0;
  }
};

ShardedCheckpoint::ShardedCheckpoint() = default;
ShardedCheckpoint::~ShardedCheckpoint() = default;

bool ShardedCheckpoint::IsSafetensors(absl::string_view file) {
  return absl::EndsWith(file, ".safetensors");
}

absl::StatusOr<std::unique_ptr<ShardedCheckpoint>> ShardedCheckpoint::Open(
    const std::string& path) {
  std::unique_ptr<ShardedCheckpoint> checkpoint(new ShardedCheckpoint());
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    const std::string text =
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno));
    return errno == ENOENT ? absl::NotFoundError(text)
                           : absl::UnavailableError(text);
  }
  std::string file = path;
  if (S_ISDIR(info.st_mode)) {
    checkpoint->dir_ = path;
    ACCELERATE_ASSIGN_OR_RETURN(const std::string name, FindWeights(path));
    file = absl::StrCat(path, "/", name);
  } else {
    checkpoint->dir_ = Dirname(path);
  }
  if (absl::EndsWith(file, ".json")) {
    ACCELERATE_ASSIGN_OR_RETURN(checkpoint->weight_map_, ReadIndex(file));
    return checkpoint;
  }
  // One weights file: its names now.
  const std::string name = Basename(file);
  ACCELERATE_ASSIGN_OR_RETURN(Shard * shard, checkpoint->OpenShard(name));
  if (shard->safetensors) {
    for (const std::string& tensor : shard->safetensors->names()) {
      checkpoint->weight_map_[tensor] = name;
    }
  } else {
    for (const auto& [tensor, value] : shard->tensors) {
      checkpoint->weight_map_[tensor] = name;
    }
  }
  return checkpoint;
}

std::vector<std::string> ShardedCheckpoint::names() const {
  std::vector<std::string> names;
  for (const auto& [name, file] : weight_map_) names.push_back(name);
  return names;
}

absl::StatusOr<std::string> ShardedCheckpoint::FileOf(
    const std::string& name) const {
  auto it = weight_map_.find(name);
  if (it == weight_map_.end()) {
    return absl::NotFoundError(
        absl::StrCat("the checkpoint has no tensor named \"", name, "\""));
  }
  return it->second;
}

absl::StatusOr<ShardedCheckpoint::Shard*> ShardedCheckpoint::OpenShard(
    const std::string& file) {
  auto it = open_.find(file);
  if (it != open_.end()) return it->second.get();
  const std::string path = absl::StrCat(dir_, "/", file);
  auto shard = std::make_unique<Shard>();
  if (IsSafetensors(file)) {
    ACCELERATE_ASSIGN_OR_RETURN(shard->safetensors,
                                SafetensorsFile::Open(path));
  } else {
    ACCELERATE_ASSIGN_OR_RETURN(shard->tensors,
                                LoadTorchStateDict(path, {.map_file = true}));
    for (size_t i = 0; i < shard->tensors.size(); ++i) {
      shard->index[shard->tensors[i].first] = i;
    }
  }
  Shard* raw = shard.get();
  open_[file] = std::move(shard);
  return raw;
}

absl::StatusOr<std::vector<TensorEntry>> ShardedCheckpoint::Entries() {
  std::vector<std::string> files;
  for (const auto& [name, file] : weight_map_) {
    if (std::find(files.begin(), files.end(), file) == files.end()) {
      files.push_back(file);
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<TensorEntry> entries;
  auto wanted = [&](const std::string& name, const std::string& file) {
    auto it = weight_map_.find(name);
    return it != weight_map_.end() && it->second == file;
  };
  for (const std::string& file : files) {
    ACCELERATE_ASSIGN_OR_RETURN(const Shard* shard, OpenShard(file));
    if (shard->safetensors) {
      for (const TensorEntry& entry : shard->safetensors->header().tensors) {
        if (wanted(entry.name, file)) entries.push_back(entry);
      }
      continue;
    }
    for (const auto& [name, tensor] : shard->tensors) {
      if (!wanted(name, file)) continue;
      absl::StatusOr<std::string> dtype =
          SafetensorsDtype(tensor.scalar_type());
      if (!dtype.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(dir_, "/", file, ": \"", name, "\": ",
                         dtype.status().message()));
      }
      entries.push_back(TensorEntry{
          .name = name,
          .dtype = *std::move(dtype),
          .shape = tensor.sizes().vec(),
          .begin = 0,
          .end = static_cast<uint64_t>(tensor.numel()) *
                 tensor.element_size()});
    }
  }
  if (entries.size() != weight_map_.size()) {
    for (const auto& [name, file] : weight_map_) {
      ACCELERATE_ASSIGN_OR_RETURN(const Shard* shard, OpenShard(file));
      if (!shard->Contains(name)) return NotInShard(name, file);
    }
  }
  return entries;
}

absl::StatusOr<std::map<std::string, at::Tensor>> ShardedCheckpoint::Load(
    const std::vector<std::string>& names, const ReadOptions& options) {
  // Shard by shard, each in one (staged) load.
  std::map<std::string, std::vector<std::string>> by_file;
  for (const std::string& name : names) {
    ACCELERATE_ASSIGN_OR_RETURN(std::string file, FileOf(name));
    by_file[file].push_back(name);
  }
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [file, in_file] : by_file) {
    ACCELERATE_ASSIGN_OR_RETURN(const Shard* shard, OpenShard(file));
    for (const std::string& name : in_file) {
      if (!shard->Contains(name)) return NotInShard(name, file);
    }
    if (shard->safetensors) {
      ACCELERATE_ASSIGN_OR_RETURN(auto loaded,
                                  shard->safetensors->Load(in_file, options));
      tensors.merge(loaded);
      continue;
    }
    std::unique_ptr<bigmodel_internal::StagedUpload> upload;
    if (!options.device.is_cpu()) {
      ACCELERATE_ASSIGN_OR_RETURN(
          upload, bigmodel_internal::StagedUploadIfPossible(
                      options.device, {.threads = options.staging_threads}));
    }
    for (const std::string& name : in_file) {
      const at::Tensor& stored = shard->tensors[shard->index.at(name)].second;
      at::Tensor& tensor = tensors[name];
      const bool staged = upload && stored.is_contiguous();
      ACCELERATE_RETURN_IF_ERROR(state::RunGuarded(
          absl::StrCat("loading \"", name, "\" of ", file, " onto ",
                       options.device.str()),
          [&] {
            if (options.device.is_cpu()) {
              // Views that overlap or skip bytes (an expanded or sliced
              // tensor saved as such) are copied: an alias of the mapping
              // is one dense range of it.
              tensor = options.copy || !stored.is_non_overlapping_and_dense()
                           ? stored.clone(at::MemoryFormat::Contiguous)
                           : stored;
            } else if (staged) {
              tensor = at::empty(stored.sizes(), stored.options().device(
                                                     options.device));
            } else {
              tensor = stored.to(options.device);
            }
          }));
      if (staged) {
        ACCELERATE_RETURN_IF_ERROR(upload->Add(
            static_cast<const char*>(stored.const_data_ptr()), tensor));
      }
    }
    if (upload) ACCELERATE_RETURN_IF_ERROR(upload->Finish());
  }
  return tensors;
}

}  // namespace accelerate::bigmodel
