// Values as text for the text-based trackers (JSON Lines, CSV, MLflow's
// params): numbers as the shortest text that reads back as the same
// double, JSON strings and CSV fields quoted as their formats require.

#ifndef ACCELERATE_TRACKERS_INTERNAL_TEXT_H_
#define ACCELERATE_TRACKERS_INTERNAL_TEXT_H_

#include <string>
#include <string_view>

namespace accelerate::trackers_internal {

// "0.001", "1e-05", "3" (integral values without a decimal point, as
// `std::to_chars` writes them); non-finite values as Python's `repr`:
// "nan", "inf", "-inf".
std::string FormatDouble(double value);

// As Python's `repr(float)` (and `str`): the shortest round-trip digits,
// positional with at least one decimal ("3.0", "0.001", "100000.0") for
// exponents from -4 to 15, scientific otherwise ("1e-05", "1e+16");
// "nan", "inf", "-inf".
std::string FormatPythonFloat(double value);

// Appends `FormatDouble(value)` to `out` without a temporary string.
void AppendDouble(std::string& out, double value);

// Appends `value` as a JSON number; non-finite values as Python's `json`
// writes them (NaN, Infinity, -Infinity), which Python and pandas read back
// and strict JSON parsers refuse.
void AppendJsonNumber(std::string& out, double value);

// `text` with each byte that does not belong to valid UTF-8 (a multibyte
// character cut in two by a tokenizer, say) replaced by U+FFFD, so that
// readers that decode strictly (Python, protobuf's `string` fields) take
// it; `text` itself when it is valid.
std::string ValidUtf8(std::string_view text);

// Whether `text` is valid UTF-8 (ASCII is checked fast).
bool IsValidUtf8(std::string_view text);

// Appends `text` as a JSON string: quoted, with `"`, `\` and control
// characters escaped, invalid UTF-8 replaced (`ValidUtf8`).
void AppendJsonString(std::string& out, std::string_view text);

// Appends `text` as one CSV field (RFC 4180): quoted, with quotes doubled,
// when it holds a comma, a quote, CR or LF; as it is otherwise.
void AppendCsvField(std::string& out, std::string_view text);

}  // namespace accelerate::trackers_internal

#endif  // ACCELERATE_TRACKERS_INTERNAL_TEXT_H_
