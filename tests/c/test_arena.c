/* test_arena.c -- the shared-memory arena: allocator, objects, process table. */
#include "gilfree.h"
#include "test.h"

#include "../../src/core/internal.h"

#include <dirent.h>
#include <pthread.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define MiB ((size_t)1 << 20)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* The reserve for "default" arenas: GF_TEST_RESERVE if set, 1 GiB under valgrind (it cannot
 * map 64 GiB), else 0 (GF_ARENA_DEFAULT_RESERVE). */
static size_t test_reserve(void) {
    if (getenv("GF_TEST_RESERVE")) return (size_t)strtoull(getenv("GF_TEST_RESERVE"), 0, 0);
    if (getenv("GF_TEST_VALGRIND")) return (size_t)1 << 30;
    return 0;
}

static gf_arena *mk(size_t reserve) {
    gf_arena *a = NULL;
    if (reserve == 0) reserve = test_reserve();
    ASSERT_OK(gf_arena_create(reserve, &a));
    ASSERT(a != NULL);
    return a;
}

/* Fork a child running fn(a, arg) with its own slot; returns the pid. */
static pid_t spawn(gf_arena *a, void (*fn)(gf_arena *, void *), void *arg) {
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        if (gf_arena_after_fork_child(a) != 0) _exit(90);
        fn(a, arg);
        fflush(NULL);
        if (arg != (void *)1) gf_arena_detach(a); /* (void *)1: fn detached already */
        _exit(0);
    }
    return pid;
}

static int reap(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0) ASSERT(errno == EINTR);
    return st;
}

static void reap_ok(pid_t pid) {
    int st = reap(pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("child %d: status 0x%x", (int)pid, st);
}

TEST(create_and_accessors) {
    gf_arena *a = mk(0);
    ASSERT(gf_arena_fd(a) >= 0);
    if (!test_reserve()) ASSERT_EQ(gf_arena_size(a), GF_ARENA_DEFAULT_RESERVE);
    ASSERT(gf_arena_base(a) != NULL);
    ASSERT(gf_arena_slot(a) < GF_ARENA_MAX_PROCS);
    uint32_t id = gf__self_ident(a);
    ASSERT(id != 0);
    ASSERT((id & 0x80000000u) == 0);
    ASSERT_EQ(gf__ident_alive(a, id), 1);
    ASSERT(gf__tid() != 0);
    ASSERT_EQ(gf__tid(), (uint32_t)syscall(SYS_gettid));
    /* The fd is close-on-exec. */
    ASSERT(fcntl(gf_arena_fd(a), F_GETFD) & FD_CLOEXEC);
    gf_arena_detach(a);

    gf_arena *b = NULL;
    ASSERT_EQ(gf_arena_create(4096, &b), GF_EINVAL);
    ASSERT(b == NULL);
    ASSERT_EQ(gf_arena_create(8 * MiB, &b), 0);
    ASSERT_EQ(gf_arena_size(b), 8 * MiB);
    gf_arena_detach(b);
}

TEST(alloc_alignment_and_reuse) {
    gf_arena *a = mk(0);
    gf_off offs[200];
    for (int i = 0; i < 200; i++) {
        size_t sz = 1 + rnd() % 5000;
        ASSERT_OK(gf_alloc(a, sz, &offs[i]));
        ASSERT(offs[i] != 0);
        ASSERT_EQ(offs[i] % 64, 0);
        ASSERT_EQ((uintptr_t)gf_ptr(a, offs[i]) % 64, 0);
        ASSERT(gf_block_size(a, offs[i]) >= sz);
        ASSERT_EQ(gf_block_size(a, offs[i]) % 64, 0);
        memset(gf_ptr(a, offs[i]), i & 0xff, gf_block_size(a, offs[i]));
        ASSERT_EQ(gf_off_of(a, gf_ptr(a, offs[i])), offs[i]);
    }
    /* Nothing overlapped: each block still holds its own pattern. */
    for (int i = 0; i < 200; i++) {
        unsigned char *p = gf_ptr(a, offs[i]);
        size_t n = gf_block_size(a, offs[i]);
        for (size_t j = 0; j < n; j++) ASSERT_EQ(p[j], i & 0xff);
    }
    ASSERT_EQ(gf__arena_verify(a), 200);
    /* LIFO reuse: freeing then allocating the same size gives the same block back. */
    for (int i = 0; i < 200; i++) {
        size_t n = gf_block_size(a, offs[i]);
        ASSERT_OK(gf_free(a, offs[i]));
        ASSERT_EQ(gf_block_size(a, offs[i]), 0);
        gf_off again;
        ASSERT_OK(gf_alloc(a, n, &again));
        ASSERT_EQ(again, offs[i]);
    }
    ASSERT_EQ(gf__arena_verify(a), 200);
    for (int i = 0; i < 200; i++) ASSERT_OK(gf_free(a, offs[i]));
    ASSERT_EQ(gf__arena_verify(a), 0);
    gf_arena_detach(a);
}

TEST(many_sizes_including_large) {
    setenv("GILFREE_ARENA_WARM_MB", "64", 1); /* below 100 MiB: the big free is punched */
    gf_arena *a = mk(0);
    size_t sizes[] = {1, 63, 64, 65, 127, 128, 1000, 1024, 1025, 4095, 4096, 4097, 65536,
                      65537, 1 * MiB - 1, 1 * MiB, 1 * MiB + 1, 3 * MiB, 100 * MiB};
    size_t n = sizeof sizes / sizeof sizes[0];
    gf_off offs[32];
    for (size_t i = 0; i < n; i++) {
        ASSERT_OK(gf_alloc(a, sizes[i], &offs[i]));
        size_t u = gf_block_size(a, offs[i]);
        ASSERT(u >= sizes[i]);
        /* Size classes waste at most 25% (and nothing for a power of two). */
        if (sizes[i] > 1024) ASSERT(u <= sizes[i] + sizes[i] / 4);
        else ASSERT(u <= sizes[i] + 63);
        if ((sizes[i] & (sizes[i] - 1)) == 0 && sizes[i] >= 64) ASSERT_EQ(u, sizes[i]);
        unsigned char *p = gf_ptr(a, offs[i]);
        p[0] = 0xa5;
        p[sizes[i] - 1] = 0x5a;
    }
    /* Write the whole 100 MiB block, then check the neighbours are intact. */
    memset(gf_ptr(a, offs[n - 1]), 0x77, 100 * MiB);
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned char *p = gf_ptr(a, offs[i]);
        ASSERT_EQ(p[0], sizes[i] == 1 ? 0x5a : 0xa5);
        ASSERT_EQ(p[sizes[i] - 1], 0x5a);
    }
    ASSERT_EQ(gf__arena_verify(a), (int)n);
    for (size_t i = 0; i < n; i++) ASSERT_OK(gf_free(a, offs[i]));
    ASSERT_EQ(gf__arena_verify(a), 0);
    /* The freed big blocks merged into one free block, which serves the next 100 MiB request
     * from its start; its pages went back to the kernel (over the warm budget): zeros. */
    gf_off big;
    ASSERT_OK(gf_alloc(a, 100 * MiB, &big));
    ASSERT(big <= offs[n - 1]);
    ASSERT_EQ(((unsigned char *)gf_ptr(a, offs[n - 1]))[12345], 0);
    gf_arena_stats st;
    ASSERT_OK(gf_arena_stats_get(a, &st));
    ASSERT(st.punched >= 36 * MiB);
    ASSERT(gf__arena_verify(a) == 1);
    gf_arena_detach(a);
}

TEST(stats) {
    gf_arena *a = mk(0);
    gf_arena_stats st0, st;
    ASSERT_OK(gf_arena_stats_get(a, &st0));
    ASSERT_EQ(st0.reserved, gf_arena_size(a));
    ASSERT_EQ(st0.in_use, 0);
    ASSERT_EQ(st0.live_blocks, 0);
    ASSERT_EQ(st0.live_procs, 1);
    gf_off x, y;
    ASSERT_OK(gf_alloc(a, 100, &x));
    ASSERT_OK(gf_alloc(a, 5000, &y));
    ASSERT_OK(gf_arena_stats_get(a, &st));
    ASSERT_EQ(st.live_blocks, 2);
    ASSERT_EQ(st.in_use, gf_block_size(a, x) + gf_block_size(a, y));
    ASSERT(st.top >= st.in_use + 128);
    ASSERT_OK(gf_free(a, x));
    ASSERT_OK(gf_arena_stats_get(a, &st));
    ASSERT_EQ(st.live_blocks, 1);
    ASSERT_EQ(st.in_use, gf_block_size(a, y));
    uint64_t top = st.top;
    ASSERT_OK(gf_alloc(a, 100, &x)); /* reused: top does not move */
    ASSERT_OK(gf_arena_stats_get(a, &st));
    ASSERT_EQ(st.top, top);

    /* A second attached process is counted while it lives. */
    int pfd[2], qfd[2];
    ASSERT(pipe(pfd) == 0 && pipe(qfd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (gf_arena_after_fork_child(a)) _exit(90);
        char c = 1;
        if (write(pfd[1], &c, 1) != 1) _exit(91);
        if (read(qfd[0], &c, 1) != 1) _exit(92);
        gf_arena_detach(a);
        _exit(0);
    }
    char c;
    ASSERT_EQ(read(pfd[0], &c, 1), 1);
    ASSERT_OK(gf_arena_stats_get(a, &st));
    ASSERT_EQ(st.live_procs, 2);
    ASSERT_EQ(write(qfd[1], &c, 1), 1);
    reap_ok(pid);
    ASSERT_OK(gf_arena_stats_get(a, &st));
    ASSERT_EQ(st.live_procs, 1);
    gf_arena_detach(a);
}

TEST(bad_frees_and_sizes) {
    gf_arena *a = mk(0);
    gf_off x;
    ASSERT_EQ(gf_alloc(a, 0, &x), GF_EINVAL);
    ASSERT_EQ(gf_alloc(a, SIZE_MAX, &x), GF_ENOSPC);
    ASSERT_EQ(gf_alloc(a, gf_arena_size(a), &x), GF_ENOSPC);
    ASSERT_OK(gf_alloc(a, 200, &x));
    ASSERT_EQ(gf_free(a, 0), GF_EINVAL);
    ASSERT_EQ(gf_free(a, x + 64), GF_EINVAL);
    ASSERT_EQ(gf_free(a, x - 64), GF_EINVAL);
    ASSERT_EQ(gf_free(a, x + 1), GF_EINVAL);
    ASSERT_EQ(gf_free(a, UINT64_MAX), GF_EINVAL);
    ASSERT_OK(gf_free(a, x));
    ASSERT_EQ(gf_free(a, x), GF_EINVAL); /* double free */
    ASSERT_EQ(gf__arena_verify(a), 0);
    /* The double free did not put the block on the list twice. */
    gf_off y, z;
    ASSERT_OK(gf_alloc(a, 200, &y));
    ASSERT_OK(gf_alloc(a, 200, &z));
    ASSERT_EQ(y, x);
    ASSERT(z != x);
    gf_arena_detach(a);
}

TEST(check_block_garbage) {
    gf_arena *a = mk(16 * MiB);
    size_t size = gf_arena_size(a);
    gf_off live[64];
    for (int i = 0; i < 64; i++) ASSERT_OK(gf_alloc(a, 1 + rnd() % 3000, &live[i]));
    gf_off dead;
    ASSERT_OK(gf_alloc(a, 100, &dead));
    ASSERT_OK(gf_free(a, dead));
    /* Fill payloads with look-alike headers to tempt the validator. */
    for (int i = 0; i < 64; i++) {
        uint64_t *p = gf_ptr(a, live[i]);
        size_t n = gf_block_size(a, live[i]) / 8;
        for (size_t j = 0; j < n; j++) p[j] = (j % 2) ? live[i] + 8 * j + 8 : 0x4556494cu;
    }
    for (int i = 0; i < 64; i++) {
        size_t u = gf_block_size(a, live[i]);
        ASSERT_OK(gf_arena_check_block(a, live[i], 0));
        ASSERT_OK(gf_arena_check_block(a, live[i], u));
        ASSERT_EQ(gf_arena_check_block(a, live[i], u + 1), GF_EBADMSG);
        ASSERT_EQ(gf_arena_check_block(a, live[i], SIZE_MAX), GF_EBADMSG);
        ASSERT_EQ(gf_arena_check_block(a, live[i] + 64, 1), GF_EBADMSG);
        ASSERT_EQ(gf_arena_check_block(a, live[i] + 1, 1), GF_EBADMSG);
        ASSERT_EQ(gf_arena_check_block(a, live[i] - 1, 1), GF_EBADMSG);
    }
    ASSERT_EQ(gf_arena_check_block(a, dead, 1), GF_EBADMSG);
    uint64_t edge[] = {0, 1, 63, 64, 128, size - 64, size - 1, size, size + 64,
                       UINT64_MAX, UINT64_MAX - 63, UINT64_MAX - 64, (uint64_t)1 << 63,
                       (uint64_t)-(int64_t)(uintptr_t)gf_arena_base(a)};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        ASSERT_EQ(gf_arena_check_block(a, edge[i], 0), GF_EBADMSG);
        ASSERT_EQ(gf_block_size(a, edge[i]), 0);
        ASSERT_EQ(gf_obj_check(a, edge[i], GF_OBJ_RAW), GF_EBADMSG);
    }
    /* Random 64-bit values, random values inside the used range, aligned ones. */
    int hits = 0;
    for (int i = 0; i < 300000; i++) {
        uint64_t off = rnd();
        if (i % 3 == 1) off %= size;
        if (i % 3 == 2) off = (off % size) & ~(uint64_t)63;
        size_t len = (size_t)(i % 5 == 0 ? rnd() : rnd() % 5000);
        int r = gf_arena_check_block(a, off, len);
        if (r == 0) {
            int found = 0;
            for (int j = 0; j < 64; j++) found |= live[j] == off;
            ASSERT(found);
            ASSERT(len <= gf_block_size(a, off));
            hits++;
        } else {
            ASSERT_EQ(r, GF_EBADMSG);
        }
    }
    (void)hits;
    ASSERT_EQ(gf__arena_verify(a), 64);
    gf_arena_detach(a);
}

TEST(arena_full_enospc) {
    gf_arena *a = mk(4 * MiB);
    gf_off offs[4096];
    int n = 0;
    int r;
    while ((r = gf_alloc(a, 64 * 1024, &offs[n])) == 0) n++;
    ASSERT_EQ(r, GF_ENOSPC);
    ASSERT(n > 10);
    ASSERT_EQ(gf__arena_verify(a), n);
    /* Freeing one block makes room for that class again, and for smaller requests once the
     * bump region is exhausted (they take the larger free block). */
    ASSERT_OK(gf_free(a, offs[n - 1]));
    gf_off x;
    ASSERT_OK(gf_alloc(a, 64 * 1024, &x));
    ASSERT_EQ(x, offs[n - 1]);
    int m = 0;
    gf_off small[4096];
    while (gf_alloc(a, 64, &small[m]) == 0) m++;
    ASSERT_OK(gf_free(a, offs[0]));
    gf_off y;
    ASSERT_OK(gf_alloc(a, 64, &y));
    ASSERT_EQ(y, offs[0]);
    /* The rest of the freed 64 KiB block is split for the next ones: 1023 more 64-byte
     * blocks (128 bytes each with the header, the last header-only block left over). */
    int more = 0;
    while (gf_alloc(a, 64, &y) == 0) more++;
    ASSERT_EQ(more, 64 * 1024 / 128 - 1);
    ASSERT(gf__arena_verify(a) > 0);
    gf_arena_detach(a);
}

/* ------------------------------------------------------------------ objects */

static int pool_destroyed;
/* A destructor for GF_OBJ_POOL (weak, as in internal.h): records the call. */
void gf__pool_destroy(gf_arena *a, gf_off off) {
    /* Called at zero, before the block is freed. */
    ASSERT(gf_block_size(a, off) > 0);
    ASSERT_EQ(((gf_obj *)gf_ptr(a, off))->refs, 0);
    pool_destroyed++;
}

TEST(obj_refcounts) {
    gf_arena *a = mk(0);
    gf_off o;
    ASSERT_EQ(gf_obj_new(a, 0, 64, &o), GF_EINVAL);
    ASSERT_EQ(gf_obj_new(a, GF_OBJ__MAX, 64, &o), GF_EINVAL);
    ASSERT_EQ(gf_obj_new(a, GF_OBJ_RAW, 0, &o), GF_EINVAL);
    ASSERT_OK(gf_obj_new(a, GF_OBJ_BUFFER, 1000, &o));
    gf_obj *ob = gf_ptr(a, o);
    ASSERT_EQ(ob->type, GF_OBJ_BUFFER);
    ASSERT_EQ(ob->refs, 1);
    ASSERT(gf_block_size(a, o) >= 1000);
    ASSERT_OK(gf_obj_check(a, o, GF_OBJ_BUFFER));
    ASSERT_EQ(gf_obj_check(a, o, GF_OBJ_RAW), GF_EBADMSG);
    ASSERT_OK(gf_obj_incref(a, o));
    ASSERT_OK(gf_obj_incref(a, o));
    ASSERT_EQ(ob->refs, 3);
    ASSERT_EQ(gf_obj_decref(a, o), 2);
    ASSERT_EQ(gf_obj_decref(a, o), 1);
    ASSERT_EQ(gf_obj_decref(a, o), 0);
    ASSERT_EQ(gf_block_size(a, o), 0);
    ASSERT_EQ(gf_obj_check(a, o, GF_OBJ_BUFFER), GF_EBADMSG);
    ASSERT_EQ(gf_obj_decref(a, o), GF_EINVAL);
    ASSERT_EQ(gf_obj_incref(a, o), GF_EINVAL);
    /* A plain block is not an object. */
    gf_off raw;
    ASSERT_OK(gf_alloc(a, 64, &raw));
    ASSERT_EQ(gf_obj_incref(a, raw), GF_EINVAL);
    ASSERT_EQ(gf_obj_check(a, raw, 0), GF_EBADMSG);
    /* Small sizes still hold the header. */
    gf_off tiny;
    ASSERT_OK(gf_obj_new(a, GF_OBJ_RAW, 1, &tiny));
    ASSERT_OK(gf_obj_check(a, tiny, GF_OBJ_RAW));
    ASSERT_EQ(gf_obj_decref(a, tiny), 0);
    /* A type with a destructor gets it called once, at zero. */
    gf_off p;
    ASSERT_OK(gf_obj_new(a, GF_OBJ_POOL, 128, &p));
    ASSERT_OK(gf_obj_incref(a, p));
    ASSERT_EQ(gf_obj_decref(a, p), 1);
    ASSERT_EQ(pool_destroyed, 0);
    ASSERT_EQ(gf_obj_decref(a, p), 0);
    ASSERT_EQ(pool_destroyed, 1);
    ASSERT_EQ(gf__arena_verify(a), 1); /* only `raw` is left */
    gf_arena_detach(a);
}

static void child_decref(gf_arena *a, void *arg) {
    gf_off o = *(gf_off *)arg;
    if (gf_obj_check(a, o, GF_OBJ_RAW) != 0) _exit(10);
    if (gf_obj_decref(a, o) < 0) _exit(11);
}

TEST(obj_refcounts_across_fork) {
    gf_arena *a = mk(0);
    gf_off o;
    ASSERT_OK(gf_obj_new(a, GF_OBJ_RAW, 256, &o));
    for (int i = 0; i < 9; i++) ASSERT_OK(gf_obj_incref(a, o)); /* 10 refs */
    pid_t pids[8];
    for (int i = 0; i < 8; i++) pids[i] = spawn(a, child_decref, &o);
    for (int i = 0; i < 8; i++) reap_ok(pids[i]);
    ASSERT_EQ(((gf_obj *)gf_ptr(a, o))->refs, 2);
    reap_ok(spawn(a, child_decref, &o));
    ASSERT_EQ(((gf_obj *)gf_ptr(a, o))->refs, 1);
    reap_ok(spawn(a, child_decref, &o)); /* the child frees it */
    ASSERT_EQ(gf_block_size(a, o), 0);
    ASSERT_EQ(gf_obj_check(a, o, GF_OBJ_RAW), GF_EBADMSG);
    ASSERT_EQ(gf__arena_verify(a), 0);
    gf_arena_detach(a);
}

/* ------------------------------------------------------------------ crash safety */

static void hammer(gf_arena *a, void *arg) {
    (void)arg;
    gf_off held[64] = {0};
    uint64_t s = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
    for (;;) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        int i = (int)(s % 64);
        if (held[i]) {
            if (gf_free(a, held[i])) _exit(20);
            held[i] = 0;
        } else {
            size_t sz = (s >> 8) % 4 == 0 ? 1 + (s >> 16) % 200000 : 1 + (s >> 16) % 2000;
            if (gf_alloc(a, sz, &held[i])) _exit(21);
            *(volatile char *)gf_ptr(a, held[i]) = 1;
        }
    }
}

TEST(sigkill_during_alloc_free) {
    gf_arena *a = mk(0);
    for (int round = 0; round < 30; round++) {
        pid_t pids[2];
        for (int k = 0; k < 2; k++) pids[k] = spawn(a, hammer, NULL);
        usleep(1000 + (useconds_t)(rnd() % 20000));
        for (int k = 0; k < 2; k++) kill(pids[k], SIGKILL);
        for (int k = 0; k < 2; k++) {
            int st = reap(pids[k]);
            ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        }
        /* The allocator lock may have been held by a dead process: it still works. */
        ASSERT(gf__arena_verify(a) >= 0);
        gf_off offs[100];
        for (int i = 0; i < 100; i++) {
            ASSERT_OK(gf_alloc(a, 1 + rnd() % 3000, &offs[i]));
            memset(gf_ptr(a, offs[i]), 0xee, gf_block_size(a, offs[i]));
        }
        for (int i = 0; i < 100; i++) ASSERT_OK(gf_free(a, offs[i]));
        ASSERT(gf__arena_verify(a) >= 0);
    }
    /* The dead hammers' slots were reclaimed: the table did not grow past a few. */
    gf_arena_stats st;
    ASSERT_OK(gf_arena_stats_get(a, &st));
    ASSERT_EQ(st.live_procs, 1);
    gf_arena_detach(a);
}

/* A process killed while it holds the allocator lock: the next locker gets EOWNERDEAD,
 * makes the lock consistent and carries on. The lock sits at offset 64 of the arena header
 * (first cache line after the fixed fields, see gf__arena_hdr in arena_internal.h). */
TEST(sigkill_holding_alloc_lock) {
    gf_arena *a = mk(0);
    int pfd[2];
    ASSERT(pipe(pfd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (gf_arena_after_fork_child(a)) _exit(90);
        pthread_mutex_t *lock = (pthread_mutex_t *)((char *)gf_arena_base(a) + 64);
        if (pthread_mutex_lock(lock) != 0) _exit(91);
        char c = 1;
        if (write(pfd[1], &c, 1) != 1) _exit(92);
        for (;;) pause();
    }
    char c;
    ASSERT_EQ(read(pfd[0], &c, 1), 1);
    kill(pid, SIGKILL);
    reap(pid);
    for (int i = 0; i < 3; i++) {
        gf_off x;
        ASSERT_OK(gf_alloc(a, 10, &x));
        ASSERT_OK(gf_free(a, x));
    }
    ASSERT(gf__arena_verify(a) >= 0);
    gf_arena_detach(a);
}

/* ------------------------------------------------------------------ per-thread block cache */

/* Fill a block with a pattern naming its owner and index; check it later. */
static void tc_fill(gf_arena *a, gf_off off, uint64_t tag) {
    uint64_t *p = gf_ptr(a, off);
    size_t n = gf_block_size(a, off) / 8;
    for (size_t i = 0; i < n; i++) p[i] = tag ^ (i * 0x9e3779b97f4a7c15ull);
}
static int tc_check(gf_arena *a, gf_off off, uint64_t tag) {
    const uint64_t *p = gf_ptr(a, off);
    size_t n = gf_block_size(a, off) / 8;
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] != (tag ^ (i * 0x9e3779b97f4a7c15ull))) return 0;
    return 1;
}

#define TC_N 3000

/* Allocate TC_N small blocks with patterns (sizes across the cached classes and a few larger),
 * record their offsets in `rec` (shared), wait at the pipe barrier, check every pattern, free
 * all. Result 0 or a nonzero failure step. */
static int tc_churn(gf_arena *a, uint64_t who, gf_off *rec, int go_r, int ready_w) {
    gf_off offs[TC_N]; /* per thread */
    uint64_t s = who * 0x2545f4914f6cdd1dull + 1;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < TC_N; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            size_t sz = i % 50 == 0 ? 5000 + s % 9000 : 1 + s % 4096;
            if (gf_alloc(a, sz, &offs[i])) return 1;
            tc_fill(a, offs[i], who << 32 | (uint64_t)i);
            if (i % 7 == 3) { /* churn: free some right away and reallocate */
                if (gf_free(a, offs[i])) return 2;
                if (gf_alloc(a, sz, &offs[i])) return 3;
                tc_fill(a, offs[i], who << 32 | (uint64_t)i);
            }
        }
        if (rec && round == 2) memcpy(rec, offs, sizeof offs);
        if (round == 2 && ready_w >= 0) { /* both sides hold all their blocks now */
            char c = 1;
            if (write(ready_w, &c, 1) != 1) return 4;
            if (read(go_r, &c, 1) != 1) return 5;
        }
        for (int i = 0; i < TC_N; i++)
            if (!tc_check(a, offs[i], who << 32 | (uint64_t)i)) return 6;
        if (round == 2 && ready_w >= 0) { /* hold until the other side checked too */
            char c = 1;
            if (write(ready_w, &c, 1) != 1) return 7;
            if (read(go_r, &c, 1) != 1) return 8;
        }
        for (int i = 0; i < TC_N; i++)
            if (gf_free(a, offs[i])) return 9;
    }
    return 0;
}

static int cmp_off(const void *x, const void *y) {
    gf_off a = *(const gf_off *)x, b = *(const gf_off *)y;
    return (a > b) - (a < b);
}

/* Fork while the parent holds cached blocks: the child must not use them (the parent still
 * owns them). Both allocate heavily with distinct patterns; no block is handed out twice
 * (patterns intact, offset sets disjoint) and the allocator verifies afterwards. */
TEST(tcache_fork_child_does_not_reuse_parent_cache) {
    SKIP_UNDER_TSAN();
    gf_arena *a = mk(0);
    /* Put blocks into this thread's cache, of every cached class. */
    gf_off warm[24 * 20];
    for (int i = 0; i < 24 * 20; i++) ASSERT_OK(gf_alloc(a, (size_t)(i % 24 + 1) * 170, &warm[i]));
    for (int i = 0; i < 24 * 20; i++) ASSERT_OK(gf_free(a, warm[i]));
    gf_off recs;
    ASSERT_OK(gf_alloc(a, 2 * sizeof(gf_off) * TC_N, &recs));
    gf_off *rec = gf_ptr(a, recs);
    int p2c[2], c2p[2];
    ASSERT(pipe(p2c) == 0 && pipe(c2p) == 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        if (gf_arena_after_fork_child(a)) _exit(90);
        int r = tc_churn(a, 2, rec + TC_N, p2c[0], c2p[1]);
        gf_arena_detach(a);
        _exit(r);
    }
    int r = tc_churn(a, 1, rec, c2p[0], p2c[1]);
    int st = reap(pid);
    ASSERT_EQ(r, 0);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
    /* The blocks both held at the same moment are distinct. */
    qsort(rec, 2 * TC_N, sizeof(gf_off), cmp_off);
    for (int i = 1; i < 2 * TC_N; i++) ASSERT(rec[i] != rec[i - 1]);
    ASSERT_OK(gf_free(a, recs));
    ASSERT_EQ(gf__arena_verify(a), 0);
    gf_arena_stats s;
    ASSERT_OK(gf_arena_stats_get(a, &s));
    ASSERT_EQ(s.live_blocks, 0);
    ASSERT_EQ(s.in_use, 0);
    gf_arena_detach(a);
}

static gf_arena *tc_arena;
static void *tc_thread(void *arg) {
    uintptr_t who = (uintptr_t)arg;
    return (void *)(uintptr_t)tc_churn(tc_arena, who, NULL, -1, -1);
}

/* Threads allocate and free concurrently through their caches; everything is flushed at
 * thread exit, stats stay exact, the allocator verifies. */
TEST(tcache_threads) {
    gf_arena *a = mk(0);
    tc_arena = a;
    gf_arena_stats s0, s;
    ASSERT_OK(gf_arena_stats_get(a, &s0));
    pthread_t th[4];
    for (uintptr_t i = 0; i < 4; i++) ASSERT_EQ(pthread_create(&th[i], NULL, tc_thread, (void *)(i + 10)), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        ASSERT_EQ(pthread_join(th[i], &r), 0);
        ASSERT_EQ((uintptr_t)r, 0);
    }
    ASSERT_OK(gf_arena_stats_get(a, &s));
    ASSERT_EQ(s.live_blocks, s0.live_blocks);
    ASSERT_EQ(s.in_use, s0.in_use);
    ASSERT_EQ(gf__arena_verify(a), 0);
    gf_arena_detach(a);
}

static void *tc_alloc_free_exit(void *arg) {
    (void)arg;
    gf_off o[40];
    for (int i = 0; i < 40; i++)
        if (gf_alloc(tc_arena, 700, &o[i])) return (void *)1;
    for (int i = 0; i < 40; i++)
        if (gf_free(tc_arena, o[i])) return (void *)2;
    return NULL;
}

/* A thread's cached blocks go back to the shared lists when it exits: another thread then
 * reuses them without moving the bump pointer. */
TEST(tcache_flushed_at_thread_exit) {
    gf_arena *a = mk(0);
    tc_arena = a;
    pthread_t t;
    void *r;
    ASSERT_EQ(pthread_create(&t, NULL, tc_alloc_free_exit, NULL), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT(r == NULL);
    gf_arena_stats s0, s;
    ASSERT_OK(gf_arena_stats_get(a, &s0));
    ASSERT_EQ(s0.live_blocks, 0);
    gf_off o[40];
    for (int i = 0; i < 40; i++) ASSERT_OK(gf_alloc(a, 700, &o[i]));
    ASSERT_OK(gf_arena_stats_get(a, &s));
    ASSERT_EQ(s.top, s0.top); /* all 40 came from the flushed lists */
    for (int i = 0; i < 40; i++) ASSERT_OK(gf_free(a, o[i]));
    ASSERT_EQ(gf__arena_verify(a), 0);
    gf_arena_detach(a);
}

static void tc_child_alloc_free(gf_arena *a, void *arg) {
    (void)arg;
    gf_off o[40];
    for (int i = 0; i < 40; i++)
        if (gf_alloc(a, 300, &o[i])) _exit(40);
    for (int i = 0; i < 40; i++)
        if (gf_free(a, o[i])) _exit(41);
    /* spawn() detaches, which flushes this process's cache */
}

static void tc_child_flush_exit(gf_arena *a, void *arg) {
    (void)arg;
    gf_off o[40];
    for (int i = 0; i < 40; i++)
        if (gf_alloc(a, 300, &o[i])) _exit(40);
    for (int i = 0; i < 40; i++)
        if (gf_free(a, o[i])) _exit(41);
    gf_arena_flush(a);
    _exit(0); /* no detach: what a worker ending with _exit does */
}

/* gf_arena_flush before _exit gives the cached blocks back. */
TEST(tcache_flush_before_exit) {
    SKIP_UNDER_TSAN();
    gf_arena *a = mk(0);
    gf_off w;
    ASSERT_OK(gf_alloc(a, 300, &w)); /* this thread's cache exists (its arrays are a block) */
    ASSERT_OK(gf_free(a, w));
    reap_ok(spawn(a, tc_child_flush_exit, NULL));
    gf_arena_stats s0, s;
    ASSERT_OK(gf_arena_stats_get(a, &s0));
    gf_off o[40];
    for (int i = 0; i < 40; i++) ASSERT_OK(gf_alloc(a, 300, &o[i]));
    ASSERT_OK(gf_arena_stats_get(a, &s));
    ASSERT_EQ(s.top, s0.top);
    for (int i = 0; i < 40; i++) ASSERT_OK(gf_free(a, o[i]));
    ASSERT_EQ(gf__arena_verify(a), 0);
    gf_arena_detach(a);
}

/* gf_arena_detach flushes the cache: after a child allocated, freed and detached, the parent
 * reuses its blocks (the bump pointer does not move). */
TEST(tcache_flushed_at_detach) {
    SKIP_UNDER_TSAN();
    gf_arena *a = mk(0);
    reap_ok(spawn(a, tc_child_alloc_free, NULL));
    gf_arena_stats s0, s;
    ASSERT_OK(gf_arena_stats_get(a, &s0));
    ASSERT_EQ(s0.live_blocks, 0);
    gf_off o[40];
    for (int i = 0; i < 40; i++) ASSERT_OK(gf_alloc(a, 300, &o[i]));
    ASSERT_OK(gf_arena_stats_get(a, &s));
    ASSERT_EQ(s.top, s0.top);
    /* Double frees are still caught on the cached path. */
    ASSERT_OK(gf_free(a, o[0]));
    ASSERT_EQ(gf_free(a, o[0]), GF_EINVAL);
    for (int i = 1; i < 40; i++) ASSERT_OK(gf_free(a, o[i]));
    ASSERT_EQ(gf__arena_verify(a), 0);
    gf_arena_detach(a);
}

/* gf_block_share: a plain block with extra holders is freed by the last gf_free. */
TEST(block_share) {
    gf_arena *a = mk(0);
    gf_off x, o;
    ASSERT_OK(gf_alloc(a, 100000, &x));
    ASSERT_OK(gf_block_share(a, x));
    ASSERT_OK(gf_block_share(a, x));
    ASSERT_OK(gf_free(a, x));
    ASSERT_OK(gf_free(a, x));
    ASSERT(gf_block_size(a, x) > 0); /* one holder left */
    ASSERT_OK(gf_free(a, x));
    ASSERT_EQ(gf_block_size(a, x), 0);
    ASSERT_EQ(gf_free(a, x), GF_EINVAL);
    ASSERT_EQ(gf_block_share(a, x), GF_EINVAL); /* not live */
    ASSERT_OK(gf_obj_new(a, GF_OBJ_RAW, 64, &o));
    ASSERT_EQ(gf_block_share(a, o), GF_EINVAL); /* objects count references themselves */
    ASSERT_EQ(gf_obj_decref(a, o), 0);
    /* A reused block starts unshared. */
    ASSERT_OK(gf_alloc(a, 100000, &x));
    ASSERT_OK(gf_free(a, x));
    ASSERT_EQ(gf_block_size(a, x), 0);
    ASSERT_EQ(gf__arena_verify(a), 0);
    gf_arena_detach(a);
}

/* gf_alloc_copy: the bytes arrive intact on both the one-thread path and the split one (parts
 * cut on page boundaries of the destination, an unaligned source, odd lengths), into fresh and
 * into reused blocks; bad arguments are refused. */
TEST(alloc_copy) {
    gf_arena *a = mk(0);
    static const size_t sizes[] = {1, 63, 65536 + 7, 8 * MiB - 1, 8 * MiB + 4095, 21 * MiB + 3};
    size_t maxn = 21 * MiB + 3 + 1;
    unsigned char *src = malloc(maxn);
    ASSERT(src != NULL);
    for (size_t i = 0; i < maxn; i++) src[i] = (unsigned char)(rnd() >> 56);
    for (int round = 0; round < 2; round++) { /* round 1 reuses the freed blocks */
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            const unsigned char *from = src + (i & 1); /* odd source alignment */
            gf_off off;
            ASSERT_OK(gf_alloc_copy(a, from, n, &off));
            ASSERT_EQ(off % 64, 0);
            ASSERT(gf_block_size(a, off) >= n);
            if (memcmp(gf_ptr(a, off), from, n) != 0) FAIL("size %zu: bytes differ", n);
            ASSERT_OK(gf_free(a, off));
        }
    }
    gf_off off;
    ASSERT_EQ(gf_alloc_copy(a, src, 0, &off), GF_EINVAL);
    ASSERT_EQ(gf_alloc_copy(a, NULL, 10, &off), GF_EINVAL);
    ASSERT_EQ(gf_alloc_copy(NULL, src, 10, &off), GF_EINVAL);
    ASSERT_EQ(gf__arena_verify(a), 0);
    free(src);
    gf_arena_detach(a);
}

/* ------------------------------------------------------------------ process table */

struct ident_msg {
    uint32_t ident;
    uint32_t slot;
};

static int ctl_r, ctl_w, rep_r, rep_w;

static void report_and_wait(gf_arena *a, void *arg) {
    int detach = arg != NULL;
    struct ident_msg m = {gf__self_ident(a), gf_arena_slot(a)};
    if (detach) {
        gf_arena_detach(a);
        a = NULL;
    }
    if (write(rep_w, &m, sizeof m) != sizeof m) _exit(30);
    char c;
    if (read(ctl_r, &c, 1) != 1) _exit(31);
}

static struct ident_msg get_ident(void) {
    struct ident_msg m;
    ASSERT_EQ(read(rep_r, &m, sizeof m), (ssize_t)sizeof m);
    return m;
}

static void pipes(void) {
    int p[2], q[2];
    ASSERT(pipe(p) == 0 && pipe(q) == 0);
    ctl_r = p[0];
    ctl_w = p[1];
    rep_r = q[0];
    rep_w = q[1];
}

TEST(ident_alive_live_dead_detached) {
    gf_arena *a = mk(0);
    pipes();
    uint32_t me = gf__self_ident(a);

    /* A live child. */
    pid_t c1 = spawn(a, report_and_wait, NULL);
    struct ident_msg m1 = get_ident();
    ASSERT(m1.ident != me);
    ASSERT(m1.slot != gf_arena_slot(a));
    ASSERT((m1.ident & 0x80000000u) == 0);
    ASSERT_EQ(gf__ident_alive(a, m1.ident), 1);
    ASSERT_EQ(gf__ident_alive(a, m1.ident), 1); /* the check itself changes nothing */
    ASSERT_EQ(gf__ident_alive(a, me), 1);

    /* SIGKILLed: dead, even before it is reaped. */
    kill(c1, SIGKILL);
    int st = reap(c1);
    ASSERT(WIFSIGNALED(st));
    ASSERT_EQ(gf__ident_alive(a, m1.ident), 0);
    ASSERT_EQ(gf__ident_alive(a, m1.ident), 0);

    /* Slot reuse: the next child takes the dead child's slot, with a new generation. */
    pid_t c2 = spawn(a, report_and_wait, NULL);
    struct ident_msg m2 = get_ident();
    ASSERT_EQ(m2.slot, m1.slot);
    ASSERT(m2.ident != m1.ident);
    ASSERT_EQ(gf__ident_alive(a, m2.ident), 1);
    ASSERT_EQ(gf__ident_alive(a, m1.ident), 0);

    /* A child that detached (and lives on) is not attached any more. */
    pid_t c3 = spawn(a, report_and_wait, (void *)1);
    struct ident_msg m3 = get_ident();
    ASSERT_EQ(gf__ident_alive(a, m3.ident), 0);
    ASSERT_EQ(kill(c3, 0), 0); /* it is still running */

    /* A child that dies without SIGKILL but without detaching (plain _exit) is dead too. */
    char c = 1;
    ASSERT_EQ(write(ctl_w, &c, 1), 1);
    ASSERT_EQ(write(ctl_w, &c, 1), 1);
    reap_ok(c2);
    reap_ok(c3);
    ASSERT_EQ(gf__ident_alive(a, m2.ident), 0);

    /* Garbage idents. */
    ASSERT_EQ(gf__ident_alive(a, 0), 0);
    ASSERT_EQ(gf__ident_alive(a, 4095), 0);        /* generation 0 */
    ASSERT_EQ(gf__ident_alive(a, 0x7ffff000u | 4000), 0); /* slot never used */
    ASSERT_EQ(gf__ident_alive(a, 0xffffffffu), 0);
    ASSERT_EQ(gf__ident_alive(a, me), 1);
    gf_arena_detach(a);
}

static void check_parent_alive(gf_arena *a, void *arg) {
    uint32_t parent = *(uint32_t *)arg;
    if (gf__self_ident(a) == parent) _exit(40);
    if (gf__ident_alive(a, parent) != 1) _exit(41);
    if (gf__ident_alive(a, gf__self_ident(a)) != 1) _exit(42);
    if (gf__tid() != (uint32_t)getpid()) _exit(43); /* the tid cache was reset */
}

TEST(fork_child_gets_own_slot) {
    gf_arena *a = mk(0);
    uint32_t me = gf__self_ident(a);
    (void)gf__tid();
    reap_ok(spawn(a, check_parent_alive, &me));
    /* The parent's slot is still its own after the child exited. */
    ASSERT_EQ(gf__ident_alive(a, me), 1);
    ASSERT_EQ(gf__self_ident(a), me);
    gf_arena_detach(a);
}

static void attach_by_fd(gf_arena *a, void *arg) {
    (void)arg;
    gf_arena *b = NULL;
    if (gf_arena_attach(gf_arena_fd(a), &b) != 0) _exit(50);
    if (gf_arena_slot(b) == gf_arena_slot(a)) _exit(51);
    if (gf_arena_size(b) != gf_arena_size(a)) _exit(52);
    gf_off o;
    if (gf_alloc(b, 100, &o)) _exit(53);
    memcpy(gf_ptr(b, o), "hello", 6);
    /* The block is visible through the other mapping under the same offset. */
    if (strcmp(gf_ptr(a, o), "hello") != 0) _exit(54);
    if (write(rep_w, &o, sizeof o) != sizeof o) _exit(55);
    gf_arena_detach(b);
}

TEST(attach_by_fd) {
    gf_arena *a = mk(0);
    pipes();
    reap_ok(spawn(a, attach_by_fd, NULL));
    gf_off o;
    ASSERT_EQ(read(rep_r, &o, sizeof o), (ssize_t)sizeof o);
    ASSERT_EQ(strcmp(gf_ptr(a, o), "hello"), 0);
    ASSERT_OK(gf_arena_check_block(a, o, 6));

    gf_arena *b = NULL;
    ASSERT_EQ(gf_arena_attach(-1, &b), GF_EBADF);
    ASSERT_EQ(gf_arena_attach(12345, &b), GF_EBADF);
    /* Not an arena: a memfd full of zeros, and a too-small one. */
    int fd = memfd_create("notarena", MFD_CLOEXEC);
    ASSERT(fd >= 0);
    ASSERT(ftruncate(fd, 16 * MiB) == 0);
    ASSERT_EQ(gf_arena_attach(fd, &b), GF_EINVAL);
    ASSERT(ftruncate(fd, 100) == 0);
    ASSERT_EQ(gf_arena_attach(fd, &b), GF_EINVAL);
    close(fd);
    int p[2];
    ASSERT(pipe(p) == 0);
    ASSERT_EQ(gf_arena_attach(p[0], &b), GF_EINVAL);
    ASSERT(b == NULL);
    /* Attaching in the same process takes a second slot; the caller keeps its fd. */
    ASSERT_OK(gf_arena_attach(gf_arena_fd(a), &b));
    ASSERT(gf_arena_slot(b) != gf_arena_slot(a));
    ASSERT(gf_arena_fd(b) != gf_arena_fd(a));
    uint32_t bid = gf__self_ident(b);
    gf_arena_detach(b);
    ASSERT_EQ(gf__ident_alive(a, bid), 0);
    ASSERT(fcntl(gf_arena_fd(a), F_GETFD) >= 0);
    gf_arena_detach(a);
}

/* Count fds of this process that are gilfree memfds, and mappings of them. */
static int count_memfds(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    ASSERT(d != NULL);
    struct dirent *e;
    char path[512], target[512];
    while ((e = readdir(d)) != NULL) {
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(path, target, sizeof target - 1);
        if (k <= 0) continue;
        target[k] = 0;
        if (strstr(target, "memfd:gilfree")) n++;
    }
    closedir(d);
    FILE *f = fopen("/proc/self/maps", "r");
    ASSERT(f != NULL);
    char line[1024];
    while (fgets(line, sizeof line, f))
        if (strstr(line, "memfd:gilfree")) n++;
    fclose(f);
    return n;
}

static void use_then_exit(gf_arena *a, void *arg) {
    (void)arg;
    gf_off o;
    if (gf_alloc(a, MiB, &o)) _exit(60);
    memset(gf_ptr(a, o), 1, MiB);
}

TEST(nothing_left_after_last_process) {
    ASSERT_EQ(count_memfds(), 0);
    gf_arena *a = mk(0);
    ASSERT_EQ(count_memfds(), 2); /* the fd and the mapping */
    struct stat st;
    ASSERT(fstat(gf_arena_fd(a), &st) == 0);
    /* Children exit with and without detaching; one is SIGKILLed. */
    reap_ok(spawn(a, use_then_exit, NULL));
    pid_t k = spawn(a, hammer, NULL);
    usleep(2000);
    kill(k, SIGKILL);
    reap(k);
    gf_arena_detach(a);
    ASSERT_EQ(count_memfds(), 0);
    /* Nothing named in /dev/shm. */
    DIR *d = opendir("/dev/shm");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) ASSERT(strstr(e->d_name, "gilfree") == NULL);
        closedir(d);
    }
}

/* Many processes attach and detach at once: every one gets a distinct slot. */
static void slot_churn(gf_arena *a, void *arg) {
    (void)arg;
    for (int i = 0; i < 50; i++) {
        gf_arena *b = NULL;
        if (gf_arena_attach(gf_arena_fd(a), &b) != 0) _exit(70);
        if (gf__ident_alive(b, gf__self_ident(a)) != 1) _exit(71);
        if (gf__ident_alive(a, gf__self_ident(b)) != 1) _exit(72);
        gf_arena_detach(b);
    }
}

TEST(concurrent_attach_detach) {
    gf_arena *a = mk(0);
    pid_t pids[6];
    for (int i = 0; i < 6; i++) pids[i] = spawn(a, slot_churn, NULL);
    for (int i = 0; i < 6; i++) reap_ok(pids[i]);
    gf_arena_stats st;
    ASSERT_OK(gf_arena_stats_get(a, &st));
    ASSERT_EQ(st.live_procs, 1);
    gf_arena_detach(a);
}

TEST(process_table_full) {
#if defined(__SANITIZE_THREAD__)
    printf("# skipped under TSan (it tracks at most 64 locks held by one thread)\n");
    return;
#endif
    /* Each attach maps the arena again: use a small one, and enough fds. */
    struct rlimit rl;
    ASSERT(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_max < GF_ARENA_MAX_PROCS + 64) {
        printf("# skipped: RLIMIT_NOFILE hard limit %llu\n", (unsigned long long)rl.rlim_max);
        return;
    }
    rl.rlim_cur = GF_ARENA_MAX_PROCS + 64;
    ASSERT(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    gf_arena *a = mk(4 * MiB);
    static gf_arena *more[GF_ARENA_MAX_PROCS];
    int n = 0;
    int r;
    while ((r = gf_arena_attach(gf_arena_fd(a), &more[n])) == 0) n++;
    ASSERT_EQ(r, GF_EAGAIN);
    ASSERT_EQ(n, GF_ARENA_MAX_PROCS - 1);
    /* Detaching one frees a slot for the next. */
    uint32_t s = gf_arena_slot(more[100]);
    gf_arena_detach(more[100]);
    ASSERT_OK(gf_arena_attach(gf_arena_fd(a), &more[100]));
    ASSERT_EQ(gf_arena_slot(more[100]), s);
    for (int i = 0; i < n; i++) gf_arena_detach(more[i]);
    gf_arena_detach(a);
}

/* An arena created from a thread that then exits: the process must still read as alive (a
 * robust mutex belongs to a thread, so a holder thread keeps the life lock). */
static void *create_in_thread(void *arg) {
    gf_arena **out = arg;
    if (gf_arena_create(test_reserve(), out) != 0) *out = NULL;
    return NULL;
}

static void *attach_in_thread(void *arg) {
    gf_arena **io = arg;
    gf_arena *b = NULL;
    if (gf_arena_attach(gf_arena_fd(io[0]), &b) != 0) b = NULL;
    io[1] = b;
    return NULL;
}

static void check_alive_arg(gf_arena *a, void *arg) {
    uint32_t id = *(uint32_t *)arg;
    if (gf__ident_alive(a, id) != 1) _exit(80);
}

static void check_dead_arg(gf_arena *a, void *arg) {
    uint32_t id = *(uint32_t *)arg;
    if (gf__ident_alive(a, id) != 0) _exit(81);
}

TEST(attach_from_a_thread_that_exits) {
    gf_arena *a = NULL;
    pthread_t th;
    ASSERT(pthread_create(&th, NULL, create_in_thread, &a) == 0);
    ASSERT(pthread_join(th, NULL) == 0);
    ASSERT(a != NULL);
    uint32_t id = gf__self_ident(a);
    ASSERT_EQ(gf__ident_alive(a, id), 1);
    reap_ok(spawn(a, check_alive_arg, &id));
    gf_arena_stats st;
    ASSERT_OK(gf_arena_stats_get(a, &st));
    ASSERT_EQ(st.live_procs, 1);
    /* Attach a second handle from another short-lived thread. */
    gf_arena *io[2] = {a, NULL};
    ASSERT(pthread_create(&th, NULL, attach_in_thread, io) == 0);
    ASSERT(pthread_join(th, NULL) == 0);
    ASSERT(io[1] != NULL);
    uint32_t id2 = gf__self_ident(io[1]);
    reap_ok(spawn(a, check_alive_arg, &id2));
    gf_arena_detach(io[1]);
    reap_ok(spawn(a, check_dead_arg, &id2));
    /* Allocation works from the main thread too. */
    gf_off o;
    ASSERT_OK(gf_alloc(a, 100, &o));
    ASSERT_OK(gf_free(a, o));
    gf_arena_detach(a);
}

TEST_MAIN()
