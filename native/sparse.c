// Allocation of backing files (src/io/sparse.ts): where a file holds data and
// where it has holes, and making a range a hole or zeroes without writing it.
//
// Node has neither lseek(2) with SEEK_DATA/SEEK_HOLE nor fallocate(2). The
// allocation map is synchronous: a pair of lseek calls per data run is
// metadata work that answers in microseconds, and a caller that takes its
// answer in the same event-loop turn as it looks at the change logs sees one
// consistent instant (src/worker/allocation.ts relies on that). fallocate can
// take longer (a punch frees every block of the range), so it runs on libuv's
// thread pool and calls back with an errno.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <node_api.h>

#define MODE_PUNCH 1
#define MODE_ZERO_RANGE 2

static napi_value int_value(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

// dataRuns(fd, start, end, maxRuns) -> [s0, e0, s1, e1, ...]: the data runs of
// the file that overlap [start, end), clipped to it, at most maxRuns of them
// (the caller treats the answer as ending at the last run's end when it got
// maxRuns). Everything else in [start, end) reads as zeroes: a hole, or
// beyond the end of the file. A file system without SEEK_DATA support (EINVAL)
// reports the whole range as data, which is always a correct answer.
// On another failure: a number, the errno.
static napi_value data_runs(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int64_t a[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4) goto usage;
  for (int i = 0; i < 4; i++) {
    if (napi_get_value_int64(env, argv[i], &a[i]) != napi_ok) goto usage;
  }
  int fd = (int)a[0];
  off_t pos = (off_t)a[1];
  off_t end = (off_t)a[2];
  int64_t max_runs = a[3];
  napi_value out;
  napi_create_array(env, &out);
  uint32_t n = 0;
  while (pos < end && (int64_t)(n / 2) < max_runs) {
    off_t d = lseek(fd, pos, SEEK_DATA);
    if (d == (off_t)-1) {
      if (errno == ENXIO) break;  // no data at or after pos
      if (errno == EINVAL && n == 0) {
        // No SEEK_DATA here: all data.
        napi_set_element(env, out, n++, int_value(env, pos));
        napi_set_element(env, out, n++, int_value(env, end));
        break;
      }
      return int_value(env, errno);
    }
    if (d >= end) break;
    off_t h = lseek(fd, d, SEEK_HOLE);
    if (h == (off_t)-1) return int_value(env, errno);
    if (h > end) h = end;
    napi_set_element(env, out, n++, int_value(env, d));
    napi_set_element(env, out, n++, int_value(env, h));
    pos = h;
  }
  return out;
usage:
  napi_throw_type_error(env, NULL, "dataRuns(fd, start, end, maxRuns) takes four integers");
  return NULL;
}

typedef struct {
  napi_async_work work;
  napi_ref callback;
  int fd;
  int mode;
  off_t offset;
  off_t length;
  int err;
} falloc_job;

static void falloc_execute(napi_env env, void *data) {
  (void)env;
  falloc_job *job = data;
  int flags = FALLOC_FL_KEEP_SIZE | (job->mode == MODE_PUNCH ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
  int r;
  do {
    r = fallocate(job->fd, flags, job->offset, job->length);
  } while (r == -1 && errno == EINTR);
  job->err = r == -1 ? errno : 0;
}

static void falloc_complete(napi_env env, napi_status status, void *data) {
  falloc_job *job = data;
  napi_value cb, global, arg;
  napi_get_reference_value(env, job->callback, &cb);
  napi_get_global(env, &global);
  arg = int_value(env, status == napi_ok ? job->err : ECANCELED);
  napi_call_function(env, global, cb, 1, &arg, NULL);
  napi_delete_reference(env, job->callback);
  napi_delete_async_work(env, job->work);
  free(job);
}

// fallocate(fd, mode, offset, length, callback(errno)): mode 1 punches a hole
// (PUNCH_HOLE|KEEP_SIZE), mode 2 zeroes the range keeping it allocated
// (ZERO_RANGE|KEEP_SIZE). The file size never changes. errno 0 is success;
// EOPNOTSUPP means this file system cannot do it (the caller writes zeroes).
static napi_value falloc(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int64_t a[4];
  napi_valuetype cbtype;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5) goto usage;
  for (int i = 0; i < 4; i++) {
    if (napi_get_value_int64(env, argv[i], &a[i]) != napi_ok) goto usage;
  }
  if (napi_typeof(env, argv[4], &cbtype) != napi_ok || cbtype != napi_function) goto usage;
  if (a[1] != MODE_PUNCH && a[1] != MODE_ZERO_RANGE) goto usage;
  falloc_job *job = calloc(1, sizeof *job);
  if (!job) {
    napi_throw_error(env, NULL, "fallocate: out of memory");
    return NULL;
  }
  job->fd = (int)a[0];
  job->mode = (int)a[1];
  job->offset = (off_t)a[2];
  job->length = (off_t)a[3];
  napi_value name;
  napi_create_string_utf8(env, "vsnap.fallocate", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[4], 1, &job->callback);
  napi_create_async_work(env, NULL, name, falloc_execute, falloc_complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return NULL;
usage:
  napi_throw_type_error(env, NULL, "fallocate(fd, mode 1|2, offset, length, callback) takes four integers and a function");
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"dataRuns", NULL, data_runs, NULL, NULL, NULL, napi_default, NULL},
      {"fallocate", NULL, falloc, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
