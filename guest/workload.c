/*
 * kvmigrate guest workload: runs as the guest's only program (exec'd by /init).
 *
 * Dirties memory in a pattern chosen on the kernel command line (kvmw=MODE), prints a heartbeat
 * on the console every 50 ms, and on the command "check" verifies memory integrity.
 *
 * Integrity: every page of the work region starts with {magic, page index, generation}; a
 * separate table holds the generation of the last write to each page. A destination that holds
 * a page from an older write than the source's last one shows page.gen != table[page] (in the
 * spirit of QEMU's migration-test monotonic-byte check). The host's byte-for-byte RAM compare
 * covers what this cannot (a page and its table entry both stale).
 *
 * Modes:
 *   idle                              a 16 MiB region written once, then nothing
 *   random:<MiB>                      uniform random page writes, as fast as possible
 *   hotcold:<hotMiB>:<coldMiB>:<pct>[:<pagesPerSec>]
 *                                     pct% of writes in the hot region, the rest in the cold one
 *                                     (as fast as possible, or paced)
 *   rate:<MiB>:<pagesPerSec>          uniform random writes, paced
 *   sweep:<MiB>:<MBps>                sequential page writes, paced, wrapping around
 *   phase:<MiB>:<hotMiB>:<periodS>    random writes in a hot window that moves every periodS s
 *   burst:<MiB>:<onMs>:<offMs>        uniform random writes for onMs, then none for offMs, repeated
 *   app:<...>                         as idle: a real application and its load run beside this
 *                                     program (guest/app-start.sh, guest/appload.c)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define MAGIC 0x574d564bU /* "KVMW" little-endian */
#define HEARTBEAT_NS 50000000ULL
#define BATCH 256

enum mode { IDLE, RANDOM, HOTCOLD, RATE, SWEEP, PHASE, BURST };

struct page_header {
  uint32_t magic;
  uint32_t index;
  uint64_t gen;
};

static struct {
  enum mode mode;
  uint64_t pages;       /* pages in the work region */
  uint64_t hot_pages;   /* hotcold: hot region size; phase: window size */
  double hot_pct;       /* hotcold */
  double pages_per_sec; /* rate, sweep: pacing; 0 = unpaced */
  double period_s;      /* phase */
  uint64_t on_ms, off_ms; /* burst */
} cfg;

static uint8_t *region;
static uint64_t *table;
static uint64_t generation;
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
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

static void write_page(uint64_t i) {
  struct page_header *h = (struct page_header *)(region + i * PAGE);
  uint64_t g = ++generation;
  h->gen = g;
  table[i] = g;
}

static int parse_mode(const char *spec) {
  unsigned long a = 0, b = 0, c = 0, d = 0;
  int n;
  char extra;
  if (strcmp(spec, "idle") == 0 || strncmp(spec, "app:", 4) == 0) {
    /* app:*: a real application runs beside us (guest/app-start.sh); we only beat and check. */
    cfg.mode = IDLE;
    cfg.pages = (16UL << 20) / PAGE;
  } else if (sscanf(spec, "random:%lu%c", &a, &extra) == 1 && a > 0) {
    cfg.mode = RANDOM;
    cfg.pages = (a << 20) / PAGE;
  } else if ((n = sscanf(spec, "hotcold:%lu:%lu:%lu:%lu%c", &a, &b, &c, &d, &extra)) >= 3 && n <= 4 && a > 0 &&
             b > 0 && c <= 100) {
    cfg.mode = HOTCOLD;
    cfg.hot_pages = (a << 20) / PAGE;
    cfg.pages = ((a + b) << 20) / PAGE;
    cfg.hot_pct = (double)c;
    cfg.pages_per_sec = n == 4 ? (double)d : 0; /* optional pacing */
  } else if (sscanf(spec, "rate:%lu:%lu%c", &a, &b, &extra) == 2 && a > 0) {
    cfg.mode = RATE;
    cfg.pages = (a << 20) / PAGE;
    cfg.pages_per_sec = (double)b;
  } else if (sscanf(spec, "sweep:%lu:%lu%c", &a, &b, &extra) == 2 && a > 0 && b > 0) {
    cfg.mode = SWEEP;
    cfg.pages = (a << 20) / PAGE;
    cfg.pages_per_sec = (double)b * 1e6 / PAGE;
  } else if (sscanf(spec, "phase:%lu:%lu:%lu%c", &a, &b, &c, &extra) == 3 && a > 0 && b > 0 && b <= a && c > 0) {
    cfg.mode = PHASE;
    cfg.pages = (a << 20) / PAGE;
    cfg.hot_pages = (b << 20) / PAGE;
    cfg.period_s = (double)c;
  } else if (sscanf(spec, "burst:%lu:%lu:%lu%c", &a, &b, &c, &extra) == 3 && a > 0 && b > 0) {
    cfg.mode = BURST;
    cfg.pages = (a << 20) / PAGE;
    cfg.on_ms = b;
    cfg.off_ms = c;
  } else {
    return -1;
  }
  return 0;
}

static const char *mode_from_cmdline(char *buf, size_t len) {
  int fd = open("/proc/cmdline", O_RDONLY);
  if (fd < 0) return "idle";
  ssize_t n = read(fd, buf, len - 1);
  close(fd);
  if (n <= 0) return "idle";
  buf[n] = 0;
  char *p = strstr(buf, "kvmw=");
  if (!p) return "idle";
  p += 5;
  p[strcspn(p, " \n")] = 0;
  return p;
}

/* Returns the number of inconsistent pages; reports the first. */
static void integrity_check(void) {
  uint64_t bad = 0, first = 0, got = 0, want = 0;
  for (uint64_t i = 0; i < cfg.pages; i++) {
    struct page_header *h = (struct page_header *)(region + i * PAGE);
    if (h->magic != MAGIC || h->index != (uint32_t)i || h->gen != table[i]) {
      if (bad++ == 0) {
        first = i;
        got = h->gen;
        want = table[i];
      }
    }
  }
  if (bad == 0)
    say("CHECK OK pages=%llu gen=%llu\n", (unsigned long long)cfg.pages, (unsigned long long)generation);
  else
    say("CHECK FAIL bad=%llu first=%llu got=%llu want=%llu\n", (unsigned long long)bad,
        (unsigned long long)first, (unsigned long long)got, (unsigned long long)want);
}

static void poll_commands(void) {
  struct pollfd pfd = {.fd = 0, .events = POLLIN};
  if (poll(&pfd, 1, 0) <= 0 || !(pfd.revents & POLLIN)) return;
  char buf[128];
  ssize_t n = read(0, buf, sizeof buf - 1);
  if (n <= 0) return;
  buf[n] = 0;
  if (strstr(buf, "check")) integrity_check();
}

static void quiet_console(void) {
  struct termios t;
  if (tcgetattr(0, &t) == 0) {
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    tcsetattr(0, TCSANOW, &t);
  }
}

int main(void) {
  char cmdline[4096];
  const char *spec = mode_from_cmdline(cmdline, sizeof cmdline);
  quiet_console();
  if (parse_mode(spec) != 0) {
    say("ERROR unknown workload '%s'\n", spec);
    for (;;) pause();
  }
  region = mmap(NULL, cfg.pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  table = calloc(cfg.pages, sizeof *table);
  if (region == MAP_FAILED || !table) {
    say("ERROR cannot allocate %llu pages: %s\n", (unsigned long long)cfg.pages, strerror(errno));
    for (;;) pause();
  }
  for (uint64_t i = 0; i < cfg.pages; i++) {
    struct page_header *h = (struct page_header *)(region + i * PAGE);
    h->magic = MAGIC;
    h->index = (uint32_t)i;
    write_page(i);
  }
  say("READY mode=%s pages=%llu\n", spec, (unsigned long long)cfg.pages);

  uint64_t start = now_ns(), next_beat = start + HEARTBEAT_NS, beat = 0;
  uint64_t writes = 0, writes_at_last_beat = 0, last_beat_ns = start, cursor = 0;
  for (;;) {
    uint64_t t = now_ns();
    if (t >= next_beat) {
      double wps = (double)(writes - writes_at_last_beat) * 1e9 / (double)(t - last_beat_ns);
      say("HB %llu %.0f %llu\n", (unsigned long long)++beat, wps, (unsigned long long)writes);
      writes_at_last_beat = writes;
      last_beat_ns = t;
      next_beat += HEARTBEAT_NS;
      if (next_beat <= t) next_beat = t + HEARTBEAT_NS; /* after a long pause, don't burst */
      poll_commands();
    }
    uint64_t budget = BATCH;
    if (cfg.mode == IDLE) {
      budget = 0;
    } else if (cfg.pages_per_sec > 0) {
      double allowed = cfg.pages_per_sec * (double)(t - start) / 1e9 - (double)writes;
      budget = allowed <= 0 ? 0 : (allowed < BATCH ? (uint64_t)allowed : BATCH);
    } else if (cfg.mode == RATE) {
      budget = 0; /* rate:<MiB>:0 writes nothing */
    } else if (cfg.mode == BURST && ((t - start) / 1000000ULL) % (cfg.on_ms + cfg.off_ms) >= cfg.on_ms) {
      budget = 0; /* the quiet part of the cycle */
    }
    if (budget == 0) {
      /* Sleep until the next heartbeat or 1 ms, whichever is sooner. */
      uint64_t wait = next_beat > t ? next_beat - t : 0;
      if (cfg.mode != IDLE && wait > 1000000ULL) wait = 1000000ULL;
      struct timespec ts = {(time_t)(wait / 1000000000ULL), (long)(wait % 1000000000ULL)};
      nanosleep(&ts, NULL);
      continue;
    }
    for (uint64_t k = 0; k < budget; k++) {
      uint64_t i;
      switch (cfg.mode) {
        case HOTCOLD:
          if ((double)(next_rand() % 10000) < cfg.hot_pct * 100)
            i = next_rand() % cfg.hot_pages;
          else
            i = cfg.hot_pages + next_rand() % (cfg.pages - cfg.hot_pages);
          break;
        case SWEEP:
          i = cursor++ % cfg.pages;
          break;
        case PHASE: {
          uint64_t phase = (uint64_t)((double)(t - start) / 1e9 / cfg.period_s);
          uint64_t windows = cfg.pages / cfg.hot_pages;
          i = (phase % windows) * cfg.hot_pages + next_rand() % cfg.hot_pages;
          break;
        }
        default:
          i = next_rand() % cfg.pages;
      }
      write_page(i);
    }
    writes += budget;
  }
}
