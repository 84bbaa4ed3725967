// Network interface changes from the kernel (rtnetlink, RTMGRP_LINK): an
// interface appearing, going up or down, changing its MTU or MAC, or going away.
// The packet loop then reads link facts from memory instead of asking the kernel
// (three ioctls) per frame, and a target whose interface comes back can serve
// again at once. Parsing uses the kernel's own netlink macros; JS gets one plain
// record per message.
#include "common.h"
#include "netns.h"

#include <uv.h>

#include <cerrno>
#include <cstring>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <vector>
#include <poll.h>
#include <sys/socket.h>

namespace kvblade {
namespace {

constexpr size_t kBufferBytes = 64 * 1024;
constexpr int kDumpTimeoutMs = 5000;

class LinkMonitor : public Napi::ObjectWrap<LinkMonitor> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeLinkMonitor",
                       {
                           InstanceMethod<&LinkMonitor::Dump>("dump"),
                           InstanceMethod<&LinkMonitor::Poll>("poll"),
                           InstanceMethod<&LinkMonitor::OnChange>("onChange"),
                           InstanceMethod<&LinkMonitor::Close>("close"),
                       });
  }

  // new NativeLinkMonitor(netnsPath | ''): subscribed to link events in that namespace.
  explicit LinkMonitor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LinkMonitor>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "NativeLinkMonitor(netns)");
    std::string netns = info[0].As<Napi::String>().Utf8Value();
    try {
      NetnsScope scope(netns);
      UniqueFd s(socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE));
      if (s.fd < 0) Fail("socket(AF_NETLINK)");
      int bytes = 1 << 20;  // room for a burst of events (many veths made at once)
      setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
      struct sockaddr_nl addr;
      memset(&addr, 0, sizeof addr);
      addr.nl_family = AF_NETLINK;
      addr.nl_groups = RTMGRP_LINK;
      if (bind(s.fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) < 0) Fail("bind(netlink)");
      fd_ = s.release();
    } catch (const SysError& e) {
      throw ErrnoError(env, e.err, e.syscall, "link monitor" + (netns.empty() ? std::string() : " in netns " + netns));
    }
    buffer_.resize(kBufferBytes);
  }

  ~LinkMonitor() override {
    ClosePoll();
    if (fd_ >= 0) close(fd_);
  }

 private:
  void CheckOpen(Napi::Env env) {
    if (fd_ < 0) throw ErrnoError(env, EBADF, "use", "link monitor is closed");
  }

  // dump() -> records of every interface now (and of any event queued meanwhile).
  // Blocks until the kernel has answered, which it does at once.
  Napi::Value Dump(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    struct {
      struct nlmsghdr header;
      struct ifinfomsg body;
    } request;
    memset(&request, 0, sizeof request);
    request.header.nlmsg_len = sizeof request;
    request.header.nlmsg_type = RTM_GETLINK;
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.header.nlmsg_seq = ++sequence_;
    request.body.ifi_family = AF_UNSPEC;
    if (send(fd_, &request, sizeof request, 0) < 0) throw ErrnoError(env, errno, "send", "link monitor dump");
    Napi::Array records = Napi::Array::New(env);
    bool done = false;
    while (!done) {
      struct pollfd p = {fd_, POLLIN, 0};
      int rc = ::poll(&p, 1, kDumpTimeoutMs);
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) throw ErrnoError(env, rc == 0 ? ETIMEDOUT : errno, "poll", "link monitor dump");
      ssize_t n = recv(fd_, buffer_.data(), buffer_.size(), 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0 && errno == ENOBUFS) continue;  // events lost; the dump still follows
      if (n < 0) throw ErrnoError(env, errno, "recv", "link monitor dump");
      done = Parse(env, static_cast<size_t>(n), records, sequence_);
    }
    return records;
  }

  // poll() -> records of the events pending now; [] when none (no blocking). A
  // record {overflow: true} says events were lost (the socket buffer filled): the
  // caller should dump() again.
  Napi::Value Poll(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    Napi::Array records = Napi::Array::New(env);
    for (;;) {
      ssize_t n = recv(fd_, buffer_.data(), buffer_.size(), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == ENOBUFS) {
        Napi::Object overflow = Napi::Object::New(env);
        overflow.Set("overflow", true);
        records.Set(records.Length(), overflow);
        continue;
      }
      if (n < 0) throw ErrnoError(env, errno, "recv", "link monitor");
      Parse(env, static_cast<size_t>(n), records, 0);
    }
    return records;
  }

  // Appends a record per link message in buffer_[0..n); true at the end of the dump `seq`.
  bool Parse(Napi::Env env, size_t n, Napi::Array records, uint32_t seq) {
    bool done = false;
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<struct nlmsghdr*>(buffer_.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
        if (seq != 0 && h->nlmsg_seq == seq) done = true;
        continue;
      }
      if (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) continue;
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg))) continue;
      auto* ifi = static_cast<struct ifinfomsg*>(NLMSG_DATA(h));
      Napi::Object r = Napi::Object::New(env);
      r.Set("removed", h->nlmsg_type == RTM_DELLINK);
      r.Set("index", ifi->ifi_index);
      r.Set("flags", static_cast<double>(ifi->ifi_flags));
      r.Set("up", (ifi->ifi_flags & IFF_UP) != 0 && (ifi->ifi_flags & IFF_RUNNING) != 0);
      int attr_left = static_cast<int>(IFLA_PAYLOAD(h));
      for (auto* a = IFLA_RTA(ifi); RTA_OK(a, attr_left); a = RTA_NEXT(a, attr_left)) {
        size_t len = RTA_PAYLOAD(a);
        const char* data = static_cast<const char*>(RTA_DATA(a));
        if (a->rta_type == IFLA_IFNAME && len > 0) r.Set("name", std::string(data, strnlen(data, len)));
        if (a->rta_type == IFLA_MTU && len >= sizeof(uint32_t)) {
          uint32_t mtu;
          memcpy(&mtu, data, sizeof mtu);
          r.Set("mtu", mtu);
        }
        if (a->rta_type == IFLA_ADDRESS && len == 6) r.Set("mac", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(data), 6));
      }
      records.Set(records.Length(), r);
    }
    return done;
  }

  // onChange(cb): cb() runs on the JS thread whenever events are pending; it calls poll().
  void OnChange(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "onChange(cb): cb must be a function");
    on_change_ = Napi::Persistent(info[0].As<Napi::Function>());
    if (poll_ != nullptr) return;
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no uv loop");
    poll_ = new uv_poll_t;
    int rc = uv_poll_init_socket(loop, poll_, fd_);
    if (rc < 0) {
      delete poll_;
      poll_ = nullptr;
      throw ErrnoError(env, -rc, "uv_poll_init_socket", "link monitor");
    }
    poll_->data = this;
    uv_poll_start(poll_, UV_READABLE, PollCb);
    // Link events alone must not keep the process alive.
    uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    Ref();  // while the kernel can call us back, JS must not collect this object
  }

  static void PollCb(uv_poll_t* handle, int /*status*/, int /*events*/) {
    auto* self = static_cast<LinkMonitor*>(handle->data);
    if (self == nullptr || self->fd_ < 0 || self->on_change_.IsEmpty()) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Object keep_alive = self->Value();
    try {
      self->on_change_.Value().MakeCallback(keep_alive, {});
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  void ClosePoll() {
    if (poll_ == nullptr) return;
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
    Unref();
  }

  // close(): idempotent.
  void Close(const Napi::CallbackInfo&) {
    on_change_.Reset();
    ClosePoll();
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  int fd_ = -1;
  uint32_t sequence_ = 0;
  std::vector<char> buffer_;
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference on_change_;
};

}  // namespace

void InitLinkMonitor(Napi::Env env, Napi::Object exports) {
  exports.Set("LinkMonitor", LinkMonitor::Define(env));
}

}  // namespace kvblade
