/*
 * cove_netns: the few syscalls Node cannot make, for src/kernel/netns.ts.
 *
 * Every operation that needs another network namespace runs on a short-lived
 * pthread that setns()es (or unshare()s) and then exits, so no JS thread and
 * no libuv pool thread ever changes namespace (a socket keeps the netns it was
 * created in, so the fd handed back stays bound inside the target netns).
 *
 * Exports (all synchronous, all throw Error with an errno message):
 *   createNetns(path, sysctls)         new netns bind-mounted on `path` (file must exist);
 *                                      sysctls: [[procPath, value], ...] written inside it first
 *   unmountNetns(path)                 umount2(path, MNT_DETACH); ENOENT/EINVAL ignored
 *   socketInNetns(path, type, ip, port, backlog)  type 1 = UDP, 2 = TCP listen; returns fd
 *   writeFilesInNetns(path, pairs)     [[procPath, value], ...] written from inside the netns
 *   setnsCurrentThread(path)           moves the CALLING thread (tests: the main thread into a lab)
 *   netnsInode(path)                   st_ino of the netns at path (for checks)
 *   configureInNetns(path, ops)        rtnetlink link/addr/route changes and /proc writes inside the netns
 * and, from seqpacket.c, the SOCK_SEQPACKET client for conmon's attach socket
 * (seqpacketConnect/Write/Shutdown/Close); from xattr.c lgetxattr; from nft.c libnftables run inside
 * a netns (nftRun, nftAvailable); from mount.c mountOverlay/unmount (a container's root filesystem);
 * from spawn.c spawnDetached and mkfifo (conmon and cove-logger started without fork()).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_addr.h>

#define MAX_PAIRS 64
#define MAX_STR 512

typedef struct {
  int op;               /* 1 create, 2 socket, 3 write files */
  char path[MAX_STR];
  int npairs;
  char files[MAX_PAIRS][MAX_STR];
  char values[MAX_PAIRS][128];
  int socktype;
  char ip[64];
  int port;
  int backlog;
  /* results */
  int fd;
  int err;
  char where[MAX_STR + 64];
} job_t;

static int write_files(job_t *j) {
  for (int i = 0; i < j->npairs; i++) {
    int fd = open(j->files[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0) { j->err = errno; snprintf(j->where, sizeof j->where, "open %s", j->files[i]); return -1; }
    size_t len = strlen(j->values[i]);
    ssize_t n = write(fd, j->values[i], len);
    int e = errno;
    close(fd);
    if (n < 0 || (size_t)n != len) { j->err = n < 0 ? e : EIO; snprintf(j->where, sizeof j->where, "write %s", j->files[i]); return -1; }
  }
  return 0;
}

static int enter(job_t *j) {
  int nsfd = open(j->path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) { j->err = errno; snprintf(j->where, sizeof j->where, "open %s", j->path); return -1; }
  if (setns(nsfd, CLONE_NEWNET) < 0) { j->err = errno; close(nsfd); snprintf(j->where, sizeof j->where, "setns %s", j->path); return -1; }
  close(nsfd);
  return 0;
}

static void *worker(void *arg) {
  job_t *j = arg;
  j->fd = -1;
  if (j->op == 1) {
    if (unshare(CLONE_NEWNET) < 0) { j->err = errno; snprintf(j->where, sizeof j->where, "unshare"); return NULL; }
    if (write_files(j) < 0) return NULL;
    char self[64];
    snprintf(self, sizeof self, "/proc/self/task/%ld/ns/net", (long)gettid());
    if (mount(self, j->path, NULL, MS_BIND, NULL) < 0) { j->err = errno; snprintf(j->where, sizeof j->where, "mount --bind %s", j->path); return NULL; }
    return NULL;
  }
  if (enter(j) < 0) return NULL;
  if (j->op == 3) { write_files(j); return NULL; }
  /* op 2: socket */
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)j->port);
  if (inet_pton(AF_INET, j->ip, &sa.sin_addr) != 1) { j->err = EINVAL; snprintf(j->where, sizeof j->where, "address %s", j->ip); return NULL; }
  int fd = socket(AF_INET, (j->socktype == 1 ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) { j->err = errno; snprintf(j->where, sizeof j->where, "socket"); return NULL; }
  int one = 1;
  if (j->socktype == 2) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { j->err = errno; close(fd); snprintf(j->where, sizeof j->where, "bind %s:%d", j->ip, j->port); return NULL; }
  if (j->socktype == 2 && listen(fd, j->backlog) < 0) { j->err = errno; close(fd); snprintf(j->where, sizeof j->where, "listen"); return NULL; }
  j->fd = fd;
  return NULL;
}

static napi_value throw_errno(napi_env env, int err, const char *where) {
  char msg[MAX_STR + 160];
  snprintf(msg, sizeof msg, "%s: %s", where, strerror(err));
  char code[32];
  snprintf(code, sizeof code, "E%d", err);
  napi_throw_error(env, code, msg);
  return NULL;
}

static int get_str(napi_env env, napi_value v, char *buf, size_t cap, const char *what) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, cap, &len) != napi_ok) { napi_throw_type_error(env, NULL, what); return -1; }
  if (len >= cap - 1) { napi_throw_range_error(env, NULL, what); return -1; }
  return 0;
}

static int get_pairs(napi_env env, napi_value arr, job_t *j) {
  uint32_t n = 0;
  bool is_arr = false;
  napi_is_array(env, arr, &is_arr);
  if (!is_arr) { napi_throw_type_error(env, NULL, "pairs must be an array"); return -1; }
  napi_get_array_length(env, arr, &n);
  if (n > MAX_PAIRS) { napi_throw_range_error(env, NULL, "too many pairs"); return -1; }
  for (uint32_t i = 0; i < n; i++) {
    napi_value pair, a, b;
    napi_get_element(env, arr, i, &pair);
    napi_get_element(env, pair, 0, &a);
    napi_get_element(env, pair, 1, &b);
    if (get_str(env, a, j->files[i], MAX_STR, "pair file") < 0) return -1;
    if (get_str(env, b, j->values[i], 128, "pair value") < 0) return -1;
  }
  j->npairs = (int)n;
  return 0;
}

static int run_job(napi_env env, job_t *j) {
  pthread_t t;
  int rc = pthread_create(&t, NULL, worker, j);
  if (rc != 0) { throw_errno(env, rc, "pthread_create"); return -1; }
  pthread_join(t, NULL);
  if (j->err) { throw_errno(env, j->err, j->where); return -1; }
  return 0;
}


/* ---------- rtnetlink inside a netns (configureInNetns) ----------
 * ops: [[kind, a, b, c], ...] with kind one of
 *   "up" IF | "down" IF | "del" IF | "rename" IF NEW | "addr" IF ADDR PREFIX |
 *   "route" IF GW (default route, replace) | "write" FILE VALUE
 * Runs them in order on one throwaway thread inside the netns and stops at
 * the first failure, reporting "<op index>: <what>: <strerror>".
 */
#define MAX_OPS 32
typedef struct {
  char path[MAX_STR];
  int nops;
  char kind[MAX_OPS][16];
  char a[MAX_OPS][MAX_STR];
  char b[MAX_OPS][128];
  int c[MAX_OPS];
  int err;
  int failed;
  char where[MAX_STR + 64];
} nljob_t;

/* A request buffer; the header sits at its start (a union keeps the compiler's object-size checks honest). */
typedef union { struct nlmsghdr h; char raw[1024 + sizeof(struct nlmsghdr)]; } nlreq_t;

static void add_attr(nlreq_t *req, int type, const void *data, int len) {
  struct nlmsghdr *h = &req->h;
  struct rtattr *rta = (struct rtattr *)(req->raw + NLMSG_ALIGN(h->nlmsg_len));
  rta->rta_type = type;
  rta->rta_len = RTA_LENGTH(len);
  if (len) memcpy(RTA_DATA(rta), data, len);
  h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

static int nl_talk(int fd, struct nlmsghdr *h, uint32_t seq) {
  h->nlmsg_seq = seq;
  h->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
  if (sendto(fd, h, h->nlmsg_len, 0, (struct sockaddr *)&sa, sizeof sa) < 0) return errno;
  char buf[8192];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) { if (errno == EINTR) continue; return errno; }
    for (struct nlmsghdr *r = (struct nlmsghdr *)buf; NLMSG_OK(r, (size_t)n); r = NLMSG_NEXT(r, n)) {
      if (r->nlmsg_seq != seq) continue;
      if (r->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(r);
        return e->error < 0 ? -e->error : 0;
      }
    }
  }
}

static int parse_ip(const char *s, int *family, unsigned char *out) {
  if (inet_pton(AF_INET, s, out) == 1) { *family = AF_INET; return 4; }
  if (inet_pton(AF_INET6, s, out) == 1) { *family = AF_INET6; return 16; }
  return -1;
}

static void *nl_worker(void *arg) {
  nljob_t *j = arg;
  int nsfd = open(j->path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) { j->err = errno; j->failed = -1; snprintf(j->where, sizeof j->where, "open %s", j->path); return NULL; }
  if (setns(nsfd, CLONE_NEWNET) < 0) { j->err = errno; j->failed = -1; close(nsfd); snprintf(j->where, sizeof j->where, "setns %s", j->path); return NULL; }
  close(nsfd);
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) { j->err = errno; j->failed = -1; snprintf(j->where, sizeof j->where, "netlink socket"); return NULL; }
  for (int i = 0; i < j->nops; i++) {
    const char *k = j->kind[i];
    nlreq_t req;
    memset(&req, 0, sizeof req);
    int err = 0;
    if (strcmp(k, "write") == 0) {
      int f = open(j->a[i], O_WRONLY | O_CLOEXEC);
      if (f < 0) err = errno;
      else {
        size_t len = strlen(j->b[i]);
        ssize_t n = write(f, j->b[i], len);
        if (n < 0) err = errno; else if ((size_t)n != len) err = EIO;
        close(f);
      }
      if (err) { j->err = err; j->failed = i; snprintf(j->where, sizeof j->where, "write %s", j->a[i]); break; }
      continue;
    }
    unsigned idx = if_nametoindex(j->a[i]);
    if (idx == 0) { j->err = errno ? errno : ENODEV; j->failed = i; snprintf(j->where, sizeof j->where, "%s %s", k, j->a[i]); break; }
    if (strcmp(k, "up") == 0 || strcmp(k, "down") == 0 || strcmp(k, "rename") == 0 || strcmp(k, "del") == 0) {
      req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
      req.h.nlmsg_type = strcmp(k, "del") == 0 ? RTM_DELLINK : RTM_NEWLINK;
      struct ifinfomsg *ifi = NLMSG_DATA(&req.h);
      ifi->ifi_family = AF_UNSPEC;
      ifi->ifi_index = (int)idx;
      if (k[0] == 'u') { ifi->ifi_flags = IFF_UP; ifi->ifi_change = IFF_UP; }
      if (k[0] == 'd' && k[1] == 'o') { ifi->ifi_flags = 0; ifi->ifi_change = IFF_UP; }
      if (k[0] == 'r') add_attr(&req, IFLA_IFNAME, j->b[i], (int)strlen(j->b[i]) + 1);
    } else if (strcmp(k, "addr") == 0) {
      unsigned char ip[16]; int fam = 0;
      int len = parse_ip(j->b[i], &fam, ip);
      if (len < 0) { j->err = EINVAL; j->failed = i; snprintf(j->where, sizeof j->where, "addr %s", j->b[i]); break; }
      req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
      req.h.nlmsg_type = RTM_NEWADDR;
      req.h.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
      struct ifaddrmsg *ifa = NLMSG_DATA(&req.h);
      ifa->ifa_family = (unsigned char)fam;
      ifa->ifa_prefixlen = (unsigned char)j->c[i];
      ifa->ifa_flags = fam == AF_INET6 ? IFA_F_NODAD : 0;
      ifa->ifa_scope = RT_SCOPE_UNIVERSE;
      ifa->ifa_index = idx;
      add_attr(&req, IFA_LOCAL, ip, len);
      add_attr(&req, IFA_ADDRESS, ip, len);
    } else if (strcmp(k, "route") == 0) {
      unsigned char gw[16]; int fam = 0;
      int len = parse_ip(j->b[i], &fam, gw);
      if (len < 0) { j->err = EINVAL; j->failed = i; snprintf(j->where, sizeof j->where, "route via %s", j->b[i]); break; }
      req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
      req.h.nlmsg_type = RTM_NEWROUTE;
      req.h.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
      struct rtmsg *rt = NLMSG_DATA(&req.h);
      rt->rtm_family = (unsigned char)fam;
      rt->rtm_table = RT_TABLE_MAIN;
      rt->rtm_protocol = RTPROT_BOOT;
      rt->rtm_scope = RT_SCOPE_UNIVERSE;
      rt->rtm_type = RTN_UNICAST;
      add_attr(&req, RTA_GATEWAY, gw, len);
      uint32_t oif = idx;
      add_attr(&req, RTA_OIF, &oif, sizeof oif);
    } else {
      j->err = EINVAL; j->failed = i; snprintf(j->where, sizeof j->where, "unknown op %s", k); break;
    }
    err = nl_talk(fd, &req.h, (uint32_t)(i + 1));
    if (err) {
      j->err = err; j->failed = i;
      if (strcmp(k, "addr") == 0 || strcmp(k, "route") == 0) snprintf(j->where, sizeof j->where, "%s %s dev %s", k, j->b[i], j->a[i]);
      else if (strcmp(k, "rename") == 0) snprintf(j->where, sizeof j->where, "rename %s to %s", j->a[i], j->b[i]);
      else snprintf(j->where, sizeof j->where, "%s %s", k, j->a[i]);
      break;
    }
  }
  close(fd);
  return NULL;
}

static napi_value js_configure(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  nljob_t *j = calloc(1, sizeof *j);
  j->failed = -2;
  if (get_str(env, argv[0], j->path, MAX_STR, "path must be a string") < 0) { free(j); return NULL; }
  uint32_t n = 0;
  bool is_arr = false;
  napi_is_array(env, argv[1], &is_arr);
  if (!is_arr) { free(j); napi_throw_type_error(env, NULL, "ops must be an array"); return NULL; }
  napi_get_array_length(env, argv[1], &n);
  if (n > MAX_OPS) { free(j); napi_throw_range_error(env, NULL, "too many ops"); return NULL; }
  for (uint32_t i = 0; i < n; i++) {
    napi_value op, v;
    uint32_t len = 0;
    napi_get_element(env, argv[1], i, &op);
    napi_get_array_length(env, op, &len);
    napi_get_element(env, op, 0, &v);
    if (get_str(env, v, j->kind[i], 16, "op kind") < 0) { free(j); return NULL; }
    napi_get_element(env, op, 1, &v);
    if (get_str(env, v, j->a[i], MAX_STR, "op argument") < 0) { free(j); return NULL; }
    if (len > 2) { napi_get_element(env, op, 2, &v); if (get_str(env, v, j->b[i], 128, "op argument") < 0) { free(j); return NULL; } }
    if (len > 3) { napi_get_element(env, op, 3, &v); napi_get_value_int32(env, v, &j->c[i]); }
  }
  j->nops = (int)n;
  pthread_t t;
  int rc = pthread_create(&t, NULL, nl_worker, j);
  if (rc != 0) { free(j); return throw_errno(env, rc, "pthread_create"); }
  pthread_join(t, NULL);
  if (j->err) {
    char where[MAX_STR + 96];
    snprintf(where, sizeof where, "op %d: %s", j->failed, j->where);
    int e = j->err;
    free(j);
    return throw_errno(env, e, where);
  }
  free(j);
  return NULL;
}

static napi_value js_create(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  job_t *j = calloc(1, sizeof *j);
  j->op = 1;
  if (get_str(env, argv[0], j->path, MAX_STR, "path must be a string") < 0 || (argc > 1 && get_pairs(env, argv[1], j) < 0)) { free(j); return NULL; }
  run_job(env, j);
  free(j);
  return NULL;
}

static napi_value js_unmount(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  char path[MAX_STR];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (get_str(env, argv[0], path, MAX_STR, "path must be a string") < 0) return NULL;
  if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) return throw_errno(env, errno, "umount");
  return NULL;
}

static napi_value js_socket(napi_env env, napi_callback_info info) {
  size_t argc = 5; napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  job_t *j = calloc(1, sizeof *j);
  j->op = 2;
  int32_t type = 0, port = 0, backlog = 511;
  if (get_str(env, argv[0], j->path, MAX_STR, "path must be a string") < 0 || get_str(env, argv[2], j->ip, 64, "ip must be a string") < 0) { free(j); return NULL; }
  napi_get_value_int32(env, argv[1], &type);
  napi_get_value_int32(env, argv[3], &port);
  if (argc > 4) napi_get_value_int32(env, argv[4], &backlog);
  j->socktype = type; j->port = port; j->backlog = backlog;
  napi_value out = NULL;
  if (run_job(env, j) == 0) napi_create_int32(env, j->fd, &out);
  free(j);
  return out;
}

static napi_value js_write(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  job_t *j = calloc(1, sizeof *j);
  j->op = 3;
  if (get_str(env, argv[0], j->path, MAX_STR, "path must be a string") < 0 || get_pairs(env, argv[1], j) < 0) { free(j); return NULL; }
  run_job(env, j);
  free(j);
  return NULL;
}

static napi_value js_setns_self(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  char path[MAX_STR];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (get_str(env, argv[0], path, MAX_STR, "path must be a string") < 0) return NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, path);
  if (setns(fd, CLONE_NEWNET) < 0) { int e = errno; close(fd); return throw_errno(env, e, "setns"); }
  close(fd);
  return NULL;
}

static napi_value js_inode(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  char path[MAX_STR];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (get_str(env, argv[0], path, MAX_STR, "path must be a string") < 0) return NULL;
  struct stat st;
  if (stat(path, &st) < 0) return throw_errno(env, errno, path);
  napi_value out;
  napi_create_double(env, (double)st.st_ino, &out);
  return out;
}

void cove_seqpacket_register(napi_env env, napi_value exports);
void cove_xattr_register(napi_env env, napi_value exports);
void cove_nft_register(napi_env env, napi_value exports);
void cove_mount_register(napi_env env, napi_value exports);
void cove_spawn_register(napi_env env, napi_value exports);
void cove_memory_register(napi_env env, napi_value exports);

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "createNetns", NULL, js_create, NULL, NULL, NULL, napi_default, NULL },
    { "unmountNetns", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL },
    { "socketInNetns", NULL, js_socket, NULL, NULL, NULL, napi_default, NULL },
    { "writeFilesInNetns", NULL, js_write, NULL, NULL, NULL, napi_default, NULL },
    { "setnsCurrentThread", NULL, js_setns_self, NULL, NULL, NULL, napi_default, NULL },
    { "netnsInode", NULL, js_inode, NULL, NULL, NULL, napi_default, NULL },
    { "configureInNetns", NULL, js_configure, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  cove_seqpacket_register(env, exports);
  cove_xattr_register(env, exports);
  cove_nft_register(env, exports);
  cove_mount_register(env, exports);
  cove_spawn_register(env, exports);
  cove_memory_register(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
