/*
 * Starting a detached helper (conmon, cove-logger) without fork(): for src/kernel/spawn.ts.
 *
 * libuv's uv_spawn (under child_process.spawn) fork()s the daemon, which copies
 * the page tables of every private mapping (the V8 heap: tens of MB), and then
 * blocks the event loop until the child has exec'd. That grows with the
 * daemon's memory: 2.8 ms from a 46 MB node, 22 ms from a 150 MB one, here
 * under load. glibc's posix_spawn clones with CLONE_VM|CLONE_VFORK instead: the
 * child borrows the parent's memory until its exec, so the cost is the exec.
 *
 * spawnDetached(file, argv, envp, stdio, onExit, cwd?) -> [pid, fd for stdio[0], fd for stdio[1], ...]
 *   file     absolute path of the program
 *   cwd      the child's working directory (string), or the daemon's when absent/null
 *   stdio[i] 0: the child's fd i is /dev/null (parent's entry -1)
 *            1: a socketpair (as libuv's 'pipe'); the parent's end is returned,
 *               close-on-exec, for `new net.Socket({ fd })`
 *   The child runs in a new session (setsid, as `detached: true`), with every
 *   signal's default action and an empty signal mask (Node ignores SIGPIPE; a
 *   container must not inherit that), and no other fd of the daemon (all are
 *   close-on-exec).
 *   onExit(code, signal) is called once the child has ended and been reaped
 *   (code -1 when a signal ended it). The wait is a pidfd polled on the
 *   event loop, unref'd: it never keeps the daemon alive, like child.unref().
 *   Throws Error with code "E<errno>" (ENOENT: no such program) when it cannot start.
 *
 * mkfifo(path, mode): a FIFO for a helper to read (cove-logger's), made before the helper runs, so
 * the writer that opens it next (conmon) finds a FIFO whether or not the helper got there first.
 * An existing FIFO is fine; throws Error with code "E<errno>" otherwise.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define SP_MAX_ARGS 256
#define SP_MAX_STDIO 8
#define SP_MAX_STR 8192

typedef struct {
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  uv_poll_t poll;
  int pidfd;
} waiter_t;

static napi_value sp_throw(napi_env env, int err, const char *where) {
  char msg[SP_MAX_STR + 64], code[32];
  snprintf(msg, sizeof msg, "%s: %s", where, strerror(err));
  if (err == ENOENT) snprintf(code, sizeof code, "ENOENT");
  else if (err == EACCES) snprintf(code, sizeof code, "EACCES");
  else if (err == EMFILE) snprintf(code, sizeof code, "EMFILE");
  else snprintf(code, sizeof code, "E%d", err);
  napi_throw_error(env, code, msg);
  return NULL;
}

/* A JS array of strings as a NULL-terminated vector (freed with free_strv). */
static char **get_strv(napi_env env, napi_value arr, const char *what) {
  uint32_t n = 0;
  bool is_array = false;
  napi_is_array(env, arr, &is_array);
  if (!is_array || napi_get_array_length(env, arr, &n) != napi_ok || n > SP_MAX_ARGS) {
    napi_throw_type_error(env, NULL, what);
    return NULL;
  }
  char **v = calloc(n + 1, sizeof *v);
  if (!v) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value s;
    size_t len = 0;
    napi_get_element(env, arr, i, &s);
    if (napi_get_value_string_utf8(env, s, NULL, 0, &len) != napi_ok || len >= SP_MAX_STR) {
      for (uint32_t j = 0; j < i; j++) free(v[j]);
      free(v);
      napi_throw_type_error(env, NULL, what);
      return NULL;
    }
    v[i] = malloc(len + 1);
    napi_get_value_string_utf8(env, s, v[i], len + 1, &len);
  }
  return v;
}

static void free_strv(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++) free(*p);
  free(v);
}

static void on_closed(uv_handle_t *h) {
  waiter_t *w = h->data;
  free(w);
}

static void on_exit_poll(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  waiter_t *w = h->data;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PIDFD, (id_t)w->pidfd, &si, WEXITED | WNOHANG) < 0) {
    if (errno == EINTR || errno == EAGAIN) return;
  } else if (si.si_pid == 0) {
    return; /* not ended yet */
  }
  int code = -1, sig = 0;
  if (si.si_code == CLD_EXITED) code = si.si_status;
  else if (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) sig = si.si_status;
  uv_poll_stop(&w->poll);
  close(w->pidfd);
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value cb, recv, argv[2], result;
    if (napi_get_reference_value(env, w->callback, &cb) == napi_ok && cb) {
      napi_get_global(env, &recv);
      napi_create_int32(env, code, &argv[0]);
      napi_create_int32(env, sig, &argv[1]);
      if (napi_make_callback(env, w->async, recv, cb, 2, argv, &result) == napi_pending_exception) {
        napi_value exc;
        napi_get_and_clear_last_exception(env, &exc);
        napi_fatal_exception(env, exc);
      }
    }
    napi_close_handle_scope(env, scope);
  }
  napi_delete_reference(env, w->callback);
  napi_async_destroy(env, w->async);
  uv_close((uv_handle_t *)&w->poll, on_closed);
}

static napi_value js_spawn_detached(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) {
    napi_throw_type_error(env, NULL, "spawnDetached(file, argv, envp, stdio, onExit, cwd?)");
    return NULL;
  }
  char cwd[4096] = "";
  if (argc > 5) {
    napi_valuetype cwd_type;
    napi_typeof(env, argv[5], &cwd_type);
    size_t clen = 0;
    if (cwd_type == napi_string &&
        (napi_get_value_string_utf8(env, argv[5], cwd, sizeof cwd, &clen) != napi_ok || clen >= sizeof cwd - 1)) {
      napi_throw_type_error(env, NULL, "cwd must be a path");
      return NULL;
    }
  }
  char file[4096];
  size_t flen = 0;
  if (napi_get_value_string_utf8(env, argv[0], file, sizeof file, &flen) != napi_ok || flen >= sizeof file - 1) {
    napi_throw_type_error(env, NULL, "file must be a path");
    return NULL;
  }
  uint32_t nstdio = 0;
  if (napi_get_array_length(env, argv[3], &nstdio) != napi_ok || nstdio < 3 || nstdio > SP_MAX_STDIO) {
    napi_throw_type_error(env, NULL, "stdio must list 3 to 8 entries");
    return NULL;
  }
  char **args = get_strv(env, argv[1], "argv must be strings");
  if (!args) return NULL;
  char **envp = get_strv(env, argv[2], "envp must be strings");
  if (!envp) {
    free_strv(args);
    return NULL;
  }

  int child_fd[SP_MAX_STDIO], parent_fd[SP_MAX_STDIO];
  for (uint32_t i = 0; i < nstdio; i++) child_fd[i] = parent_fd[i] = -1;
  int err = 0;
  const char *where = "spawn";
  for (uint32_t i = 0; i < nstdio && !err; i++) {
    napi_value v;
    int32_t kind = 0;
    napi_get_element(env, argv[3], i, &v);
    napi_get_value_int32(env, v, &kind);
    int fd = -1;
    if (kind == 1) {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        err = errno;
        where = "socketpair";
        break;
      }
      parent_fd[i] = sv[0];
      fd = sv[1];
    } else {
      fd = open("/dev/null", O_RDWR | O_CLOEXEC);
      if (fd < 0) {
        err = errno;
        where = "open /dev/null";
        break;
      }
    }
    /* Above every target number, so one dup2 never overwrites the source of a later one. */
    child_fd[i] = fcntl(fd, F_DUPFD_CLOEXEC, (int)nstdio);
    if (child_fd[i] < 0) {
      err = errno;
      where = "dup";
    }
    close(fd);
  }

  pid_t pid = -1;
  if (!err) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    for (uint32_t i = 0; i < nstdio; i++) posix_spawn_file_actions_adddup2(&fa, child_fd[i], (int)i);
    if (cwd[0]) posix_spawn_file_actions_addchdir_np(&fa, cwd);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    err = posix_spawn(&pid, file, &fa, &attr, args, envp);
    where = file;
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
  }
  for (uint32_t i = 0; i < nstdio; i++)
    if (child_fd[i] >= 0) close(child_fd[i]);
  free_strv(args);
  free_strv(envp);
  if (err) {
    for (uint32_t i = 0; i < nstdio; i++)
      if (parent_fd[i] >= 0) close(parent_fd[i]);
    return sp_throw(env, err, where);
  }

  /* The exit watch: a pidfd (the child cannot be reaped by anyone else meanwhile: it is ours). */
  waiter_t *w = calloc(1, sizeof *w);
  uv_loop_t *loop = NULL;
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (w && pidfd >= 0 && napi_get_uv_event_loop(env, &loop) == napi_ok && uv_poll_init(loop, &w->poll, pidfd) == 0) {
    w->env = env;
    w->pidfd = pidfd;
    w->poll.data = w;
    napi_create_reference(env, argv[4], 1, &w->callback);
    napi_value name;
    napi_create_string_utf8(env, "cove:spawn", NAPI_AUTO_LENGTH, &name);
    napi_async_init(env, NULL, name, &w->async);
    uv_poll_start(&w->poll, UV_READABLE, on_exit_poll);
    uv_unref((uv_handle_t *)&w->poll);
  } else {
    /* No way to learn of its end (out of fds): undo the start rather than leave a child nobody reaps. */
    int e = pidfd < 0 ? errno : EMFILE;
    if (pidfd >= 0) close(pidfd);
    free(w);
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    for (uint32_t i = 0; i < nstdio; i++)
      if (parent_fd[i] >= 0) close(parent_fd[i]);
    return sp_throw(env, e, "pidfd_open");
  }

  napi_value out, v;
  napi_create_array_with_length(env, nstdio + 1, &out);
  napi_create_int32(env, pid, &v);
  napi_set_element(env, out, 0, v);
  for (uint32_t i = 0; i < nstdio; i++) {
    napi_create_int32(env, parent_fd[i], &v);
    napi_set_element(env, out, i + 1, v);
  }
  return out;
}

static napi_value js_mkfifo(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char path[4096];
  size_t len = 0;
  uint32_t mode = 0600;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "mkfifo(path, mode)");
    return NULL;
  }
  if (argc > 1) napi_get_value_uint32(env, argv[1], &mode);
  if (mkfifo(path, (mode_t)mode) < 0) {
    int e = errno;
    struct stat st;
    if (e == EEXIST && stat(path, &st) == 0 && S_ISFIFO(st.st_mode)) return NULL;
    return sp_throw(env, e, path);
  }
  return NULL;
}

void cove_spawn_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "spawnDetached", NULL, js_spawn_detached, NULL, NULL, NULL, napi_default, NULL },
    { "mkfifo", NULL, js_mkfifo, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
