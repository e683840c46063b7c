#include "checkpoint/torch_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include <caffe2/serialize/inline_container.h>
#include <c10/util/Exception.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/pickler.h>

namespace accelerate::checkpoint {
namespace {

// The first line of a LibTorch message (the rest is its stack).
std::string FirstLine(const char* what) {
  std::string text(what);
  const size_t end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

absl::Status ErrnoStatus(int error, absl::string_view what,
                         const std::string& path) {
  const std::string message =
      absl::StrCat(what, " ", path, ": ", std::strerror(error));
  if (error == ENOSPC || error == EDQUOT) {
    return absl::ResourceExhaustedError(message);
  }
  if (error == EACCES || error == EPERM) {
    return absl::PermissionDeniedError(message);
  }
  if (error == ENOENT) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

}  // namespace

absl::Status SaveTorchFile(const std::string& path, const c10::IValue& value) {
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "cannot create", path);
  int write_error = 0;
  absl::Status status;
  try {
    // Storages as `torch.save` records them (persistent ids), aggregates
    // untagged: what Python's weights-only unpickler accepts.
    std::string pickle;
    torch::jit::Pickler pickler(
        [&](const char* bytes, size_t n) { pickle.append(bytes, n); },
        /*tensor_table=*/nullptr, /*type_renamer=*/nullptr,
        /*memoized_class_types=*/nullptr, /*get_tensor_id=*/nullptr,
        /*tag_aggregates=*/false);
    pickler.protocol();
    pickler.pushIValue(value);
    pickler.stop();
    caffe2::serialize::PyTorchStreamWriter writer(
        [&](const void* data, size_t n) -> size_t {
          const char* bytes = static_cast<const char*>(data);
          size_t done = 0;
          while (done < n) {
            const ssize_t wrote = ::write(fd, bytes + done, n - done);
            if (wrote < 0 && errno == EINTR) continue;
            if (wrote <= 0) {
              write_error = wrote < 0 ? errno : EIO;
              return done;
            }
            done += static_cast<size_t>(wrote);
          }
          return done;
        });
    torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(),
                                       pickler.tensorData(), writer);
    writer.writeEndOfFile();
  } catch (const std::exception& e) {
    status = write_error != 0
                 ? ErrnoStatus(write_error, "cannot write", path)
                 : absl::InvalidArgumentError(absl::StrCat(
                       "cannot serialize ", path, ": ", FirstLine(e.what())));
  }
  if (status.ok() && ::fsync(fd) != 0) {
    status = ErrnoStatus(errno, "cannot sync", path);
  }
  if (::close(fd) != 0 && status.ok()) {
    status = ErrnoStatus(errno, "cannot close", path);
  }
  return status;
}

absl::StatusOr<c10::IValue> LoadTorchFile(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(path, " is missing"));
  }
  try {
    caffe2::serialize::PyTorchStreamReader reader{path};
    return torch::jit::readArchiveAndTensors(
        "data", /*pickle_prefix=*/"", /*tensor_prefix=*/"data/",
        /*type_resolver=*/std::nullopt, /*obj_loader=*/std::nullopt,
        /*device=*/at::Device(at::kCPU), reader);
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(
        path, " is not a readable torch.save archive: ", FirstLine(e.what())));
  }
}

}  // namespace accelerate::checkpoint
