// Kernel buffer sizes of the coordinator <-> worker data link (a unix
// socketpair that child_process creates): Node has no setsockopt. With the
// default 208 KiB send buffer a 1 MiB frame left the coordinator in ~20
// write calls, each waiting for the worker to drain the socket (strace of a
// 1 MiB sequential-write run); with a few MiB it leaves in one writev.
// Each direction is sized on its own (src/transport/process.ts): on a unix
// stream socket the bytes in flight are charged to the sender's SO_SNDBUF.
#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <node_api.h>
#include "socket_buffers.h"

// setSocketBuffers(fd, sendBytes, receiveBytes) -> 0, or the errno of the
// first setsockopt that failed; a size of 0 leaves that buffer as it is. The
// kernel caps a value at net.core.wmem_max / rmem_max (and doubles it for its
// own bookkeeping); asking for more is not an error.
napi_value set_socket_buffers(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int64_t fd, snd, rcv;
  napi_value out;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_value_int64(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &snd) != napi_ok ||
      napi_get_value_int64(env, argv[2], &rcv) != napi_ok || snd < 0 || rcv < 0 || snd > INT32_MAX || rcv > INT32_MAX ||
      (snd == 0 && rcv == 0)) {
    napi_throw_type_error(env, NULL, "setSocketBuffers(fd, send, receive) takes a descriptor and a positive size for at least one direction");
    return NULL;
  }
  int err = 0;
  int v = (int)snd;
  if (snd > 0 && setsockopt((int)fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == -1) err = errno;
  v = (int)rcv;
  if (err == 0 && rcv > 0 && setsockopt((int)fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v) == -1) err = errno;
  napi_create_int32(env, err, &out);
  return out;
}

// getSocketBuffers(fd) -> [send, receive] as the kernel holds them (its
// doubled values), or a negative errno in place of both when fd is no socket.
napi_value get_socket_buffers(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int64_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || napi_get_value_int64(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "getSocketBuffers(fd) takes a descriptor");
    return NULL;
  }
  int vals[2] = {0, 0};
  int opts[2] = {SO_SNDBUF, SO_RCVBUF};
  for (int i = 0; i < 2; i++) {
    socklen_t len = sizeof vals[i];
    if (getsockopt((int)fd, SOL_SOCKET, opts[i], &vals[i], &len) == -1) vals[0] = vals[1] = -errno;
  }
  napi_value out, a, b;
  napi_create_array_with_length(env, 2, &out);
  napi_create_int32(env, vals[0], &a);
  napi_create_int32(env, vals[1], &b);
  napi_set_element(env, out, 0, a);
  napi_set_element(env, out, 1, b);
  return out;
}
