// The pages behind tensors that alias a file mapping (MappedFile,
// safetensors.h): read in ahead of use, and given back to the page cache
// after it, so that disk-offloaded weights take memory only while in use.
//
// Thread safety: stateless; concurrent calls on one tensor are harmless.

#ifndef ACCELERATE_BIGMODEL_INTERNAL_PAGE_CACHE_H_
#define ACCELERATE_BIGMODEL_INTERNAL_PAGE_CACHE_H_

#include <ATen/core/Tensor.h>

namespace accelerate::bigmodel_internal {

// Gives the pages wholly inside `alias` (a tensor aliasing a private file
// mapping) back to the page cache; the next read maps them again.
void DropPages(const at::Tensor& alias);

// Maps the pages of `alias` in (reading them from disk if needed).
void TouchPages(const at::Tensor& alias);

}  // namespace accelerate::bigmodel_internal

#endif  // ACCELERATE_BIGMODEL_INTERNAL_PAGE_CACHE_H_
