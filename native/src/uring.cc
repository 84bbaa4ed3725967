// Batched disk I/O on io_uring (liburing). JS fills submission rows in a
// shared Float64Array, submit() turns them into SQEs with one io_uring_enter,
// reap() copies completions into shared arrays: one boundary crossing per
// batch, never per request, and no allocation on either path.
//
// Memory safety: the kernel reads/writes JS memory asynchronously, so every
// arena a request may touch is held by a strong reference until close(), and
// close() (or the destructor) waits for all in-flight requests to finish
// before tearing the ring down.
#include "common.h"

#include <liburing.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <vector>

namespace kvblade {
namespace {

// Layout of the shared arrays, exported to JS as layout.uring (see Init below):
// the TypeScript side reads these names, it never restates the numbers.
enum Op { kRead = 0, kWrite = 1, kFdatasync = 2, kNumOps };
const char* const kOpNames[] = {"read", "write", "fdatasync"};
// kColMap: for a write row in runInline(), 1 + the index in runInline's `maps` of
// the FileMap to copy the data into; 0 (pwrite) otherwise. submit() ignores it.
// kColAsync: 1 for submit() to go straight to io_uring's workers (IOSQE_ASYNC): for
// files whose file system may block inside the submit call (FUSE, NFS...) instead of
// saying "would block", which would stall the whole loop.
enum Col { kColOp, kColFd, kColArena, kColOffset, kColLength, kColPosition, kColMap, kColAsync, kRowWidth };
const char* const kColNames[] = {"op", "fd", "arena", "offset", "length", "position", "map", "async"};
// kMapped: runInline write rows copied into a map; kMapFallbacks: those pwrite did instead.
enum Counter { kSubmitted, kCompleted, kSubmitCalls, kInFlight, kRanInline, kMapped, kMapFallbacks, kNumCounters };
const char* const kCounterNames[] = {"submitted", "completed", "submitCalls", "inFlight", "ranInline", "mapped", "mapFallbacks"};
static_assert(sizeof kOpNames / sizeof kOpNames[0] == kNumOps, "an op without a name");
static_assert(sizeof kColNames / sizeof kColNames[0] == kRowWidth, "a column without a name");
static_assert(sizeof kCounterNames / sizeof kCounterNames[0] == kNumCounters, "a counter without a name");

constexpr uint32_t kMaxEntries = 4096;
constexpr uint32_t kMaxIov = 1024;                  // IOV_MAX
constexpr size_t kMaxVectorBytes = size_t{1} << 30;  // results are int32
constexpr double kMaxPosition = 9007199254740992.0;  // 2^53: exact in a double
// user_data of a request: the JS tag in the low 32 bits, 1 + its arena id above
// (0 for fdatasync), so completions can be counted per arena. Bit 63 marks our own
// requests (cancel, and liburing's internal timeouts), which reap() never reports.
constexpr uint64_t kInternalData = uint64_t{1} << 63;

bool IsUint(double v, double max) { return v >= 0 && v <= max && v == std::floor(v); }

struct Arena {
  uint8_t* data;  // nullptr once unregistered
  size_t size;
  Napi::Reference<Napi::Value> ref;  // keeps the memory alive while the kernel may touch it
  uint32_t in_flight;                // submitted requests reading or writing it
};

class Uring : public Napi::ObjectWrap<Uring> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeUring",
                       {
                           InstanceMethod<&Uring::RegisterArena>("registerArena"),
                           InstanceMethod<&Uring::UnregisterArena>("unregisterArena"),
                           InstanceMethod<&Uring::Submit>("submit"),
                           InstanceMethod<&Uring::RunInline>("runInline"),
                           InstanceMethod<&Uring::Reap>("reap"),
                           InstanceMethod<&Uring::OnComplete>("onComplete"),
                           InstanceMethod<&Uring::Close>("close"),
                       });
  }

  // new NativeUring(entries). Sets this.ops (Float64Array, entries * kRowWidth),
  // this.tags, this.doneTags (Uint32Array), this.doneResults (Int32Array),
  // this.counters (Float64Array).
  explicit Uring(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Uring>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "NativeUring(entries): entries must be a number");
    double e = info[0].As<Napi::Number>().DoubleValue();
    if (!IsUint(e, kMaxEntries) || e < 1 || (static_cast<uint32_t>(e) & (static_cast<uint32_t>(e) - 1)) != 0)
      throw Napi::RangeError::New(env, "Uring entries must be a power of two in [1, 4096]");
    capacity_ = static_cast<uint32_t>(e);

    // Default flags only: works on every io_uring kernel, and completions are
    // posted without needing us to enter the kernel (unlike COOP_TASKRUN),
    // which the eventfd wake-up relies on.
    int rc = io_uring_queue_init(capacity_, &ring_, 0);
    if (rc < 0) throw ErrnoError(env, -rc, "io_uring_queue_init", "io_uring with " + std::to_string(capacity_) + " entries");
    open_ = true;

    Napi::Float64Array ops = Napi::Float64Array::New(env, size_t{capacity_} * kRowWidth);
    Napi::Uint32Array tags = Napi::Uint32Array::New(env, capacity_);
    Napi::Uint32Array done_tags = Napi::Uint32Array::New(env, capacity_);
    Napi::Int32Array done_results = Napi::Int32Array::New(env, capacity_);
    Napi::Float64Array counters = Napi::Float64Array::New(env, kNumCounters);
    ops_ = ops.Data();
    tags_ = tags.Data();
    done_tags_ = done_tags.Data();
    done_results_ = done_results.Data();
    counters_ = counters.Data();
    std::fill(counters_, counters_ + kNumCounters, 0.0);
    Napi::Array keep = Napi::Array::New(env);
    arrays_ref_ = Napi::Persistent(keep.As<Napi::Value>());
    Napi::Object self = info.This().As<Napi::Object>();
    const char* names[] = {"ops", "tags", "doneTags", "doneResults", "counters"};
    Napi::Value values[] = {ops, tags, done_tags, done_results, counters};
    for (uint32_t i = 0; i < 5; i++) {
      keep.Set(i, values[i]);  // we write through raw pointers: JS must not free them
      self.Set(names[i], values[i]);
    }
  }

  ~Uring() override {
    // Reached only if JS dropped the object without close() (or at exit).
    Shutdown();
  }

 private:
  void CheckOpen(Napi::Env env) {
    if (!open_) throw ErrnoError(env, EBADF, "use", "io_uring is closed");
  }

  // registerArena(buf) -> id. The arena must not be detached/transferred
  // while registered: we keep its data pointer. Ids of unregistered arenas are reused.
  Napi::Value RegisterArena(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(env, "registerArena(buf): buf must be a Buffer/Uint8Array");
    Napi::Uint8Array buf = info[0].As<Napi::Uint8Array>();
    Arena arena{buf.Data(), buf.ElementLength(), Napi::Persistent(buf.As<Napi::Value>()), 0};
    for (size_t id = 0; id < arenas_.size(); id++) {
      if (arenas_[id].data != nullptr) continue;
      arenas_[id] = std::move(arena);
      return Napi::Number::New(env, static_cast<double>(id));
    }
    arenas_.push_back(std::move(arena));
    return Napi::Number::New(env, static_cast<double>(arenas_.size() - 1));
  }

  // unregisterArena(id): drops our reference, so the memory can go. EBUSY while
  // the kernel may still read or write it (submitted requests not yet reaped).
  void UnregisterArena(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "unregisterArena(id): id must be a number");
    double id = info[0].As<Napi::Number>().DoubleValue();
    if (!IsUint(id, static_cast<double>(arenas_.size()) - 1) || arenas_[static_cast<size_t>(id)].data == nullptr)
      throw Napi::RangeError::New(env, "unregisterArena: arena id is not registered");
    Arena& a = arenas_[static_cast<size_t>(id)];
    if (a.in_flight > 0)
      throw ErrnoError(env, EBUSY, "unregisterArena", std::to_string(a.in_flight) + " requests still use the arena");
    a.data = nullptr;
    a.size = 0;
    a.ref.Reset();
  }

  // Throws RangeError naming the first bad row; called before anything is queued.
  // max_map: the highest map column allowed (runInline: how many maps it was given).
  void ValidateRows(Napi::Env env, const double* rows, uint32_t count, double max_map = INT32_MAX) {
    for (uint32_t i = 0; i < count; i++) {
      const double* row = rows + size_t{i} * kRowWidth;
      auto bad = [&](const std::string& why) {
        return Napi::RangeError::New(env, "submit: row " + std::to_string(i) + ": " + why);
      };
      double op = row[kColOp], fd = row[kColFd];
      if (op != kRead && op != kWrite && op != kFdatasync) throw bad("op must be 0 (read), 1 (write) or 2 (fdatasync)");
      if (!(fd >= INT32_MIN && fd <= INT32_MAX && fd == std::floor(fd))) throw bad("fd must be an int32");
      double map = row[kColMap];
      if (!IsUint(map, max_map)) throw bad("map must be 0 or 1 + an index in the maps given");
      if (row[kColAsync] != 0 && row[kColAsync] != 1) throw bad("async must be 0 or 1");
      if (op == kFdatasync) continue;
      double id = row[kColArena], off = row[kColOffset], len = row[kColLength], pos = row[kColPosition];
      if (!IsUint(id, static_cast<double>(arenas_.size()) - 1) || arenas_[static_cast<size_t>(id)].data == nullptr)
        throw bad("arena id is not registered");
      if (!IsUint(len, UINT32_MAX)) throw bad("length must be an integer in [0, 2^32)");
      if (!IsUint(off, kMaxPosition) || off + len > static_cast<double>(arenas_[static_cast<size_t>(id)].size))
        throw bad("arena offset+length lies outside the arena");
      if (!IsUint(pos, kMaxPosition)) throw bad("position must be an integer in [0, 2^53]");
    }
  }

  // submit(count) -> rows queued (a prefix). Fewer than count only when
  // `capacity` requests are already in flight (the ring is full) or the
  // kernel is short of memory: keep the rest, retry after completions.
  // Never more than capacity in flight: the CQ (2*capacity) cannot overflow.
  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "submit(count): count must be a number");
    double c = info[0].As<Napi::Number>().DoubleValue();
    if (!IsUint(c, capacity_)) throw Napi::RangeError::New(env, "submit: count must be an integer in [0, " + std::to_string(capacity_) + "]");
    uint32_t count = static_cast<uint32_t>(c);
    ValidateRows(env, ops_, count);
    uint32_t n = std::min({count, capacity_ - in_flight_, io_uring_sq_space_left(&ring_)});
    if (n == 0) return Napi::Number::New(env, 0);

    for (uint32_t i = 0; i < n; i++) {
      const double* row = ops_ + size_t{i} * kRowWidth;
      struct io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // cannot fail: space checked above
      int fd = static_cast<int>(row[kColFd]);
      uint64_t arena_tag = 0;
      if (row[kColOp] == kFdatasync) {
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
      } else {
        auto id = static_cast<size_t>(row[kColArena]);
        const Arena& a = arenas_[id];
        uint8_t* p = a.data + static_cast<size_t>(row[kColOffset]);
        auto len = static_cast<unsigned>(row[kColLength]);
        auto pos = static_cast<uint64_t>(row[kColPosition]);
        if (row[kColOp] == kRead) io_uring_prep_read(sqe, fd, p, len, pos);
        else io_uring_prep_write(sqe, fd, p, len, pos);
        arena_tag = uint64_t{id + 1} << 32;
      }
      io_uring_sqe_set_data64(sqe, arena_tag | tags_[i]);
      if (row[kColAsync] != 0) io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
    }

    int rc;
    do {
      rc = io_uring_submit(&ring_);
      counters_[kSubmitCalls]++;
    } while (rc == -EINTR);
    // The kernel consumes SQEs in order and only inside io_uring_enter (no
    // SQPOLL), so whatever it left is a suffix we can take back: the caller
    // then holds exactly the rows not queued.
    uint32_t taken = UnqueueLeftovers();
    if (rc < 0 && rc != -EAGAIN && rc != -EBUSY)
      throw ErrnoError(env, -rc, "io_uring_submit", "io_uring");
    uint32_t queued = n - taken;
    for (uint32_t i = 0; i < queued; i++) {
      const double* row = ops_ + size_t{i} * kRowWidth;
      if (row[kColOp] != kFdatasync) arenas_[static_cast<size_t>(row[kColArena])].in_flight++;
    }
    in_flight_ += queued;
    counters_[kSubmitted] += queued;
    counters_[kInFlight] = in_flight_;
    if (queued > 0) UpdateLiveness();
    return Napi::Number::New(env, queued);
  }

  // runInline(rows, results, count, maps?): performs rows 0..count-1 of `rows` (same
  // layout as ops) right here with pread/pwrite/fdatasync and writes each result
  // (bytes or -errno) into results[i]. For files on memory-backed file systems
  // (tmpfs): they never wait on a device, and they cannot be done inline by io_uring
  // (no IOCB_NOWAIT support), which would otherwise hand each one to a kernel worker
  // thread. A write row whose map column is 1 + k is copied into maps[k] (a writable
  // FileMap of the row's file) instead: no system call per write.
  // Arena ids are those of registerArena; nothing here touches the ring.
  Napi::Value RunInline(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    const char* usage = "runInline(rows: Float64Array, results: Int32Array, count: number, maps?: FileMap[])";
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
        !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || !info[2].IsNumber() ||
        (info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsArray()))
      throw Napi::TypeError::New(env, usage);
    Napi::Float64Array rows = info[0].As<Napi::Float64Array>();
    Napi::Int32Array results = info[1].As<Napi::Int32Array>();
    double c = info[2].As<Napi::Number>().DoubleValue();
    if (!IsUint(c, static_cast<double>(std::min(rows.ElementLength() / kRowWidth, results.ElementLength()))))
      throw Napi::RangeError::New(env, "runInline: count exceeds the rows or results given");
    uint32_t count = static_cast<uint32_t>(c);
    // The maps, looked up once per call. One that is closed or not writable leaves its
    // rows to pwrite.
    maps_.clear();
    if (info.Length() > 3 && info[3].IsArray()) {
      Napi::Array maps = info[3].As<Napi::Array>();
      for (uint32_t k = 0; k < maps.Length(); k++) {
        MappedBytes m = FileMapBytes(maps.Get(k));
        if (!m.writable) m = {nullptr, 0, false};
        maps_.push_back(MapUse{m, 0, SIZE_MAX, false, -1});
      }
    }
    ValidateRows(env, rows.Data(), count, static_cast<double>(maps_.size()));
    const double* r = rows.Data();
    int32_t* out = results.Data();
    for (uint32_t i = 0; i < count;) {
      const double* row = r + size_t{i} * kRowWidth;
      if (row[kColOp] == kFdatasync) {
        out[i++] = fdatasync(static_cast<int>(row[kColFd])) < 0 ? -errno : 0;
        continue;
      }
      if (row[kColOp] == kWrite && row[kColMap] > 0) {
        out[i] = RunMappedWrite(row);
        i++;
        continue;
      }
      // Rows that continue each other on the same file (a sequential stream, or the
      // frames of one larger I/O) go in one preadv/pwritev.
      uint32_t end = i + 1;
      size_t total = static_cast<size_t>(row[kColLength]);
      while (end < count && end - i < kMaxIov) {
        const double* prev = r + size_t{end - 1} * kRowWidth;
        const double* next = r + size_t{end} * kRowWidth;
        if (next[kColOp] != row[kColOp] || next[kColFd] != row[kColFd] || next[kColMap] != row[kColMap] ||
            next[kColPosition] != prev[kColPosition] + prev[kColLength] ||
            total + static_cast<size_t>(next[kColLength]) > kMaxVectorBytes)
          break;
        total += static_cast<size_t>(next[kColLength]);
        end++;
      }
      if (end - i > 1 && RunVector(r, i, end, total)) {
        for (uint32_t j = i; j < end; j++) out[j] = static_cast<int32_t>(r[size_t{j} * kRowWidth + kColLength]);
      } else {
        // One row, or the vector came up short or failed: row by row, so each gets its own result.
        for (uint32_t j = i; j < end; j++) out[j] = RunRow(r + size_t{j} * kRowWidth);
      }
      i = end;
    }
    // A write through a mapping leaves the file's times alone (tmpfs marks a page
    // only on its first write fault): stamp them once per call, as pwrite would have.
    static const struct timespec kTouch[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    for (const MapUse& m : maps_) {
      if (m.written_fd >= 0) futimens(m.written_fd, kTouch);
    }
    maps_.clear();
    counters_[kRanInline] += count;
    return Napi::Number::New(env, count);
  }

  // A write row copied into its file's mapping; pwrite where the mapping cannot take
  // it: closed, not writable, or beyond the map (the file grew since it was mapped).
  // A mapped file is one whose size the store knows, so a row reaching past the end
  // of a regular file means the file shrank underneath: it writes nothing (result 0,
  // a short write the store answers with an error) rather than grow the file back.
  // The size is read once per call, and again if the copy faults (SIGBUS: the file
  // shrank during the call, or a hole on a full tmpfs, where pwrite gives ENOSPC).
  int32_t RunMappedWrite(const double* row) {
    MapUse& m = maps_[static_cast<size_t>(row[kColMap]) - 1];
    size_t len = static_cast<size_t>(row[kColLength]);
    auto pos = static_cast<size_t>(row[kColPosition]);
    int fd = static_cast<int>(row[kColFd]);
    if (!m.sized && m.file.data != nullptr) {
      m.size = 0;  // unknown: every row goes by pwrite
      m.end = SIZE_MAX;
      ReadSize(fd, m);
      m.sized = true;
    }
    if (pos > m.end || len > m.end - pos) return 0;
    const Arena& a = arenas_[static_cast<size_t>(row[kColArena])];
    if (m.file.data == nullptr || pos > m.size || len > m.size - pos ||
        !GuardedCopy(m.file.data + pos, a.data + static_cast<size_t>(row[kColOffset]), len)) {
      if (m.file.data != nullptr && pos + len <= m.size) {
        ReadSize(fd, m);  // the copy faulted: has the file shrunk?
        if (pos > m.end || len > m.end - pos) return 0;
      }
      counters_[kMapFallbacks]++;
      return RunRow(row);
    }
    counters_[kMapped]++;
    m.written_fd = fd;
    return static_cast<int32_t>(len);
  }

  // One read or write row with pread/pwrite, retried until done: bytes, or -errno.
  int32_t RunRow(const double* row) {
    int fd = static_cast<int>(row[kColFd]);
    const Arena& a = arenas_[static_cast<size_t>(row[kColArena])];
    uint8_t* p = a.data + static_cast<size_t>(row[kColOffset]);
    size_t len = static_cast<size_t>(row[kColLength]), done = 0;
    auto pos = static_cast<off_t>(row[kColPosition]);
    while (done < len) {
      ssize_t n = row[kColOp] == kRead ? pread(fd, p + done, len - done, pos + static_cast<off_t>(done))
                                       : pwrite(fd, p + done, len - done, pos + static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return -errno;
      if (n == 0) break;  // end of file: report the short count
      done += static_cast<size_t>(n);
    }
    return static_cast<int32_t>(done);
  }

  // Rows [first, end) as one preadv/pwritev of `total` bytes; true if it moved them all.
  bool RunVector(const double* rows, uint32_t first, uint32_t end, size_t total) {
    for (uint32_t j = first; j < end; j++) {
      const double* row = rows + size_t{j} * kRowWidth;
      const Arena& a = arenas_[static_cast<size_t>(row[kColArena])];
      iov_[j - first] = {a.data + static_cast<size_t>(row[kColOffset]), static_cast<size_t>(row[kColLength])};
    }
    const double* row = rows + size_t{first} * kRowWidth;
    int fd = static_cast<int>(row[kColFd]);
    auto pos = static_cast<off_t>(row[kColPosition]);
    int n_iov = static_cast<int>(end - first);
    ssize_t n;
    do {
      n = row[kColOp] == kRead ? preadv(fd, iov_, n_iov, pos) : pwritev(fd, iov_, n_iov, pos);
    } while (n < 0 && errno == EINTR);
    return n >= 0 && static_cast<size_t>(n) == total;
  }

  // Rolls the SQ tail back to what the kernel consumed; returns how many.
  uint32_t UnqueueLeftovers() {
    struct io_uring_sq& sq = ring_.sq;
    unsigned head = io_uring_smp_load_acquire(sq.khead);
    uint32_t left = sq.sqe_tail - head;
    if (left == 0) return 0;
    sq.sqe_tail = head;
    sq.sqe_head = head;
    io_uring_smp_store_release(sq.ktail, head);
    return left;
  }

  // reap() -> n: completions in doneTags/doneResults[0..n-1]. Non-blocking.
  // 0 after close(), so a late callback draining the ring does not throw.
  Napi::Value Reap(const Napi::CallbackInfo& info) {
    if (!open_) return Napi::Number::New(info.Env(), 0);
    uint32_t n = ReapInto(capacity_);
    if (n > 0) UpdateLiveness();
    return Napi::Number::New(info.Env(), n);
  }

  uint32_t ReapInto(uint32_t max) {
    unsigned head;
    struct io_uring_cqe* cqe;
    uint32_t n = 0, seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      if (n == max) break;
      seen++;
      if (cqe->user_data >= kInternalData) continue;
      size_t arena = cqe->user_data >> 32;
      if (arena > 0 && arena <= arenas_.size()) arenas_[arena - 1].in_flight--;
      done_tags_[n] = static_cast<uint32_t>(cqe->user_data);
      done_results_[n] = cqe->res;
      n++;
    }
    io_uring_cq_advance(&ring_, seen);
    in_flight_ -= n;
    counters_[kCompleted] += n;
    counters_[kInFlight] = in_flight_;
    return n;
  }

  // onComplete(cb): cb runs on the JS thread whenever completions may be
  // pending; a second call replaces cb.
  void OnComplete(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "onComplete(cb): cb must be a function");
    on_complete_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (poll_ != nullptr) return;

    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) throw ErrnoError(env, errno, "eventfd", "io_uring");
    int rc = io_uring_register_eventfd(&ring_, efd);
    if (rc < 0) {
      close(efd);
      throw ErrnoError(env, -rc, "io_uring_register_eventfd", "io_uring");
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no uv loop");
    poll_ = new uv_poll_t;
    rc = uv_poll_init(loop, poll_, efd);
    if (rc < 0) {
      delete poll_;
      poll_ = nullptr;
      io_uring_unregister_eventfd(&ring_);
      close(efd);
      throw ErrnoError(env, -rc, "uv_poll_init", "io_uring eventfd");
    }
    efd_ = efd;
    poll_->data = this;
    uv_poll_start(poll_, UV_READABLE, PollCb);
    UpdateLiveness();
    // Completions posted before the eventfd existed signalled nothing.
    if (io_uring_cq_ready(&ring_) > 0) eventfd_write(efd_, 1);
  }

  // The poll handle keeps the process alive exactly while requests are in
  // flight; the object is pinned then too, so abandoning it mid-I/O neither
  // frees the arenas nor loses the callback. Transitions only: cheap.
  void UpdateLiveness() {
    bool busy = in_flight_ > 0;
    if (poll_ != nullptr) {
      if (busy) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
      else uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    }
    if (busy && !pinned_) Ref();
    if (!busy && pinned_) Unref();
    pinned_ = busy;
  }

  static void PollCb(uv_poll_t* handle, int /*status*/, int /*events*/) {
    auto* self = static_cast<Uring*>(handle->data);
    if (self == nullptr || !self->open_) return;
    eventfd_t ignored;
    eventfd_read(self->efd_, &ignored);  // re-arms: a later completion signals anew
    // Completions JS already reaped right after submit() still signal; skip
    // the JS call when the CQ is empty (a shared-memory read, no syscall).
    if (io_uring_cq_ready(&self->ring_) == 0 || self->on_complete_.IsEmpty()) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Object keep_alive = self->Value();  // even if the callback calls close()
    try {
      self->on_complete_.Value().MakeCallback(keep_alive, {});
    } catch (const Napi::Error& e) {
      // No JS frame below us to catch it: treat like a throwing event listener.
      napi_fatal_exception(env, e.Value());
    }
  }

  void ClosePoll() {
    if (poll_ == nullptr) return;
    poll_->data = nullptr;
    // The handle must outlive uv_close; libuv frees nothing itself.
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }

  // Blocks until the kernel is done with every request, cancelling what can
  // be cancelled (pipe/socket reads may never complete by themselves).
  // Regular-file I/O cannot be cancelled once started but finishes quickly.
  void DrainInFlight() {
    bool ask = true;
    while (in_flight_ > 0) {
      if (ask) {
        struct io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (sqe != nullptr) {
          io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);  // Linux >= 5.19; else we just wait
          io_uring_sqe_set_data64(sqe, kInternalData);
          io_uring_submit(&ring_);
        }
        ask = false;
      }
      struct io_uring_cqe* cqe = nullptr;
      struct __kernel_timespec ts = {0, 100 * 1000 * 1000};
      int rc = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
      if (rc == -ETIME) {
        ask = true;  // a request that was queued but not yet cancellable may be now
        continue;
      }
      if (rc < 0 && rc != -EINTR) break;  // cannot wait at all; nothing better to do
      ReapInto(capacity_);                // results are discarded: nobody will read them
    }
  }

  void Shutdown() {
    if (!open_) return;
    DrainInFlight();
    ClosePoll();
    io_uring_queue_exit(&ring_);  // also drops the eventfd registration
    if (efd_ >= 0) close(efd_);
    efd_ = -1;
    open_ = false;
  }

  // close(): idempotent; see DrainInFlight for what happens to pending requests.
  void Close(const Napi::CallbackInfo&) {
    Shutdown();
    on_complete_.Reset();
    arenas_.clear();
    if (pinned_) Unref();
    pinned_ = false;
  }

  struct io_uring ring_ {};
  bool open_ = false;
  uint32_t capacity_ = 0;
  struct iovec iov_[kMaxIov];  // runInline's vectors
  // runInline's maps, by the index rows give. size: the bytes of the file it may take
  // writes to, and end: where the file ends, read at its first write row (sized);
  // written_fd: a row was copied in.
  struct MapUse {
    MappedBytes file;
    size_t size;
    size_t end;
    bool sized;
    int written_fd;
  };
  std::vector<MapUse> maps_;

  // What of the file the map may take (size) and where a regular file ends (end;
  // SIZE_MAX for a device, which refuses writes past its end itself).
  static void ReadSize(int fd, MapUse& m) {
    struct stat st;
    if (fstat(fd, &st) != 0) return;
    bool device = S_ISBLK(st.st_mode);
    m.end = device ? SIZE_MAX : static_cast<size_t>(st.st_size);
    m.size = device ? m.file.length : std::min(m.file.length, static_cast<size_t>(st.st_size));
  }
  uint32_t in_flight_ = 0;
  double* ops_ = nullptr;
  uint32_t* tags_ = nullptr;
  uint32_t* done_tags_ = nullptr;
  int32_t* done_results_ = nullptr;
  double* counters_ = nullptr;
  Napi::Reference<Napi::Value> arrays_ref_;  // keep the memory we read/write alive
  std::vector<Arena> arenas_;
  int efd_ = -1;
  uv_poll_t* poll_ = nullptr;
  bool pinned_ = false;
  Napi::FunctionReference on_complete_;
};

}  // namespace

void InitUring(Napi::Env env, Napi::Object exports) {
  exports.Set("Uring", Uring::Define(env));
  Napi::Object layout = LayoutOf(env, exports, "uring");
  layout.Set("rowWidth", Napi::Number::New(env, kRowWidth));
  layout.Set("columns", IndexObject(env, kColNames, kRowWidth));
  layout.Set("ops", IndexObject(env, kOpNames, kNumOps));
  layout.Set("counters", IndexObject(env, kCounterNames, kNumCounters));
}

}  // namespace kvblade
