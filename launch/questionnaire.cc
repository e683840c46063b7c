#include "launch/questionnaire.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "state/launch_info.h"

namespace accelerate::launch {

std::string Questionnaire::Ask(absl::string_view question,
                               absl::string_view fallback) {
  return AskOrEnd(question, fallback).value_or(std::string(fallback));
}

std::optional<std::string> Questionnaire::AskOrEnd(absl::string_view question,
                                                   absl::string_view fallback) {
  out_ << question << " [" << fallback << "]: " << std::flush;
  std::string line;
  if (!std::getline(in_, line)) {
    out_ << "\n";
    return std::nullopt;
  }
  const std::string answer(absl::StripAsciiWhitespace(line));
  return answer.empty() ? std::string(fallback) : answer;
}

absl::StatusOr<std::string> Questionnaire::Choose(
    absl::string_view question, const std::vector<std::string>& choices,
    int fallback) {
  std::string listing;
  for (size_t i = 0; i < choices.size(); ++i) {
    absl::StrAppend(&listing, i == 0 ? "" : ", ", "[", i, "] ", choices[i]);
  }
  for (int tries = 0; tries < 3; ++tries) {
    std::optional<std::string> read =
        AskOrEnd(absl::StrCat(question, " (", listing, ")"), choices[fallback]);
    // The end of the input takes the default, unless an answer was wrong.
    if (!read.has_value() && tries > 0) break;
    const std::string answer = read.value_or(choices[fallback]);
    int index = -1;
    if (absl::SimpleAtoi(answer, &index) && index >= 0 &&
        index < static_cast<int>(choices.size())) {
      return choices[index];
    }
    for (const std::string& choice : choices) {
      if (absl::AsciiStrToLower(answer) == absl::AsciiStrToLower(choice)) {
        return choice;
      }
    }
    out_ << "Please answer one of " << absl::StrJoin(choices, ", ")
         << " (or its number); got \"" << answer << "\"\n";
  }
  return absl::InvalidArgumentError(
      absl::StrCat("no valid answer to: ", question));
}

absl::StatusOr<int> Questionnaire::Integer(absl::string_view question,
                                           int fallback, int min_value) {
  for (int tries = 0; tries < 3; ++tries) {
    std::optional<std::string> read =
        AskOrEnd(question, absl::StrCat(fallback));
    if (!read.has_value() && tries > 0) break;
    const std::string answer = read.value_or(absl::StrCat(fallback));
    int value = 0;
    if (absl::SimpleAtoi(answer, &value) && value >= min_value) return value;
    out_ << "Please answer an integer of at least " << min_value << "; got \""
         << answer << "\"\n";
  }
  return absl::InvalidArgumentError(
      absl::StrCat("no valid answer to: ", question));
}

absl::StatusOr<bool> Questionnaire::YesNo(absl::string_view question,
                                          bool fallback) {
  for (int tries = 0; tries < 3; ++tries) {
    std::optional<std::string> read =
        AskOrEnd(question, fallback ? "YES/no" : "yes/NO");
    if (!read.has_value()) {
      if (tries > 0) break;
      return fallback;
    }
    const std::string& answer = *read;
    if (answer == "YES/no") return true;
    if (answer == "yes/NO") return false;
    absl::StatusOr<bool> value = state::ParseBoolFlag("answer", answer);
    if (value.ok()) return *value;
    out_ << "Please answer yes or no; got \"" << answer << "\"\n";
  }
  return absl::InvalidArgumentError(
      absl::StrCat("no valid answer to: ", question));
}

}  // namespace accelerate::launch
