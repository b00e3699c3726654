/*
 * nftables in-process, for src/kernel/nft.ts: libnftables (the library the
 * `nft` program is a thin front of) run on a throwaway pthread that setns()es
 * into the target network namespace first.
 *
 * Why: a container's load-balancer rules live in its own netns (as Docker's
 * do), so a change to a service touches every sandbox on its networks. A
 * spawned `nsenter --net=... nft -f -` costs two execs and 5-15 ms of CPU
 * per sandbox; the library call costs well under a millisecond, so one more
 * service beside fifty stays cheap.
 *
 * libnftables is loaded with dlopen (Debian's libnftables1 comes with the
 * nftables package; its headers are not installed, so the five functions
 * used are declared here). Without it, nftAvailable() says why and the
 * caller spawns nft as before.
 *
 * Each call has its own nft context. By default a call is napi async work
 * (a libuv pool thread, which starts the pthread and waits for it) and calls
 * are serialised by a mutex (one transaction at a time, as before). With
 * `shared`, the call runs on a detached pthread of its own (see
 * shared_thread) and only the context's creation takes the mutex
 * (libnftables' one-time initialisation in nft_ctx_new is not thread-safe;
 * a context's use and release touch only that context);
 * the parse, the netlink batch and the kernel's commit run concurrently with
 * other calls: the kernel's nf_tables commit lock is per netns, so calls into
 * different sandboxes do not wait for one another (a commit that unregisters
 * a hook waits for an RCU grace period: serialised, those waits add up).
 *
 * Exports:
 *   nftAvailable()               null when the library is usable, else why not
 *   nftRun(path|null, script, cb[, shared]) runs `script` as one transaction (as
 *                                `nft -f`) inside the netns at `path` (null: the
 *                                calling JS thread's); throws when that netns cannot
 *                                be opened; cb(err|null, rc, output, errors) on the
 *                                JS thread. shared: see above (callers keep at most
 *                                one call per netns in flight)
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct nft_ctx;
static struct {
  int state; /* 0 not tried, 1 loaded, -1 failed */
  char why[256];
  struct nft_ctx *(*ctx_new)(uint32_t flags);
  void (*ctx_free)(struct nft_ctx *ctx);
  int (*buffer_output)(struct nft_ctx *ctx);
  int (*buffer_error)(struct nft_ctx *ctx);
  const char *(*get_output)(struct nft_ctx *ctx);
  const char *(*get_error)(struct nft_ctx *ctx);
  int (*run_buffer)(struct nft_ctx *ctx, const char *buf);
} lib;
static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;

static int load_lib(void) {
  pthread_mutex_lock(&lib_lock);
  if (lib.state == 0) {
    void *h = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      snprintf(lib.why, sizeof lib.why, "%s", dlerror());
      lib.state = -1;
    } else {
#define SYM(field, name)                                                  \
  *(void **)(&lib.field) = dlsym(h, name);                                \
  if (!lib.field && lib.state == 0) {                                     \
    snprintf(lib.why, sizeof lib.why, "libnftables.so.1 has no %s", name); \
    lib.state = -1;                                                       \
  }
      SYM(ctx_new, "nft_ctx_new")
      SYM(ctx_free, "nft_ctx_free")
      SYM(buffer_output, "nft_ctx_buffer_output")
      SYM(buffer_error, "nft_ctx_buffer_error")
      SYM(get_output, "nft_ctx_get_output_buffer")
      SYM(get_error, "nft_ctx_get_error_buffer")
      SYM(run_buffer, "nft_run_cmd_from_buffer")
#undef SYM
      if (lib.state == 0) lib.state = 1;
    }
  }
  int ok = lib.state == 1;
  pthread_mutex_unlock(&lib_lock);
  return ok;
}

typedef struct {
  /* The target netns, opened on the JS thread at call time: with a null path, the JS thread's own (a libuv pool
     thread may sit in another netns: tests move only their main thread into a lab). */
  int nsfd;
  int shared;
  char *script;
  /* results */
  int sys_err;  /* errno of setns/open/pthread_create, or -1 for "library missing" */
  char where[128];
  int rc;
  char *out;
  char *errs;
  napi_async_work work;
  napi_ref cb;
  /* shared calls: the completion, called from the job's own thread */
  napi_threadsafe_function tsfn;
} nftjob_t;

static void *nft_thread(void *arg) {
  nftjob_t *j = arg;
  if (setns(j->nsfd, CLONE_NEWNET) < 0) { j->sys_err = errno; snprintf(j->where, sizeof j->where, "setns"); return NULL; }
  pthread_mutex_lock(&lib_lock);
  /* The context opens its netlink socket here, inside the target netns. */
  struct nft_ctx *ctx = lib.ctx_new(0);
  if (!ctx) {
    pthread_mutex_unlock(&lib_lock);
    j->sys_err = ENOMEM;
    snprintf(j->where, sizeof j->where, "nft_ctx_new");
    return NULL;
  }
  lib.buffer_output(ctx);
  lib.buffer_error(ctx);
  if (j->shared) pthread_mutex_unlock(&lib_lock);
  j->rc = lib.run_buffer(ctx, j->script);
  const char *o = lib.get_output(ctx);
  const char *e = lib.get_error(ctx);
  j->out = strdup(o ? o : "");
  j->errs = strdup(e ? e : "");
  /* Freeing closes the context's netlink socket, and the kernel's release of a socket that changed nf_tables
     waits for its (global) destroy work: an RCU grace period, ~1-12 ms of no CPU. Shared calls do it outside
     the mutex, so calls into other netns wait for the same grace period instead of each for its own. */
  if (j->shared) {
    lib.ctx_free(ctx);
    return NULL;
  }
  lib.ctx_free(ctx);
  pthread_mutex_unlock(&lib_lock);
  return NULL;
}

/* On a libuv pool thread: a fresh pthread does the namespace switch, so the pool thread never changes netns. */
static void nft_execute(napi_env env, void *data) {
  (void)env;
  nftjob_t *j = data;
  if (!load_lib()) { j->sys_err = -1; return; }
  pthread_t t;
  int rc = pthread_create(&t, NULL, nft_thread, j);
  if (rc != 0) { j->sys_err = rc; snprintf(j->where, sizeof j->where, "pthread_create"); return; }
  pthread_join(t, NULL);
}

static void free_job(nftjob_t *j) {
  if (j->nsfd >= 0) close(j->nsfd);
  free(j->script);
  free(j->out);
  free(j->errs);
  free(j);
}

static void job_result(napi_env env, nftjob_t *j, napi_status status, napi_value argv[4]);

static void nft_complete(napi_env env, napi_status status, void *data) {
  nftjob_t *j = data;
  napi_value cb, global, argv[4];
  napi_get_reference_value(env, j->cb, &cb);
  napi_get_global(env, &global);
  job_result(env, j, status, argv);
  napi_call_function(env, global, cb, 4, argv, NULL);
  napi_delete_reference(env, j->cb);
  napi_delete_async_work(env, j->work);
  free_job(j);
}

/* The callback's arguments for a finished job (on the JS thread). */
static void job_result(napi_env env, nftjob_t *j, napi_status status, napi_value argv[4]) {
  if (status != napi_ok || j->sys_err != 0) {
    char msg[512];
    if (status != napi_ok) snprintf(msg, sizeof msg, "nft: async work failed (%d)", (int)status);
    else if (j->sys_err == -1) snprintf(msg, sizeof msg, "libnftables: %s", lib.why);
    else snprintf(msg, sizeof msg, "%s: %s", j->where, strerror(j->sys_err));
    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &argv[0]);
    napi_get_null(env, &argv[1]);
    napi_get_null(env, &argv[2]);
    napi_get_null(env, &argv[3]);
  } else {
    napi_get_null(env, &argv[0]);
    napi_create_int32(env, j->rc, &argv[1]);
    napi_create_string_utf8(env, j->out ? j->out : "", NAPI_AUTO_LENGTH, &argv[2]);
    napi_create_string_utf8(env, j->errs ? j->errs : "", NAPI_AUTO_LENGTH, &argv[3]);
  }
}

/*
 * Shared calls run on a detached pthread of their own, not on the libuv pool: a transaction that deletes
 * something waits in the kernel for an RCU grace period (~1-12 ms, no CPU), and 16 sandboxes waiting at
 * once would hold the pool's 4 threads (and every fs call and DNS lookup queued behind them). The result
 * comes back through a threadsafe function.
 */
static void shared_call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  nftjob_t *j = data;
  if (env != NULL && cb != NULL) {
    napi_value global, argv[4];
    napi_get_global(env, &global);
    job_result(env, j, napi_ok, argv);
    napi_call_function(env, global, cb, 4, argv, NULL);
  }
  free_job(j);
}

static void *shared_thread(void *arg) {
  nftjob_t *j = arg;
  nft_thread(j);
  napi_threadsafe_function tsfn = j->tsfn;
  /* The queue is unbounded: this never blocks; the JS thread frees the job after the callback. */
  napi_call_threadsafe_function(tsfn, j, napi_tsfn_nonblocking);
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  return NULL;
}

static char *dup_string(napi_env env, napi_value v) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

static napi_value js_nft_run(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype t0, t1, t2;
  if (argc < 3 || napi_typeof(env, argv[0], &t0) != napi_ok || napi_typeof(env, argv[1], &t1) != napi_ok ||
      napi_typeof(env, argv[2], &t2) != napi_ok || (t0 != napi_string && t0 != napi_null) || t1 != napi_string ||
      t2 != napi_function) {
    napi_throw_type_error(env, NULL, "nftRun(path|null, script, callback[, shared])");
    return NULL;
  }
  bool shared = false;
  if (argc >= 4) {
    napi_valuetype t3;
    if (napi_typeof(env, argv[3], &t3) != napi_ok || (t3 != napi_boolean && t3 != napi_undefined)) {
      napi_throw_type_error(env, NULL, "nftRun(path|null, script, callback[, shared])");
      return NULL;
    }
    if (t3 == napi_boolean) napi_get_value_bool(env, argv[3], &shared);
  }
  nftjob_t *j = calloc(1, sizeof *j);
  if (!j) { napi_throw_error(env, "ENOMEM", "nftRun: out of memory"); return NULL; }
  j->nsfd = -1;
  j->shared = shared;
  char *path = t0 == napi_string ? dup_string(env, argv[0]) : strdup("/proc/thread-self/ns/net");
  j->script = dup_string(env, argv[1]);
  if (!path || !j->script) {
    free(path);
    free_job(j);
    napi_throw_error(env, "ENOMEM", "nftRun: out of memory");
    return NULL;
  }
  j->nsfd = open(path, O_RDONLY | O_CLOEXEC);
  if (j->nsfd < 0) {
    char msg[600];
    snprintf(msg, sizeof msg, "open netns %s: %s", path, strerror(errno));
    free(path);
    free_job(j);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  free(path);
  napi_value name;
  napi_create_string_utf8(env, "cove.nftRun", NAPI_AUTO_LENGTH, &name);
  if (shared) {
    if (!load_lib()) {
      /* reported through the callback, as the pool path does */
      j->sys_err = -1;
    }
    if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, NULL, NULL, shared_call_js, &j->tsfn) !=
        napi_ok) {
      free_job(j);
      napi_throw_error(env, NULL, "nftRun: cannot create the completion");
      return NULL;
    }
    if (j->sys_err != 0) {
      napi_call_threadsafe_function(j->tsfn, j, napi_tsfn_nonblocking);
      napi_release_threadsafe_function(j->tsfn, napi_tsfn_release);
      return NULL;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* libnftables' parser and netlink buffers fit well within 1 MiB */
    pthread_attr_setstacksize(&attr, 1 << 20);
    pthread_t t;
    int rc = pthread_create(&t, &attr, shared_thread, j);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
      j->sys_err = rc;
      snprintf(j->where, sizeof j->where, "pthread_create");
      napi_call_threadsafe_function(j->tsfn, j, napi_tsfn_nonblocking);
      napi_release_threadsafe_function(j->tsfn, napi_tsfn_release);
    }
    return NULL;
  }
  napi_create_reference(env, argv[2], 1, &j->cb);
  if (napi_create_async_work(env, NULL, name, nft_execute, nft_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    napi_delete_reference(env, j->cb);
    free_job(j);
    napi_throw_error(env, NULL, "nftRun: cannot queue work");
    return NULL;
  }
  return NULL;
}

static napi_value js_nft_available(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  if (load_lib()) napi_get_null(env, &r);
  else napi_create_string_utf8(env, lib.why, NAPI_AUTO_LENGTH, &r);
  return r;
}

void cove_nft_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "nftRun", NULL, js_nft_run, NULL, NULL, NULL, napi_default, NULL },
    { "nftAvailable", NULL, js_nft_available, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
