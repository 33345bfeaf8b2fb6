/*
 * kvmigrate app guest helper: streams a real application's per-request latency over the serial
 * console, and drives memcached with a small load generator. One static binary, three commands:
 *
 *   appload runas <uid> <gid> <prog> [args...]
 *       drops root and execs prog (postgres and memcached refuse to run as root).
 *   appload tail <file>
 *       follows a pgbench per-transaction log (pgbench -l: "client txn latency_us script
 *       epoch_s epoch_us") as it grows and prints each transaction as an AL line.
 *   appload mc <port> <clients> <keys> <valueBytes> <setPct>
 *       memcached load: fills <keys> keys once, then <clients> threads each run get/set
 *       back to back against 127.0.0.1:<port> (closed loop), printing each request as an AL line.
 *
 * Lines (read on the host by src/lab/serial.ts):
 *   AL <endUs> <latUs>   one request/transaction: completed at guest CLOCK_MONOTONIC endUs,
 *                        took latUs by the guest's clock
 *   AT <nowUs>           the guest's CLOCK_MONOTONIC now, every 25 ms: lets the host map guest
 *                        time to its own (the guest clock stops while the VM is paused, so a
 *                        request that spans a pause took longer than the guest measured)
 *   APP READY <name>     the load runs (the first request completed)
 *   ERROR app: <why>     it could not start
 * Each line is written with one write(2), so lines from several writers never interleave.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TICK_US 25000ULL

static uint64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000ULL;
}

static uint64_t real_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000ULL;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) {
    ssize_t w = write(1, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    (void)w;
  }
}

static volatile int ready_said;
static void ready(const char *name) {
  if (!ready_said) {
    ready_said = 1;
    say("APP READY %s\n", name);
  }
}

static void *ticker(void *arg) {
  (void)arg;
  for (;;) {
    say("AT %llu\n", (unsigned long long)mono_us());
    struct timespec ts = {0, (long)(TICK_US * 1000ULL)};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static void start_ticker(void) {
  pthread_t t;
  pthread_create(&t, NULL, ticker, NULL);
}

/* ---- pgbench log follower ---- */

static int tail(const char *file) {
  int fd = -1;
  for (int i = 0; i < 6000 && fd < 0; i++) { /* up to 60 s for pgbench to create its log */
    fd = open(file, O_RDONLY);
    if (fd < 0) usleep(10000);
  }
  if (fd < 0) {
    say("ERROR app: no pgbench log %s: %s\n", file, strerror(errno));
    return 1;
  }
  start_ticker();
  /* pgbench stamps its log with the wall clock (or, in some versions, the monotonic one): map to
     CLOCK_MONOTONIC by whichever the stamps are close to. */
  int64_t real_minus_mono = (int64_t)real_us() - (int64_t)mono_us();
  char buf[65536];
  size_t have = 0;
  for (;;) {
    ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
    if (n <= 0) {
      usleep(10000);
      continue;
    }
    have += (size_t)n;
    buf[have] = 0;
    char *line = buf, *nl;
    while ((nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
      *nl = 0;
      long client, script;
      unsigned long long txn, lat, sec, usec;
      if (sscanf(line, "%ld %llu %llu %ld %llu %llu", &client, &txn, &lat, &script, &sec, &usec) == 6) {
        int64_t end = (int64_t)(sec * 1000000ULL + usec);
        int64_t now = (int64_t)mono_us();
        if (llabs(end - now) > llabs(end - real_minus_mono - now)) end -= real_minus_mono;
        say("AL %lld %llu\n", (long long)end, lat);
        ready("pgbench");
      }
      line = nl + 1;
    }
    have -= (size_t)(line - buf);
    memmove(buf, line, have);
    if (have >= sizeof buf - 1) have = 0; /* a line that long is not pgbench's */
  }
}

/* ---- memcached load generator ---- */

static struct {
  int port;
  uint64_t keys;
  size_t value_bytes;
  unsigned set_pct;
  char *value;
} mc;

static int mc_connect(void) {
  for (int i = 0; i < 3000; i++) { /* up to 30 s for memcached to listen */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)mc.port)};
    a.sin_addr.s_addr = htonl(0x7f000001);
    if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
      int one = 1;
      setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return s;
    }
    close(s);
    usleep(10000);
  }
  return -1;
}

static int write_all(int s, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(s, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

struct reader {
  char buf[1 << 16];
  size_t start, end;
};

/* Reads until the buffer holds `terminator` at or after `from`; returns its end offset or -1. */
static long read_until(int s, struct reader *r, const char *terminator) {
  size_t tl = strlen(terminator);
  for (;;) {
    if (r->end - r->start >= tl) {
      char *hit = memmem(r->buf + r->start, r->end - r->start, terminator, tl);
      if (hit) return (long)(hit - r->buf) + (long)tl;
    }
    if (r->end == sizeof r->buf) {
      if (r->start == 0) return -1;
      memmove(r->buf, r->buf + r->start, r->end - r->start);
      r->end -= r->start;
      r->start = 0;
    }
    ssize_t n = read(s, r->buf + r->end, sizeof r->buf - r->end);
    if (n <= 0) return -1;
    r->end += (size_t)n;
  }
}

/* Skips `n` bytes of payload (a get's value, larger than the buffer). */
static int skip_bytes(int s, struct reader *r, size_t n) {
  size_t inbuf = r->end - r->start;
  if (inbuf >= n) {
    r->start += n;
    return 0;
  }
  n -= inbuf;
  r->start = r->end = 0;
  while (n > 0) {
    ssize_t k = read(s, r->buf, n < sizeof r->buf ? n : sizeof r->buf);
    if (k <= 0) return -1;
    if ((size_t)k > n) { /* read past the payload: keep the rest */
      r->start = n;
      r->end = (size_t)k;
      return 0;
    }
    n -= (size_t)k;
  }
  return 0;
}

static int mc_set(int s, struct reader *r, uint64_t key) {
  char hdr[96];
  int n = snprintf(hdr, sizeof hdr, "set k%llu 0 0 %zu\r\n", (unsigned long long)key, mc.value_bytes);
  /* The value's first bytes change every write: real new data, not a page the host can dedupe. */
  uint64_t stamp = mono_us() ^ key;
  memcpy(mc.value, &stamp, sizeof stamp < mc.value_bytes ? sizeof stamp : mc.value_bytes);
  if (write_all(s, hdr, (size_t)n) || write_all(s, mc.value, mc.value_bytes) || write_all(s, "\r\n", 2))
    return -1;
  long e = read_until(s, r, "\r\n");
  if (e < 0) return -1;
  int ok = strncmp(r->buf + r->start, "STORED", 6) == 0;
  r->start = (size_t)e;
  return ok ? 0 : -1;
}

static int mc_get(int s, struct reader *r, uint64_t key) {
  char hdr[64];
  int n = snprintf(hdr, sizeof hdr, "get k%llu\r\n", (unsigned long long)key);
  if (write_all(s, hdr, (size_t)n)) return -1;
  for (;;) {
    long e = read_until(s, r, "\r\n");
    if (e < 0) return -1;
    char *line = r->buf + r->start;
    if (strncmp(line, "END", 3) == 0) {
      r->start = (size_t)e;
      return 0;
    }
    unsigned long long len = 0;
    if (sscanf(line, "VALUE %*s %*u %llu", &len) != 1) return -1;
    r->start = (size_t)e;
    if (skip_bytes(s, r, (size_t)len + 2)) return -1;
  }
}

static void *mc_client(void *arg) {
  uint64_t rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)arg * 0x100000001b3ULL;
  int s = mc_connect();
  struct reader *r = calloc(1, sizeof *r);
  if (s < 0 || !r) {
    say("ERROR app: memcached client cannot connect\n");
    return NULL;
  }
  for (;;) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    uint64_t key = rng % mc.keys;
    int is_set = (rng >> 32) % 100 < mc.set_pct;
    uint64_t t0 = mono_us();
    if ((is_set ? mc_set(s, r, key) : mc_get(s, r, key)) != 0) {
      say("ERROR app: memcached request failed\n");
      close(s);
      s = mc_connect();
      continue;
    }
    uint64_t t1 = mono_us();
    say("AL %llu %llu\n", (unsigned long long)t1, (unsigned long long)(t1 - t0));
    ready("memcached");
  }
  return NULL;
}

static int mc_main(int port, int clients, uint64_t keys, size_t value_bytes, unsigned set_pct) {
  mc.port = port;
  mc.keys = keys;
  mc.value_bytes = value_bytes;
  mc.set_pct = set_pct;
  mc.value = malloc(value_bytes);
  if (!mc.value) return 1;
  for (size_t i = 0; i < value_bytes; i++) mc.value[i] = (char)('a' + i % 26);
  int s = mc_connect();
  if (s < 0) {
    say("ERROR app: cannot connect to memcached on port %d\n", port);
    return 1;
  }
  struct reader *r = calloc(1, sizeof *r);
  for (uint64_t k = 0; k < keys; k++) {
    if (mc_set(s, r, k)) {
      say("ERROR app: filling memcached failed at key %llu\n", (unsigned long long)k);
      return 1;
    }
  }
  close(s);
  say("APP filled %llu keys of %zu bytes\n", (unsigned long long)keys, value_bytes);
  start_ticker();
  for (int c = 0; c < clients; c++) {
    pthread_t t;
    pthread_create(&t, NULL, mc_client, (void *)(uintptr_t)(c + 1));
  }
  for (;;) pause();
}

int main(int argc, char **argv) {
  if (argc >= 5 && strcmp(argv[1], "runas") == 0) {
    gid_t gid = (gid_t)atoi(argv[3]);
    if (setgroups(1, &gid) || setgid(gid) || setuid((uid_t)atoi(argv[2]))) {
      say("ERROR app: cannot drop root: %s\n", strerror(errno));
      return 1;
    }
    execv(argv[4], argv + 4);
    say("ERROR app: cannot run %s: %s\n", argv[4], strerror(errno));
    return 127;
  }
  if (argc == 3 && strcmp(argv[1], "tail") == 0) return tail(argv[2]);
  if (argc == 7 && strcmp(argv[1], "mc") == 0)
    return mc_main(atoi(argv[2]), atoi(argv[3]), strtoull(argv[4], NULL, 10), strtoull(argv[5], NULL, 10),
                   (unsigned)atoi(argv[6]));
  say("ERROR app: usage: appload runas|tail|mc ...\n");
  return 2;
}
