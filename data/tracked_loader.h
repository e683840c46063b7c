// What a training loop's gradient state reads from the loaders it watches
// (Accelerate's `DataLoaderStateMixin`): whether an epoch is being iterated
// and since when, whether its last batch has been handed out, and how many
// samples of its last global batch are real. Both prepared loaders
// (`PreparedDataLoader`, `PreparedStreamLoader`) implement it.
//
// clang-format off
//   #include <vector>
//   // The loader being iterated: the one whose epoch began last (an
//   // evaluation loop inside a training loop is active until it ends).
//   const TrackedLoader* Active(const std::vector<const TrackedLoader*>& loaders) {
//     const TrackedLoader* active = nullptr;
//     for (const TrackedLoader* loader : loaders) {
//       if (loader->epoch_begun_at() > 0 &&
//           (active == nullptr || loader->epoch_begun_at() > active->epoch_begun_at())) {
//         active = loader;
//       }
//     }
//     return active;
//   }
// clang-format on
//
// Thread safety: read from the thread that drives the loader.

#ifndef ACCELERATE_DATA_TRACKED_LOADER_H_
#define ACCELERATE_DATA_TRACKED_LOADER_H_

#include <atomic>
#include <cstdint>

namespace accelerate::data {

class TrackedLoader {
 public:
  virtual ~TrackedLoader() = default;

  // When the epoch now being iterated handed out its first batch, on a clock
  // shared by every loader of the process (later epochs have larger
  // values); 0 when no epoch is being iterated (before the first batch and
  // after the end was reported).
  int64_t epoch_begun_at() const { return epoch_begun_at_; }
  // True once the last batch of the epoch has been handed out.
  virtual bool end_of_epoch() const = 0;
  // Real samples in the last global batch when padding completed it (for
  // `GatherForMetrics`); 0, or the whole last batch's size, when nothing was
  // padded.
  virtual int64_t remainder() const = 0;

 protected:
  // Call as each batch is handed out, and with `false` when the end of the
  // epoch is reported.
  void MarkIterating(bool iterating) {
    static std::atomic<int64_t> clock{0};
    if (!iterating) {
      epoch_begun_at_ = 0;
    } else if (epoch_begun_at_ == 0) {
      epoch_begun_at_ = ++clock;
    }
  }

 private:
  int64_t epoch_begun_at_ = 0;
};

}  // namespace accelerate::data

#endif  // ACCELERATE_DATA_TRACKED_LOADER_H_
