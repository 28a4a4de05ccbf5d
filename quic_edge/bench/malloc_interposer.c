/* Records every heap allocation and release of a process between trace_on(path) and trace_off(), one line each:
 * "+ <address> <bytes>" or "- <address> 0". Loaded with LD_PRELOAD by quic_edge/bench/malloc_trace.py, which compiles
 * it; the process calls trace_on/trace_off through ctypes around the code it measures. Lines are written with write(2)
 * while a thread-local flag keeps the interposer from recording its own work. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *(*real_malloc)(size_t);
static void (*real_free)(void *);
static void *(*real_realloc)(void *, size_t);
static void *(*real_calloc)(size_t, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static volatile int tracing = 0;
static int fd = -1;
static __thread int inside = 0;
static char early[1 << 14];  /* calloc's answers while dlsym itself asks for memory, before real_calloc is known */
static size_t early_used = 0;
static int resolving = 0;

static void init(void) {
  if (real_malloc || resolving) return;
  resolving = 1;
  real_calloc = dlsym(RTLD_NEXT, "calloc");
  real_free = dlsym(RTLD_NEXT, "free");
  real_realloc = dlsym(RTLD_NEXT, "realloc");
  real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
  real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
  real_malloc = dlsym(RTLD_NEXT, "malloc");
  resolving = 0;
}

static void record(char op, void *p, size_t size) {
  if (!tracing || inside || fd < 0 || !p) return;
  inside = 1;
  char line[64];
  int n = snprintf(line, sizeof line, "%c %p %zu\n", op, p, size);
  if (write(fd, line, n) < 0) tracing = 0;
  inside = 0;
}

void trace_on(const char *path) { fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644); tracing = fd >= 0; }
void trace_off(void) { tracing = 0; if (fd >= 0) close(fd); fd = -1; }

void *malloc(size_t size) { init(); void *p = real_malloc(size); record('+', p, size); return p; }
void *calloc(size_t count, size_t size) {
  if (!real_calloc) {
    if (resolving) {  /* zeroed static memory, never freed (free ignores it) */
      size_t bytes = (count * size + 15) & ~(size_t)15;
      if (early_used + bytes > sizeof early) return NULL;
      void *p = early + early_used;
      early_used += bytes;
      return p;
    }
    init();
  }
  void *p = real_calloc(count, size);
  record('+', p, count * size);
  return p;
}
void free(void *p) {
  if ((char *)p >= early && (char *)p < early + sizeof early) return;
  init(); record('-', p, 0); real_free(p);
}
void *realloc(void *old, size_t size) {
  init();
  void *p = real_realloc(old, size);
  if (p) { record('-', old, 0); record('+', p, size); }
  return p;
}
int posix_memalign(void **out, size_t alignment, size_t size) {
  init();
  int status = real_posix_memalign(out, alignment, size);
  if (status == 0) record('+', *out, size);
  return status;
}
void *aligned_alloc(size_t alignment, size_t size) {
  init(); void *p = real_aligned_alloc(alignment, size); record('+', p, size); return p;
}
