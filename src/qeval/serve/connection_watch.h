#pragma once
// Notices that the client of an HTTP request has hung up while the server is still working on
// it, so that generation stops instead of running on for nobody.
//
// cpp-httplib 0.11 gives handlers no access to their connection, so the watch finds the
// connection's socket among the process's descriptors by its address pair (the request's
// remote address and port, and the local port) and polls it for a peer hang-up (POLLRDHUP).
// Linux only; where the socket cannot be found, closed() stays false (a streamed response
// still stops at its first failed write).
#include <string>

namespace qeval::serve {

class ConnectionWatch {
 public:
  ConnectionWatch(const std::string& remote_addr, int remote_port, int local_port);
  bool found() const { return fd_ >= 0; }
  // True once the peer has closed its end (or the connection failed).
  bool closed();

 private:
  int fd_ = -1;
  bool closed_ = false;
};

}  // namespace qeval::serve
