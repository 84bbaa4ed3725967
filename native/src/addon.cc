// Entry point: the addon only wraps what needs C (raw and netlink sockets, ioctls,
// io_uring, memory maps). All protocol logic stays in TypeScript.
#include "common.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  kvblade::InitPacketSocket(env, exports);
  kvblade::InitBlockDevice(env, exports);
  kvblade::InitUring(env, exports);
  kvblade::InitMemory(env, exports);
  kvblade::InitLinkMonitor(env, exports);
  kvblade::InitFileLock(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(kvblade_native, Init)
