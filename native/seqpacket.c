/*
 * SOCK_SEQPACKET unix-socket client for conmon's attach socket (src/runtime/containers/attach.ts).
 *
 * Node's net module only knows stream unix sockets, and conmon's attach socket
 * keeps message boundaries: every output packet starts with one byte naming
 * the stream (2 stdout, 3 stderr). So the socket is read here, one recv() per
 * packet, on the JS thread's libuv loop (a uv_poll_t, never blocking it), and
 * each packet is handed to JS as its own Buffer.
 *
 * Exports:
 *   seqpacketConnect(path, onEvent) -> handle
 *       connects (non-blocking); throws Error with an errno code (ENOENT,
 *       ECONNREFUSED, EAGAIN ...) when it cannot. onEvent(err, packet) is called
 *       with (null, Buffer) per packet, (null, null) at end of stream and
 *       (message, null) on a socket error; after either of the last two it is
 *       not called again.
 *   seqpacketWrite(handle, buffer)   sends one packet; queued while the socket is full
 *   seqpacketShutdown(handle)        SHUT_WR once every queued packet is sent (conmon
 *                                    then closes the process's stdin)
 *   seqpacketClose(handle)           stops reading, drops the queue, closes the fd;
 *                                    idempotent, onEvent is not called afterwards
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>

/* conmon sends at most 8192 bytes of output plus the stream byte per packet. */
#define MAX_PACKET 65536

typedef struct pending {
  struct pending *next;
  size_t len;
  char data[];
} pending_t;

typedef struct conn {
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  uv_poll_t poll;
  int fd;
  bool closed;       /* seqpacketClose ran or the stream ended: no more events */
  bool want_shutdown;
  pending_t *head, *tail;
  struct conn **slot;  /* the JS handle's pointer to us, cleared when we go */
} conn_t;

static napi_value throw_errno(napi_env env, int err, const char *where) {
  char msg[256], code[32];
  snprintf(msg, sizeof msg, "%s: %s", where, strerror(err));
  snprintf(code, sizeof code, "E%d", err);
  /* Node's names for the errors callers test for. */
  if (err == ENOENT) snprintf(code, sizeof code, "ENOENT");
  else if (err == ECONNREFUSED) snprintf(code, sizeof code, "ECONNREFUSED");
  else if (err == EAGAIN) snprintf(code, sizeof code, "EAGAIN");
  napi_throw_error(env, code, msg);
  return NULL;
}

static void on_poll_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  free(c);
}

static void drop_queue(conn_t *c) {
  while (c->head) {
    pending_t *p = c->head;
    c->head = p->next;
    free(p);
  }
  c->tail = NULL;
}

/* Ends the connection: no more events, fd closed, memory freed once libuv lets go of the poll handle. */
static void teardown(conn_t *c) {
  if (c->fd < 0) return;
  c->closed = true;
  if (c->slot) { *c->slot = NULL; c->slot = NULL; }
  drop_queue(c);
  uv_poll_stop(&c->poll);
  close(c->fd);
  c->fd = -1;
  napi_env env = c->env;
  if (c->callback) { napi_delete_reference(env, c->callback); c->callback = NULL; }
  if (c->async) { napi_async_destroy(env, c->async); c->async = NULL; }
  uv_close((uv_handle_t *)&c->poll, on_poll_closed);
}

/* Calls onEvent(err, packet) from a libuv callback, with a handle scope and Node's callback machinery. */
static void emit(conn_t *c, const char *err, const char *data, size_t len, bool with_packet) {
  napi_env env = c->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[2];
  if (c->callback && napi_get_reference_value(env, c->callback, &cb) == napi_ok && cb) {
    napi_get_global(env, &recv);  /* napi_make_callback wants an object receiver */
    if (err) napi_create_string_utf8(env, err, NAPI_AUTO_LENGTH, &argv[0]);
    else napi_get_null(env, &argv[0]);
    if (with_packet) {
      void *copy;
      napi_create_buffer_copy(env, len, data, &copy, &argv[1]);
    } else {
      napi_get_null(env, &argv[1]);
    }
    napi_value result;
    if (napi_make_callback(env, c->async, recv, cb, 2, argv, &result) == napi_pending_exception) {
      /* The JS side must not throw here; if it does, it is an uncaught exception like any other. */
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void update_poll(conn_t *c);

/* Sends queued packets; returns 0, or an errno other than EAGAIN. */
static int flush(conn_t *c) {
  while (c->head) {
    pending_t *p = c->head;
    ssize_t n = send(c->fd, p->data, p->len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return errno;
    }
    c->head = p->next;
    if (!c->head) c->tail = NULL;
    free(p);
  }
  if (c->want_shutdown) {
    shutdown(c->fd, SHUT_WR);
    c->want_shutdown = false;
  }
  return 0;
}

static void fail(conn_t *c, int err, const char *where) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", where, strerror(err));
  c->closed = true;
  uv_poll_stop(&c->poll);
  emit(c, msg, NULL, 0, false);
  teardown(c);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  conn_t *c = h->data;
  if (c->closed) return;
  if (status < 0) { fail(c, -status, "poll"); return; }
  if (events & UV_WRITABLE) {
    int err = flush(c);
    if (err) { fail(c, err, "send"); return; }
  }
  if (events & (UV_READABLE | UV_DISCONNECT)) {
    static char buf[MAX_PACKET];
    /* A bounded number of packets per wakeup, so one busy container cannot starve the loop. */
    for (int i = 0; i < 64 && !c->closed; i++) {
      ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        fail(c, errno, "recv");
        return;
      }
      if (n == 0) {
        c->closed = true;
        uv_poll_stop(&c->poll);
        emit(c, NULL, NULL, 0, false);
        teardown(c);
        return;
      }
      emit(c, NULL, buf, (size_t)n, true);
    }
  }
  if (!c->closed) update_poll(c);
}

static void update_poll(conn_t *c) {
  int events = UV_READABLE | UV_DISCONNECT | (c->head ? UV_WRITABLE : 0);
  uv_poll_start(&c->poll, events, on_poll);
}

/* The external holds a pointer to the conn, cleared at close, so a handle used after close is harmless. */
static void finalize_handle(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  conn_t **slot = data;
  if (*slot) teardown(*slot);  /* clears *slot */
  free(slot);
}

static napi_value js_connect(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  size_t len = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "seqpacketConnect(path, onEvent)");
    return NULL;
  }
  if (len >= sizeof(((struct sockaddr_un *)0)->sun_path)) return throw_errno(env, ENAMETOOLONG, path);
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_function) { napi_throw_type_error(env, NULL, "onEvent must be a function"); return NULL; }

  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, len);
  int rc;
  do rc = connect(fd, (struct sockaddr *)&sa, sizeof sa); while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int e = errno;
    close(fd);
    char where[sizeof path + 16];
    snprintf(where, sizeof where, "connect %s", path);
    return throw_errno(env, e, where);
  }

  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) { close(fd); napi_throw_error(env, NULL, "no event loop"); return NULL; }
  conn_t *c = calloc(1, sizeof *c);
  conn_t **slot = malloc(sizeof *slot);
  if (!c || !slot) { free(c); free(slot); close(fd); return throw_errno(env, ENOMEM, "seqpacketConnect"); }
  c->env = env;
  c->fd = fd;
  if (uv_poll_init(loop, &c->poll, fd) != 0) { free(c); free(slot); close(fd); return throw_errno(env, EINVAL, "uv_poll_init"); }
  c->poll.data = c;
  napi_create_reference(env, argv[1], 1, &c->callback);
  napi_value name;
  napi_create_string_utf8(env, "cove:seqpacket", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &c->async);
  update_poll(c);
  *slot = c;
  c->slot = slot;
  napi_value handle;
  napi_create_external(env, slot, finalize_handle, NULL, &handle);
  return handle;
}

static conn_t **get_slot(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "not a seqpacket handle");
    return NULL;
  }
  return p;
}

static napi_value js_write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  conn_t **slot = get_slot(env, argv[0]);
  if (!slot) return NULL;
  conn_t *c = *slot;
  if (!c || c->closed) return NULL; /* written after the end: dropped, like a destroyed stream */
  void *data;
  size_t len;
  bool isbuf = false;
  napi_is_buffer(env, argv[1], &isbuf);
  if (!isbuf || napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) { napi_throw_type_error(env, NULL, "data must be a Buffer"); return NULL; }
  if (len == 0) return NULL;
  if (!c->head) {
    ssize_t n;
    do n = send(c->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    if (n >= 0) return NULL;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return throw_errno(env, errno, "send");
  }
  pending_t *p = malloc(sizeof *p + len);
  if (!p) return throw_errno(env, ENOMEM, "send");
  p->next = NULL;
  p->len = len;
  memcpy(p->data, data, len);
  if (c->tail) c->tail->next = p; else c->head = p;
  c->tail = p;
  update_poll(c);
  return NULL;
}

static napi_value js_shutdown(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  conn_t **slot = get_slot(env, argv[0]);
  if (!slot) return NULL;
  conn_t *c = *slot;
  if (!c || c->closed) return NULL;
  if (c->head) c->want_shutdown = true;
  else shutdown(c->fd, SHUT_WR);
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  conn_t **slot = get_slot(env, argv[0]);
  if (!slot) return NULL;
  conn_t *c = *slot;
  if (c) teardown(c);
  return NULL;
}

void cove_seqpacket_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "seqpacketConnect", NULL, js_connect, NULL, NULL, NULL, napi_default, NULL },
    { "seqpacketWrite", NULL, js_write, NULL, NULL, NULL, napi_default, NULL },
    { "seqpacketShutdown", NULL, js_shutdown, NULL, NULL, NULL, napi_default, NULL },
    { "seqpacketClose", NULL, js_close, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
