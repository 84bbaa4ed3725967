// Advisory locks on backing files (flock), so that two exporters never serve the
// same disk by accident: QEMU locks its images the same way. The lock belongs to
// the open file description and goes when the process dies.
#include "common.h"

#include <cerrno>
#include <sys/file.h>

namespace kvblade {
namespace {

// lockFile(fd, mode) -> true if taken, false if another holder has a conflicting
// lock. mode: "exclusive", "shared" or "unlock"; never blocks. Converting a lock
// already held (shared <-> exclusive) is allowed.
Napi::Value LockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString())
    throw Napi::TypeError::New(env, "lockFile(fd, 'exclusive' | 'shared' | 'unlock')");
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string mode = info[1].As<Napi::String>().Utf8Value();
  int op;
  if (mode == "exclusive") op = LOCK_EX;
  else if (mode == "shared") op = LOCK_SH;
  else if (mode == "unlock") op = LOCK_UN;
  else throw Napi::TypeError::New(env, "lockFile: mode must be 'exclusive', 'shared' or 'unlock'");
  int rc;
  do {
    rc = flock(fd, op | LOCK_NB);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return Napi::Boolean::New(env, true);
  if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  throw ErrnoError(env, errno, "flock", "fd " + std::to_string(fd));
}

}  // namespace

void InitFileLock(Napi::Env env, Napi::Object exports) {
  exports.Set("lockFile", Napi::Function::New(env, LockFile, "lockFile"));
}

}  // namespace kvblade
