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

Napi::Object IndexObject(Napi::Env env, const char* const* names, size_t count) {
  Napi::Object o = Napi::Object::New(env);
  for (size_t i = 0; i < count; i++) o.Set(names[i], Napi::Number::New(env, static_cast<double>(i)));
  return o;
}

Napi::Object LayoutOf(Napi::Env env, Napi::Object exports, const char* module) {
  if (!exports.Has("layout")) exports.Set("layout", Napi::Object::New(env));
  Napi::Object layout = exports.Get("layout").As<Napi::Object>();
  if (!layout.Has(module)) layout.Set(module, Napi::Object::New(env));
  return layout.Get(module).As<Napi::Object>();
}

}  // namespace kvblade
