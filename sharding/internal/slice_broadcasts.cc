#include "sharding/internal/slice_broadcasts.h"

#include <vector>

namespace accelerate::sharding_internal {

std::vector<c10::intrusive_ptr<c10d::Work>> BroadcastSlices(
    c10d::ProcessGroup& group, const at::Tensor& full, int64_t slice_size) {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (int64_t r = 0; r < group.getSize(); ++r) {
    std::vector<at::Tensor> part = {full.narrow(0, r * slice_size, slice_size)};
    c10d::BroadcastOptions options;
    options.rootRank = r;
    works.push_back(group.broadcast(part, options));
  }
  return works;
}

}  // namespace accelerate::sharding_internal
