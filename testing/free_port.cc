#include "testing/free_port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "state/logging.h"

namespace accelerate::testing {

int PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ACCELERATE_CHECK(fd >= 0) << "socket() failed";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ACCELERATE_CHECK(::bind(fd, reinterpret_cast<sockaddr*>(&addr),
                          sizeof(addr)) == 0)
      << "bind to 127.0.0.1:0 failed";
  socklen_t length = sizeof(addr);
  ACCELERATE_CHECK(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr),
                                 &length) == 0);
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

}  // namespace accelerate::testing
