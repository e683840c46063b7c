#include "launch/config.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "state/launch_info.h"
#include "state/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace accelerate::launch {
namespace {

using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::Reflection;

// Keys of Accelerate's config that this launcher does not act on.
const std::set<std::string>& UnsupportedKeys() {
  static const auto* const kKeys =
      new std::set<std::string>{"command_file",   "commands",
                                "dynamo_backend", "dynamo_config",
                                "ipex_config",    "megatron_lm_config",
                                "mpirun_config",  "parallelism_config",
                                "tp_config",      "tpu_env",
                                "tpu_name",       "tpu_use_cluster",
                                "tpu_use_sudo",   "tpu_vm",
                                "tpu_zone"};
  return *kKeys;
}

// Whether an unsupported key's value asks for anything: false, "no", "NO",
// empty sections and lists are what Accelerate writes when a feature is off.
bool AsksForSomething(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return false;
  if (node.IsSequence() || node.IsMap()) return node.size() > 0;
  const std::string text = absl::AsciiStrToLower(node.Scalar());
  return !(text.empty() || text == "false" || text == "no" ||
           text == "none" || text == "0");
}

std::string Describe(const YAML::Node& node) {
  if (node.IsScalar()) return absl::StrCat("\"", node.Scalar(), "\"");
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "null";
}

absl::Status SetScalar(const YAML::Node& node, const FieldDescriptor* field,
                       const std::string& path, Message* message) {
  const Reflection* reflection = message->GetReflection();
  if (!node.IsScalar()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": expected a single value, got ", Describe(node)));
  }
  const std::string& text = node.Scalar();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_BOOL: {
      // YAML 1.1 booleans (true/false/yes/no/on/off) and Accelerate's
      // str_to_bool spellings, quoted or not.
      absl::StatusOr<bool> value = state::ParseBoolFlag(path, text);
      if (!value.ok()) return value.status();
      reflection->SetBool(message, field, *value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t value = 0;
      if (!absl::SimpleAtoi(text, &value)) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": \"", text, "\" is not an integer"));
      }
      reflection->SetInt32(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t value = 0;
      if (!absl::SimpleAtoi(text, &value)) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": \"", text, "\" is not an integer"));
      }
      reflection->SetInt64(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING:
      reflection->SetString(message, field, text);
      return absl::OkStatus();
    default:
      return absl::InternalError(
          absl::StrCat(path, ": unhandled field type in the schema"));
  }
}

absl::Status ParseMessage(const YAML::Node& map, const std::string& prefix,
                          bool top_level, Message* message,
                          LoadedConfig* loaded) {
  const auto* descriptor = message->GetDescriptor();
  for (const auto& entry : map) {
    const std::string key = entry.first.as<std::string>();
    const YAML::Node& value = entry.second;
    const std::string path =
        prefix.empty() ? key : absl::StrCat(prefix, ".", key);
    if (prefix == "deepspeed_config") {
      loaded->deepspeed_config_keys.push_back(key);
    }
    const FieldDescriptor* field = descriptor->FindFieldByName(key);
    if (field == nullptr) {
      if (!top_level) {
        loaded->unknown_section_keys.push_back(path);
        continue;
      }
      if (UnsupportedKeys().count(key) > 0) {
        if (AsksForSomething(value)) loaded->unsupported_keys.push_back(key);
        continue;
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown key \"", key,
          "\"; it is not part of Accelerate's config format (known keys: ",
          absl::StrJoin(
              [&] {
                std::vector<std::string> names;
                for (int i = 0; i < descriptor->field_count(); ++i) {
                  names.push_back(descriptor->field(i)->name());
                }
                for (const std::string& k : UnsupportedKeys()) {
                  names.push_back(k);
                }
                std::sort(names.begin(), names.end());
                return names;
              }(),
              ", "),
          ")"));
    }
    if (value.IsNull()) continue;  // Written as `key: null`: not set.
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (!value.IsMap()) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": expected a mapping, got ", Describe(value)));
      }
      Message* section =
          message->GetReflection()->MutableMessage(message, field);
      ACCELERATE_RETURN_IF_ERROR(
          ParseMessage(value, path, /*top_level=*/false, section, loaded));
      continue;
    }
    ACCELERATE_RETURN_IF_ERROR(SetScalar(value, field, path, message));
  }
  return absl::OkStatus();
}

void EmitMessage(const Message& message, YAML::Emitter& out) {
  const Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  std::sort(fields.begin(), fields.end(),
            [](const FieldDescriptor* a, const FieldDescriptor* b) {
              return a->name() < b->name();
            });
  out << YAML::BeginMap;
  for (const FieldDescriptor* field : fields) {
    out << YAML::Key << field->name() << YAML::Value;
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_BOOL:
        out << (reflection->GetBool(message, field) ? "true" : "false");
        break;
      case FieldDescriptor::CPPTYPE_INT32:
        out << reflection->GetInt32(message, field);
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        out << reflection->GetInt64(message, field);
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        // Quoted, so that 'NO' or 'no' stay strings for PyYAML.
        out << YAML::SingleQuoted << reflection->GetString(message, field);
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        EmitMessage(reflection->GetMessage(message, field), out);
        break;
      default:
        break;
    }
  }
  out << YAML::EndMap;
}

std::vector<std::pair<std::string, std::string>> Entries(
    const Message& message) {
  const Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  std::vector<std::pair<std::string, std::string>> entries;
  for (const FieldDescriptor* field : fields) {
    std::string value;
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_BOOL:
        value = reflection->GetBool(message, field) ? "true" : "false";
        break;
      case FieldDescriptor::CPPTYPE_INT32:
        value = absl::StrCat(reflection->GetInt32(message, field));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        value = absl::StrCat(reflection->GetInt64(message, field));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        value = reflection->GetString(message, field);
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE: {
        std::vector<std::string> parts;
        for (const auto& [k, v] :
             Entries(reflection->GetMessage(message, field))) {
          parts.push_back(absl::StrCat(k, ": ", v));
        }
        value = absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
        break;
      }
      default:
        break;
    }
    entries.emplace_back(field->name(), value);
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> ConfigEntries(
    const LaunchConfig& config) {
  return Entries(config);
}

absl::StatusOr<LoadedConfig> ParseConfig(absl::string_view yaml,
                                         absl::string_view source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not valid YAML: ", e.what()));
  }
  LoadedConfig loaded;
  if (root.IsNull()) return loaded;  // An empty file sets nothing.
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": expected a mapping of config keys at the top level"));
  }
  absl::Status status = [&]() -> absl::Status {
    try {
      return ParseMessage(root, "", /*top_level=*/true, &loaded.config,
                          &loaded);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(e.what());
    }
  }();
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", status.message()));
  }
  return loaded;
}

absl::StatusOr<LoadedConfig> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(
        "config file ", path,
        " does not exist; pass an existing file with --config_file or write "
        "one with `accelerate config`"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return ParseConfig(text.str(), path);
}

std::string ConfigToYaml(const LaunchConfig& config) {
  YAML::Emitter out;
  EmitMessage(config, out);
  return absl::StrCat(out.c_str(), "\n");
}

absl::Status WriteConfigFile(const LaunchConfig& config,
                             const std::string& path) {
  // Create missing parent folders.
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    const std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create folder ", dir, " for ", path));
    }
  }
  const std::string temporary = absl::StrCat(path, ".tmp.", ::getpid());
  {
    const std::string text = ConfigToYaml(config);
    FILE* out = std::fopen(temporary.c_str(), "w");
    const bool written =
        out != nullptr &&
        std::fwrite(text.data(), 1, text.size(), out) == text.size() &&
        std::fflush(out) == 0 && ::fsync(::fileno(out)) == 0;
    if (out != nullptr) std::fclose(out);
    if (!written) {
      std::remove(temporary.c_str());
      return absl::UnavailableError(absl::StrCat("cannot write ", temporary));
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    return absl::UnavailableError(absl::StrCat("cannot replace ", path));
  }
  return absl::OkStatus();
}

std::string DefaultConfigPath(const state::Environment& env) {
  std::string hf_home;
  if (std::optional<std::string> value = env.Get("HF_HOME")) {
    hf_home = *value;
  } else {
    std::string cache;
    if (std::optional<std::string> xdg = env.Get("XDG_CACHE_HOME")) {
      cache = *xdg;
    } else {
      cache = absl::StrCat(env.Get("HOME").value_or(""), "/.cache");
    }
    hf_home = absl::StrCat(cache, "/huggingface");
  }
  if (absl::StartsWith(hf_home, "~/")) {
    hf_home = absl::StrCat(env.Get("HOME").value_or(""), hf_home.substr(1));
  }
  return absl::StrCat(hf_home, "/accelerate/default_config.yaml");
}

}  // namespace accelerate::launch
