// Page-aligned buffers. O_DIRECT transfers need memory aligned to the device's logical
// block size, and JS can neither allocate nor see the address of such memory.
#include "common.h"

#include <cerrno>
#include <sys/mman.h>

namespace kvblade {
namespace {

// alignedBuffer(size) -> Buffer over fresh anonymous pages: page-aligned, zeroed, and
// only resident once touched. Unmapped when the Buffer is collected.
Napi::Value AlignedBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(env, "alignedBuffer(size): size must be a number");
  double size = info[0].As<Napi::Number>().DoubleValue();
  if (!(size >= 1 && size <= 4294967296.0 && size == static_cast<double>(static_cast<size_t>(size))))
    throw Napi::RangeError::New(env, "alignedBuffer(size): size must be an integer in [1, 2^32]");
  size_t bytes = static_cast<size_t>(size);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw ErrnoError(env, errno, "mmap", "aligned buffer of " + std::to_string(bytes) + " bytes");
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(p), bytes,
                                    [bytes](Napi::Env, uint8_t* data) { munmap(data, bytes); });
}

}  // namespace

void InitAlignedMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("alignedBuffer", Napi::Function::New(env, AlignedBuffer, "alignedBuffer"));
}

}  // namespace kvblade
