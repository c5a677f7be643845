/* test_alloc.c -- big blocks: split, merge, pages handed back to the kernel (warm delay and
 * budget), and the heal after a process died holding the allocator lock (at every numbered
 * crash point, and at random moments). */
#include "gilfree.h"
#include "test.h"

#include "../../src/core/internal.h"

#include <sys/mman.h>
#include <sys/stat.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static gf_arena *mk(size_t reserve) {
    gf_arena *a = NULL;
    ASSERT_OK(gf_arena_create(reserve ? reserve : (size_t)1 << 30, &a));
    return a;
}

static gf_arena_stats stats(gf_arena *a) {
    gf_arena_stats st;
    ASSERT_OK(gf_arena_stats_get(a, &st));
    return st;
}

/* Three adjacent 64 KiB blocks merge into one free block whichever order they are freed in;
 * the merged block is split again for smaller requests, from its start. */
TEST(split_merge) {
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                     {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    gf_arena *a = mk(0);
    for (int o = 0; o < 6; o++) {
        gf_off x[3], guard;
        for (int i = 0; i < 3; i++) ASSERT_OK(gf_alloc(a, 64 * KiB, &x[i]));
        ASSERT_OK(gf_alloc(a, 8 * KiB, &guard)); /* a live big block above them */
        ASSERT_EQ(x[1], x[0] + 64 * KiB + 64);
        uint64_t free0 = stats(a).free;
        for (int i = 0; i < 3; i++) {
            ASSERT_OK(gf_free(a, x[orders[o][i]]));
            ASSERT(gf__arena_verify(a) >= 1);
        }
        /* one free block: 3 payloads + 2 absorbed headers */
        ASSERT_EQ(stats(a).free - free0, 3 * 64 * KiB + 2 * 64);
        gf_off y, z;
        ASSERT_OK(gf_alloc(a, 100 * KiB, &y));
        ASSERT_EQ(y, x[0]);
        ASSERT_OK(gf_alloc(a, 20 * KiB, &z));
        ASSERT_EQ(z, x[0] + gf_block_size(a, y) + 64); /* the rest, split again */
        ASSERT_OK(gf_free(a, y));
        ASSERT_OK(gf_free(a, z));
        ASSERT_OK(gf_free(a, guard));
        ASSERT(gf__arena_verify(a) >= 0);
    }
    ASSERT_EQ(gf__arena_verify(a), 0);
    gf_arena_detach(a);
}

/* Random big and small allocations and frees with their contents checked: the structure
 * verifies throughout and no block overlaps another. */
TEST(random_ops) {
    gf_arena *a = mk(0);
    enum { N = 256 };
    gf_off off[N] = {0};
    size_t len[N] = {0};
    for (int it = 0; it < 20000; it++) {
        int i = (int)(rnd() % N);
        if (off[i]) {
            unsigned char *p = gf_ptr(a, off[i]);
            ASSERT_EQ(p[0], (unsigned char)i);
            ASSERT_EQ(p[len[i] - 1], (unsigned char)(i ^ 0x5a));
            ASSERT_OK(gf_free(a, off[i]));
            off[i] = 0;
        } else {
            uint64_t r = rnd();
            len[i] = r & 1 ? 2 + (r >> 8) % (4 * KiB) : 4 * KiB + (r >> 8) % (600 * KiB);
            ASSERT_OK(gf_alloc(a, len[i], &off[i]));
            unsigned char *p = gf_ptr(a, off[i]);
            memset(p, 0xee, len[i]);
            p[0] = (unsigned char)i;
            p[len[i] - 1] = (unsigned char)(i ^ 0x5a);
        }
        if (it % (getenv("GF_TEST_EVERY") ? 1 : 1000) == 0) ASSERT(gf__arena_verify(a) >= 0);
    }
    for (int i = 0; i < N; i++)
        if (off[i]) ASSERT_OK(gf_free(a, off[i]));
    ASSERT_OK(gf_arena_flush(a));
    ASSERT_EQ(gf__arena_verify(a), 0);
    gf_arena_detach(a);
}

static uint64_t backing(gf_arena *a) {
    struct stat sb;
    ASSERT(fstat(gf_arena_fd(a), &sb) == 0);
    return (uint64_t)sb.st_blocks * 512u;
}

/* A freed block stays backed (warm) under the budget and within the warm delay; trim(all)
 * hands it back; after the delay a plain trim does; with a budget of 0 the free does. */
TEST(punch_warm) {
    setenv("GILFREE_ARENA_WARM_MS", "200", 1);
    setenv("GILFREE_ARENA_WARM_MB", "64", 1);
    gf_arena *a = mk(0);
    gf_off x, guard;
    ASSERT_OK(gf_alloc(a, 32 * MiB, &x));
    ASSERT_OK(gf_alloc(a, 8 * KiB, &guard));
    memset(gf_ptr(a, x), 1, 32 * MiB);
    uint64_t b0 = backing(a);
    ASSERT(b0 >= 32 * MiB);
    ASSERT_OK(gf_free(a, x));
    ASSERT(stats(a).warm >= 32 * MiB);
    ASSERT_OK(gf_arena_trim(a, 0)); /* young and under budget: kept */
    ASSERT(backing(a) >= 32 * MiB);
    /* reused at once: still backed, nothing to fault in */
    ASSERT_OK(gf_alloc(a, 32 * MiB, &x));
    ASSERT_EQ(((unsigned char *)gf_ptr(a, x))[MiB], 1);
    ASSERT_OK(gf_free(a, x));
    ASSERT_OK(gf_arena_trim(a, 1));
    ASSERT(backing(a) + 31 * MiB <= b0);
    ASSERT_EQ(stats(a).warm, 0);
    ASSERT(stats(a).punched >= 31 * MiB);
    /* after the warm delay, the periodic trim punches */
    ASSERT_OK(gf_alloc(a, 32 * MiB, &x));
    memset(gf_ptr(a, x), 2, 32 * MiB);
    ASSERT_OK(gf_free(a, x));
    ASSERT(backing(a) >= 32 * MiB);
    usleep(300 * 1000);
    ASSERT_OK(gf_arena_trim(a, 0));
    ASSERT(backing(a) < 2 * MiB);
    ASSERT_OK(gf_free(a, guard));
    ASSERT_EQ(gf__arena_verify(a), 0);
    gf_arena_detach(a);
}

/* Over the budget, the least recently freed blocks are handed back first, by the free. */
TEST(punch_budget_lru) {
    setenv("GILFREE_ARENA_WARM_MS", "100000", 1);
    setenv("GILFREE_ARENA_WARM_MB", "9", 1);
    gf_arena *a = mk(0);
    gf_off x[4], g[4];
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(gf_alloc(a, 4 * MiB, &x[i]));
        ASSERT_OK(gf_alloc(a, 8 * KiB, &g[i])); /* keeps them apart */
        memset(gf_ptr(a, x[i]), 0x11 * (i + 1), 4 * MiB);
    }
    for (int i = 0; i < 4; i++) ASSERT_OK(gf_free(a, x[i]));
    /* 16 MiB freed, 9 MiB budget: the two oldest went back (zeros), the newest two stay */
    ASSERT_EQ(((unsigned char *)gf_ptr(a, x[0]))[MiB], 0);
    ASSERT_EQ(((unsigned char *)gf_ptr(a, x[1]))[MiB], 0);
    ASSERT_EQ(((unsigned char *)gf_ptr(a, x[2]))[MiB], 0x33);
    ASSERT_EQ(((unsigned char *)gf_ptr(a, x[3]))[MiB], 0x44);
    ASSERT(stats(a).warm <= 9 * MiB);
    ASSERT(backing(a) < 10 * MiB);
    /* with budget 0 a free hands its block back at once */
    gf_arena_detach(a);
    setenv("GILFREE_ARENA_WARM_MB", "0", 1);
    a = mk(0);
    ASSERT_OK(gf_alloc(a, 16 * MiB, &x[0]));
    memset(gf_ptr(a, x[0]), 1, 16 * MiB);
    ASSERT_OK(gf_free(a, x[0]));
    ASSERT(backing(a) < MiB);
    gf_arena_detach(a);
}

/* ------------------------------------------------------------------ crash points */

static int cp_target; /* set in the child only */
void gf__alloc_crash_point(int where);
void gf__alloc_crash_point(int where) {
    if (where == cp_target) raise(SIGKILL);
}

/* The child: allocate from a free big block (split: points 1-4), or free a block between two
 * free ones (merge above, merge below, list: points 5-8). */
static void cp_child(gf_arena *a, int target) {
    ASSERT_OK(gf_arena_after_fork_child(a));
    gf_off y1, y2;
    if (target <= 4) {
        cp_target = target;
        gf_alloc(a, 40 * KiB, &y1); /* from the 200 KiB hole: split */
    } else {
        ASSERT_OK(gf_alloc(a, 40 * KiB, &y1)); /* from the hole's start */
        ASSERT_OK(gf_alloc(a, 40 * KiB, &y2));
        ASSERT_OK(gf_free(a, y1));
        cp_target = target;
        gf_free(a, y2); /* free below (y1) and above (the hole's rest): two merges */
    }
    _exit(7); /* not reached */
}

TEST(crash_points) {
    setenv("GILFREE_ARENA_WARM_MB", "1", 1);
    gf_arena *a = mk(0);
    for (int target = 1; target <= 8; target++) {
        gf_off x[3];
        for (int i = 0; i < 3; i++) ASSERT_OK(gf_alloc(a, 100 * KiB, &x[i]));
        ASSERT_OK(gf_free(a, x[1])); /* a 100 KiB hole between two live blocks */
        ASSERT_OK(gf_free(a, x[0])); /* ... merged: a 200 KiB hole */
        int live0 = gf__arena_verify(a);
        uint64_t heals0 = stats(a).heals;
        pid_t p = fork();
        ASSERT(p >= 0);
        if (p == 0) cp_child(a, target);
        int status;
        ASSERT(waitpid(p, &status, 0) == p);
        ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* the next locker heals: nothing leaked, the hole is whole again */
        ASSERT_EQ(gf__arena_verify(a), live0);
        ASSERT_EQ(stats(a).heals, heals0 + 1);
        gf_off y;
        ASSERT_OK(gf_alloc(a, 200 * KiB, &y));
        ASSERT_EQ(y, x[0]);
        ASSERT_OK(gf_free(a, y));
        ASSERT_OK(gf_free(a, x[2]));
        ASSERT(gf__arena_verify(a) >= 0);
    }
    gf_arena_detach(a);
}

/* Children allocate and free big blocks in a loop; the parent SIGKILLs them at random
 * moments (some inside the allocator lock). The arena always verifies afterwards. */
TEST(random_kills) {
    SKIP_UNDER_VALGRIND();
    setenv("GILFREE_ARENA_WARM_MB", "2", 1);
    gf_arena *a = mk(0);
    for (int round = 0; round < 40; round++) {
        pid_t p = fork();
        ASSERT(p >= 0);
        if (p == 0) {
            ASSERT_OK(gf_arena_after_fork_child(a));
            gf_off o[16] = {0};
            for (uint64_t s = (uint64_t)getpid() * 7919u;; s = s * 6364136223846793005ull + 1) {
                int i = (int)(s >> 60);
                if (o[i]) {
                    gf_free(a, o[i]);
                    o[i] = 0;
                } else {
                    gf_alloc(a, 4 * KiB + (s >> 20) % (300 * KiB), &o[i]);
                }
            }
        }
        usleep((useconds_t)(500 + rnd() % 3000));
        kill(p, SIGKILL);
        int status;
        ASSERT(waitpid(p, &status, 0) == p);
        ASSERT(gf__arena_verify(a) >= 0);
        gf_off y;
        ASSERT_OK(gf_alloc(a, 100 * KiB, &y));
        ASSERT_OK(gf_free(a, y));
    }
    ASSERT(gf__arena_verify(a) >= 0);
    gf_arena_detach(a);
}

TEST_MAIN()
