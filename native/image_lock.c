// Byte-range locks for QEMU-compatible image locking (src/io/image-lock.ts).
//
// Node has no fcntl(2). This addon exposes the two calls the lock protocol
// needs, on open-file-description (OFD) locks, which belong to the open file
// rather than to the process: closing some other descriptor of the same file
// does not drop them, and two descriptors in one process conflict like two
// processes would. Errors come back as errno numbers; the TypeScript side
// turns them into typed errors that name the file.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <node_api.h>
#include "socket_buffers.h"

#define KIND_UNLOCK 0
#define KIND_SHARED 1
#define KIND_EXCLUSIVE 2

static short lock_type(int kind) {
  if (kind == KIND_SHARED) return F_RDLCK;
  if (kind == KIND_EXCLUSIVE) return F_WRLCK;
  return F_UNLCK;
}

static int read_args(napi_env env, napi_callback_info info, int64_t out[4]) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4) return 0;
  for (int i = 0; i < 4; i++) {
    if (napi_get_value_int64(env, argv[i], &out[i]) != napi_ok) return 0;
  }
  return 1;
}

static napi_value int_value(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

// The byte range and kind of setLock/testLock's arguments (fd, start, length, kind) as a struct flock.
// l_pid stays 0, as OFD locks require.
static void fill_flock(struct flock *fl, const int64_t a[4]) {
  memset(fl, 0, sizeof *fl);
  fl->l_type = lock_type((int)a[3]);
  fl->l_whence = SEEK_SET;
  fl->l_start = (off_t)a[1];
  fl->l_len = (off_t)a[2];
}

// setLock(fd, start, length, kind) -> 0, or the errno of F_OFD_SETLK.
static napi_value set_lock(napi_env env, napi_callback_info info) {
  int64_t a[4];
  if (!read_args(env, info, a)) {
    napi_throw_type_error(env, NULL, "setLock(fd, start, length, kind) takes four integers");
    return NULL;
  }
#ifdef F_OFD_SETLK
  struct flock fl;
  fill_flock(&fl, a);
  int r = fcntl((int)a[0], F_OFD_SETLK, &fl);
  return int_value(env, r == -1 ? errno : 0);
#else
  return int_value(env, ENOTSUP);
#endif
}

// testLock(fd, start, length, kind) -> 0 when a lock of that kind could be
// taken, -1 when another open file holds a conflicting lock, or the errno of
// F_OFD_GETLK.
static napi_value test_lock(napi_env env, napi_callback_info info) {
  int64_t a[4];
  if (!read_args(env, info, a)) {
    napi_throw_type_error(env, NULL, "testLock(fd, start, length, kind) takes four integers");
    return NULL;
  }
#ifdef F_OFD_GETLK
  struct flock fl;
  fill_flock(&fl, a);
  if (fcntl((int)a[0], F_OFD_GETLK, &fl) == -1) return int_value(env, errno);
  return int_value(env, fl.l_type == F_UNLCK ? 0 : -1);
#else
  return int_value(env, ENOTSUP);
#endif
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"setLock", NULL, set_lock, NULL, NULL, NULL, napi_default, NULL},
      {"testLock", NULL, test_lock, NULL, NULL, NULL, napi_default, NULL},
      {"setSocketBuffers", NULL, set_socket_buffers, NULL, NULL, NULL, napi_default, NULL},
      {"getSocketBuffers", NULL, get_socket_buffers, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
