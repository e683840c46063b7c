// The `accelerate` command: see launch/cli.h.

#include <iostream>
#include <string>
#include <vector>

#include "launch/cli.h"
#include "state/environment.h"

int main(int argc, char** argv) {
  return accelerate::launch::RunCli(
      std::vector<std::string>(argv + 1, argv + argc),
      accelerate::state::ProcessEnvironment(), std::cin);
}
