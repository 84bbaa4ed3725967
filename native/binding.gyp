{
  # One addon, one .cc per concern: addon.cc registers each module's exports.
  # A future disk-I/O path (io_uring / vectored pread/pwrite) is another
  # src/*.cc with its own Init* function, added to "sources" below.
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
        "src/disk_ring.cc"
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
