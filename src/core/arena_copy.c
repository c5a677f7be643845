/*
 * arena_copy.c -- gf_alloc_copy: a plain block filled with a copy of the caller's bytes, large
 * copies split over short-lived helper threads that each prefault and copy their part.
 */
#include "arena_internal.h"

#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- parallel copy-in
 *
 * Copying 100 MB into fresh arena pages costs one thread ~35 ms of page faults (the kernel
 * allocating and zeroing shmem pages) plus ~16 ms of memcpy; split over two threads that each
 * prefault and copy half, measured ~33 ms instead of ~51 ms. Short-lived threads: nothing
 * survives the call (so fork, signals and exit need no care); the part a thread cannot be
 * started for is copied by the caller. */

#define GF__PAR_MIN ((size_t)8 << 20)   /* smaller copies: one thread */
#define GF__PAR_PART ((size_t)4 << 20)  /* at least this much per thread */
#define GF__PAR_MAX 4                   /* beyond this memory bandwidth, not CPUs, limits */

typedef struct gf__copy_part {
    char *dst;
    const char *src;
    size_t n;
    int populate;
} gf__copy_part;

static void gf__copy_run(gf__copy_part *p) {
    if (p->populate) gf__populate(p->dst, p->n);
    memcpy(p->dst, p->src, p->n);
}

static void *gf__copy_thread(void *arg) {
    gf__copy_run(arg);
    return NULL;
}

/* Copy n bytes from src to dst (arena memory), prefaulting it first if populate, with up to
 * GF__PAR_MAX threads (parts split on page boundaries of dst). Never fails. */
static void gf__copy_in(char *dst, const char *src, size_t n, int populate) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t k = n >= GF__PAR_MIN && cpus > 1 ? n / GF__PAR_PART : 1;
    if (k > (size_t)cpus) k = (size_t)cpus;
    if (k > GF__PAR_MAX) k = GF__PAR_MAX;
    gf__copy_part parts[GF__PAR_MAX];
    pthread_t th[GF__PAR_MAX];
    int started[GF__PAR_MAX] = {0};
    size_t done = 0;
    for (size_t i = 0; i < k; i++) {
        size_t end = n;
        if (i + 1 < k) { /* a page boundary of dst near i+1 parts */
            uintptr_t cut = ((uintptr_t)dst + n / k * (i + 1)) & ~(uintptr_t)4095;
            end = cut > (uintptr_t)dst + done ? cut - (uintptr_t)dst : done;
        }
        parts[i] = (gf__copy_part){dst + done, src + done, end - done, populate};
        done = end;
    }
    for (size_t i = 1; i < k; i++)
        started[i] = gf__helper_start(&th[i], gf__copy_thread, &parts[i]) == 0;
    gf__copy_run(&parts[0]);
    for (size_t i = 1; i < k; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        else gf__copy_run(&parts[i]);
    }
}

/* Allocate a plain block and copy n bytes from src into it (see gilfree.h). Result 0 and *out.
 * Fails: GF_EINVAL (n 0), GF_ENOSPC. */
int gf_alloc_copy(gf_arena *a, const void *src, size_t n, gf_off *out) {
    return gf__alloc_copy_held(a, src, n, out, 0);
}

/* As gf_alloc_copy; with `hold`, the block is recorded for this thread's next ring put
 * (gf__block_hold_for_put) as soon as it is live, before the copy starts. Same results. */
int gf__alloc_copy_held(gf_arena *a, const void *src, size_t n, gf_off *out, int hold) {
    if (!a || !out || (!src && n)) return GF_EINVAL;
    int fresh;
    int rc = hold ? gf__alloc_raw_held(a, n, out, &fresh, 2, NULL)
                  : gf__alloc_raw(a, n, 0, out, &fresh);
    if (rc < 0) return rc;
    gf__copy_in(a->base + *out, src, n, fresh && n >= GF__POPULATE_MIN);
    return 0;
}
