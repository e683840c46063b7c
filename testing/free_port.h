// Picks a TCP port on 127.0.0.1 that is free right now, for tests that start
// a rendezvous store. (Another process may take it before it is used; the
// window is short.)

#ifndef ACCELERATE_TESTING_FREE_PORT_H_
#define ACCELERATE_TESTING_FREE_PORT_H_

namespace accelerate::testing {

// A free port; CHECK-fails when the system has none.
int PickFreePort();

}  // namespace accelerate::testing

#endif  // ACCELERATE_TESTING_FREE_PORT_H_
