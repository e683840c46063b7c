// JSON strings as bigmodel writes them (safetensors headers, module trees,
// device maps): the one escaping routine.
//
// Thread safety: pure functions.

#ifndef ACCELERATE_BIGMODEL_INTERNAL_JSON_STRING_H_
#define ACCELERATE_BIGMODEL_INTERNAL_JSON_STRING_H_

#include <string>

#include "absl/strings/string_view.h"

namespace accelerate::bigmodel_internal {

// Appends `text` to `out` as a JSON string: in double quotes, with `"` and
// `\` escaped and control characters written as `\u00XX`. Other bytes
// (UTF-8 included) are copied as they are.
void AppendJsonString(std::string* out, absl::string_view text);

// `text` as a JSON string (see AppendJsonString).
std::string JsonString(absl::string_view text);

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_JSON_STRING_H_
