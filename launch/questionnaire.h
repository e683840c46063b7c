// Questions on one stream, answers from another, as `accelerate config` asks
// them: each question shows its default, an empty answer (or the end of the
// input) takes it, and a wrong answer is asked again, up to three times.
//
// clang-format off
//   #include <iostream>
//   absl::StatusOr<int> AskProcesses() {
//     Questionnaire q(std::cin, std::cout);
//     return q.Integer("How many processes?", /*fallback=*/2,
//                      /*min_value=*/1);
//   }
// clang-format on
//
// Thread safety: one thread at a time. The streams are borrowed and must
// outlive the questionnaire.

#ifndef ACCELERATE_LAUNCH_QUESTIONNAIRE_H_
#define ACCELERATE_LAUNCH_QUESTIONNAIRE_H_

#include <istream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accelerate::launch {

class Questionnaire {
 public:
  Questionnaire(std::istream& in, std::ostream& out) : in_(in), out_(out) {}
  Questionnaire(const Questionnaire&) = delete;
  Questionnaire& operator=(const Questionnaire&) = delete;

  // The answer, or `fallback` when it is empty or the input has ended.
  std::string Ask(absl::string_view question, absl::string_view fallback);

  // The answer (`fallback` when empty), or nullopt at the end of the input.
  std::optional<std::string> AskOrEnd(absl::string_view question,
                                      absl::string_view fallback);

  // One of `choices`, by name (any case) or index; `choices[fallback]` for an
  // empty answer. `InvalidArgument` naming the question after three wrong
  // answers. REQUIRES: 0 <= fallback < choices.size().
  [[nodiscard]] absl::StatusOr<std::string> Choose(
      absl::string_view question, const std::vector<std::string>& choices,
      int fallback);

  // An integer of at least `min_value`. `InvalidArgument` naming the
  // question after three wrong answers.
  [[nodiscard]] absl::StatusOr<int> Integer(absl::string_view question,
                                            int fallback, int min_value);

  // Yes or no (Accelerate's spellings). `InvalidArgument` naming the
  // question after three wrong answers.
  [[nodiscard]] absl::StatusOr<bool> YesNo(absl::string_view question,
                                           bool fallback);

 private:
  std::istream& in_;
  std::ostream& out_;
};

}  // namespace accelerate::launch

#endif  // ACCELERATE_LAUNCH_QUESTIONNAIRE_H_
