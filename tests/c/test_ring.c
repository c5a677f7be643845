/* test_ring.c -- gf_ring: FIFO order, wrap-around, inline and block messages, batches, maxitems,
 * deadlines, close, many producers and consumers (processes and threads), processes killed
 * mid-stream, signals, eventfd readiness, corrupt records. */
#include "gilfree.h"
#include "test.h"

#include "../../src/core/ring_internal.h"

#include <sys/stat.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

static gf_arena *A;

/* 1 GiB (sparse): small enough for valgrind, which cannot map the 64 GiB default. */
static void setup(void) { ASSERT_OK(gf_arena_create((size_t)1 << 30, &A)); }

static gf_off mkring(size_t cap, uint64_t maxitems, uint32_t flags) {
    gf_off r;
    ASSERT_OK(gf_ring_create(A, cap, maxitems, flags, &r));
    return r;
}

/* A shared scratch area (zeroed). */
static void *shared_mem(size_t n, gf_off *off) {
    gf_off o;
    ASSERT_OK(gf_alloc(A, n, &o));
    memset(gf_ptr(A, o), 0, n);
    if (off) *off = o;
    return gf_ptr(A, o);
}

/* fork a child attached to A (its own process slot). Result: pid in the parent, 0 in the
 * child. */
static pid_t child(void) {
    fflush(NULL);
    pid_t p = fork();
    ASSERT(p >= 0);
    if (p == 0) ASSERT_OK(gf_arena_after_fork_child(A));
    return p;
}

static int reap(pid_t p) {
    int st;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR) {}
    return st;
}

static void reap_ok(pid_t p) {
    int st = reap(p);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) FAIL("child %d failed: status 0x%x", p, st);
}

static uint8_t pat(uint64_t seed, size_t i) { return (uint8_t)(seed * 131 + i * 7 + (i >> 8)); }
static void fill(void *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) ((uint8_t *)p)[i] = pat(seed, i);
}
static bool check(const void *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++)
        if (((const uint8_t *)p)[i] != pat(seed, i)) return false;
    return true;
}

static int64_t ms_from_now(int ms) { return gf_now_ns() + (int64_t)ms * 1000000; }

/* ---------------------------------------------------------------- basics */

TEST(create_args) {
    setup();
    gf_off r;
    ASSERT_EQ(gf_ring_create(A, 4096, 0, 0x80, &r), GF_EINVAL);
    ASSERT_EQ(gf_ring_create(A, ((size_t)1 << 32) + 1, 0, 0, &r), GF_EINVAL);
    r = mkring(100, 0, 0); /* rounded up to 4096 */
    ASSERT_EQ(gf_ring_inline_max(A, r), 512);
    gf_off r2 = mkring(5000, 0, 0);
    ASSERT_EQ(gf_ring_inline_max(A, r2), 1024);
    ASSERT_EQ(gf_ring_count(A, r), 0);
    ASSERT_EQ(gf_ring_is_closed(A, r), 0);
    ASSERT_EQ(gf_ring_fd(A, r), -1);
    char buf[512];
    gf_msg m;
    ASSERT_EQ(gf_ring_get(A, r, &m, buf, 100, 0), GF_EINVAL); /* bufcap < inline_max */
    ASSERT_EQ(gf_ring_get_many(A, r, &m, 0, buf, sizeof buf, 0), GF_EINVAL);
    struct iovec big = {buf, GF_RING_MAX_MESSAGE + 1};
    ASSERT_EQ(gf_ring_putv(A, r, &big, 1, 0), GF_EMSGSIZE);
    ASSERT_EQ(gf_ring_putv(A, r, NULL, -1, 0), GF_EINVAL);
    ASSERT_EQ(gf_obj_decref(A, r), 0);
    ASSERT_EQ(gf_obj_decref(A, r2), 0);
}

TEST(fifo_order) {
    setup();
    gf_off r = mkring(1 << 16, 0, 0);
    char buf[8192], msg[300];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 100; i++) {
            size_t n = (size_t)(i * 3 + round) % sizeof msg;
            fill(msg, n, (uint64_t)(round * 1000 + i));
            ASSERT_OK(gf_ring_put(A, r, msg, n, 0));
        }
        ASSERT_EQ(gf_ring_count(A, r), 100);
        for (int i = 0; i < 100; i++) {
            gf_msg m;
            ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
            ASSERT_EQ(m.len, (size_t)(i * 3 + round) % sizeof msg);
            ASSERT_EQ(m.block, 0);
            ASSERT(check(m.data, m.len, (uint64_t)(round * 1000 + i)));
        }
        gf_msg m;
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), GF_ETIMEDOUT);
    }
    ASSERT_EQ(gf_obj_decref(A, r), 0);
}

/* Small ring, odd sizes: records cross the end again and again (PAD records). */
TEST(wraparound_pad) {
    setup();
    gf_off r = mkring(4096, 0, 0);
    char buf[512], msg[512];
    uint64_t put = 0, got = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = (size_t)(put * 37 % 513);
        fill(msg, n, put);
        int rc = gf_ring_put(A, r, msg, n, 0);
        if (rc == 0) put++;
        else ASSERT_EQ(rc, GF_ETIMEDOUT); /* full: drain some */
        if (rc != 0 || iter % 3 == 0) {
            gf_msg m;
            ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
            ASSERT_EQ(m.len, (size_t)(got * 37 % 513));
            ASSERT(check(m.data, m.len, got));
            got++;
        }
    }
    while (got < put) {
        gf_msg m;
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
        ASSERT(check(m.data, m.len, got));
        got++;
    }
    ASSERT(put > 10000);
    ASSERT_EQ(gf_ring_count(A, r), 0);
}

TEST(sizes_inline_and_block) {
    setup();
    gf_arena_stats st0, st1;
    gf_off r = mkring(1 << 16, 0, 0); /* inline_max 8 KiB */
    ASSERT_OK(gf_arena_stats_get(A, &st0));
    size_t inl = gf_ring_inline_max(A, r);
    char *buf = malloc(inl);
    size_t maxsz = 4 << 20;
    char *msg = malloc(maxsz);
    size_t sizes[200];
    int ns = 0;
    for (size_t s = 0; s <= 64; s++) sizes[ns++] = s;
    for (size_t s = 100; s <= 65536; s = s * 3 / 2) sizes[ns++] = s;
    sizes[ns++] = inl - 1;
    sizes[ns++] = inl;
    sizes[ns++] = inl + 1;
    sizes[ns++] = 65536;
    sizes[ns++] = maxsz;
    for (int k = 0; k < ns; k++) {
        fill(msg, sizes[k], (uint64_t)k);
        /* putv with the message in 3 pieces */
        size_t a1 = sizes[k] / 3, a2 = sizes[k] / 2;
        struct iovec v[3] = {{msg, a1}, {msg + a1, a2 - a1}, {msg + a2, sizes[k] - a2}};
        ASSERT_OK(gf_ring_putv(A, r, v, 3, GF_FOREVER));
        gf_msg m;
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, inl, 0), 1);
        ASSERT_EQ(m.len, sizes[k]);
        ASSERT(check(m.data, m.len, (uint64_t)k));
        if (sizes[k] > inl) {
            ASSERT(m.block != 0);
            ASSERT(gf_block_size(A, m.block) >= sizes[k]);
        } else {
            ASSERT_EQ(m.block, 0);
        }
        gf_msg_release(A, &m);
        ASSERT_EQ(m.block, 0);
    }
    ASSERT_OK(gf_arena_stats_get(A, &st1));
    ASSERT_EQ(st1.live_blocks, st0.live_blocks); /* every block was released */
    free(buf);
    free(msg);
}

TEST(put_block_zero_copy) {
    setup();
    gf_off r = mkring(4096, 0, 0);
    gf_off blk;
    ASSERT_OK(gf_alloc(A, 100000, &blk));
    fill(gf_ptr(A, blk), 100000, 9);
    ASSERT_EQ(gf_ring_put_block(A, r, blk, gf_block_size(A, blk) + 1, 0), GF_EINVAL);
    ASSERT_EQ(gf_ring_put_block(A, r, 12345, 10, 0), GF_EINVAL);
    ASSERT_OK(gf_ring_put_block(A, r, blk, 100000, 0));
    ASSERT_EQ(gf_ring_put_block(A, r, 0, 0, 0), GF_EINVAL);
    char buf[512];
    gf_msg m;
    ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
    ASSERT_EQ(m.block, blk);
    ASSERT_EQ(m.len, 100000);
    ASSERT(m.data == gf_ptr(A, blk));
    ASSERT(check(m.data, m.len, 9));
    gf_msg_release(A, &m);
    ASSERT_EQ(gf_block_size(A, blk), 0); /* freed */
}

TEST(batches) {
    setup();
    gf_off r = mkring(1 << 16, 0, 0);
    size_t inl = gf_ring_inline_max(A, r);
    char *buf = malloc(inl * 4);
    static char data[200][100];
    struct iovec v[200];
    for (int i = 0; i < 200; i++) {
        fill(data[i], (size_t)(i % 100), (uint64_t)i);
        v[i] = (struct iovec){data[i], (size_t)(i % 100)};
    }
    /* one large message in the batch: goes to a block */
    char *big = malloc(inl * 2);
    fill(big, inl * 2, 777);
    v[150] = (struct iovec){big, inl * 2};
    ASSERT_EQ(gf_ring_put_many(A, r, v, 200, 0), 200);
    ASSERT_EQ(gf_ring_count(A, r), 200);
    gf_msg m[64];
    int got = 0;
    while (got < 200) {
        int n = gf_ring_get_many(A, r, m, 64, buf, inl * 4, 0);
        ASSERT(n >= 1 && n <= 64);
        for (int k = 0; k < n; k++) {
            int i = got + k;
            if (i == 150) {
                ASSERT(m[k].block != 0);
                ASSERT_EQ(m[k].len, inl * 2);
                ASSERT(check(m[k].data, m[k].len, 777));
                gf_msg_release(A, &m[k]);
            } else {
                ASSERT_EQ(m[k].len, (size_t)(i % 100));
                ASSERT(check(m[k].data, m[k].len, (uint64_t)i));
            }
        }
        got += n;
        if (got == 64) ASSERT_EQ(n, 64);
    }
    ASSERT_EQ(gf_ring_get_many(A, r, m, 64, buf, inl * 4, 0), GF_ETIMEDOUT);

    /* get_many stops when the caller's buffer is full (bufcap = inline_max) */
    static char full[512];
    struct iovec w[20];
    for (int i = 0; i < 20; i++) w[i] = (struct iovec){full, 500};
    ASSERT_EQ(gf_ring_put_many(A, r, w, 20, 0), 20);
    int n = gf_ring_get_many(A, r, m, 64, buf, inl, 0);
    ASSERT(n >= 1 && (size_t)n * 500 <= inl);
    ASSERT(n < 20);

    /* put_many larger than the ring waits for space: a consumer thread drains */
    free(buf);
    free(big);
}

/* put_many bigger than the ring: it commits what fits, waits, continues. */
static gf_off T_ring;
static void *drain_thread(void *arg) {
    long want = (long)arg, got = 0;
    char buf[512];
    while (got < want) {
        gf_msg m[16];
        int n = gf_ring_get_many(A, T_ring, m, 16, buf, sizeof buf, GF_FOREVER);
        if (n < 0) FAIL("get_many %d", n);
        for (int k = 0; k < n; k++) {
            if (m[k].len != 8 || *(const uint64_t *)m[k].data != (uint64_t)(got + k))
                FAIL("order at %ld", got + k);
        }
        got += n;
    }
    return NULL;
}

TEST(put_many_waits_for_space) {
    setup();
    T_ring = mkring(4096, 0, 0); /* 256 records of 16 bytes */
    enum { N = 5000 };
    static uint64_t vals[N];
    static struct iovec v[N];
    for (int i = 0; i < N; i++) {
        vals[i] = (uint64_t)i;
        v[i] = (struct iovec){&vals[i], 8};
    }
    pthread_t t;
    pthread_create(&t, NULL, drain_thread, (void *)(long)N);
    ASSERT_EQ(gf_ring_put_many(A, T_ring, v, N, GF_FOREVER), N);
    pthread_join(t, NULL);
}

/* ---------------------------------------------------------------- limits and deadlines */

TEST(maxitems_and_deadlines) {
    setup();
    gf_off r = mkring(4096, 3, 0);
    char buf[512];
    gf_msg m;
    ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), GF_ETIMEDOUT);
    ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, gf_now_ns() - 1), GF_ETIMEDOUT);
    int64_t d = ms_from_now(30);
    ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, d), GF_ETIMEDOUT);
    ASSERT(gf_now_ns() >= d);
    ASSERT_EQ(gf_ring_wait_readable(A, r, 0), GF_ETIMEDOUT);
    for (int i = 0; i < 3; i++) ASSERT_OK(gf_ring_put(A, r, &i, sizeof i, 0));
    ASSERT_EQ(gf_ring_count(A, r), 3);
    int x = 3;
    ASSERT_EQ(gf_ring_put(A, r, &x, sizeof x, 0), GF_ETIMEDOUT);
    d = ms_from_now(30);
    ASSERT_EQ(gf_ring_put(A, r, &x, sizeof x, d), GF_ETIMEDOUT);
    ASSERT(gf_now_ns() >= d);
    struct iovec v = {&x, sizeof x};
    ASSERT_EQ(gf_ring_put_many(A, r, &v, 1, 0), GF_ETIMEDOUT);
    ASSERT_OK(gf_ring_wait_readable(A, r, 0));
    ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
    ASSERT_EQ(*(const int *)m.data, 0);
    ASSERT_OK(gf_ring_put(A, r, &x, sizeof x, 0));
    ASSERT_EQ(gf_ring_count(A, r), 3);

    /* put_many returns the count put before it would have to wait */
    gf_off r3 = mkring(4096, 3, 0);
    int vals[5] = {0, 1, 2, 3, 4};
    struct iovec vs[5];
    for (int i = 0; i < 5; i++) vs[i] = (struct iovec){&vals[i], sizeof vals[i]};
    ASSERT_EQ(gf_ring_put_many(A, r3, vs, 5, 0), 3);
    ASSERT_EQ(gf_ring_put_many(A, r3, vs, 5, 0), GF_ETIMEDOUT);
    ASSERT_EQ(gf_ring_count(A, r3), 3);

    /* bytes limit without maxitems */
    gf_off r2 = mkring(4096, 0, 0);
    char big[500] = {0};
    int n = 0;
    while (gf_ring_put(A, r2, big, sizeof big, 0) == 0) n++;
    ASSERT_EQ(n, 8); /* 8 x 512 bytes */
}

/* A producer blocked on a full ring (maxitems) is released by a get in another process. */
TEST(maxitems_blocks_then_proceeds) {
    setup();
    gf_off r = mkring(4096, 2, 0);
    _Atomic uint32_t *progress = shared_mem(64, NULL);
    pid_t p = child();
    if (p == 0) {
        for (int i = 0; i < 10; i++) {
            if (gf_ring_put(A, r, &i, sizeof i, GF_FOREVER) != 0) _exit(1);
            atomic_store(progress, (uint32_t)i + 1);
        }
        _exit(0);
    }
    while (atomic_load(progress) < 2) usleep(1000);
    usleep(20000);
    ASSERT_EQ(atomic_load(progress), 2); /* blocked on the third */
    char buf[512];
    for (int i = 0; i < 10; i++) {
        gf_msg m;
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, ms_from_now(5000)), 1);
        ASSERT_EQ(*(const int *)m.data, i);
        ASSERT(gf_ring_count(A, r) <= 2);
    }
    reap_ok(p);
}

/* ---------------------------------------------------------------- close */

TEST(close_semantics) {
    setup();
    gf_off r = mkring(4096, 0, 0);
    char buf[512];
    for (int i = 0; i < 3; i++) ASSERT_OK(gf_ring_put(A, r, &i, sizeof i, 0));
    gf_ring_close(A, r);
    gf_ring_close(A, r); /* idempotent */
    ASSERT_EQ(gf_ring_is_closed(A, r), 1);
    int x = 9;
    ASSERT_EQ(gf_ring_put(A, r, &x, sizeof x, 0), GF_EPIPE);
    struct iovec v = {&x, sizeof x};
    ASSERT_EQ(gf_ring_put_many(A, r, &v, 1, 0), GF_EPIPE);
    char big[100000];
    ASSERT_EQ(gf_ring_put(A, r, big, sizeof big, 0), GF_EPIPE);
    for (int i = 0; i < 3; i++) {
        gf_msg m;
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, GF_FOREVER), 1);
        ASSERT_EQ(*(const int *)m.data, i);
    }
    gf_msg m;
    ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, GF_FOREVER), GF_EPIPE);
    ASSERT_EQ(gf_ring_wait_readable(A, r, GF_FOREVER), GF_EPIPE);
}

/* Waiters (getters, readiness waiters, a producer waiting for space) are woken by close. */
TEST(close_wakes_waiters) {
    setup();
    gf_off empty = mkring(4096, 0, 0), full = mkring(4096, 1, 0);
    int one = 1;
    ASSERT_OK(gf_ring_put(A, full, &one, sizeof one, 0));
    _Atomic uint32_t *ready = shared_mem(64, NULL);
    pid_t kids[3];
    for (int k = 0; k < 3; k++) {
        kids[k] = child();
        if (kids[k] == 0) {
            char buf[512];
            gf_msg m;
            atomic_fetch_add(ready, 1);
            int rc = k == 0   ? gf_ring_get(A, empty, &m, buf, sizeof buf, GF_FOREVER)
                     : k == 1 ? gf_ring_wait_readable(A, empty, GF_FOREVER)
                              : gf_ring_put(A, full, &one, sizeof one, GF_FOREVER);
            _exit(rc == GF_EPIPE ? 0 : 10 + k);
        }
    }
    while (atomic_load(ready) < 3) usleep(1000);
    usleep(50000); /* let them fall asleep (not needed for correctness) */
    gf_ring_close(A, empty);
    gf_ring_close(A, full);
    for (int k = 0; k < 3; k++) reap_ok(kids[k]);
}

/* ---------------------------------------------------------------- many producers, consumers */

typedef struct mp_shared {
    _Atomic uint64_t bits[2][(200000 + 63) / 64];
    _Atomic uint64_t received;
    _Atomic uint32_t errors;
} mp_shared;

static size_t mp_len(uint64_t seq) {
    if (seq % 10007 == 5) return 20000 + seq % 1000; /* block path */
    if (seq % 7 == 0) return 16 + seq % 300;
    return 16;
}

static void mp_produce(gf_off r, int id, uint64_t n, bool batch) {
    static char msg[64][21100];
    struct iovec v[64];
    uint64_t s = 0;
    while (s < n) {
        int k = 0;
        do {
            size_t len = mp_len(s);
            uint64_t hdr[2] = {(uint64_t)id, s};
            memcpy(msg[k], hdr, 16);
            fill(msg[k] + 16, len - 16, s * 2 + (uint64_t)id);
            v[k] = (struct iovec){msg[k], len};
            k++;
            s++;
        } while (batch && k < 64 && s < n);
        int rc = batch ? gf_ring_put_many(A, r, v, (size_t)k, GF_FOREVER)
                       : gf_ring_put(A, r, v[0].iov_base, v[0].iov_len, GF_FOREVER);
        if (rc < 0 || (batch && rc != k)) FAIL("put: %d", rc);
    }
}

/* Per-producer order is checked per consumer (each consumer sees a subsequence of every
 * producer's stream, in order); loss and duplication through the shared bitmaps. */
static void mp_consume(gf_off r, mp_shared *S, bool batch) {
    size_t inl = gf_ring_inline_max(A, r);
    char *buf = malloc(inl * 8);
    int64_t last[2] = {-1, -1};
    gf_msg m[32];
    for (;;) {
        int n = gf_ring_get_many(A, r, m, batch ? 32 : 1, buf, inl * 8, GF_FOREVER);
        if (n == GF_EPIPE) break;
        if (n < 0) FAIL("get: %d", n);
        for (int k = 0; k < n; k++) {
            uint64_t hdr[2];
            if (m[k].len < 16) FAIL("short message");
            memcpy(hdr, m[k].data, 16);
            if (hdr[0] > 1 || hdr[1] >= 200000) FAIL("bad header");
            int id = (int)hdr[0];
            if ((int64_t)hdr[1] <= last[id]) FAIL("order: %d %lld after %lld", id,
                                                  (long long)hdr[1], (long long)last[id]);
            last[id] = (int64_t)hdr[1];
            if (m[k].len != mp_len(hdr[1])) FAIL("length");
            if (!check((const char *)m[k].data + 16, m[k].len - 16, hdr[1] * 2 + (uint64_t)id))
                FAIL("payload");
            uint64_t bit = 1ull << (hdr[1] % 64);
            if (atomic_fetch_or(&S->bits[id][hdr[1] / 64], bit) & bit) FAIL("duplicate");
            gf_msg_release(A, &m[k]);
        }
        atomic_fetch_add(&S->received, (uint64_t)n);
    }
    free(buf);
}

static void mpmc_procs(bool batch, uint64_t n) {
    setup();
    gf_off r = mkring(1 << 14, 0, 0);
    mp_shared *S = shared_mem(sizeof *S, NULL);
    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        kids[k] = child();
        if (kids[k] == 0) {
            if (k < 2) mp_produce(r, k, n, batch);
            else mp_consume(r, S, batch);
            _exit(0);
        }
    }
    reap_ok(kids[0]);
    reap_ok(kids[1]);
    gf_ring_close(A, r); /* consumers drain, then see EPIPE */
    reap_ok(kids[2]);
    reap_ok(kids[3]);
    ASSERT_EQ(atomic_load(&S->received), 2 * n);
    for (int id = 0; id < 2; id++)
        for (uint64_t s = 0; s < n; s++)
            if (!(atomic_load(&S->bits[id][s / 64]) & (1ull << (s % 64))))
                FAIL("lost %d/%llu", id, (unsigned long long)s);
}

TEST(mpmc_2x2_processes_200k) {
    SKIP_UNDER_TSAN();
    mpmc_procs(false, getenv("GF_TEST_VALGRIND") ? 5000 : 200000);
}

TEST(mpmc_2x2_processes_batched) {
    SKIP_UNDER_TSAN();
    mpmc_procs(true, getenv("GF_TEST_VALGRIND") ? 5000 : 200000);
}

/* The same with threads in one process (this is the test TSan checks). */
typedef struct thr_arg {
    gf_off r;
    int id;
    mp_shared *S;
    bool batch;
    uint64_t n;
} thr_arg;

static void *thr_prod(void *p) {
    thr_arg *t = p;
    uint64_t hdr[2] = {(uint64_t)t->id, 0};
    for (uint64_t s = 0; s < t->n; s++) {
        hdr[1] = s;
        int rc = gf_ring_put(A, t->r, hdr, 16, GF_FOREVER);
        if (rc) FAIL("put %d", rc);
    }
    return NULL;
}

static void *thr_cons(void *p) {
    thr_arg *t = p;
    char buf[4096];
    int64_t last[2] = {-1, -1};
    gf_msg m[16];
    for (;;) {
        int n = gf_ring_get_many(A, t->r, m, t->batch ? 16 : 1, buf, sizeof buf, GF_FOREVER);
        if (n == GF_EPIPE) break;
        if (n < 0) FAIL("get %d", n);
        for (int k = 0; k < n; k++) {
            uint64_t hdr[2];
            memcpy(hdr, m[k].data, 16);
            int id = (int)hdr[0];
            if ((int64_t)hdr[1] <= last[id]) FAIL("order");
            last[id] = (int64_t)hdr[1];
            uint64_t bit = 1ull << (hdr[1] % 64);
            if (atomic_fetch_or(&t->S->bits[id][hdr[1] / 64], bit) & bit) FAIL("duplicate");
        }
        atomic_fetch_add(&t->S->received, (uint64_t)n);
    }
    return NULL;
}

TEST(mpmc_2x2_threads) {
    setup();
    uint64_t n = getenv("GF_TEST_TSAN") || getenv("GF_TEST_VALGRIND") ? 20000 : 100000;
    gf_off r = mkring(4096, 0, 0);
    mp_shared *S = shared_mem(sizeof *S, NULL);
    pthread_t th[4];
    thr_arg args[4];
    for (int k = 0; k < 4; k++) {
        args[k] = (thr_arg){r, k % 2, S, k == 3, n};
        pthread_create(&th[k], NULL, k < 2 ? thr_prod : thr_cons, &args[k]);
    }
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    gf_ring_close(A, r);
    pthread_join(th[2], NULL);
    pthread_join(th[3], NULL);
    ASSERT_EQ(atomic_load(&S->received), 2 * n);
    for (int id = 0; id < 2; id++)
        for (uint64_t s = 0; s < n; s++)
            ASSERT(atomic_load(&S->bits[id][s / 64]) & (1ull << (s % 64)));
}

/* Ping-pong between two threads through two rings (exercises sleeping and waking). */
static gf_off PP[2];
static void *pong(void *arg) {
    (void)arg;
    char buf[512];
    for (;;) {
        gf_msg m;
        int rc = gf_ring_get(A, PP[0], &m, buf, sizeof buf, GF_FOREVER);
        if (rc == GF_EPIPE) return NULL;
        if (rc != 1) FAIL("pong get %d", rc);
        uint64_t v;
        memcpy(&v, m.data, 8);
        v++;
        if (gf_ring_put(A, PP[1], &v, 8, GF_FOREVER)) FAIL("pong put");
    }
}

TEST(pingpong_threads) {
    setup();
    PP[0] = mkring(4096, 0, 0);
    PP[1] = mkring(4096, 0, 0);
    pthread_t t;
    pthread_create(&t, NULL, pong, NULL);
    char buf[512];
    int n = getenv("GF_TEST_TSAN") ? 2000 : 20000;
    for (uint64_t i = 0; i < (uint64_t)n; i++) {
        ASSERT_OK(gf_ring_put(A, PP[0], &i, 8, GF_FOREVER));
        gf_msg m;
        ASSERT_EQ(gf_ring_get(A, PP[1], &m, buf, sizeof buf, GF_FOREVER), 1);
        uint64_t v;
        memcpy(&v, m.data, 8);
        ASSERT_EQ(v, i + 1);
        if (i % 1000 == 999) usleep(100); /* sometimes let the other side fall asleep */
    }
    gf_ring_close(A, PP[0]);
    pthread_join(t, NULL);
}

/* ---------------------------------------------------------------- killed processes */

/* A producer SIGKILLed at a random moment: what the consumer got is a gap-free prefix of what
 * it put; the ring still works for a new producer. */
TEST(producer_killed_midstream) {
    SKIP_UNDER_TSAN();
    setup();
    gf_off r = mkring(4096, 0, 0);
    char buf[512];
    uint64_t expect = 0;
    for (int round = 0; round < 12; round++) {
        pid_t p = child();
        if (p == 0) {
            static char msg[400];
            for (uint64_t s = expect;; s++) {
                size_t len = 8 + (size_t)(s * 13 % 390);
                memcpy(msg, &s, 8);
                fill(msg + 8, len - 8, s);
                if (gf_ring_put(A, r, msg, len, GF_FOREVER)) _exit(1);
            }
        }
        /* consume for a while, then kill it at a random moment */
        int take = 50 + (round * 977) % 3000;
        for (int i = 0; i < take; i++) {
            gf_msg m;
            ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, ms_from_now(10000)), 1);
            uint64_t s;
            memcpy(&s, m.data, 8);
            ASSERT_EQ(s, expect);
            ASSERT(check((const char *)m.data + 8, m.len - 8, s));
            expect++;
        }
        if (round % 3 == 1) usleep((useconds_t)(round * 37 % 200)); /* let it fill the ring */
        kill(p, SIGKILL);
        int st = reap(p);
        ASSERT(WIFSIGNALED(st));
        /* drain what it committed: still a gap-free continuation */
        for (;;) {
            gf_msg m;
            int rc = gf_ring_get(A, r, &m, buf, sizeof buf, 0);
            if (rc == GF_ETIMEDOUT) break;
            ASSERT_EQ(rc, 1);
            uint64_t s;
            memcpy(&s, m.data, 8);
            ASSERT_EQ(s, expect);
            ASSERT(check((const char *)m.data + 8, m.len - 8, s));
            expect++;
        }
        /* the ring still works (the producer lock may have been held by the dead process) */
        ASSERT_OK(gf_ring_put(A, r, &expect, 8, ms_from_now(10000)));
        gf_msg m;
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, ms_from_now(10000)), 1);
        ASSERT_EQ(*(const uint64_t *)m.data, expect);
        ASSERT_EQ(gf_ring_count(A, r), 0);
    }
}

/* A consumer SIGKILLed at a random moment: at most the get it was inside is lost; the parent
 * continues with the rest in order. */
TEST(consumer_killed_midstream) {
    SKIP_UNDER_TSAN();
    setup();
    gf_off r = mkring(4096, 0, 0);
    _Atomic uint64_t *last = shared_mem(64, NULL); /* 1 + last seq the child fully got */
    char buf[512];
    uint64_t next_put = 0, next_get = 0;
    for (int round = 0; round < 12; round++) {
        atomic_store(last, next_get);
        pid_t p = child();
        if (p == 0) {
            char cbuf[512];
            for (;;) {
                gf_msg m;
                if (gf_ring_get(A, r, &m, cbuf, sizeof cbuf, GF_FOREVER) != 1) _exit(1);
                uint64_t s;
                memcpy(&s, m.data, 8);
                if (s != atomic_load(last)) _exit(2);
                atomic_store(last, s + 1);
            }
        }
        int n = 100 + (round * 1931) % 5000;
        for (int i = 0; i < n; i++) {
            ASSERT_OK(gf_ring_put(A, r, &next_put, 8, ms_from_now(10000)));
            next_put++;
        }
        usleep((useconds_t)(round * 53 % 300));
        kill(p, SIGKILL);
        int st = reap(p);
        ASSERT(WIFSIGNALED(st));
        uint64_t done = atomic_load(last);
        /* the parent takes over */
        gf_msg m;
        int rc = gf_ring_get(A, r, &m, buf, sizeof buf, 0);
        if (rc == GF_ETIMEDOUT) {
            /* the child took everything; at most its last get was not recorded */
            ASSERT(done == next_put || done + 1 == next_put);
            next_get = next_put;
            continue;
        }
        ASSERT_EQ(rc, 1);
        uint64_t s;
        memcpy(&s, m.data, 8);
        ASSERT(s == done || s == done + 1); /* at most one lost */
        next_get = s + 1;
        while (next_get < next_put) {
            ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, ms_from_now(10000)), 1);
            memcpy(&s, m.data, 8);
            ASSERT_EQ(s, next_get);
            next_get++;
        }
        ASSERT_EQ(gf_ring_count(A, r), 0);
    }
}

/* ---------------------------------------------------------------- signals, eventfd */

static void on_usr1(int sig) { (void)sig; }

TEST(eintr_on_blocked_get) {
    setup();
    gf_off r = mkring(4096, 0, 0);
    pid_t p = child();
    if (p == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1; /* no SA_RESTART */
        sigaction(SIGUSR1, &sa, NULL);
        char buf[512];
        gf_msg m;
        int rc, eintr = 0;
        /* every EINTR is retried with the same deadline, as the extension does */
        while ((rc = gf_ring_get(A, r, &m, buf, sizeof buf, GF_FOREVER)) == GF_EINTR) eintr++;
        _exit(rc == 1 && eintr > 0 ? 0 : 3);
    }
    /* several signals (one may land while it spins rather than sleeps), then the message */
    for (int i = 0; i < 5; i++) {
        usleep(20000);
        int st;
        if (waitpid(p, &st, WNOHANG) == p) FAIL("child exited early 0x%x", st);
        kill(p, SIGUSR1);
    }
    usleep(20000);
    int one = 1;
    ASSERT_OK(gf_ring_put(A, r, &one, sizeof one, 0));
    reap_ok(p);
}

static int readable(int fd, int ms) {
    struct pollfd pf = {fd, POLLIN, 0};
    int n = poll(&pf, 1, ms);
    return n == 1 && (pf.revents & POLLIN);
}

TEST(eventfd_readiness) {
    setup();
    gf_off r = mkring(4096, 0, GF_RING_EVENTFD);
    int fd = gf_ring_fd(A, r);
    ASSERT(fd >= 0);
    char buf[512];
    gf_msg m;
    int x = 1;
    ASSERT(!readable(fd, 0));
    ASSERT_OK(gf_ring_put(A, r, &x, sizeof x, 0));
    ASSERT(readable(fd, 0));
    ASSERT_OK(gf_ring_put(A, r, &x, sizeof x, 0));
    ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
    ASSERT(readable(fd, 0)); /* still one queued */
    ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
    ASSERT(!readable(fd, 0));
    for (int i = 0; i < 10; i++) ASSERT_OK(gf_ring_put(A, r, &x, sizeof x, 0));
    gf_msg ms[16];
    ASSERT(readable(fd, 0));
    ASSERT_EQ(gf_ring_get_many(A, r, ms, 16, buf, sizeof buf, 0), 10);
    ASSERT(!readable(fd, 0));

    /* a forked producer wakes a parent blocked in poll() */
    pid_t p = child();
    if (p == 0) {
        usleep(30000);
        _exit(gf_ring_put(A, r, &x, sizeof x, 0) == 0 ? 0 : 1);
    }
    ASSERT(readable(fd, 10000));
    ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
    reap_ok(p);
    ASSERT(!readable(fd, 0));
    gf_ring_close(A, r);
    ASSERT(readable(fd, 0)); /* EOF is readable */
    ASSERT_EQ(gf_obj_decref(A, r), 0);
}

/* Racing producer and consumer threads: whenever the ring is non-empty and quiet, the fd is
 * readable. */
static void *efd_prod(void *arg) {
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        if (gf_ring_put(A, T_ring, &i, sizeof i, GF_FOREVER)) FAIL("put");
        if (i % 64 == 0) sched_yield();
    }
    return NULL;
}

TEST(eventfd_race) {
    setup();
    T_ring = mkring(4096, 0, GF_RING_EVENTFD);
    int fd = gf_ring_fd(A, T_ring);
    pthread_t t;
    pthread_create(&t, NULL, efd_prod, NULL);
    char buf[512];
    int got = 0;
    while (got < 20000) {
        /* the consumer only waits through the fd: a lost readiness would hang here */
        ASSERT(readable(fd, 10000));
        gf_msg m[8];
        int n = gf_ring_get_many(A, T_ring, m, 8, buf, sizeof buf, 0);
        if (n == GF_ETIMEDOUT) continue; /* spurious readiness is allowed */
        ASSERT(n >= 1);
        for (int k = 0; k < n; k++) ASSERT_EQ(*(const int *)m[k].data, got + k);
        got += n;
    }
    pthread_join(t, NULL);
    ASSERT(!readable(fd, 0));
}

/* ---------------------------------------------------------------- corruption */

/* Find the record header of the message whose payload starts with `tag` (8 bytes). */
static uint32_t *find_record(gf_off r, uint64_t tag) {
    unsigned char *base = gf_ptr(A, r);
    size_t n = gf_block_size(A, r);
    for (size_t i = 8; i + 8 <= n; i += 8)
        if (memcmp(base + i, &tag, 8) == 0) return (uint32_t *)(base + i - 8);
    FAIL("record not found");
}

TEST(corrupt_records_ebadmsg) {
    setup();
    char buf[512];
    gf_msg m[4];
    struct {
        uint32_t len, type;
    } cases[] = {{8, 77}, {0xfffffff0u, 1}, {600, 1}, {16, 2}, {5000, 3}, {8, 0}};
    for (unsigned c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        gf_off r = mkring(4096, 0, 0);
        uint64_t tag = 0x5441474741544147ull + c, ok = 42;
        ASSERT_OK(gf_ring_put(A, r, &ok, 8, 0));
        ASSERT_OK(gf_ring_put(A, r, &tag, 8, 0));
        uint32_t *h = find_record(r, tag);
        h[0] = cases[c].len;
        h[1] = cases[c].type;
        if (cases[c].type == 2) { /* a BLOCK record whose offset is garbage */
            uint64_t bad[2] = {0x123456789ull, 100};
            memcpy(h + 2, bad, 16);
        }
        /* the good record first, then the corrupt one */
        ASSERT_EQ(gf_ring_get_many(A, r, m, 4, buf, sizeof buf, 0), 1);
        ASSERT_EQ(*(const uint64_t *)m[0].data, 42);
        ASSERT_EQ(gf_ring_get_many(A, r, m, 4, buf, sizeof buf, 0), GF_EBADMSG);
        ASSERT_EQ(gf_ring_get(A, r, m, buf, sizeof buf, GF_FOREVER), GF_EBADMSG);
    }
}

/* Random scribbles over the records: get never crashes, returns sane messages or EBADMSG. */
TEST(corrupt_records_random) {
    setup();
    srand(1234);
    char buf[512];
    gf_msg m[8];
    int bad = 0;
    for (int iter = 0; iter < 2000; iter++) {
        gf_off r = mkring(4096, 0, 0);
        uint64_t tag = 0x1122334455667788ull;
        ASSERT_OK(gf_ring_put(A, r, &tag, 8, 0));
        for (int k = 0; k < 20; k++) {
            char msg[300];
            size_t len = (size_t)(rand() % 150);
            memset(msg, k, len);
            ASSERT_OK(gf_ring_put(A, r, msg, len, 0));
        }
        unsigned char *h = (unsigned char *)find_record(r, tag);
        int nscribble = 1 + rand() % 4;
        for (int k = 0; k < nscribble; k++) h[rand() % 3000] = (unsigned char)rand();
        for (int k = 0; k < 30; k++) {
            int n = gf_ring_get_many(A, r, m, 8, buf, sizeof buf, 0);
            if (n == GF_EBADMSG) {
                bad++;
                break;
            }
            if (n == GF_ETIMEDOUT) break;
            ASSERT(n >= 1 && n <= 8);
            for (int j = 0; j < n; j++) {
                ASSERT(m[j].block == 0 && m[j].len <= 512);
                ASSERT((const char *)m[j].data >= buf && (const char *)m[j].data + m[j].len <= buf + sizeof buf);
            }
        }
        ASSERT_EQ(gf_obj_decref(A, r), 0);
    }
    ASSERT(bad > 100);
}

/* ---------------------------------------------------------------- destructor */

TEST(destroy_frees_queued_blocks) {
    setup();
    gf_arena_stats st0, st1;
    ASSERT_OK(gf_arena_stats_get(A, &st0));
    gf_off r = mkring(4096, 0, 0);
    static char big[100000];
    for (int i = 0; i < 5; i++) ASSERT_OK(gf_ring_put(A, r, big, sizeof big, 0));
    for (int i = 0; i < 5; i++) ASSERT_OK(gf_ring_put(A, r, big, 100, 0));
    ASSERT_EQ(gf_ring_count(A, r), 10);
    ASSERT_EQ(gf_obj_decref(A, r), 0);
    ASSERT_OK(gf_arena_stats_get(A, &st1));
    ASSERT_EQ(st1.live_blocks, st0.live_blocks);
}

/* Bytes the arena's memfd really holds. */
static uint64_t backing(void) {
    struct stat st;
    ASSERT(fstat(gf_arena_fd(A), &st) == 0);
    return (uint64_t)st.st_blocks * 512;
}

/* gf_ring_trim: an idle ring's touched data pages go back to the kernel; a ring whose lock is
 * held is left alone; the ring works on after a trim. */
TEST(trim_idle_ring) {
    setup();
    const size_t cap = (size_t)1 << 20;
    gf_off r = mkring(cap, 0, 0);
    ASSERT_EQ(gf_ring_trim(A, r), 0); /* nothing ever put */
    static char msg[60000], buf[1 << 17];
    gf_msg m;
    for (int i = 0; i < 40; i++) { /* every page of the data area touched */
        fill(msg, sizeof msg, (uint64_t)i);
        ASSERT_OK(gf_ring_put(A, r, msg, sizeof msg, 0));
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
        gf_msg_release(A, &m);
    }
    gf__ring *rr = (gf__ring *)gf_ptr(A, r);
    ASSERT_OK(gf_mutex_lock(A, &rr->pmutex, 0));
    ASSERT_EQ(gf_ring_trim(A, r), 0); /* a producer holds its lock */
    gf_mutex_unlock(A, &rr->pmutex);
    ASSERT_OK(gf_mutex_lock(A, &rr->cmutex, 0));
    ASSERT_EQ(gf_ring_trim(A, r), 0); /* a consumer holds its lock */
    gf_mutex_unlock(A, &rr->cmutex);
    uint64_t before = backing();
    ASSERT_EQ(gf_ring_trim(A, r), 1);
    uint64_t after = backing();
    fprintf(stderr, "# backing %llu -> %llu bytes\n", (unsigned long long)before,
            (unsigned long long)after);
    /* the data pages the records touched (not every page of the area: a PAD's end stays
     * untouched in some laps) */
    ASSERT(before - after >= cap * 9 / 10);
    ASSERT_EQ(gf_ring_trim(A, r), 0); /* nothing moved since */
    for (int i = 0; i < 40; i++) { /* and it works on, records intact */
        fill(msg, sizeof msg, (uint64_t)i + 100);
        ASSERT_OK(gf_ring_put(A, r, msg, sizeof msg, 0));
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
        ASSERT(m.len == sizeof msg && check(m.data, m.len, (uint64_t)i + 100));
        gf_msg_release(A, &m);
    }
    ASSERT_EQ(gf_ring_trim(A, r), 1);
    gf_arena_detach(A);
}

/* gf_ring_trim on a ring that holds messages: the pages outside them go (a busy ring keeps
 * only what it holds), the messages come out intact, those wrapped round the end included;
 * a get alone (no put) is movement enough for the next trim; a ring full for its message size
 * gives at most the gap too small for one more. */
TEST(trim_ring_holding_messages) {
    setup();
    const size_t cap = (size_t)1 << 20;
    gf_off r = mkring(cap, 0, 0);
    static char msg[60000], buf[1 << 17];
    gf_msg m;
    for (int i = 0; i < 37; i++) { /* every page touched; the write position ends mid-area */
        fill(msg, sizeof msg, (uint64_t)i);
        ASSERT_OK(gf_ring_put(A, r, msg, sizeof msg, 0));
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
        gf_msg_release(A, &m);
    }
    const int held = 6; /* ~360 KB queued, wrapping round the end of the data area */
    for (int i = 0; i < held; i++) {
        fill(msg, sizeof msg, (uint64_t)i + 1000);
        ASSERT_OK(gf_ring_put(A, r, msg, sizeof msg, 0));
    }
    uint64_t before = backing();
    ASSERT_EQ(gf_ring_trim(A, r), 1);
    uint64_t after = backing();
    fprintf(stderr, "# holding %d messages: backing %llu -> %llu bytes\n", held,
            (unsigned long long)before, (unsigned long long)after);
    /* what the messages do not occupy, less a page at either end */
    ASSERT(before - after >= cap - (uint64_t)held * (sizeof msg + 8) - 2 * 4096 - cap / 20);
    ASSERT(before - after <= cap - (uint64_t)held * sizeof msg);
    ASSERT_EQ(gf_ring_trim(A, r), 0); /* nothing moved since */
    ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
    ASSERT(m.len == sizeof msg && check(m.data, m.len, 1000));
    gf_msg_release(A, &m);
    ASSERT_EQ(gf_ring_trim(A, r), 1); /* the get moved the read position */
    for (int i = 1; i < held; i++) {
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
        ASSERT(m.len == sizeof msg && check(m.data, m.len, (uint64_t)i + 1000));
        gf_msg_release(A, &m);
    }
    /* a ring full for this size: only the space too small for one more message can go, and
     * every message comes out intact */
    size_t n = 0;
    for (;; n++) {
        fill(msg, sizeof msg, (uint64_t)n + 2000);
        if (gf_ring_put(A, r, msg, sizeof msg, 0) != 0) break;
    }
    ASSERT(n >= cap / (sizeof msg + 8) - 1);
    before = backing();
    (void)gf_ring_trim(A, r);
    after = backing();
    ASSERT(before - after <= sizeof msg + 8);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
        ASSERT(m.len == sizeof msg && check(m.data, m.len, (uint64_t)i + 2000));
        gf_msg_release(A, &m);
    }
    gf_arena_detach(A);
}

/* gf_ring_trim on a large ring that keeps moving: one trim punches at most the 1 MiB behind the
 * read position (what both locks are held for is bounded); once the ring stands still, the next
 * trim punches the rest; then there is nothing left to do. */
TEST(trim_moving_ring_is_bounded) {
    setup();
    const size_t cap = (size_t)4 << 20;
    gf_off r = mkring(cap, 0, 0);
    static char msg[60000], buf[1 << 19]; /* >= the ring's inline_max (cap / 8) */
    gf_msg m;
    for (int i = 0; i < 80; i++) { /* every page touched (a lap and a bit) */
        fill(msg, sizeof msg, (uint64_t)i);
        ASSERT_OK(gf_ring_put(A, r, msg, sizeof msg, 0));
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
        gf_msg_release(A, &m);
    }
    uint64_t b0 = backing();
    ASSERT_EQ(gf_ring_trim(A, r), 1);
    uint64_t b1 = backing();
    ASSERT(b0 - b1 <= ((uint64_t)1 << 20));             /* at most 1 MiB while moving */
    /* less the pages a PAD record skipped at the wrap (never touched) */
    ASSERT(b0 - b1 >= ((uint64_t)1 << 20) - sizeof msg - 2 * 4096);
    ASSERT_EQ(gf_ring_trim(A, r), 1);                    /* stood still: the rest */
    uint64_t b2 = backing();
    ASSERT(b1 - b2 >= cap - ((uint64_t)1 << 20) - cap / 20);
    ASSERT_EQ(gf_ring_trim(A, r), 0);                    /* nothing left */
    fprintf(stderr, "# 4 MiB ring: backing %llu -> %llu -> %llu bytes\n", (unsigned long long)b0,
            (unsigned long long)b1, (unsigned long long)b2);
    for (int i = 0; i < 80; i++) { /* records intact after both trims */
        fill(msg, sizeof msg, (uint64_t)i + 500);
        ASSERT_OK(gf_ring_put(A, r, msg, sizeof msg, 0));
        ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
        ASSERT(m.len == sizeof msg && check(m.data, m.len, (uint64_t)i + 500));
        gf_msg_release(A, &m);
    }
    gf_arena_detach(A);
}

TEST_MAIN()
