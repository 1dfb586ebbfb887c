{
  "targets": [
    {
      "target_name": "vsnap_native",
      "sources": ["native/image_lock.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror"]
    }
  ]
}
