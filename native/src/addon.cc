// Entry point: the addon only wraps what needs C (raw sockets, ioctls).
// All protocol logic stays in TypeScript.
#include "common.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  kvblade::InitPacketSocket(env, exports);
  kvblade::InitBlockDevice(env, exports);
  kvblade::InitDiskRing(env, exports);
  kvblade::InitMemory(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(kvblade_native, Init)
