// Numbers as text for the text-based trackers (JSON Lines, CSV, MLflow's
// params): the shortest text that reads back as the same double.

#ifndef ACCELERATE_TRACKERS_INTERNAL_NUMBER_TEXT_H_
#define ACCELERATE_TRACKERS_INTERNAL_NUMBER_TEXT_H_

#include <string>

namespace accelerate::trackers_internal {

// "0.001", "1e-05", "3" (integral values without a decimal point, as
// `std::to_chars` writes them); non-finite values as Python's `repr`:
// "nan", "inf", "-inf".
std::string FormatDouble(double value);

// Appends `FormatDouble(value)` to `out` without a temporary string.
void AppendDouble(std::string& out, double value);

}  // namespace accelerate::trackers_internal

#endif  // ACCELERATE_TRACKERS_INTERNAL_NUMBER_TEXT_H_
