/* test_reclaimutil.h -- helpers of the tests of reclaim after death (test_reclaim.c,
 * test_ledger.c): a 1 GiB arena, its statistics, shared memory for a child to report in, and
 * killing a child with SIGKILL (a child that failed an assertion dies of SIGABRT instead: the
 * test fails). */
#ifndef GF_TEST_RECLAIMUTIL_H
#define GF_TEST_RECLAIMUTIL_H

#include "gilfree.h"
#include "test.h"

#include <stdatomic.h>
#include <sys/mman.h>

static void *shm_map(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    return p;
}

static gf_arena *mk(void) {
    gf_arena *a = NULL;
    ASSERT_OK(gf_arena_create((size_t)1 << 30, &a));
    return a;
}

static gf_arena_stats stats(gf_arena *a) {
    gf_arena_stats st;
    ASSERT_OK(gf_arena_stats_get(a, &st));
    return st;
}

/* Wait (20 s at most) until *stage >= v. */
static void wait_for(_Atomic int *stage, int v) {
    for (int i = 0; atomic_load(stage) < v; i++) {
        ASSERT(i < 20000);
        usleep(1000);
    }
}

static void kill_reap(pid_t p) {
    kill(p, SIGKILL);
    int st;
    ASSERT(waitpid(p, &st, 0) == p);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

#endif /* GF_TEST_RECLAIMUTIL_H */
