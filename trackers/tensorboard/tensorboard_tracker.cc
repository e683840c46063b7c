#include "trackers/tensorboard/tensorboard_tracker.h"

#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "state/logging.h"
#include "trackers/internal/buffered_file.h"
#include "trackers/internal/text.h"
#include "trackers/tensorboard/hparams.pb.h"
#include "yaml-cpp/yaml.h"

namespace accelerate::trackers {
namespace {

using trackers_internal::IsValidUtf8;
using trackers_internal::ValidUtf8;
using tensorboard::Event;
using tensorboard::HParamsPluginData;
using tensorboard::Summary;

constexpr char kSessionStartTag[] = "_hparams_/session_start_info";
constexpr char kSessionEndTag[] = "_hparams_/session_end_info";

// A summary value of the HParams plugin, as its own writer makes them
// (an empty float tensor under the metadata).
void AddHParamsValue(const char* tag, const HParamsPluginData& data,
                     Summary& summary) {
  Summary::Value* value = summary.add_value();
  value->set_tag(tag);
  auto* plugin = value->mutable_metadata()->mutable_plugin_data();
  plugin->set_plugin_name("hparams");
  plugin->set_content(data.SerializeAsString());
  auto* tensor = value->mutable_tensor();
  tensor->set_dtype(tensorboard::DT_FLOAT);
  tensor->mutable_tensor_shape()->add_dim();
}

google::protobuf::Value ToProtoValue(const ConfigValue& config_value) {
  google::protobuf::Value out;
  struct Visitor {
    google::protobuf::Value& out;
    void operator()(bool value) { out.set_bool_value(value); }
    void operator()(int64_t value) {
      out.set_number_value(static_cast<double>(value));
    }
    void operator()(double value) { out.set_number_value(value); }
    void operator()(const std::string& value) {
      out.set_string_value(ValidUtf8(value));
    }
  };
  std::visit(Visitor{out}, config_value.value());
  return out;
}

// TensorBoard's scalars are float32; beyond its range, infinity (a cast
// would be undefined).
float ToFloat(double value) {
  constexpr double kMax = std::numeric_limits<float>::max();
  if (value > kMax) return std::numeric_limits<float>::infinity();
  if (value < -kMax) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(value);
}

YAML::Node ToYaml(const ConfigValue& config_value) {
  return std::visit([](const auto& value) { return YAML::Node(value); },
                    config_value.value());
}

}  // namespace

absl::Status TensorBoardTracker::Start(const RunInfo& run) {
  if (writer_ != nullptr) {
    return absl::FailedPreconditionError("the TensorBoard run already started");
  }
  auto folder = RunFolder(run, name());
  if (!folder.ok()) return folder.status();
  run_folder_ = *std::move(folder);
  auto writer = EventFileWriter::Open(
      run_folder_, {.flush_interval = options_.flush_interval,
                    .filename_suffix = options_.filename_suffix});
  if (!writer.ok()) return writer.status();
  writer_ = *std::move(writer);
  return absl::OkStatus();
}

absl::Status TensorBoardTracker::StoreInitConfiguration(const Config& config) {
  if (writer_ == nullptr) {
    return absl::FailedPreconditionError("the TensorBoard run is not started");
  }
  HParamsPluginData data;
  data.set_version(0);
  auto* start = data.mutable_session_start_info();
  YAML::Node yaml(YAML::NodeType::Map);
  for (const auto& [key, value] : config) {
    (*start->mutable_hparams())[ValidUtf8(key)] = ToProtoValue(value);
    yaml[key] = ToYaml(value);
  }
  const double now = WallTimeNow();
  start->set_start_time_secs(now);
  Event event;
  event.set_wall_time(now);
  AddHParamsValue(kSessionStartTag, data, *event.mutable_summary());
  absl::Status written = writer_->Write(event);
  has_session_ = true;

  // Accelerate also keeps the configuration as YAML beside the events.
  YAML::Emitter emitter;
  emitter << yaml;
  auto yaml_file = trackers_internal::BufferedFile::Open(
      absl::StrCat(run_folder_, "/hparams.yml"));
  if (!yaml_file.ok()) return yaml_file.status();
  (void)(*yaml_file)->Append(absl::StrCat(emitter.c_str(), "\n"));
  absl::Status closed = (*yaml_file)->Close();
  if (!written.ok()) return written;
  return closed;
}

absl::Status TensorBoardTracker::Log(const LogValues& values,
                                     std::optional<int64_t> step) {
  if (writer_ == nullptr) {
    return absl::FailedPreconditionError("the TensorBoard run is not started");
  }
  event_.Clear();
  event_.set_wall_time(WallTimeNow());
  event_.set_step(step.value_or(0));
  Summary* summary = event_.mutable_summary();
  for (const auto& [key, value] : values) {
    Summary::Value* out = summary->add_value();
    // Tags are protobuf strings: TensorBoard refuses invalid UTF-8.
    std::string replaced;
    if (!IsValidUtf8(key)) replaced = ValidUtf8(key);
    const std::string& tag = replaced.empty() ? key : replaced;
    if (const double* scalar = value.scalar()) {
      out->set_tag(tag);
      out->set_simple_value(ToFloat(*scalar));
    } else if (const std::string* text = value.text()) {
      // PyTorch's add_text.
      out->set_tag(absl::StrCat(tag, "/text_summary"));
      out->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
      auto* tensor = out->mutable_tensor();
      tensor->set_dtype(tensorboard::DT_STRING);
      tensor->mutable_tensor_shape()->add_dim()->set_size(1);
      tensor->add_string_val(*text);
    } else if (const Histogram* histogram = value.histogram()) {
      out->set_tag(tag);
      auto* histo = out->mutable_histo();
      histo->set_min(histogram->min);
      histo->set_max(histogram->max);
      histo->set_num(histogram->num);
      histo->set_sum(histogram->sum);
      histo->set_sum_squares(histogram->sum_squares);
      for (double limit : histogram->bucket_limits) {
        histo->add_bucket_limit(limit);
      }
      for (double count : histogram->bucket_counts) histo->add_bucket(count);
    }
  }
  return writer_->Write(event_);
}

absl::Status TensorBoardTracker::Flush() {
  if (writer_ == nullptr) return absl::OkStatus();
  return writer_->Flush();
}

absl::Status TensorBoardTracker::Finish() {
  if (writer_ == nullptr) {
    return absl::FailedPreconditionError("the TensorBoard run is not started");
  }
  absl::Status written = absl::OkStatus();
  if (has_session_) {
    HParamsPluginData data;
    data.set_version(0);
    auto* end = data.mutable_session_end_info();
    end->set_status(tensorboard::STATUS_SUCCESS);
    const double now = WallTimeNow();
    end->set_end_time_secs(now);
    Event event;
    event.set_wall_time(now);
    AddHParamsValue(kSessionEndTag, data, *event.mutable_summary());
    written = writer_->Write(event);
  }
  absl::Status closed = writer_->Close();
  return written.ok() ? closed : written;
}

}  // namespace accelerate::trackers
