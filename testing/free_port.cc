#include "testing/free_port.h"

#include "absl/status/statusor.h"
#include "state/free_port.h"
#include "state/logging.h"

namespace accelerate::testing {

int PickFreePort() {
  absl::StatusOr<int> port = state::PickFreePort();
  ACCELERATE_CHECK_OK(port.status());
  return *port;
}

}  // namespace accelerate::testing
