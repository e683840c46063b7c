// An event file that TensorBoard reads: `Event` records framed as
// TFRecords (length, masked CRC-32C of the length, bytes, masked CRC-32C
// of the bytes), named `events.out.tfevents.<seconds>.<host>.<pid>.<n>` as
// PyTorch's `SummaryWriter` names them, opening with the "brain.Event:2"
// version record. Records are written in the background (every
// `flush_interval`, on `Flush`, on `Close`, on SIGTERM/SIGINT/SIGHUP).
//
// clang-format off
//   absl::Status Example() {
//     auto writer = EventFileWriter::Open("/tmp/runs/demo");
//     if (!writer.ok()) return writer.status();
//     tensorboard::Event event;
//     event.set_wall_time(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
//     event.set_step(1);
//     tensorboard::Summary::Value* value = event.mutable_summary()->add_value();
//     value->set_tag("loss");
//     value->set_simple_value(0.25f);
//     (void)(*writer)->Write(event);
//     return (*writer)->Close();
//   }
// clang-format on
//
// Thread safety: one thread at a time writes (`Write` reuses buffers);
// `Flush` and `Close` may be called from any thread. Ownership: owns its
// file.

#ifndef ACCELERATE_TRACKERS_TENSORBOARD_EVENT_FILE_WRITER_H_
#define ACCELERATE_TRACKERS_TENSORBOARD_EVENT_FILE_WRITER_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "trackers/internal/buffered_file.h"
#include "trackers/tensorboard/event.pb.h"

namespace accelerate::trackers {

struct EventFileWriterOptions {
  // How long records may wait in memory before they are written. Default
  // 2 s (PyTorch's `SummaryWriter` waits up to 120 s; Accelerate flushes
  // after every `log`).
  absl::Duration flush_interval = absl::Seconds(2);
  // Appended to the file name (PyTorch's `filename_suffix`). Default none.
  std::string filename_suffix;
};

class EventFileWriter {
 public:
  // Creates `folder` (and its parents) and a new event file in it.
  // Errors name the folder or file (PermissionDenied, ...).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EventFileWriter>> Open(
      const std::string& folder, const EventFileWriterOptions& options = {});
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  // Queues one record. Returns the first error met writing earlier
  // records (they are kept and retried), OK otherwise.
  absl::Status Write(const tensorboard::Event& event);
  // Queues an already serialized `Event`.
  absl::Status WriteSerialized(std::string_view event_bytes);
  // Writes what is queued.
  absl::Status Flush();
  // Flushes, fsyncs and closes. Later calls return the same status.
  absl::Status Close();

  // The event file's path.
  const std::string& path() const { return file_->path(); }

 private:
  explicit EventFileWriter(std::unique_ptr<trackers_internal::BufferedFile> file)
      : file_(std::move(file)) {}

  std::unique_ptr<trackers_internal::BufferedFile> file_;
  std::string record_;  // Reused framing buffer.
  std::string bytes_;   // Reused serialization buffer.
};

// The TFRecord framing of `data`, appended to `out`.
void AppendTfRecord(std::string_view data, std::string& out);

// Seconds since the epoch, as `Event::wall_time` holds them.
double WallTimeNow();

}  // namespace accelerate::trackers

#endif  // ACCELERATE_TRACKERS_TENSORBOARD_EVENT_FILE_WRITER_H_
