// Pieces shared by the modules that open sockets: failing with the errno, owning
// a descriptor, and opening sockets inside another network namespace (tests).
#pragma once

#include "common.h"

#include <cerrno>
#include <fcntl.h>
#include <sched.h>
#include <string>
#include <unistd.h>

namespace kvblade {

[[noreturn]] inline void Fail(const char* syscall) { throw SysError{errno, syscall}; }

// Owns a file descriptor until released.
struct UniqueFd {
  int fd;
  explicit UniqueFd(int f = -1) : fd(f) {}
  ~UniqueFd() { if (fd >= 0) close(fd); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int release() { int f = fd; fd = -1; return f; }
};

// Moves the calling thread into another network namespace and back on scope
// exit. Sockets keep the namespace they were created in, so everything that
// needs the namespace (socket, bind, name lookups) happens inside the scope.
class NetnsScope {
 public:
  explicit NetnsScope(const std::string& path) {
    if (path.empty()) return;
    UniqueFd target(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (target.fd < 0) Fail("open(netns)");
    // setns() is per thread: remember this thread's namespace, not the process's.
    home_.fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home_.fd < 0) Fail("open(/proc/thread-self/ns/net)");
    if (setns(target.fd, CLONE_NEWNET) < 0) Fail("setns");
  }
  ~NetnsScope() {
    // Staying in the wrong namespace would silently misdirect every later
    // socket the process opens; there is no sane way to continue.
    if (home_.fd >= 0 && setns(home_.fd, CLONE_NEWNET) < 0)
      Napi::Error::Fatal("kvblade_native", "setns back to the original network namespace failed");
  }

 private:
  UniqueFd home_;
};

}  // namespace kvblade
