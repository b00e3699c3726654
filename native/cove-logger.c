/*
 * cove-logger: Docker's json-file log driver for one container.
 *
 *   cove-logger <fifo> <log-file> <max-size bytes, 0 = none> <max-file>
 *
 * conmon holds the container's stdio and writes k8s-file records
 * ("<RFC3339Nano time> <stdout|stderr> <F|P> <text>\n") into <fifo>; this
 * program reads them and writes Docker's json-file lines to <log-file>:
 *
 *   {"log":"text\n","stream":"stdout","time":"2026-12-03T19:30:00.123456789Z"}
 *
 * one object per line, the time in UTC RFC3339Nano (trailing zeros dropped,
 * as Go's time.RFC3339Nano), the text escaped as moby's jsonlog does (", \,
 * \n, \r, \t, other control bytes and <, >, & as \u00XX, U+2028/U+2029
 * escaped, invalid UTF-8 as \ufffd). A line that conmon split (P records)
 * is joined until its end, up to 16 KiB (Docker's copier buffer); longer
 * pieces are written as Docker's partial messages: "log" without "\n".
 *
 * Rotation as moby's loggerutils.LogFile: before a write, when the file has
 * reached max-size, <log-file>.N-1 -> .N ... <log-file> -> .1 and a new
 * file; with max-file 1 the file is truncated.
 *
 * The daemon starts it detached, before conmon, and it outlives the daemon
 * like conmon does; it ends when conmon closes the FIFO (the container
 * exited). If it dies, a new one opening the same FIFO picks up the stream
 * (the pipe lives as long as conmon holds its end): the daemon does that
 * at restore. One small process per running container, no Node.
 *
 * Readiness: it creates the FIFO if missing, then writes "ready\n" to
 * stdout and closes it, then opens the FIFO (blocking until conmon opens it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (256 * 1024)
#define PARTIAL_MAX (16 * 1024)
#define FLUSH_AT (256 * 1024)

struct buf {
  char *p;
  size_t len, cap;
};

static void buf_reserve(struct buf *b, size_t more) {
  if (b->len + more <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    perror("cove-logger: realloc");
    exit(1);
  }
  b->p = p;
  b->cap = cap;
}

static void buf_add(struct buf *b, const char *s, size_t n) {
  buf_reserve(b, n);
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static const char *log_path;
static long long max_size;
static int max_file;
static int out_fd = -1;
static long long out_size;
static struct buf out;

static void open_log(int flags) {
  out_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | flags, 0640);
  if (out_fd < 0) {
    fprintf(stderr, "cove-logger: open %s: %s\n", log_path, strerror(errno));
    exit(1);
  }
  struct stat st;
  out_size = fstat(out_fd, &st) == 0 ? st.st_size : 0;
}

static void flush_out(void) {
  size_t off = 0;
  while (off < out.len) {
    ssize_t n = write(out_fd, out.p + off, out.len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* ENOSPC, EIO: drop what does not fit, keep reading (the container must not block) */
    off += (size_t)n;
  }
  out.len = 0;
}

static void rotate(void) {
  flush_out();
  if (max_file < 2) {
    if (ftruncate(out_fd, 0) == 0) out_size = 0;
    return;
  }
  close(out_fd);
  size_t n = strlen(log_path) + 16;
  char *from = malloc(n), *to = malloc(n);
  snprintf(to, n, "%s.%d", log_path, max_file - 1);
  unlink(to);
  for (int i = max_file - 2; i >= 1; i--) {
    snprintf(from, n, "%s.%d", log_path, i);
    snprintf(to, n, "%s.%d", log_path, i + 1);
    rename(from, to);
  }
  snprintf(to, n, "%s.1", log_path);
  rename(log_path, to);
  free(from);
  free(to);
  open_log(O_TRUNC);
}

static const char HEX[] = "0123456789abcdef";

/* Length of a valid UTF-8 sequence at s (as Go's utf8.DecodeRune accepts it), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else
    return 0;
  if (n < len) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xbf) return 0;
  return len;
}

static void json_string(struct buf *b, const unsigned char *s, size_t n) {
  buf_reserve(b, n * 6 + 2);
  char *o = b->p + b->len;
  *o++ = '"';
  for (size_t i = 0; i < n;) {
    unsigned char c = s[i];
    if (c >= 0x80) {
      size_t l = utf8_len(s + i, n - i);
      if (!l) {
        memcpy(o, "\\ufffd", 6);
        o += 6;
        i++;
        continue;
      }
      if (l == 3 && c == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
        memcpy(o, s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
        o += 6;
      } else {
        memcpy(o, s + i, l);
        o += l;
      }
      i += l;
      continue;
    }
    switch (c) {
    case '"':
    case '\\':
      *o++ = '\\';
      *o++ = (char)c;
      break;
    case '\n':
      *o++ = '\\';
      *o++ = 'n';
      break;
    case '\r':
      *o++ = '\\';
      *o++ = 'r';
      break;
    case '\t':
      *o++ = '\\';
      *o++ = 't';
      break;
    default:
      if (c < 0x20 || c == '<' || c == '>' || c == '&') {
        memcpy(o, "\\u00", 4);
        o[4] = HEX[c >> 4];
        o[5] = HEX[c & 0xf];
        o += 6;
      } else
        *o++ = (char)c;
    }
    i++;
  }
  *o++ = '"';
  b->len = (size_t)(o - b->p);
}

/* conmon's "2026-12-03T19:30:00.123456789+01:00" as Docker's UTC RFC3339Nano; the clock when it does not parse. */
static void docker_time(const char *ts, size_t n, char *dst, size_t cap) {
  char tmp[64];
  struct tm tm = {0};
  long long nanos = 0;
  time_t secs;
  int ok = 0;
  if (n < sizeof tmp) {
    memcpy(tmp, ts, n);
    tmp[n] = 0;
    int y, mo, d, h, mi, s, oh = 0, om = 0, used = 0;
    if (sscanf(tmp, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &used) == 6) {
      const char *p = tmp + used;
      if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++)
          if (digits < 9) nanos = nanos * 10 + (*p - '0'), digits++;
        for (; digits < 9; digits++) nanos *= 10;
      }
      int sign = 0;
      if (*p == 'Z')
        ok = 1;
      else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d", &oh, &om) == 2) {
        sign = *p == '+' ? 1 : -1;
        ok = 1;
      }
      tm.tm_year = y - 1900;
      tm.tm_mon = mo - 1;
      tm.tm_mday = d;
      tm.tm_hour = h;
      tm.tm_min = mi;
      tm.tm_sec = s;
      secs = timegm(&tm) - sign * (oh * 3600 + om * 60);
    }
  }
  if (!ok) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    secs = now.tv_sec;
    nanos = now.tv_nsec;
  }
  struct tm utc;
  gmtime_r(&secs, &utc);
  size_t l = strftime(dst, cap, "%Y-%m-%dT%H:%M:%S", &utc);
  if (nanos) {
    char frac[16];
    snprintf(frac, sizeof frac, ".%09lld", nanos);
    size_t fl = strlen(frac);
    while (fl > 1 && frac[fl - 1] == '0') frac[--fl] = 0;
    l += (size_t)snprintf(dst + l, cap - l, "%s", frac);
  }
  snprintf(dst + l, cap - l, "Z");
}

struct pending {
  struct buf text;
  char time[48];
};
static struct pending partial[2];

static void emit(int stream, const char *time, const char *text, size_t n, int newline) {
  if (max_size > 0 && out_size >= max_size) rotate();
  size_t before = out.len;
  buf_add(&out, "{\"log\":", 7);
  /* the text and its "\n" as one JSON string */
  json_string(&out, (const unsigned char *)text, n);
  if (newline) {
    out.len--; /* the text's line end inside the string: drop the closing quote, add \n" */
    buf_add(&out, "\\n\"", 3);
  }
  buf_add(&out, stream ? ",\"stream\":\"stderr\",\"time\":\"" : ",\"stream\":\"stdout\",\"time\":\"", 27);
  buf_add(&out, time, strlen(time));
  buf_add(&out, "\"}\n", 3);
  out_size += (long long)(out.len - before);
  if (out.len >= FLUSH_AT) flush_out();
}

/* One conmon record, without its trailing newline. */
static void record(const char *r, size_t n) {
  const char *sp1 = memchr(r, ' ', n);
  if (!sp1) return;
  const char *rest = sp1 + 1;
  size_t rn = n - (size_t)(rest - r);
  int stream;
  if (rn >= 7 && !memcmp(rest, "stdout ", 7))
    stream = 0;
  else if (rn >= 7 && !memcmp(rest, "stderr ", 7))
    stream = 1;
  else
    return;
  rest += 7;
  rn -= 7;
  if (rn < 1) return;
  int is_partial = rest[0] == 'P';
  const char *text = rn >= 2 ? rest + 2 : rest + rn;
  size_t tn = rn >= 2 ? rn - 2 : 0;
  struct pending *p = &partial[stream];
  /* A message's time is its last piece's (when the line completed): the file stays in time order. conmon
   * stamps all lines of one read alike, so the conversion is cached. */
  static char last_in[64], last_out[48];
  size_t tl = (size_t)(sp1 - r);
  if (tl >= sizeof last_in || memcmp(last_in, r, tl) || last_in[tl]) {
    docker_time(r, tl, last_out, sizeof last_out);
    if (tl < sizeof last_in) {
      memcpy(last_in, r, tl);
      last_in[tl] = 0;
    }
  }
  memcpy(p->time, last_out, sizeof p->time);
  if (is_partial) {
    buf_add(&p->text, text, tn);
    if (p->text.len >= PARTIAL_MAX) {
      emit(stream, p->time, p->text.p, p->text.len, 0);
      p->text.len = 0;
    }
    return;
  }
  if (p->text.len) {
    buf_add(&p->text, text, tn);
    emit(stream, p->time, p->text.p, p->text.len, 1);
  } else
    emit(stream, p->time, text, tn, 1);
  p->text.len = 0;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: cove-logger <fifo> <log-file> <max-size> <max-file>\n");
    return 2;
  }
  const char *fifo = argv[1];
  log_path = argv[2];
  max_size = atoll(argv[3]);
  max_file = atoi(argv[4]);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  if (mkfifo(fifo, 0600) < 0 && errno != EEXIST) {
    fprintf(stderr, "cove-logger: mkfifo %s: %s\n", fifo, strerror(errno));
    return 1;
  }
  open_log(0);
  if (write(1, "ready\n", 6) < 0) {
    /* nobody waits: fine */
  }
  int devnull = open("/dev/null", O_WRONLY);
  if (devnull >= 0) {
    dup2(devnull, 1);
    close(devnull);
  }
  int in;
  while ((in = open(fifo, O_RDONLY | O_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (in < 0) {
    fprintf(stderr, "cove-logger: open %s: %s\n", fifo, strerror(errno));
    return 1;
  }
  struct buf inb = {0};
  buf_reserve(&inb, READ_CHUNK);
  for (;;) {
    buf_reserve(&inb, READ_CHUNK);
    ssize_t n = read(in, inb.p + inb.len, READ_CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    inb.len += (size_t)n;
    size_t start = 0;
    for (;;) {
      char *nl = memchr(inb.p + start, '\n', inb.len - start);
      if (!nl) break;
      record(inb.p + start, (size_t)(nl - (inb.p + start)));
      start = (size_t)(nl - inb.p) + 1;
    }
    memmove(inb.p, inb.p + start, inb.len - start);
    inb.len -= start;
    flush_out();
  }
  /* conmon closed the FIFO: the container exited. What is left of a line is a partial message, as Docker's copier at EOF. */
  for (int s = 0; s < 2; s++)
    if (partial[s].text.len) emit(s, partial[s].time, partial[s].text.p, partial[s].text.len, 0);
  flush_out();
  close(out_fd);
  return 0;
}
