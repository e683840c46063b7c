#include "state/internal/rendezvous.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include "state/torch_errors.h"
#include "state/logging.h"
#include "state/status_macros.h"

namespace accelerate::state_internal {

using ::accelerate::state::RunGuarded;
namespace {

constexpr char kPrefix[] = "accelerate/rendezvous/";
// Start the abort values left by a rank whose deadline passed and by the
// second claimant of a device.
constexpr char kTimedOut[] = "timeout:";
constexpr char kDeviceTaken[] = "device:";

std::string Where(const state::LaunchInfo& info) {
  return absl::StrCat(info.master_addr, ":", info.master_port);
}

std::vector<uint8_t> Bytes(absl::string_view text) {
  return std::vector<uint8_t>(text.begin(), text.end());
}

}  // namespace

absl::StatusOr<c10::intrusive_ptr<c10d::Store>> Rendezvous(
    const state::LaunchInfo& info, absl::Duration timeout,
    const std::optional<DeviceClaim>& device) {
  ACCELERATE_CHECK(info.world_size > 1) << "no rendezvous for one process";
  const absl::Time deadline = absl::Now() + timeout;

  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(info.master_port);
  // Under torchrun the agent serves the store; otherwise rank 0 does.
  options.isServer = info.rank == 0 && !info.use_agent_store;
  options.numWorkers = info.world_size;
  options.waitWorkers = false;  // We wait ourselves, with a useful error.

  // A client that starts before rank 0 listens is refused at once; it keeps
  // trying until the deadline, as every rank may start in any order.
  c10::intrusive_ptr<c10d::Store> store;
  absl::Status status;
  while (true) {
    options.timeout = absl::ToChronoMilliseconds(
        std::max(deadline - absl::Now(), absl::Milliseconds(1)));
    status = RunGuarded("rendezvous", [&] {
      store = c10::make_intrusive<c10d::TCPStore>(info.master_addr, options);
    });
    if (status.ok()) break;
    if (options.isServer) {
      return absl::UnavailableError(absl::StrCat(
          "rank 0 could not serve the rendezvous store on ", Where(info),
          " (MASTER_ADDR/MASTER_PORT; is the port in use?): ",
          status.message()));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "rank ", info.rank, " could not reach the rendezvous store at ",
          Where(info), " within ", absl::FormatDuration(timeout),
          " (is rank 0 running?): ", status.message()));
    }
    absl::SleepFor(
        std::min(absl::Milliseconds(50), deadline - absl::Now()));
  }

  // Keys of different attempts of a restarted job stay apart, as torch's
  // "/worker/attempt_<n>" prefix keeps them.
  store = c10::make_intrusive<c10d::PrefixStore>(
      absl::StrCat("/worker/attempt_", info.restart_count), store);
  const auto Key = [](absl::string_view name) {
    return absl::StrCat(kPrefix, name);
  };

  // One key settles how the rendezvous ends, first writer wins: "done" from
  // the last rank to arrive, "dup" from a rank claimed twice, "device:<why>"
  // from the second claimant of a device, or "timeout:<why>" from a rank
  // whose deadline passed. Every rank reads the same outcome, so none
  // proceeds while another gives up.
  const std::string outcome_key = Key("outcome");
  const auto settle = [&](const std::string& proposal) {
    const std::vector<uint8_t> won =
        store->compareSet(outcome_key, {}, Bytes(proposal));
    return std::string(won.begin(), won.end());
  };
  const auto result = [&](const std::string& outcome)
      -> absl::StatusOr<c10::intrusive_ptr<c10d::Store>> {
    if (outcome == "done") return store;
    // A rank that gives up says it has read why; rank 0, whose store goes
    // away with it, waits (3 s at most) until every rank has, so that all
    // give up for the same reason, not for a lost store. (One that comes
    // later finds no store and gives up when its own deadline passes.)
    RunGuarded("rendezvous", [&] {
      store->add(Key("informed"), 1);
      if (!options.isServer) return;
      const absl::Time until = absl::Now() + absl::Seconds(3);
      while (absl::Now() < until &&
             store->add(Key("informed"), 0) < info.world_size) {
        absl::SleepFor(absl::Milliseconds(2));
      }
    }).IgnoreError();
    if (absl::StartsWith(outcome, kTimedOut)) {
      return absl::DeadlineExceededError(
          outcome.substr(std::string(kTimedOut).size()));
    }
    if (absl::StartsWith(outcome, kDeviceTaken)) {
      return absl::FailedPreconditionError(
          outcome.substr(std::string(kDeviceTaken).size()));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "rendezvous at ", Where(info),
        " was aborted: two processes claimed the same rank; check RANK (or "
        "the MPI/SLURM rank) of each process"));
  };

  // Check in: claim our rank once, and our device, then count arrivals. A
  // second claimant settles the outcome before it counts itself, so the
  // count never completes and nobody goes on.
  std::string outcome;
  status = RunGuarded("rendezvous", [&] {
    const int64_t claims = store->add(Key(absl::StrCat("rank/", info.rank)), 1);
    if (claims > 1) {
      outcome = settle("dup");
      return;
    }
    if (device.has_value()) {
      // Each claimant leaves its name under its place in line, so that the
      // second can name the first.
      const std::string key = Key(absl::StrCat("device/", device->id));
      const int64_t place = store->add(key, 1);
      const std::string me =
          absl::StrCat("rank ", info.rank, " (", device->description, ")");
      store->set(absl::StrCat(key, "/", place), Bytes(me));
      if (place > 1) {
        const std::vector<uint8_t> first = store->get(absl::StrCat(key, "/1"));
        outcome = settle(absl::StrCat(
            kDeviceTaken, "rendezvous at ", Where(info), " was aborted: ",
            std::string(first.begin(), first.end()), " and ", me,
            " use the same device ", device->id, "; ", device->remedy));
        return;
      }
    }
    if (store->add(Key("arrived"), 1) == info.world_size) outcome = settle("done");
  });
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "rendezvous at ", Where(info), " lost the store: ", status.message()));
  }
  if (!outcome.empty()) return result(outcome);

  // Wait for the outcome, polling with a short back-off so that a complete
  // rendezvous is noticed within milliseconds.
  absl::Duration pause = absl::Microseconds(200);
  while (absl::Now() < deadline) {
    status = RunGuarded("rendezvous", [&] {
      if (store->check({outcome_key})) {
        const std::vector<uint8_t> value = store->get(outcome_key);
        outcome.assign(value.begin(), value.end());
      }
    });
    if (!status.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "rendezvous at ", Where(info),
          " lost the store (did rank 0 exit?): ", status.message()));
    }
    if (!outcome.empty()) return result(outcome);
    absl::SleepFor(pause);
    pause = std::min(pause * 2, absl::Milliseconds(10));
  }

  std::vector<int> missing;
  int64_t arrived = 0;
  status = RunGuarded("rendezvous", [&] {
    arrived = store->add(Key("arrived"), 0);
    for (int rank = 0; rank < info.world_size; ++rank) {
      if (!store->check({Key(absl::StrCat("rank/", rank))})) {
        missing.push_back(rank);
      }
    }
    outcome = settle(absl::StrCat(
        kTimedOut, "rendezvous at ", Where(info), " timed out after ",
        absl::FormatDuration(timeout), ": ", arrived, " of ", info.world_size,
        " processes arrived",
        missing.empty() ? std::string()
                        : absl::StrCat("; missing ranks: ",
                                       absl::StrJoin(missing, ", "))));
  });
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "rendezvous at ", Where(info), " lost the store: ", status.message()));
  }
  return result(outcome);
}

}  // namespace accelerate::state_internal
