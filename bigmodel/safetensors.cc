// Safetensors files and sharded checkpoints with LibTorch (see
// safetensors.h): mapping, aliasing, atomic writes, the index.

#include "bigmodel/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include <ATen/ATen.h>
#include "bigmodel/dtype.h"
#include "bigmodel/internal/staged_upload.h"
#include "bigmodel/torch_dtype.h"
#include "state/status_macros.h"
#include "state/torch_errors.h"

namespace accelerate::bigmodel {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data are little-endian; big-endian hosts would "
              "need byte swapping");

absl::Status Errno(absl::string_view what, const std::string& path) {
  const int error = errno;
  const std::string text =
      absl::StrCat(what, " ", path, ": ", std::strerror(error));
  if (error == ENOENT) return absl::NotFoundError(text);
  if (error == EACCES || error == EPERM)
    return absl::PermissionDeniedError(text);
  return absl::UnavailableError(text);
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path,
                                 const std::vector<absl::string_view>& parts) {
  const std::string temporary = absl::StrCat(path, ".tmp.", ::getpid());
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return Errno("cannot create", temporary);
  for (absl::string_view part : parts) {
    while (!part.empty()) {
      const ssize_t n = ::write(fd, part.data(), part.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        absl::Status status = Errno("cannot write", temporary);
        ::close(fd);
        ::unlink(temporary.c_str());
        return status;
      }
      part.remove_prefix(static_cast<size_t>(n));
    }
  }
  if (::fsync(fd) != 0) {
    absl::Status status = Errno("cannot sync", temporary);
    ::close(fd);
    ::unlink(temporary.c_str());
    return status;
  }
  ::close(fd);
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    absl::Status status = Errno("cannot rename into", path);
    ::unlink(temporary.c_str());
    return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<at::ScalarType> SafetensorsScalarType(const TensorEntry& entry) {
  if (const Dtype* dtype = DtypeBySafetensorsName(entry.dtype)) {
    return ScalarTypeOf(*dtype);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors: tensor \"", entry.name, "\" has dtype ",
                   entry.dtype, ", which LibTorch has no type for"));
}

absl::StatusOr<std::string> SafetensorsDtype(at::ScalarType type) {
  if (const Dtype* dtype = DtypeOf(type)) {
    return std::string(dtype->safetensors_name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors has no dtype for ", c10::toString(type)));
}

absl::StatusOr<SafetensorsLayout> LayOutSafetensors(
    const NamedTensors& tensors,
    const std::map<std::string, std::string>& metadata) {
  SafetensorsLayout layout;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor \"", name, "\" is undefined"));
    }
    layout.order.emplace_back(name, tensor.detach().to(at::kCPU).contiguous());
  }
  std::stable_sort(
      layout.order.begin(), layout.order.end(),
      [](const auto& a, const auto& b) {
        const size_t sa = a.second.element_size(), sb = b.second.element_size();
        return sa != sb ? sa > sb : a.first < b.first;
      });
  std::vector<TensorEntry> entries;
  for (const auto& [name, tensor] : layout.order) {
    TensorEntry entry;
    entry.name = name;
    ACCELERATE_ASSIGN_OR_RETURN(entry.dtype,
                                SafetensorsDtype(tensor.scalar_type()));
    entry.shape = tensor.sizes().vec();
    entry.end = tensor.nbytes();
    entries.push_back(std::move(entry));
  }
  ACCELERATE_ASSIGN_OR_RETURN(layout.header,
                              SerializeSafetensorsHeader(entries, metadata));
  return layout;
}

absl::Status SaveSafetensors(
    const std::string& path, const NamedTensors& tensors,
    const std::map<std::string, std::string>& metadata) {
  ACCELERATE_ASSIGN_OR_RETURN(SafetensorsLayout layout,
                              LayOutSafetensors(tensors, metadata));
  std::vector<absl::string_view> parts = {layout.header};
  for (const auto& [name, tensor] : layout.order) {
    parts.emplace_back(static_cast<const char*>(tensor.data_ptr()),
                       tensor.nbytes());
  }
  return WriteFileAtomically(path, parts);
}

namespace {

// The deleter context of ShareMapping's pointers: a share of the mapping.
struct MappingShare {
  std::shared_ptr<const MappedFile> mapping;
};

void ReleaseMappingShare(void* context) {
  delete static_cast<MappingShare*>(context);
}

// A `Get` onto a GPU this large is staged; for smaller ones setting up the
// staging costs more than it saves.
constexpr uint64_t kStagedGetBytes = uint64_t{64} << 20;

}  // namespace

at::Tensor AliasMapping(std::shared_ptr<const MappedFile> mapping,
                        const char* data, c10::IntArrayRef shape,
                        at::ScalarType type) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const size_t bytes = static_cast<size_t>(numel) * c10::elementSize(type);
  c10::Storage storage(c10::Storage::use_byte_size_t(), bytes,
                       ShareMapping(std::move(mapping), data),
                       /*allocator=*/nullptr,
                       /*resizable=*/false);
  auto tensor = at::detail::make_tensor<c10::TensorImpl>(
      std::move(storage), c10::DispatchKeySet(c10::DispatchKey::CPU),
      caffe2::TypeMeta::fromScalarType(type));
  tensor.unsafeGetTensorImpl()->set_sizes_contiguous(shape);
  return tensor;
}

c10::DataPtr ShareMapping(std::shared_ptr<const MappedFile> mapping,
                          const char* data) {
  return c10::DataPtr(const_cast<char*>(data),
                      new MappingShare{std::move(mapping)},
                      &ReleaseMappingShare, c10::Device(c10::kCPU));
}

bool AliasesMapping(const at::Tensor& tensor) {
  return tensor.defined() && tensor.has_storage() &&
         tensor.storage().data_ptr().get_deleter() == &ReleaseMappingShare;
}

MappedFile::~MappedFile() {
  if (base != nullptr) ::munmap(base, size);
}

absl::StatusOr<std::shared_ptr<const MappedFile>> MappedFile::Map(
    const std::string& path) {
  // O_NONBLOCK: a FIFO named by a hostile index must not hang the open.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Errno("cannot open", path);
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    absl::Status status = Errno("cannot stat", path);
    ::close(fd);
    return status;
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(info.st_size);
  auto mapping = std::make_shared<MappedFile>();
  if (size > 0) {
    // MAP_NORESERVE: a private writable mapping would otherwise be charged
    // against memory, and files larger than RAM could not be opened.
    void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_NORESERVE, fd, 0);
    if (base == MAP_FAILED) {
      absl::Status status = Errno("cannot map", path);
      ::close(fd);
      return status;
    }
    mapping->base = static_cast<char*>(base);
    mapping->size = size;
  }
  ::close(fd);
  return std::shared_ptr<const MappedFile>(std::move(mapping));
}

SafetensorsFile::SafetensorsFile(std::string path, SafetensorsHeader header,
                                 std::shared_ptr<const MappedFile> mapping)
    : path_(std::move(path)),
      header_(std::move(header)),
      mapping_(std::move(mapping)) {
  for (size_t i = 0; i < header_.tensors.size(); ++i) {
    index_[header_.tensors[i].name] = i;
  }
}

SafetensorsFile::~SafetensorsFile() = default;

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  ACCELERATE_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> mapping,
                              MappedFile::Map(path));
  absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsPrefix(
      absl::string_view(mapping->base, mapping->size), mapping->size);
  if (!header.ok()) {
    return absl::Status(header.status().code(),
                        absl::StrCat(path, ": ", header.status().message()));
  }
  return std::unique_ptr<SafetensorsFile>(
      new SafetensorsFile(path, *std::move(header), std::move(mapping)));
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> names;
  for (const auto& [name, index] : index_) names.push_back(name);
  return names;
}

bool SafetensorsFile::Contains(const std::string& name) const {
  return index_.count(name) > 0;
}

absl::StatusOr<SafetensorsFile::Located> SafetensorsFile::Locate(
    const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(
        absl::StrCat(path_, ": no tensor named \"", name, "\""));
  }
  const TensorEntry& entry = header_.tensors[it->second];
  ACCELERATE_ASSIGN_OR_RETURN(at::ScalarType type,
                              SafetensorsScalarType(entry));
  return Located{&entry, type,
                 mapping_->base + header_.data_start + entry.begin};
}

absl::StatusOr<at::Tensor> SafetensorsFile::Get(
    const std::string& name, const ReadOptions& options) const {
  ACCELERATE_ASSIGN_OR_RETURN(const Located located, Locate(name));
  if (!options.device.is_cpu() &&
      located.entry->end - located.entry->begin >= kStagedGetBytes) {
    ACCELERATE_ASSIGN_OR_RETURN(auto loaded, Load({name}, options));
    return loaded.at(name);
  }
  at::Tensor tensor;
  ACCELERATE_RETURN_IF_ERROR(state::RunGuarded(
      absl::StrCat("loading \"", name, "\" onto ", options.device.str()),
      [&] { tensor = GetDirect(located, options); }));
  return tensor;
}

at::Tensor SafetensorsFile::GetDirect(const Located& located,
                                      const ReadOptions& options) const {
  const TensorEntry& entry = *located.entry;
  const at::ScalarType type = located.type;
  char* data = const_cast<char*>(located.data);
  const size_t element = c10::elementSize(type);
  const bool aligned = reinterpret_cast<uintptr_t>(data) % element == 0;
  at::Tensor view = AliasMapping(mapping_, data, entry.shape, type);
  if (options.device.is_cpu() && !options.copy && aligned) return view;
  // To another device: one copy, straight from the mapping.
  if (!options.device.is_cpu() && aligned) return view.to(options.device);
  // A copy: on request, or from unaligned bytes (then on to the device).
  at::Tensor copy = aligned ? view.clone() : at::empty(entry.shape, type);
  if (!aligned && entry.end > entry.begin) {
    std::memcpy(copy.data_ptr(), data, entry.end - entry.begin);
  }
  return options.device.is_cpu() ? copy : copy.to(options.device);
}

absl::StatusOr<std::map<std::string, at::Tensor>> SafetensorsFile::Load(
    const std::vector<std::string>& names, const ReadOptions& options) const {
  std::vector<Located> located;
  for (const std::string& name : names) {
    ACCELERATE_ASSIGN_OR_RETURN(const Located where, Locate(name));
    located.push_back(where);
  }
  std::map<std::string, at::Tensor> tensors;
  std::unique_ptr<bigmodel_internal::StagedUpload> upload;
  if (!options.device.is_cpu()) {
    ACCELERATE_ASSIGN_OR_RETURN(
        upload, bigmodel_internal::StagedUploadIfPossible(
                    options.device, {.threads = options.staging_threads}));
  }
  for (size_t i = 0; i < names.size(); ++i) {
    at::Tensor& tensor = tensors[names[i]];
    ACCELERATE_RETURN_IF_ERROR(state::RunGuarded(
        absl::StrCat("loading \"", names[i], "\" onto ",
                     options.device.str()),
        [&] {
          tensor = upload ? at::empty(located[i].entry->shape,
                                      at::TensorOptions()
                                          .dtype(located[i].type)
                                          .device(options.device))
                          : GetDirect(located[i], options);
        }));
    if (upload) {
      ACCELERATE_RETURN_IF_ERROR(upload->Add(located[i].data, tensor));
    }
  }
  if (upload) ACCELERATE_RETURN_IF_ERROR(upload->Finish());
  return tensors;
}

absl::Status SaveShardedSafetensors(const std::string& dir,
                                    const NamedTensors& tensors,
                                    const SaveShardedOptions& options) {
  if (options.max_shard_bytes == 0) {
    return absl::InvalidArgumentError("max_shard_bytes must be positive");
  }
  // Greedy packing in the given order, as transformers' sharding does.
  std::vector<NamedTensors> shards(1);
  uint64_t current = 0;
  uint64_t total = 0;
  for (const auto& named : tensors) {
    const uint64_t bytes = named.second.defined() ? named.second.nbytes() : 0;
    if (!shards.back().empty() && current + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(named);
    current += bytes;
    total += bytes;
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Errno("cannot create", dir);
  }
  // A checkpoint of the other form left in the folder would be read
  // instead of (or mixed with) this one.
  const std::string single =
      absl::StrCat(dir, "/", options.prefix, ".safetensors");
  const std::string index_path =
      absl::StrCat(dir, "/", options.prefix, ".safetensors.index.json");
  if (shards.size() == 1) {
    ::unlink(index_path.c_str());
    return SaveSafetensors(single, shards[0], options.metadata);
  }
  ::unlink(single.c_str());
  google::protobuf::Struct index;
  (*(*index.mutable_fields())["metadata"]
        .mutable_struct_value()
        ->mutable_fields())["total_size"]
      .set_number_value(static_cast<double>(total));
  auto* weight_map = (*index.mutable_fields())["weight_map"]
                         .mutable_struct_value()
                         ->mutable_fields();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file = absl::StrFormat(
        "%s-%05d-of-%05d.safetensors", options.prefix, i + 1, shards.size());
    ACCELERATE_RETURN_IF_ERROR(SaveSafetensors(absl::StrCat(dir, "/", file),
                                               shards[i], options.metadata));
    for (const auto& named : shards[i])
      (*weight_map)[named.first].set_string_value(file);
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  print.add_whitespace = true;
  const auto printed =
      google::protobuf::util::MessageToJsonString(index, &json, print);
  if (!printed.ok()) return absl::InternalError(std::string(printed.message()));
  // Written last: a reader never sees an index naming missing shards.
  return WriteFileAtomically(index_path, {json});
}

}  // namespace accelerate::bigmodel
