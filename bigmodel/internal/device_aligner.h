// Moving activations between the devices of a model spread over several
// (dispatch.h: a device map over several GPUs). Accelerate does this in
// forward hooks, moving a module's inputs to its weights' device; LibTorch
// modules have no hooks, so it is done per operation, one level lower:
//
// - The model's weights are registered with the device they run on, and
//   the resident ones are marked with a dispatch key of our own, so that
//   the first operation given one of them on a thread switches aligning on
//   for that thread (the key, included thread-locally, then sends every
//   operation of the thread through one fallback).
// - An operation whose tensor arguments sit on different devices has the
//   others moved to: the device of the tensors it writes in place, else
//   that of a weight it uses, else the device of the last weight used on
//   the thread (the module now running: a residual addition of the
//   previous block's output and this block's). What an operation writes or
//   returns a view of is never moved (a copy would take the write or the
//   view away from the caller); written tensors on several devices, and
//   operations meant for mixed devices (copies, `set_`, CPU-side lengths),
//   are left as they are. CPU scalar tensors and placeholders stay put.
// - Weights offloaded to the CPU or disk (placeholders, loaded on use)
//   are registered with the execution device they are loaded onto.
//
// The model's output stays where its last operation ran (Accelerate moves
// it back to the input's device in a hook on the whole model).
//
// Thread safety: any number of aligners, built and destroyed on any thread
// between forwards; the fallback runs on every thread that used a weight.
// Once the last aligner is gone, each such thread switches aligning off at
// its next operation.

#ifndef ACCELERATE_BIGMODEL_INTERNAL_DEVICE_ALIGNER_H_
#define ACCELERATE_BIGMODEL_INTERNAL_DEVICE_ALIGNER_H_

#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace accelerate::bigmodel_internal {

class DeviceAligner {
 public:
  // A weight of the model and the device its operations run on.
  struct Weight {
    at::Tensor tensor;  // The model's tensor (kept by the model).
    c10::Device device;
    // Marked with the key (a resident weight); false for placeholders,
    // whose contents the offload engine swaps.
    bool mark = true;
  };

  explicit DeviceAligner(std::vector<Weight> weights);
  DeviceAligner(const DeviceAligner&) = delete;
  DeviceAligner& operator=(const DeviceAligner&) = delete;
  // Unmarks and forgets the weights.
  ~DeviceAligner();

  // Operations whose arguments were moved, on any thread, so far.
  static int64_t aligned_operations();

 private:
  std::vector<Weight> weights_;
};

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_DEVICE_ALIGNER_H_
