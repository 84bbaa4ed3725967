// Shared helpers for the kvblade native addon. Each module (packet socket,
// block device, io_uring, memory, link monitor) lives in its own .cc and
// exposes one Init*.
#pragma once

#include <napi.h>
#include <string>

namespace kvblade {

// An Error shaped like Node's system errors: message names the context,
// .code is the errno name ("ENODEV"), .errno is -err, .syscall the call.
Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall,
                       const std::string& context);

// A failed system call caught before we have a context string to add.
struct SysError {
  int err;
  const char* syscall;
};

// The bytes of a FileMap (memory.cc); data is nullptr if `map` is not an open
// FileMap. Look each map up once per call, not once per frame or row.
struct MappedBytes {
  uint8_t* data;
  size_t length;
  bool writable;
};
MappedBytes FileMapBytes(Napi::Value map);

// memcpy into a shared file mapping that survives the mapping's SIGBUS (the
// file was truncated under it): false if the copy faulted, or another thread
// holds the guard; then nothing is known about dst and the caller falls back
// to pwrite. fault_guard.cc.
bool GuardedCopy(uint8_t* dst, const uint8_t* src, size_t length);

// A JS object {name: index} for names[0..count): how a layout shared with JS (row
// columns, counter slots) is exported, so the TypeScript side never restates it.
Napi::Object IndexObject(Napi::Env env, const char* const* names, size_t count);

void InitPacketSocket(Napi::Env env, Napi::Object exports);
void InitBlockDevice(Napi::Env env, Napi::Object exports);
void InitUring(Napi::Env env, Napi::Object exports);
void InitMemory(Napi::Env env, Napi::Object exports);
void InitLinkMonitor(Napi::Env env, Napi::Object exports);
void InitFileLock(Napi::Env env, Napi::Object exports);

// exports.layout.<module>, created on first use.
Napi::Object LayoutOf(Napi::Env env, Napi::Object exports, const char* module);

}  // namespace kvblade
