// Memory helpers JS cannot do well itself. Page-aligned buffers: O_DIRECT transfers
// need memory aligned to the device's logical block size, and JS can neither allocate
// nor see the address of such memory. Copies: Buffer#copy between two buffers
// allocates a view per call on Node 20, and any call into C++ costs far more than
// copying a sector, so the packet loop batches its copies (copyRanges). File maps:
// read-only mappings of backing files in RAM that only the kernel reads from, for
// replies sent straight from the page cache (FileMap).
#include "common.h"

#include <cerrno>
#include <cstring>
#include <sys/mman.h>

namespace kvblade {

// Leaked on purpose: a static reference would be torn down after the environment.
Napi::FunctionReference* file_map_constructor = nullptr;

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
  if (!(count >= 0 && count * 3 <= ranges.ElementLength()))
    throw Napi::RangeError::New(env, "copyRanges: count past the end of ranges");
  const uint32_t* r = ranges.Data();
  size_t n = static_cast<size_t>(count);
  for (size_t j = 0; j < n; j++) {
    uint64_t d = r[3 * j], s = r[3 * j + 1], len = r[3 * j + 2];
    if (d + len > dst_len || s + len > src_len)
      throw Napi::RangeError::New(env, "copyRanges: range " + std::to_string(j) + " outside a buffer");
  }
  for (size_t j = 0; j < n; j++) memmove(dst + r[3 * j], src + r[3 * j + 1], r[3 * j + 2]);
}

// A read-only shared mapping of a backing file, for replies whose data the kernel
// copies straight from the page cache into the outgoing frame (one copy instead of
// pread's plus send's). JS gets an opaque object: it never touches the bytes, so a
// file truncated under us cannot raise SIGBUS here; the kernel's copy fails with
// EFAULT instead.
class FileMap : public Napi::ObjectWrap<FileMap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FileMap", {InstanceMethod<&FileMap::Close>("close"),
                                        InstanceAccessor<&FileMap::Length>("length")});
  }

  // new FileMap(fd, length)
  explicit FileMap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FileMap>(info) {
    Napi::Env env = info.Env();
    double fd = NumberArg(info, 0, "FileMap(fd, length)"), length = NumberArg(info, 1, "FileMap(fd, length)");
    if (!(fd >= 0 && fd <= 0x7fffffff && length >= 1 && length <= 9007199254740992.0))
      throw Napi::RangeError::New(env, "FileMap(fd, length): bad fd or length");
    length_ = static_cast<size_t>(length);
    void* p = mmap(nullptr, length_, PROT_READ, MAP_SHARED, static_cast<int>(fd), 0);
    if (p == MAP_FAILED) throw ErrnoError(env, errno, "mmap", "file map of " + std::to_string(length_) + " bytes");
    data_ = static_cast<const uint8_t*>(p);
  }

  ~FileMap() override { Unmap(); }

  const uint8_t* data() const { return data_; }
  size_t length() const { return data_ == nullptr ? 0 : length_; }

 private:
  void Unmap() {
    if (data_ != nullptr) munmap(const_cast<uint8_t*>(data_), length_);
    data_ = nullptr;
  }
  void Close(const Napi::CallbackInfo&) { Unmap(); }
  Napi::Value Length(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(length())); }

  const uint8_t* data_ = nullptr;
  size_t length_ = 0;
};

}  // namespace

const uint8_t* FileMapRange(Napi::Value map, double offset, size_t length) {
  if (!map.IsObject() || !map.As<Napi::Object>().InstanceOf(file_map_constructor->Value())) return nullptr;
  FileMap* m = FileMap::Unwrap(map.As<Napi::Object>());
  if (m->data() == nullptr || !(offset >= 0 && offset + static_cast<double>(length) <= static_cast<double>(m->length())))
    return nullptr;
  return m->data() + static_cast<size_t>(offset);
}

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("alignedBuffer", Napi::Function::New(env, AlignedBuffer, "alignedBuffer"));
  exports.Set("copyRanges", Napi::Function::New(env, CopyRanges, "copyRanges"));
  Napi::Function file_map = FileMap::Define(env);
  file_map_constructor = new Napi::FunctionReference(Napi::Persistent(file_map));
  exports.Set("FileMap", file_map);
}

}  // namespace kvblade
