// Copies into a shared file mapping that cannot crash the process. A store of a
// file in RAM writes straight into its mapping (a memcpy instead of a pwrite
// system call per request), but a mapping raises SIGBUS where the file has been
// truncated under it (or tmpfs has no page left for a hole). While a guarded copy
// runs, our SIGBUS handler jumps back out of it, and the caller redoes the
// request with pwrite, which gives the file's real answer (it extends the file,
// or fails with ENOSPC). Any other SIGBUS goes to whatever handled it before us.
#include "common.h"

#include <atomic>
#include <csetjmp>
#include <csignal>
#include <cstring>
#include <mutex>
#include <pthread.h>

namespace kvblade {
namespace {

struct sigaction previous_action;
std::once_flag installed;
bool install_failed = false;

// One copy is guarded at a time (the packet loop's thread); a copy attempted on
// another thread meanwhile is refused, and that caller uses pwrite instead.
std::atomic<bool> guard_taken{false};
volatile sig_atomic_t copying = 0;
pthread_t copier;
sigjmp_buf resume;

void OnSigbus(int sig, siginfo_t* info, void* context) {
  if (copying && pthread_equal(copier, pthread_self())) {
    copying = 0;
    siglongjmp(resume, 1);  // SA_NODEFER: SIGBUS was never blocked, no mask to restore
  }
  // Not a fault of ours: hand it to the previous disposition.
  if ((previous_action.sa_flags & SA_SIGINFO) != 0 && previous_action.sa_sigaction != nullptr) {
    previous_action.sa_sigaction(sig, info, context);
  } else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
    previous_action.sa_handler(sig);
  } else {
    // Default action (a core dump) for a fault that is not ours.
    signal(SIGBUS, SIG_DFL);
    raise(SIGBUS);
  }
}

void Install() {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_sigaction = OnSigbus;
  action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  install_failed = sigaction(SIGBUS, &action, &previous_action) != 0;
}

}  // namespace

bool GuardedCopy(uint8_t* dst, const uint8_t* src, size_t length) {
  std::call_once(installed, Install);
  if (install_failed) return false;
  bool expected = false;
  if (!guard_taken.compare_exchange_strong(expected, true)) return false;
  copier = pthread_self();
  // No signal mask saved or restored: a system call per copy would cost what we save.
  if (sigsetjmp(resume, 0) != 0) {
    guard_taken.store(false);
    return false;
  }
  copying = 1;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  memcpy(dst, src, length);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  copying = 0;
  guard_taken.store(false);
  return true;
}

}  // namespace kvblade
