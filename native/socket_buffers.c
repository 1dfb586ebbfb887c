// Larger kernel buffers on the coordinator <-> worker data link (a unix
// socketpair that child_process creates): Node has no setsockopt. With the
// default 208 KiB send buffer a 1 MiB frame left the coordinator in ~20
// write calls, each waiting for the worker to drain the socket (strace of a
// 1 MiB sequential-write run); with a few MiB it leaves in one writev.
#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <node_api.h>
#include "socket_buffers.h"

// setSocketBuffers(fd, bytes) -> 0, or the errno of the first setsockopt that
// failed. The kernel caps the value at net.core.wmem_max / rmem_max (and
// doubles it for its own bookkeeping); asking for more is not an error.
napi_value set_socket_buffers(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int64_t fd, bytes;
  napi_value out;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int64(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &bytes) != napi_ok ||
      bytes <= 0 || bytes > INT32_MAX) {
    napi_throw_type_error(env, NULL, "setSocketBuffers(fd, bytes) takes a descriptor and a positive size");
    return NULL;
  }
  int v = (int)bytes;
  int err = 0;
  if (setsockopt((int)fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == -1) err = errno;
  else if (setsockopt((int)fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v) == -1) err = errno;
  napi_create_int32(env, err, &out);
  return out;
}
