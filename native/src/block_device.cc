// Block device ioctls.
#include "common.h"

#include <cerrno>
#include <cstdint>
#include <linux/fs.h>
#include <sys/ioctl.h>

namespace kvblade {
namespace {

// blkGetSize64(fd) -> size in bytes (exact as a double up to 2^53 = 8 PiB).
Napi::Value BlkGetSize64(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(env, "blkGetSize64(fd): fd must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint64_t bytes = 0;
  if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
    throw ErrnoError(env, errno, "ioctl(BLKGETSIZE64)", "block device fd " + std::to_string(fd));
  return Napi::Number::New(env, static_cast<double>(bytes));
}

}  // namespace

void InitBlockDevice(Napi::Env env, Napi::Object exports) {
  exports.Set("blkGetSize64", Napi::Function::New(env, BlkGetSize64, "blkGetSize64"));
}

}  // namespace kvblade
