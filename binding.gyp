{
  "targets": [
    {
      "target_name": "vsnap_native",
      "sources": ["native/image_lock.c", "native/socket_buffers.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror"]
    },
    {
      "target_name": "vsnap_sparse",
      "sources": ["native/sparse.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror"]
    }
  ]
}
