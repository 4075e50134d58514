{
  "targets": [
    {
      "target_name": "pinlab",
      "sources": [
        "native/core/status.cpp",
        "native/core/scheme.cpp",
        "native/core/stats.cpp",
        "native/core/mapped_array.cpp",
        "native/core/page_array.cpp",
        "native/core/debug_pins.cpp",
        "native/core/folio_ops.cpp",
        "native/core/pin_paths.cpp",
        "native/core/buddy_allocator.cpp",
        "native/core/allocator.cpp",
        "native/core/mm_ops.cpp",
        "native/core/page_table.cpp",
        "native/core/address_space.cpp",
        "native/core/migrate.cpp",
        "native/core/gup.cpp",
        "native/core/stress.cpp",
        "native/core/scan.cpp",
        "native/core/kernel_probe.cpp",
        "native/core/bench_engine.cpp",
        "native/core/bench_workloads.cpp",
        "native/core/snapshot.cpp",
        "native/core/population.cpp",
        "native/core/profile_engine.cpp",
        "native/addon/addon.cpp",
        "native/addon/errors.cpp",
        "native/addon/page_array_wrap.cpp",
        "native/addon/address_space_wrap.cpp",
        "native/addon/bench_worker.cpp",
        "native/addon/kernel_probe_worker.cpp",
        "native/addon/profile_worker.cpp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/core"
      ],
      "defines": ["NAPI_VERSION=9", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=c++17"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-O2"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++20"
      }
    }
  ]
}
