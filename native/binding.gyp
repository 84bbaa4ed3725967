{
  # One addon, one .cc per concern: addon.cc registers each module's exports.
  "targets": [
    {
      "target_name": "kvblade_native",
      "sources": [
        "src/addon.cc",
        "src/errors.cc",
        "src/packet_socket.cc",
        "src/block_device.cc",
        "src/memory.cc",
        "src/fault_guard.cc",
        "src/uring.cc",
        "src/link_monitor.cc",
        "src/file_lock.cc"
      ],
      "libraries": ["-luring"],
      # include_dir is relative to the cwd, which gyp sets to this directory
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-O3", "-fno-exceptions"],
      "cflags_cc!": ["-O3", "-fno-exceptions", "-std=gnu++17"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "cflags_cc": ["-std=c++17", "-fexceptions"]
    }
  ]
}
