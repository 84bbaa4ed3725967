#include "common.h"

#include <cstring>

namespace kvblade {

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall,
                       const std::string& context) {
  const char* name = strerrorname_np(err);  // glibc >= 2.32
  std::string code = name ? name : "E" + std::to_string(err);
  std::string msg = context + ": " + syscall + ": " + strerror(err) + " (" + code + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

}  // namespace kvblade
