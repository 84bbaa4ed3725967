// AF_PACKET sockets for AoE frames on one interface: one receives through a
// memory-mapped ring (PACKET_RX_RING, TPACKET_V2) that JS reads in place, one
// sends batches (sendmmsg) from a JS arena and file maps; libuv readiness
// callbacks for both. One call across the JS boundary per batch, never per
// frame; nothing here allocates per frame.
#include "common.h"
#include "netns.h"

#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23  // Linux >= 4.20
#endif

namespace kvblade {
namespace {

constexpr uint16_t kEthPAoe = 0x88a2;
constexpr uint32_t kMaxMsgs = 1024;  // UIO_MAXIOV: the kernel's cap on vlen for recvmmsg/sendmmsg

// Slots of the shared counters Float64Array, exported to JS as
// layout.packetSocket.counters (the TypeScript side reads the names).
enum Counter { kRxFrames, kRxBatches, kTxFrames, kTxBatches, kTxErrors, kKernelDrops, kNumCounters };
const char* const kCounterNames[] = {"rxFrames", "rxBatches", "txFrames", "txBatches", "txErrors", "kernelDrops"};
static_assert(sizeof kCounterNames / sizeof kCounterNames[0] == kNumCounters, "a counter without a name");
// send() records the frames it gave up on in the shared Int32Array sendFailures:
// [count, index0, errno0, index1, errno1, ...]; count may exceed what fits.
constexpr uint32_t kMaxSendFailures = 64;

// The receive ring's mapping, shared by the socket (which unmaps it at close())
// and the Buffer over it (whose finalizer unmaps it if close() never ran).
struct RingMapping {
  void* addr;
  size_t bytes;
  bool unmapped;
};

void FillIfreq(struct ifreq* ifr, const std::string& ifname) {
  // A longer name would be truncated by the kernel and could match another interface.
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) throw SysError{ENODEV, "ifname"};
  memset(ifr, 0, sizeof *ifr);
  memcpy(ifr->ifr_name, ifname.data(), ifname.size());
}

struct LinkInfo {
  int index;
  uint8_t mac[6];
  int mtu;
};

// ioctls on the socket resolve names in the socket's own namespace.
LinkInfo ReadLink(int fd, const std::string& ifname) {
  LinkInfo link{};
  struct ifreq ifr;
  FillIfreq(&ifr, ifname);
  if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) Fail("ioctl(SIOCGIFINDEX)");
  link.index = ifr.ifr_ifindex;
  FillIfreq(&ifr, ifname);
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) Fail("ioctl(SIOCGIFHWADDR)");
  memcpy(link.mac, ifr.ifr_hwaddr.sa_data, 6);
  FillIfreq(&ifr, ifname);
  if (ioctl(fd, SIOCGIFMTU, &ifr) < 0) Fail("ioctl(SIOCGIFMTU)");
  link.mtu = ifr.ifr_mtu;
  return link;
}

// Unprivileged *FORCE variants fail with EPERM; then take what rmem_max allows.
void SetBuffer(int fd, int force_opt, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) == 0) return;
  if (setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes) < 0) Fail("setsockopt(SO_RCVBUF/SO_SNDBUF)");
}

// PACKET_IGNORE_OUTGOING only hides the transmit tap. On loopback (or any
// path that reflects frames) our own frames come back as ordinary incoming
// ones. So every socket tags what it sends with a random SO_MARK, which
// survives the loop, and a BPF filter drops incoming frames carrying it.
// (Marks are cleared when a frame crosses into another netns: no false hits.)
// Returns the mark, which the send socket must also use; 0 if marks are refused.
uint32_t FilterOwnFrames(int fd) {
  uint32_t mark = 0;
  while (mark == 0)
    if (getrandom(&mark, sizeof mark, 0) != sizeof mark) Fail("getrandom");
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) < 0) {
    if (errno == EPERM) return 0;  // SO_MARK needs CAP_NET_ADMIN on kernels < 5.17; do without
    Fail("setsockopt(SO_MARK)");
  }
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_MARK)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, mark, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0),           // ours: drop
      BPF_STMT(BPF_RET | BPF_K, 0xffffffff),  // anyone else's: keep whole frame
  };
  struct sock_fprog prog = {static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) Fail("setsockopt(SO_ATTACH_FILTER)");
  return mark;
}

// Binds a packet socket to one interface and protocol (network byte order).
void BindTo(int fd, uint16_t protocol, int ifindex) {
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = protocol;
  sll.sll_ifindex = ifindex;
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sll), sizeof sll) < 0) Fail("bind");
}

// Receive ring geometry. The kernel copies each frame into the next free ring
// frame, behind a tpacket2_hdr, at the same offset every time (kMacOffset for
// Ethernet); we read frames there and hand each back once JS is done with it.
// Receiving costs no system call and no copy on our side: the copy happens in
// the sender's context, and for veth that is the initiator's CPU.
constexpr uint32_t kMacOffset = TPACKET_ALIGN(TPACKET2_HDRLEN + 16) - ETH_HLEN;
constexpr uint32_t kRingBlockSize = 1 << 16;  // 16 pages: few blocks, little waste per block

struct RingGeometry {
  struct tpacket_req req;
  uint32_t frames_per_block;
  size_t bytes;
};

// Smallest ring of at least `frames` frames, each holding `max_frame` bytes.
RingGeometry RxRingFor(uint32_t frames, uint32_t max_frame) {
  RingGeometry g{};
  uint32_t frame_size = TPACKET_ALIGN(kMacOffset + max_frame);
  uint32_t page = static_cast<uint32_t>(sysconf(_SC_PAGESIZE));
  uint32_t block = frame_size <= kRingBlockSize ? kRingBlockSize : (frame_size + page - 1) / page * page;
  g.frames_per_block = block / frame_size;
  uint32_t blocks = (frames + g.frames_per_block - 1) / g.frames_per_block;
  g.req.tp_block_size = block;
  g.req.tp_block_nr = blocks;
  g.req.tp_frame_size = frame_size;
  g.req.tp_frame_nr = blocks * g.frames_per_block;
  g.bytes = size_t{block} * blocks;
  return g;
}

int OpenBoundSocket(const std::string& ifname, int sock_buf, const struct tpacket_req& ring, uint32_t* mark) {
  // Protocol 0 hears nothing until bind(): no frames from other interfaces
  // can queue up in between.
  UniqueFd s(socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (s.fd < 0) Fail("socket(AF_PACKET)");
  LinkInfo link = ReadLink(s.fd, ifname);
  SetBuffer(s.fd, SO_RCVBUFFORCE, SO_RCVBUF, sock_buf);
  SetBuffer(s.fd, SO_SNDBUFFORCE, SO_SNDBUF, sock_buf);
  int one = 1;
  if (setsockopt(s.fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0 && errno != ENOPROTOOPT)
    Fail("setsockopt(PACKET_IGNORE_OUTGOING)");
  *mark = FilterOwnFrames(s.fd);
  int version = TPACKET_V2;
  if (setsockopt(s.fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0) Fail("setsockopt(PACKET_VERSION)");
  if (setsockopt(s.fd, SOL_PACKET, PACKET_RX_RING, &ring, sizeof ring) < 0) Fail("setsockopt(PACKET_RX_RING)");
  BindTo(s.fd, htons(kEthPAoe), link.index);
  return s.release();
}

// The socket replies leave from: bound to the interface with protocol 0, so it
// hears nothing. Sending from a socket of its own keeps the receive socket's wait
// queue (where epoll listens) out of the send path: the kernel wakes a socket's
// waiters as each sent frame is freed, and on the receive socket that cost a
// locked epoll callback per frame (~3% of the CPU).
int OpenSendSocket(const std::string& ifname, int sock_buf, uint32_t mark) {
  UniqueFd s(socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (s.fd < 0) Fail("socket(AF_PACKET)");
  LinkInfo link = ReadLink(s.fd, ifname);
  SetBuffer(s.fd, SO_SNDBUFFORCE, SO_SNDBUF, sock_buf);
  // The receive socket drops frames carrying this mark: ours, if they loop back.
  if (mark != 0 && setsockopt(s.fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) < 0) Fail("setsockopt(SO_MARK)");
  BindTo(s.fd, 0, link.index);  // protocol 0: send only; the kernel reads each frame's ethertype
  return s.release();
}

uint32_t Uint32Arg(const Napi::CallbackInfo& info, size_t i, const char* what, uint32_t lo, uint32_t hi) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= lo && v <= hi) || v != static_cast<uint32_t>(v))
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be an integer in [" +
                                                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<uint32_t>(v);
}

class PacketSocket : public Napi::ObjectWrap<PacketSocket> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativePacketSocket",
                       {
                           InstanceMethod<&PacketSocket::Link>("link"),
                           InstanceMethod<&PacketSocket::Recv>("recv"),
                           InstanceMethod<&PacketSocket::Send>("send"),
                           InstanceMethod<&PacketSocket::OnReadable>("onReadable"),
                           InstanceMethod<&PacketSocket::StopReading>("stopReading"),
                           InstanceMethod<&PacketSocket::OnWritable>("onWritable"),
                           InstanceMethod<&PacketSocket::Stats>("stats"),
                           InstanceMethod<&PacketSocket::Close>("close"),
                           InstanceAccessor<&PacketSocket::Fd>("fd"),
                       });
  }

  // new NativePacketSocket(ifname, netnsPath | '', rxSlots, slotSize, socketBufferBytes, ringFrames)
  // Sets this.rx (Buffer over the receive ring), this.rxOffsets and this.rxLengths
  // (Uint32Array), this.counters (Float64Array).
  explicit PacketSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PacketSocket>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString() || !info[1].IsString())
      throw Napi::TypeError::New(env, "NativePacketSocket(ifname, netns, rxSlots, slotSize, socketBufferBytes, ringFrames)");
    ifname_ = info[0].As<Napi::String>().Utf8Value();
    std::string netns = info[1].As<Napi::String>().Utf8Value();
    rx_slots_ = Uint32Arg(info, 2, "rxSlots", 1, kMaxMsgs);
    slot_size_ = Uint32Arg(info, 3, "slotSize", 64, 1 << 18);
    uint32_t sock_buf = Uint32Arg(info, 4, "socketBufferBytes", 4096, 1u << 30);
    uint32_t ring_frames = Uint32Arg(info, 5, "ringFrames", 1, 1 << 16);
    RingGeometry ring = RxRingFor(ring_frames, slot_size_);

    UniqueFd fd, tx_fd;
    void* map = MAP_FAILED;
    try {
      NetnsScope scope(netns);
      uint32_t mark = 0;
      fd.fd = OpenBoundSocket(ifname_, static_cast<int>(sock_buf), ring.req, &mark);
      tx_fd.fd = OpenSendSocket(ifname_, static_cast<int>(sock_buf), mark);
      map = mmap(nullptr, ring.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd, 0);
      if (map == MAP_FAILED) Fail("mmap(PACKET_RX_RING)");
    } catch (const SysError& e) {
      std::string ctx = "packet socket on interface '" + ifname_ + "'";
      if (!netns.empty()) ctx += " in netns " + netns;
      throw ErrnoError(env, e.err, e.syscall, ctx);
    }

    // close() detaches the Buffer (JS then sees 0 bytes, never freed memory) and
    // unmaps at once, so closing a socket gives its memory back without waiting
    // for a garbage collection. Without close(), the Buffer's finalizer unmaps.
    ring_mapping_ = new RingMapping{map, ring.bytes, false};
    Napi::Buffer<uint8_t> rx = Napi::Buffer<uint8_t>::New(
        env, static_cast<uint8_t*>(map), ring.bytes, [](Napi::Env, uint8_t*, RingMapping* m) {
          if (!m->unmapped) munmap(m->addr, m->bytes);
          delete m;
        }, ring_mapping_);
    Napi::Uint32Array offsets = Napi::Uint32Array::New(env, rx_slots_);
    Napi::Uint32Array lengths = Napi::Uint32Array::New(env, rx_slots_);
    Napi::Float64Array counters = Napi::Float64Array::New(env, kNumCounters);
    Napi::Int32Array failures = Napi::Int32Array::New(env, 1 + 2 * kMaxSendFailures);
    send_failures_ = failures.Data();
    send_failures_[0] = 0;
    failures_ref_ = Napi::Persistent(failures.As<Napi::Value>());
    ring_ = rx.Data();
    ring_frames_ = ring.req.tp_frame_nr;
    frames_per_block_ = ring.frames_per_block;
    block_size_ = ring.req.tp_block_size;
    frame_size_ = ring.req.tp_frame_size;
    rx_offsets_ = offsets.Data();
    rx_lengths_ = lengths.Data();
    counters_ = counters.Data();
    std::fill(counters_, counters_ + kNumCounters, 0.0);
    rx_ref_ = Napi::Persistent(rx.As<Napi::Value>());
    offsets_ref_ = Napi::Persistent(offsets.As<Napi::Value>());
    lengths_ref_ = Napi::Persistent(lengths.As<Napi::Value>());
    counters_ref_ = Napi::Persistent(counters.As<Napi::Value>());
    Napi::Object self = info.This().As<Napi::Object>();
    self.Set("rx", rx);
    self.Set("rxOffsets", offsets);
    self.Set("rxLengths", lengths);
    self.Set("counters", counters);
    self.Set("sendFailures", failures);
    self.Set("ringFrames", Napi::Number::New(env, ring_frames_));

    // Send: the arena differs per call, only iov contents change. No msg_name:
    // a bound packet socket sends on its interface with its protocol.
    tx_msgs_.resize(kMaxMsgs);
    tx_iov_.resize(2 * kMaxMsgs);
    for (uint32_t i = 0; i < kMaxMsgs; i++) {
      memset(&tx_msgs_[i], 0, sizeof tx_msgs_[i]);
      tx_msgs_[i].msg_hdr.msg_iov = &tx_iov_[2 * i];
      tx_msgs_[i].msg_hdr.msg_iovlen = 1;
    }
    tx_fd_ = tx_fd.release();  // last: a constructor that throws must not leave them open
    fd_ = fd.release();
  }

  ~PacketSocket() override {
    // Reached only if JS dropped the object without close() (or at exit).
    ClosePoll(rx_poll_);
    ClosePoll(tx_poll_);
    if (fd_ >= 0) close(fd_);
    if (tx_fd_ >= 0) close(tx_fd_);
  }

 private:
  void CheckOpen(Napi::Env env) {
    if (fd_ < 0) throw ErrnoError(env, EBADF, "use", "packet socket on interface '" + ifname_ + "' is closed");
  }

  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

  // link() -> { index, mac: Buffer(6), mtu }
  Napi::Value Link(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    LinkInfo link;
    try {
      link = ReadLink(fd_, ifname_);
    } catch (const SysError& e) {
      throw ErrnoError(env, e.err, e.syscall, "packet socket on interface '" + ifname_ + "'");
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", link.index);
    o.Set("mac", Napi::Buffer<uint8_t>::Copy(env, link.mac, 6));
    o.Set("mtu", link.mtu);
    return o;
  }

  struct tpacket2_hdr* RingFrame(uint32_t i) const {
    return reinterpret_cast<struct tpacket2_hdr*>(ring_ + size_t{i / frames_per_block_} * block_size_ +
                                                  size_t{i % frames_per_block_} * frame_size_);
  }

  // Gives the frames of the last recv() back to the kernel, oldest first.
  void ReleaseHeld() {
    for (; held_ > 0; held_--) {
      __atomic_store_n(&RingFrame(release_)->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
      release_ = release_ + 1 == ring_frames_ ? 0 : release_ + 1;
    }
  }

  // recv() -> n: frame i is rx[rxOffsets[i] .. + rxLengths[i]), read in place in the
  // ring. They stay valid until the next recv() (or close), which hands them back.
  // 0 = nothing pending.
  Napi::Value Recv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    ReleaseHeld();
    uint32_t kept = 0;
    // Never more than the ring: frames we hold still read as the user's.
    uint32_t limit = std::min(rx_slots_, ring_frames_);
    while (held_ < limit) {
      struct tpacket2_hdr* h = RingFrame(next_);
      if ((__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) == 0) break;
      next_ = next_ + 1 == ring_frames_ ? 0 : next_ + 1;
      held_++;
      auto* addr = reinterpret_cast<const struct sockaddr_ll*>(reinterpret_cast<const uint8_t*>(h) +
                                                               TPACKET_ALIGN(sizeof(struct tpacket2_hdr)));
      if (addr->sll_pkttype == PACKET_OUTGOING) continue;  // kernels without PACKET_IGNORE_OUTGOING
      rx_offsets_[kept] = static_cast<uint32_t>(reinterpret_cast<uint8_t*>(h) + h->tp_mac - ring_);
      rx_lengths_[kept] = std::min(h->tp_snaplen, slot_size_);
      kept++;
    }
    if (kept > 0) {
      counters_[kRxBatches]++;
      counters_[kRxFrames] += kept;
    }
    return Napi::Number::New(env, kept);
  }

  // send(arena, offsets, lengths, count[, maps, mapIndex, mapOffsets, mapLengths]) -> frames
  // consumed (sent, or skipped after a permanent error counted in txErrors). Less than
  // count only when the socket/queue is full (EAGAIN/ENOBUFS): resend the rest after
  // onWritable. Frame j is arena[offsets[j] ..+lengths[j]), followed, when
  // mapLengths[j] > 0, by mapLengths[j] bytes at mapOffsets[j] of the FileMap maps[mapIndex[j]]:
  // the kernel copies those straight from the page cache into the frame. Frames
  // skipped after an error are listed in sendFailures (index in this call, errno).
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    send_failures_[0] = 0;
    if (!info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray())
      throw Napi::TypeError::New(env, "send(arena: Buffer, offsets: Uint32Array, lengths: Uint32Array, count)");
    Napi::Uint8Array arena = info[0].As<Napi::Uint8Array>();
    Napi::Uint32Array offsets = info[1].As<Napi::Uint32Array>();
    Napi::Uint32Array lengths = info[2].As<Napi::Uint32Array>();
    if (arena.TypedArrayType() != napi_uint8_array || offsets.TypedArrayType() != napi_uint32_array ||
        lengths.TypedArrayType() != napi_uint32_array)
      throw Napi::TypeError::New(env, "send: arena must be a Buffer/Uint8Array, offsets and lengths Uint32Arrays");
    uint32_t count = Uint32Arg(info, 3, "count", 0,
                               static_cast<uint32_t>(std::min(offsets.ElementLength(), lengths.ElementLength())));
    const bool with_maps = info.Length() > 4 && !info[4].IsUndefined();
    Napi::Array maps;
    const uint16_t* map_index = nullptr;
    const double* map_off = nullptr;
    const uint32_t* map_len = nullptr;
    if (with_maps) {
      if (!info[4].IsArray() || !info[5].IsTypedArray() || !info[6].IsTypedArray() || !info[7].IsTypedArray() ||
          info[5].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array ||
          info[6].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
          info[7].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
        throw Napi::TypeError::New(env, "send: maps must be an Array, mapIndex a Uint16Array, mapOffsets a Float64Array, mapLengths a Uint32Array");
      maps = info[4].As<Napi::Array>();
      Napi::Uint16Array mi = info[5].As<Napi::Uint16Array>();
      Napi::Float64Array mo = info[6].As<Napi::Float64Array>();
      Napi::Uint32Array ml = info[7].As<Napi::Uint32Array>();
      if (mi.ElementLength() < count || mo.ElementLength() < count || ml.ElementLength() < count)
        throw Napi::RangeError::New(env, "send: count past the map arrays");
      map_index = mi.Data();
      map_off = mo.Data();
      map_len = ml.Data();
    }
    uint8_t* base = arena.Data();
    size_t size = arena.ElementLength();
    const uint32_t* off = offsets.Data();
    const uint32_t* len = lengths.Data();
    // Validate everything first so a bad batch sends nothing.
    for (uint32_t j = 0; j < count; j++)
      if (size_t{off[j]} + len[j] > size)
        throw Napi::RangeError::New(env, "send: frame " + std::to_string(j) + " lies outside the arena");
    if (with_maps) {
      // Each distinct map once (a batch names a handful), then each frame's range.
      map_bases_.clear();
      for (uint32_t k = 0; k < maps.Length(); k++) map_bases_.push_back(FileMapBytes(maps.Get(k)));
      if (map_data_.size() < count) map_data_.resize(count);
      for (uint32_t j = 0; j < count; j++) {
        map_data_[j] = nullptr;
        if (map_len[j] == 0) continue;
        const MappedBytes* m = map_index[j] < map_bases_.size() ? &map_bases_[map_index[j]] : nullptr;
        if (m == nullptr || m->data == nullptr || !(map_off[j] >= 0 && map_off[j] + map_len[j] <= static_cast<double>(m->length)))
          throw Napi::RangeError::New(env, "send: frame " + std::to_string(j) + "'s map range is not in an open FileMap");
        map_data_[j] = m->data + static_cast<size_t>(map_off[j]);
      }
    }

    uint32_t done = 0;
    while (done < count) {
      uint32_t n = std::min(count - done, kMaxMsgs);
      for (uint32_t j = 0; j < n; j++) {
        tx_iov_[2 * j] = {base + off[done + j], len[done + j]};
        bool extra = with_maps && map_len[done + j] > 0;
        if (extra) tx_iov_[2 * j + 1] = {const_cast<uint8_t*>(map_data_[done + j]), map_len[done + j]};
        tx_msgs_[j].msg_hdr.msg_iovlen = extra ? 2 : 1;
      }
      uint32_t i = 0;
      while (i < n) {
        int r = sendmmsg(tx_fd_, &tx_msgs_[i], n - i, MSG_DONTWAIT);
        if (r > 0) {
          i += r;
          counters_[kTxFrames] += r;
          counters_[kTxBatches]++;
        } else if (r < 0 && errno == EINTR) {
          continue;
        } else if (r == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
          return Napi::Number::New(env, done + i);
        } else {
          // sendmmsg stops at the first failing frame; this one (e.g. EMSGSIZE,
          // ENETDOWN, or EFAULT from a file truncated under its map) will not go
          // better on retry, so count it and move on.
          counters_[kTxErrors]++;
          uint32_t failed = static_cast<uint32_t>(send_failures_[0]++);
          if (failed < kMaxSendFailures) {
            send_failures_[1 + 2 * failed] = static_cast<int32_t>(done + i);
            send_failures_[2 + 2 * failed] = errno;
          }
          i++;
        }
      }
      done += n;
    }
    return Napi::Number::New(env, done);
  }

  // onReadable(cb): cb runs each time the socket is readable, until close().
  void OnReadable(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    on_readable_ = Napi::Persistent(FunctionArg(info));
    UpdatePoll();
  }

  // stopReading(): no more readability callbacks (a daemon shutting down stops taking
  // requests but still sends the replies of those in flight).
  void StopReading(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    on_readable_.Reset();
    UpdatePoll();
  }

  // onWritable(cb): cb runs once, the next time the socket is writable.
  void OnWritable(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    on_writable_ = Napi::Persistent(FunctionArg(info));
    UpdatePoll();
  }

  // stats(): fold PACKET_STATISTICS (which resets on read) into counters.
  void Stats(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    struct tpacket_stats st;
    socklen_t len = sizeof st;
    if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) counters_[kKernelDrops] += st.tp_drops;
  }

  // close(): idempotent. Stops polling first: libuv requires that before the fd goes.
  void Close(const Napi::CallbackInfo&) {
    if (ring_mapping_ != nullptr && !ring_mapping_->unmapped) {
      // Frames JS still holds are gone with the socket: detach first, so a stray
      // read of rx sees an empty buffer instead of unmapped memory.
      Napi::Buffer<uint8_t> rx = rx_ref_.Value().As<Napi::Buffer<uint8_t>>();
      rx.ArrayBuffer().Detach();
      munmap(ring_mapping_->addr, ring_mapping_->bytes);
      ring_mapping_->unmapped = true;
      ring_ = nullptr;
      held_ = 0;
    }
    on_readable_.Reset();
    on_writable_.Reset();
    ClosePoll(rx_poll_);
    ClosePoll(tx_poll_);
    if (fd_ >= 0) close(fd_);
    if (tx_fd_ >= 0) close(tx_fd_);
    fd_ = -1;
    tx_fd_ = -1;
    if (pinned_) Unref();
    pinned_ = false;
  }

  static Napi::Function FunctionArg(const Napi::CallbackInfo& info) {
    if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "callback must be a function");
    return info[0].As<Napi::Function>();
  }

  // One uv_poll_t per socket: readability of the receive socket while onReadable
  // is set, writability of the send socket while onWritable waits.
  void UpdatePoll() {
    SetPoll(rx_poll_, fd_, on_readable_.IsEmpty() ? 0 : UV_READABLE);
    SetPoll(tx_poll_, tx_fd_, on_writable_.IsEmpty() ? 0 : UV_WRITABLE);
    // While the kernel can call us back, JS must not collect this object.
    bool want = !on_readable_.IsEmpty() || !on_writable_.IsEmpty();
    if (want && !pinned_) Ref();
    if (!want && pinned_) Unref();
    pinned_ = want;
  }

  struct Poll {
    uv_poll_t* handle = nullptr;
    int events = 0;
  };

  void SetPoll(Poll& p, int fd, int want) {
    if (want == p.events) return;
    if (p.handle == nullptr) {
      uv_loop_t* loop = nullptr;
      if (napi_get_uv_event_loop(Env(), &loop) != napi_ok) throw Napi::Error::New(Env(), "no uv loop");
      p.handle = new uv_poll_t;
      int rc = uv_poll_init_socket(loop, p.handle, fd);
      if (rc < 0) {
        delete p.handle;
        p.handle = nullptr;
        throw ErrnoError(Env(), -rc, "uv_poll_init_socket", "packet socket on interface '" + ifname_ + "'");
      }
      p.handle->data = this;
    }
    p.events = want;
    if (want) {
      uv_poll_start(p.handle, want, PollCb);
    } else {
      uv_poll_stop(p.handle);
    }
  }

  static void ClosePoll(Poll& p) {
    if (p.handle == nullptr) return;
    p.handle->data = nullptr;
    // The handle must outlive uv_close; libuv frees nothing itself.
    uv_close(reinterpret_cast<uv_handle_t*>(p.handle), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    p.handle = nullptr;
    p.events = 0;
  }

  static void PollCb(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<PacketSocket*>(handle->data);
    if (self == nullptr || self->fd_ < 0) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Object keep_alive = self->Value();  // even if a callback calls close()
    Poll& p = handle == self->tx_poll_.handle ? self->tx_poll_ : self->rx_poll_;
    if (status < 0) {
      // libuv stops the handle on POLLERR (e.g. ENETDOWN when the link goes
      // down). Consume the socket error, re-arm, and let the owner go on.
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(&p == &self->tx_poll_ ? self->tx_fd_ : self->fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      uv_poll_start(handle, p.events, PollCb);
      events = p.events;
    }
    if (&p == &self->tx_poll_) {
      if ((events & UV_WRITABLE) && !self->on_writable_.IsEmpty()) {
        Napi::Function cb = self->on_writable_.Value();
        self->on_writable_.Reset();  // one-shot; cb may re-arm it
        self->UpdatePoll();
        self->Invoke(cb, keep_alive);
      }
      return;
    }
    if ((events & UV_READABLE) && self->fd_ >= 0 && !self->on_readable_.IsEmpty())
      self->Invoke(self->on_readable_.Value(), keep_alive);
  }

  void Invoke(Napi::Function cb, Napi::Object recv) {
    try {
      cb.MakeCallback(recv, {});
    } catch (const Napi::Error& e) {
      // No JS frame below us to catch it: treat like a throwing event listener.
      napi_fatal_exception(Env(), e.Value());
    }
  }

  std::string ifname_;
  int fd_ = -1;     // receives (ring); the one JS sees as .fd
  int tx_fd_ = -1;  // sends
  uint32_t rx_slots_ = 0, slot_size_ = 0;
  // Receive ring: frames next_.. are the kernel's or new; held_ frames from release_ on are JS's.
  uint8_t* ring_ = nullptr;
  uint32_t ring_frames_ = 0, frames_per_block_ = 1, block_size_ = 0, frame_size_ = 0;
  uint32_t next_ = 0, release_ = 0, held_ = 0;
  uint32_t* rx_offsets_ = nullptr;
  uint32_t* rx_lengths_ = nullptr;
  double* counters_ = nullptr;
  Napi::Reference<Napi::Value> rx_ref_, offsets_ref_, lengths_ref_, counters_ref_, failures_ref_;  // keep the memory we write into alive
  RingMapping* ring_mapping_ = nullptr;  // owned by the rx Buffer's finalizer
  int32_t* send_failures_ = nullptr;
  std::vector<struct mmsghdr> tx_msgs_;
  std::vector<struct iovec> tx_iov_;  // two per message: the arena part and a file map part
  std::vector<const uint8_t*> map_data_;
  std::vector<MappedBytes> map_bases_;
  Poll rx_poll_, tx_poll_;
  bool pinned_ = false;
  Napi::FunctionReference on_readable_, on_writable_;
};

}  // namespace

void InitPacketSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("PacketSocket", PacketSocket::Define(env));
  exports.Set("ETH_P_AOE", Napi::Number::New(env, kEthPAoe));
  Napi::Object layout = LayoutOf(env, exports, "packetSocket");
  layout.Set("counters", IndexObject(env, kCounterNames, kNumCounters));
  layout.Set("sendFailureCapacity", Napi::Number::New(env, kMaxSendFailures));
}

}  // namespace kvblade
