// What `execve` needs to start a child process: its environment (ours with
// additions) and NULL-terminated argument arrays. Used by the launcher's
// supervisor, the `accelerate` helper-binary doorway and the test
// subprocesses.
//
// clang-format off
//   #include <unistd.h>
//   void BecomeEcho() {
//     std::vector<std::string> env = ChildEnvironment({{"RANK", "1"}});
//     std::vector<std::string> args = {"/bin/echo", "hi"};
//     std::vector<char*> envp = CStringArray(env);
//     std::vector<char*> argv = CStringArray(args);
//     ::execve(argv[0], argv.data(), envp.data());
//   }
// clang-format on
//
// Thread safety: `ChildEnvironment` reads `environ`; do not call it while
// another thread calls `setenv`.

#ifndef ACCELERATE_STATE_CHILD_PROCESS_H_
#define ACCELERATE_STATE_CHILD_PROCESS_H_

#include <map>
#include <string>
#include <vector>

namespace accelerate::state {

// The NAME=VALUE strings of this process's environment with `overrides` added
// or replacing, sorted by name: what a launched child should see.
std::vector<std::string> ChildEnvironment(
    const std::map<std::string, std::string>& overrides);

// Null-terminated pointers into `strings`, for execve's argv and envp.
// REQUIRES: `strings` outlives the result and does not change size.
std::vector<char*> CStringArray(std::vector<std::string>& strings);

}  // namespace accelerate::state

#endif  // ACCELERATE_STATE_CHILD_PROCESS_H_
