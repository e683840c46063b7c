// The distributed self-check behind `accelerate test`: run by `accelerate
// launch` on every rank, it checks the process state and every collective
// against values each rank can compute by itself, prints one line per check,
// and exits non-zero if any failed.

#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <ATen/ATen.h>
#include "state/collectives.h"
#include "state/partial_state.h"

namespace {

using ::accelerate::state::PartialState;

class Checker {
 public:
  explicit Checker(const PartialState& state) : state_(state) {}

  void Check(const std::string& name, bool ok, const std::string& detail) {
    if (!ok) ++failures_;
    std::cout << (ok ? "PASS " : "FAIL ") << name
              << (ok || detail.empty() ? "" : absl::StrCat(": ", detail))
              << std::endl;
  }

  template <typename T>
  void CheckOk(const std::string& name, const absl::StatusOr<T>& value,
               const std::function<bool(const T&)>& valid) {
    if (!value.ok()) {
      Check(name, false, value.status().ToString());
    } else {
      Check(name, valid(*value), "unexpected value");
    }
  }

  int failures() const { return failures_; }

 private:
  const PartialState& state_;
  int failures_ = 0;
};

}  // namespace

int main() {
  namespace st = accelerate::state;
  auto created = PartialState::Create();
  if (!created.ok()) {
    std::cout << "FAIL initialization: " << created.status() << std::endl;
    return 1;
  }
  const PartialState& state = **created;
  const int rank = state.process_index();
  const int n = state.num_processes();
  state.Print("**Initialization**");
  std::cout << "rank " << rank << " of " << n << ", local rank "
            << state.local_process_index() << ", backend "
            << st::BackendName(state.backend()) << ", "
            << st::DistributedTypeName(state.distributed_type()) << ", device "
            << state.device() << std::endl;
  Checker check(state);
  check.Check("process state", rank >= 0 && rank < n &&
                                   state.is_main_process() == (rank == 0) &&
                                   state.is_last_process() == (rank == n - 1),
              "inconsistent rank answers");
  check.Check("wait_for_everyone", state.WaitForEveryone().ok(),
              "barrier failed");

  state.Print("**Collectives**");
  check.CheckOk<at::Tensor>(
      "gather", st::Gather(state, at::full({2}, rank, at::kFloat)),
      [&](const at::Tensor& t) {
        return t.equal(at::arange(n, at::kFloat).repeat_interleave(2));
      });
  check.CheckOk<std::vector<std::string>>(
      "gather_object", st::GatherObject(state, std::string(rank + 1, 'x')),
      [&](const std::vector<std::string>& all) {
        if (static_cast<int>(all.size()) != n) return false;
        for (int r = 0; r < n; ++r) {
          if (all[r] != std::string(r + 1, 'x')) return false;
        }
        return true;
      });
  check.CheckOk<at::Tensor>(
      "broadcast", st::Broadcast(state, at::full({3}, rank, at::kLong), n - 1),
      [&](const at::Tensor& t) {
        return t.equal(at::full({3}, n - 1, at::kLong));
      });
  check.CheckOk<std::string>(
      "broadcast_object",
      st::BroadcastObject(state, absl::StrCat("from ", rank), 0),
      [](const std::string& s) { return s == "from 0"; });
  check.CheckOk<at::Tensor>(
      "reduce sum",
      st::Reduce(state, at::full({4}, rank + 1.0), {st::Reduction::kSum}),
      [&](const at::Tensor& t) {
        return t.equal(at::full({4}, n * (n + 1) / 2.0));
      });
  st::ReduceOptions mean;
  mean.reduction = st::Reduction::kMean;
  check.CheckOk<at::Tensor>(
      "reduce mean", st::Reduce(state, at::full({1}, 2.0 * rank), mean),
      [&](const at::Tensor& t) {
        return std::abs(t.item<double>() - (n - 1.0)) < 1e-9;
      });
  st::PadOptions pad;
  pad.pad_index = -1;
  check.CheckOk<at::Tensor>(
      "pad_across_processes",
      st::PadAcrossProcesses(state, at::zeros({rank + 1}), pad),
      [&](const at::Tensor& t) {
        return t.size(0) == n && t.slice(0, rank + 1).eq(-1).all().item<bool>();
      });

  state.Print("**split_between_processes**");
  std::vector<int> items;
  for (int i = 0; i < 3 * n + 1; ++i) items.push_back(i);
  const std::vector<int> mine = state.SplitBetweenProcesses(items);
  auto all = st::GatherObject(state, absl::StrJoin(mine, ","));
  check.Check("split_between_processes",
              all.ok() && absl::StrJoin(*all, ",") == absl::StrJoin(items, ","),
              "the shares do not add up to the whole list in order");

  check.Check("final barrier", state.WaitForEveryone().ok(), "barrier failed");
  if (check.failures() > 0) {
    std::cout << check.failures() << " check(s) failed on rank " << rank
              << std::endl;
    return 1;
  }
  state.Print("All checks passed on ", n, " process(es).");
  return 0;
}
