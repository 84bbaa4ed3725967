// Memory helpers JS cannot do well itself. Page-aligned buffers: O_DIRECT transfers
// need memory aligned to the device's logical block size, and JS can neither allocate
// nor see the address of such memory. Copies: Buffer#copy between two buffers
// allocates a view per call on Node 20, and any call into C++ costs far more than
// copying a sector, so the packet loop batches its copies (copyRanges). File maps:
// shared mappings of backing files in RAM, for replies the kernel sends straight from
// the page cache and for writes copied straight into it (FileMap).
#include "common.h"

#include <cerrno>
#include <cstring>
#include <sys/mman.h>
#include <unordered_map>

namespace kvblade {

// Leaked on purpose: a static reference would be torn down after the environment.
Napi::FunctionReference* file_map_constructor = nullptr;

namespace {

constexpr uint32_t kCopyRowWidth = 3;  // copyRanges rows: [dstOffset, srcOffset, length]

// An anonymous mapping behind an aligned Buffer: unmapped by releaseBuffer(), or
// by the Buffer's finalizer if it was never released.
struct Mapping {
  void* addr;
  size_t bytes;
  bool unmapped;
};
// Live aligned buffers by address, for releaseBuffer(). Leaked on purpose, like
// file_map_constructor: it must outlive every finalizer.
auto* aligned_mappings = new std::unordered_map<void*, Mapping*>();

// alignedBuffer(size) -> Buffer over fresh anonymous pages: page-aligned, zeroed, and
// only resident once touched. Unmapped by releaseBuffer() or when the Buffer is collected.
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
  auto* m = new Mapping{p, bytes, false};
  (*aligned_mappings)[p] = m;
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(p), bytes, [](Napi::Env, uint8_t*, Mapping* m) {
    if (!m->unmapped) {
      aligned_mappings->erase(m->addr);
      munmap(m->addr, m->bytes);
    }
    delete m;
  }, m);
}

// releaseBuffer(buf): unmaps an alignedBuffer() now instead of at garbage
// collection. The Buffer is detached first (it then has length 0), so JS can never
// reach the freed pages. The caller must make sure nothing else (io_uring) still
// uses the memory. Returns false if buf is not a live aligned buffer.
Napi::Value ReleaseBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) throw Napi::TypeError::New(env, "releaseBuffer(buf): buf must be a Buffer");
  Napi::Buffer<uint8_t> buf = info[0].As<Napi::Buffer<uint8_t>>();
  auto it = aligned_mappings->find(buf.Data());
  if (it == aligned_mappings->end() || buf.ByteOffset() != 0) return Napi::Boolean::New(env, false);
  Mapping* m = it->second;
  buf.ArrayBuffer().Detach();
  munmap(m->addr, m->bytes);
  m->unmapped = true;
  aligned_mappings->erase(it);
  return Napi::Boolean::New(env, true);
}

uint8_t* BytesArg(const Napi::CallbackInfo& info, size_t i, size_t* length) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(info.Env(), "copyRanges(dst, src, ranges, count): dst and src must be Buffers");
  Napi::Uint8Array a = info[i].As<Napi::Uint8Array>();
  *length = a.ElementLength();
  return a.Data();
}

double NumberArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(usage) + ": arguments must be numbers");
  return info[i].As<Napi::Number>().DoubleValue();
}

// copyRanges(dst, src, ranges: Uint32Array, count): for each row j < count of
// ranges = [dstOffset, srcOffset, length], dst[dstOffset..] = src[srcOffset..+length].
// One call per receive batch instead of one per frame. Checks every row before
// copying any.
void CopyRanges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t dst_len = 0, src_len = 0;
  uint8_t* dst = BytesArg(info, 0, &dst_len);
  uint8_t* src = BytesArg(info, 1, &src_len);
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    throw Napi::TypeError::New(env, "copyRanges(dst, src, ranges, count): ranges must be a Uint32Array");
  Napi::Uint32Array ranges = info[2].As<Napi::Uint32Array>();
  double count = NumberArg(info, 3, "copyRanges(dst, src, ranges, count)");
  if (!(count >= 0 && count * kCopyRowWidth <= ranges.ElementLength()))
    throw Napi::RangeError::New(env, "copyRanges: count past the end of ranges");
  const uint32_t* r = ranges.Data();
  size_t n = static_cast<size_t>(count);
  for (size_t j = 0; j < n; j++) {
    uint64_t d = r[kCopyRowWidth * j], s = r[kCopyRowWidth * j + 1], len = r[kCopyRowWidth * j + 2];
    if (d + len > dst_len || s + len > src_len)
      throw Napi::RangeError::New(env, "copyRanges: range " + std::to_string(j) + " outside a buffer");
  }
  for (size_t j = 0; j < n; j++) {
    const uint32_t* row = r + kCopyRowWidth * j;
    memmove(dst + row[0], src + row[1], row[2]);
  }
}

// A shared mapping of a backing file. Replies read from it are copied by the kernel
// straight from the page cache into the outgoing frame (one copy instead of pread's
// plus send's); writes are copied into it by GuardedCopy (a memcpy instead of a
// pwrite call). JS gets an opaque object and never touches the bytes, so a file
// truncated under us cannot raise SIGBUS in JS: the kernel's copy fails with EFAULT,
// and a guarded copy reports the fault.
class FileMap : public Napi::ObjectWrap<FileMap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FileMap", {InstanceMethod<&FileMap::Close>("close"),
                                        InstanceAccessor<&FileMap::Length>("length"),
                                        InstanceAccessor<&FileMap::Writable>("writable")});
  }

  // new FileMap(fd, length, writable = false)
  explicit FileMap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FileMap>(info) {
    Napi::Env env = info.Env();
    const char* usage = "FileMap(fd, length, writable)";
    double fd = NumberArg(info, 0, usage), length = NumberArg(info, 1, usage);
    if (!(fd >= 0 && fd <= 0x7fffffff && length >= 1 && length <= 9007199254740992.0))
      throw Napi::RangeError::New(env, "FileMap(fd, length): bad fd or length");
    if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsBoolean())
      throw Napi::TypeError::New(env, std::string(usage) + ": writable must be a boolean");
    writable_ = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
    length_ = static_cast<size_t>(length);
    int prot = writable_ ? PROT_READ | PROT_WRITE : PROT_READ;
    void* p = mmap(nullptr, length_, prot, MAP_SHARED, static_cast<int>(fd), 0);
    if (p == MAP_FAILED) throw ErrnoError(env, errno, "mmap", "file map of " + std::to_string(length_) + " bytes");
    data_ = static_cast<uint8_t*>(p);
  }

  ~FileMap() override { Unmap(); }

  uint8_t* data() const { return data_; }
  size_t length() const { return data_ == nullptr ? 0 : length_; }
  bool writable() const { return writable_; }

 private:
  void Unmap() {
    if (data_ != nullptr) munmap(data_, length_);
    data_ = nullptr;
  }
  void Close(const Napi::CallbackInfo&) { Unmap(); }
  Napi::Value Length(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(length())); }
  Napi::Value Writable(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), writable_); }

  uint8_t* data_ = nullptr;
  size_t length_ = 0;
  bool writable_ = false;
};

}  // namespace

MappedBytes FileMapBytes(Napi::Value map) {
  if (!map.IsObject() || !map.As<Napi::Object>().InstanceOf(file_map_constructor->Value())) return {nullptr, 0, false};
  FileMap* m = FileMap::Unwrap(map.As<Napi::Object>());
  return {m->data(), m->length(), m->writable()};
}

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("alignedBuffer", Napi::Function::New(env, AlignedBuffer, "alignedBuffer"));
  exports.Set("releaseBuffer", Napi::Function::New(env, ReleaseBuffer, "releaseBuffer"));
  exports.Set("copyRanges", Napi::Function::New(env, CopyRanges, "copyRanges"));
  LayoutOf(env, exports, "copyRanges").Set("rowWidth", Napi::Number::New(env, kCopyRowWidth));
  Napi::Function file_map = FileMap::Define(env);
  file_map_constructor = new Napi::FunctionReference(Napi::Persistent(file_map));
  exports.Set("FileMap", file_map);
}

}  // namespace kvblade
