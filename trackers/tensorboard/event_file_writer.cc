#include "trackers/tensorboard/event_file_writer.h"

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "trackers/tensorboard/internal/crc32c.h"

namespace accelerate::trackers {
namespace {

using trackers_internal::Crc32c;
using trackers_internal::MaskCrc32c;

void AppendLittleEndian32(uint32_t value, std::string& out) {
  char bytes[4];
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<char>(value >> (8 * i));
  out.append(bytes, 4);
}

std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}

}  // namespace

double WallTimeNow() {
  return absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
}

void AppendTfRecord(std::string_view data, std::string& out) {
  char length[8];
  const uint64_t size = data.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<char>(size >> (8 * i));
  out.append(length, 8);
  AppendLittleEndian32(MaskCrc32c(Crc32c(length, 8)), out);
  out.append(data.data(), data.size());
  AppendLittleEndian32(MaskCrc32c(Crc32c(data.data(), data.size())), out);
}

absl::StatusOr<std::unique_ptr<EventFileWriter>> EventFileWriter::Open(
    const std::string& folder, const EventFileWriterOptions& options) {
  // PyTorch's name: the time, the host, the process and a per-process
  // count, so that two writers never share a file.
  static std::atomic<int> count{0};
  const std::string name = absl::StrCat(
      "events.out.tfevents.", absl::ToUnixSeconds(absl::Now()), ".",
      HostName(), ".", ::getpid(), ".", count.fetch_add(1),
      options.filename_suffix);
  auto file = trackers_internal::BufferedFile::Open(
      absl::StrCat(folder, "/", name),
      {.flush_interval = options.flush_interval});
  if (!file.ok()) return file.status();
  std::unique_ptr<EventFileWriter> writer(
      new EventFileWriter(*std::move(file)));
  tensorboard::Event version;
  version.set_wall_time(WallTimeNow());
  version.set_file_version("brain.Event:2");
  (void)writer->Write(version);
  // The version record is on disk from the start: TensorBoard lists the
  // run as soon as it exists.
  absl::Status flushed = writer->Flush();
  if (!flushed.ok()) return flushed;
  return writer;
}

absl::Status EventFileWriter::Write(const tensorboard::Event& event) {
  bytes_.clear();
  event.AppendToString(&bytes_);
  return WriteSerialized(bytes_);
}

absl::Status EventFileWriter::WriteSerialized(std::string_view event_bytes) {
  record_.clear();
  AppendTfRecord(event_bytes, record_);
  return file_->Append(record_);
}

absl::Status EventFileWriter::Flush() { return file_->Flush(); }

absl::Status EventFileWriter::Close() { return file_->Close(); }

}  // namespace accelerate::trackers
