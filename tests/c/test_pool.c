/*
 * test_pool.c -- the worker pool: results, worker deaths (SIGKILL, abort), timeouts, cancel,
 * maxtasksperchild, close/join/terminate, parent death, EINTR, retries, resize.
 */
#include "gilfree.h"
#include "test.h"

#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <pthread.h>

enum { OP_SQUARE = 1, OP_SLEEP, OP_ABORT, OP_ERROR, OP_ECHO, OP_WAITFLAG };

typedef struct req {
    uint32_t op;
    uint32_t arg; /* OP_SLEEP: ms */
    uint64_t val;
} req;

#define MAXRUN 4096
typedef struct shm {
    _Atomic int32_t sleeper_pid; /* pid of the worker running an OP_SLEEP / OP_WAITFLAG */
    _Atomic uint32_t flag;       /* OP_WAITFLAG waits for this */
    _Atomic uint32_t runs[MAXRUN]; /* how many times each value ran */
} shm;

static shm *S;

static void setup_shm(void) {
    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(S != MAP_FAILED);
    memset(S, 0, sizeof *S);
    struct rlimit rl = {0, 0}; /* no core files from the deliberate crashes */
    setrlimit(RLIMIT_CORE, &rl);
}

static int handler(void *ctx, const void *in, size_t inlen, gf_pool_out *out) {
    (void)ctx;
    req r;
    if (inlen < sizeof r) {
        /* raw echo of anything else */
        out->data = in;
        out->len = inlen;
        return 0;
    }
    memcpy(&r, in, sizeof r);
    if (r.val < MAXRUN) atomic_fetch_add(&S->runs[r.val], 1);
    switch (r.op) {
    case OP_SQUARE: {
        uint64_t sq = r.val * r.val;
        memcpy(out->buf, &sq, sizeof sq);
        out->len = sizeof sq;
        return 0;
    }
    case OP_SLEEP:
        atomic_store(&S->sleeper_pid, getpid());
        usleep(r.arg * 1000u);
        out->len = 0;
        return 0;
    case OP_WAITFLAG:
        atomic_store(&S->sleeper_pid, getpid());
        while (!atomic_load(&S->flag)) usleep(200);
        out->len = 0;
        return 0;
    case OP_ABORT:
        abort();
    case OP_ERROR:
        out->data = "boom";
        out->len = 4;
        return 1;
    case OP_ECHO:
        out->data = in;
        out->len = inlen;
        return 0;
    }
    return 1;
}

static gf_arena *A;
static void on_alarm(int sig);
static uint64_t base_blocks;

static gf_pool *mkpool(uint32_t n, uint64_t maxtasks, uint32_t mailbox) {
    setup_shm();
    ASSERT_OK(gf_arena_create((size_t)1 << 30, &A));
    gf_arena_stats st;
    ASSERT_OK(gf_arena_stats_get(A, &st));
    base_blocks = st.live_blocks;
    gf_pool_options o = {0};
    o.nworkers = n;
    o.max_workers = 4;
    o.mailbox_tasks = mailbox;
    o.maxtasksperchild = maxtasks;
    o.handler = handler;
    gf_pool *p;
    ASSERT_OK(gf_pool_create(A, &o, &p));
    return p;
}

static uint64_t submit_req(gf_pool *p, uint32_t op, uint32_t arg, uint64_t val, int64_t timeout,
                           uint32_t retries) {
    req r = {op, arg, val};
    struct iovec v = {&r, sizeof r};
    uint64_t id = 0;
    ASSERT_OK(gf_pool_submit(p, &v, 1, timeout, retries, &id, gf_deadline_after(10000000000)));
    return id;
}

/* Collect results until `want` arrived; status[id] / value[id] recorded; each id once. */
typedef struct coll {
    int status[MAXRUN + 1];
    uint64_t value[MAXRUN + 1];
    int seen[MAXRUN + 1];
    size_t got;
} coll;

static void collect(gf_pool *p, coll *c, size_t want) {
    gf_pool_result res[64];
    while (c->got < want) {
        int n = gf_pool_next_results(p, res, 64, gf_deadline_after(20000000000));
        if (n < 0) FAIL("next_results: %s (got %zu of %zu)", gf_strerror(n), c->got, want);
        for (int k = 0; k < n; k++) {
            uint64_t id = res[k].id;
            ASSERT(id >= 1 && id <= MAXRUN);
            if (c->seen[id]) FAIL("duplicate result for task %llu", (unsigned long long)id);
            c->seen[id] = 1;
            c->status[id] = res[k].status;
            if (res[k].len == 8) memcpy(&c->value[id], res[k].data, 8);
            c->got++;
        }
    }
}

static void wait_live(gf_pool *p, uint32_t n) {
    /* Supervision runs inside the calls: poke it with short next_results waits. */
    for (int i = 0; i < 2000; i++) {
        gf_pool_stats st;
        gf_pool_stats_get(p, &st);
        if (st.live_workers == n) return;
        gf_pool_result r;
        int rc = gf_pool_next_results(p, &r, 1, gf_deadline_after(2000000));
        ASSERT(rc == GF_ETIMEDOUT);
    }
    FAIL("workers never became %u", n);
}

static void teardown(gf_pool *p) {
    gf_pool_close(p);
    ASSERT_OK(gf_pool_join(p, gf_deadline_after(10000000000)));
    gf_pool_destroy(p);
    gf_arena_stats st;
    ASSERT_OK(gf_arena_stats_get(A, &st));
    ASSERT_EQ(st.live_blocks, base_blocks); /* the pool, its rings and messages are freed */
    gf_arena_detach(A);
}

TEST(many_tasks) {
    gf_pool *p = mkpool(2, 0, 0);
    static coll c;
    const size_t N = 4000;
    size_t sent = 0;
    gf_pool_result res[64];
    /* interleave submit (no wait) and results, as a single-threaded C program must */
    while (c.got < N) {
        while (sent < N) {
            req r = {OP_SQUARE, 0, sent};
            struct iovec v = {&r, sizeof r};
            uint64_t id = sent + 1;
            int rc = gf_pool_submit(p, &v, 1, 0, 0, &id, 0);
            if (rc == GF_ETIMEDOUT) break;
            ASSERT_OK(rc);
            ASSERT_EQ(id, sent + 1);
            sent++;
        }
        int n = gf_pool_next_results(p, res, 64, gf_deadline_after(10000000000));
        ASSERT(n > 0);
        for (int k = 0; k < n; k++) {
            uint64_t id = res[k].id;
            ASSERT(id >= 1 && id <= N && !c.seen[id]);
            c.seen[id] = 1;
            ASSERT_EQ(res[k].status, GF_TASK_OK);
            ASSERT_EQ(res[k].len, 8);
            uint64_t v;
            memcpy(&v, res[k].data, 8);
            ASSERT_EQ(v, (id - 1) * (id - 1));
            ASSERT(res[k].worker == 0 || res[k].worker == 1);
            c.got++;
        }
    }
    for (size_t i = 0; i < N; i++) ASSERT_EQ(atomic_load(&S->runs[i]), 1);
    gf_pool_stats st;
    gf_pool_stats_get(p, &st);
    ASSERT_EQ(st.outstanding, 0);
    ASSERT_EQ(st.deaths, 0);
    teardown(p);
}

TEST(error_status_and_auto_ids) {
    gf_pool *p = mkpool(1, 0, 0);
    uint64_t a = submit_req(p, OP_ERROR, 0, 5, 0, 0);
    uint64_t b = submit_req(p, OP_SQUARE, 0, 6, 0, 0);
    ASSERT_EQ(a, 1);
    ASSERT_EQ(b, 2);
    gf_pool_result r[2];
    int got = 0, seen_err = 0;
    while (got < 2) {
        int n = gf_pool_next_results(p, r, 2, gf_deadline_after(5000000000));
        ASSERT(n > 0);
        for (int k = 0; k < n; k++, got++) {
            if (r[k].id == a) {
                ASSERT_EQ(r[k].status, GF_TASK_ERROR);
                ASSERT(r[k].len == 4 && memcmp(r[k].data, "boom", 4) == 0);
                seen_err = 1;
            } else {
                ASSERT_EQ(r[k].status, GF_TASK_OK);
            }
        }
    }
    ASSERT(seen_err);
    teardown(p);
}

/* Results carry the worker's time on the task (p1-map: adaptive chunking measures it). */
TEST(result_elapsed_ns) {
    gf_pool *p = mkpool(1, 0, 0);
    uint64_t slow = submit_req(p, OP_SLEEP, 30, 1, 0, 0);
    uint64_t fast = submit_req(p, OP_SQUARE, 0, 2, 0, 0);
    int got = 0;
    while (got < 2) {
        gf_pool_result r;
        int n = gf_pool_next_results(p, &r, 1, gf_deadline_after(5000000000));
        ASSERT(n == 1);
        got++;
        ASSERT_EQ(r.status, GF_TASK_OK);
        if (r.id == slow) ASSERT(r.elapsed_ns >= 30000000u);
        else ASSERT(r.id == fast);
    }
    ASSERT_EQ(gf_pool_cancel(p, submit_req(p, OP_WAITFLAG, 0, 3, 0, 0)) >= 0, 1);
    gf_pool_result r;
    ASSERT(gf_pool_next_results(p, &r, 1, gf_deadline_after(5000000000)) == 1);
    ASSERT_EQ(r.status, GF_TASK_CANCELLED);
    ASSERT_EQ(r.elapsed_ns, 0); /* no payload, no time */
    teardown(p);
}

TEST(large_payloads) {
    gf_pool *p = mkpool(2, 0, 0);
    size_t len = (size_t)3 << 20;
    unsigned char *buf = malloc(len);
    for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)(i * 7);
    req h = {OP_ECHO, 0, MAXRUN};
    memcpy(buf, &h, sizeof h);
    for (int k = 0; k < 4; k++) {
        struct iovec v = {buf, len};
        uint64_t id = 0;
        ASSERT_OK(gf_pool_submit(p, &v, 1, 0, 0, &id, GF_FOREVER));
    }
    for (int k = 0; k < 4; k++) {
        gf_pool_result r;
        ASSERT_EQ(gf_pool_next_results(p, &r, 1, gf_deadline_after(10000000000)), 1);
        ASSERT_EQ(r.status, GF_TASK_OK);
        ASSERT_EQ(r.len, len);
        ASSERT(memcmp(r.data, buf, len) == 0);
    }
    free(buf);
    teardown(p);
}

/* gf_pool_results_done: the blocks of large results handed out by the last
 * gf_pool_next_results are freed at once (not at the next call); calling it twice, or with
 * nothing handed out, is harmless. */
TEST(results_done_frees_result_blocks) {
    gf_pool *p = mkpool(2, 0, 0);
    ASSERT_EQ(gf_pool_results_done(NULL), GF_EINVAL);
    ASSERT_OK(gf_pool_results_done(p)); /* nothing handed out yet */
    size_t len = (size_t)1 << 20;
    unsigned char *buf = malloc(len);
    for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)(i * 13);
    req h = {OP_ECHO, 0, MAXRUN};
    memcpy(buf, &h, sizeof h);
    gf_arena_stats st0 = {0}, st1, st2;
    for (int k = 0; k < 3; k++) {
        struct iovec v = {buf, len};
        uint64_t id = 0;
        ASSERT_OK(gf_pool_submit(p, &v, 1, 0, 0, &id, GF_FOREVER));
        gf_pool_result r;
        ASSERT_EQ(gf_pool_next_results(p, &r, 1, gf_deadline_after(10000000000)), 1);
        ASSERT_EQ(r.status, GF_TASK_OK);
        ASSERT_EQ(r.len, len);
        ASSERT(memcmp(r.data, buf, len) == 0);
        ASSERT_OK(gf_arena_stats_get(A, &st1));
        ASSERT_OK(gf_pool_results_done(p));
        ASSERT_OK(gf_arena_stats_get(A, &st2));
        /* the result's block (> 1 MiB: the echo is too large for the ring) is gone */
        ASSERT(st1.in_use - st2.in_use >= len);
        ASSERT_EQ(st1.live_blocks - st2.live_blocks, 1);
        if (k == 0) st0 = st2;
        else ASSERT_EQ(st2.in_use, st0.in_use); /* nothing builds up */
        ASSERT_OK(gf_pool_results_done(p)); /* twice: nothing more to free */
        ASSERT_OK(gf_arena_stats_get(A, &st1));
        ASSERT_EQ(st1.in_use, st2.in_use);
    }
    free(buf);
    teardown(p);
}

/* A worker SIGKILLed mid-task: exactly that task is LOST, every other one completes, the pool
 * is back to full strength and keeps serving. */
TEST(sigkill_mid_task) {
    gf_pool *p = mkpool(2, 0, 0);
    static coll c;
    uint64_t victim = submit_req(p, OP_SLEEP, 5000, 1000, 0, 0);
    for (uint64_t v = 0; v < 200; v++) submit_req(p, OP_SQUARE, 0, v, 0, 0);
    while (atomic_load(&S->sleeper_pid) == 0) usleep(100);
    ASSERT_EQ(kill(atomic_load(&S->sleeper_pid), SIGKILL), 0);
    collect(p, &c, 201);
    ASSERT_EQ(c.status[victim], GF_TASK_LOST);
    for (uint64_t id = 1; id <= 201; id++)
        if (id != victim) {
            ASSERT_EQ(c.status[id], GF_TASK_OK);
            ASSERT_EQ(c.value[id], (id - 2) * (id - 2));
        }
    for (uint64_t v = 0; v < 200; v++) ASSERT_EQ(atomic_load(&S->runs[v]), 1);
    wait_live(p, 2);
    gf_pool_stats st;
    gf_pool_stats_get(p, &st);
    ASSERT_EQ(st.deaths, 1);
    ASSERT_EQ(st.spawned, 3);
    /* still serving */
    memset(&c, 0, sizeof c);
    for (uint64_t v = 0; v < 50; v++) submit_req(p, OP_SQUARE, 0, v, 0, 0);
    collect(p, &c, 50);
    for (uint64_t id = 202; id <= 251; id++) ASSERT_EQ(c.status[id], GF_TASK_OK);
    teardown(p);
}

TEST(abort_in_handler) {
    gf_pool *p = mkpool(2, 0, 0);
    static coll c;
    for (uint64_t v = 0; v < 300; v++)
        submit_req(p, v == 150 ? OP_ABORT : OP_SQUARE, 0, v, 0, 0);
    collect(p, &c, 300);
    for (uint64_t id = 1; id <= 300; id++)
        ASSERT_EQ(c.status[id], id == 151 ? GF_TASK_LOST : GF_TASK_OK);
    for (uint64_t v = 0; v < 300; v++) ASSERT_EQ(atomic_load(&S->runs[v]), 1);
    wait_live(p, 2);
    teardown(p);
}

TEST(retry_after_death) {
    gf_pool *p = mkpool(2, 0, 0);
    static coll c;
    uint64_t victim = submit_req(p, OP_SLEEP, 300, 7, 0, 1);
    while (atomic_load(&S->sleeper_pid) == 0) usleep(100);
    pid_t first = atomic_load(&S->sleeper_pid);
    ASSERT_EQ(kill(first, SIGKILL), 0);
    collect(p, &c, 1);
    ASSERT_EQ(c.status[victim], GF_TASK_OK); /* ran again on another worker */
    ASSERT_EQ(atomic_load(&S->runs[7]), 2);
    teardown(p);
}

TEST(timeout_kills_and_replaces) {
    gf_pool *p = mkpool(2, 0, 0);
    static coll c;
    uint64_t slow = submit_req(p, OP_SLEEP, 10000, 1000, 100000000 /* 100 ms */, 0);
    uint64_t fast = submit_req(p, OP_SQUARE, 0, 3, 100000000, 0);
    for (uint64_t v = 0; v < 100; v++) submit_req(p, OP_SQUARE, 0, v, 0, 0);
    int64_t t0 = gf_now_ns();
    collect(p, &c, 102);
    ASSERT(gf_now_ns() - t0 < 5000000000LL);
    ASSERT_EQ(c.status[slow], GF_TASK_TIMEOUT);
    ASSERT_EQ(c.status[fast], GF_TASK_OK);
    for (uint64_t id = 3; id <= 102; id++) ASSERT_EQ(c.status[id], GF_TASK_OK);
    wait_live(p, 2);
    teardown(p);
}

TEST(cancel_queued) {
    gf_pool *p = mkpool(1, 0, 0);
    static coll c;
    uint64_t blocker = submit_req(p, OP_WAITFLAG, 0, 1, 0, 0);
    uint64_t x = submit_req(p, OP_SQUARE, 0, 2, 0, 0);
    uint64_t y = submit_req(p, OP_SQUARE, 0, 3, 0, 0);
    while (atomic_load(&S->sleeper_pid) == 0) usleep(100);
    ASSERT_EQ(gf_pool_cancel(p, x), 0);
    ASSERT_EQ(gf_pool_cancel(p, 999), GF_ESRCH);
    atomic_store(&S->flag, 1);
    collect(p, &c, 3);
    ASSERT_EQ(c.status[blocker], GF_TASK_OK);
    ASSERT_EQ(c.status[x], GF_TASK_CANCELLED);
    ASSERT_EQ(c.status[y], GF_TASK_OK);
    ASSERT_EQ(atomic_load(&S->runs[2]), 0); /* never ran */
    ASSERT_EQ(atomic_load(&S->runs[3]), 1);
    ASSERT_EQ(gf_pool_cancel(p, y), GF_ESRCH);
    teardown(p);
}

TEST(cancel_running) {
    gf_pool *p = mkpool(1, 0, 0);
    static coll c;
    uint64_t run = submit_req(p, OP_WAITFLAG, 0, 1, 0, 0);
    uint64_t after = submit_req(p, OP_SQUARE, 0, 4, 0, 0);
    while (atomic_load(&S->sleeper_pid) == 0) usleep(100);
    ASSERT_EQ(gf_pool_cancel(p, run), 1);
    collect(p, &c, 2);
    ASSERT_EQ(c.status[run], GF_TASK_CANCELLED);
    ASSERT_EQ(c.status[after], GF_TASK_OK); /* queued behind it: moved, not lost */
    ASSERT_EQ(c.value[after], 16);
    ASSERT_EQ(atomic_load(&S->runs[4]), 1);
    wait_live(p, 1);
    teardown(p);
}

/* p2-exec: gf_pool_cancel_queued cancels what has not started and never kills. */
TEST(cancel_queued_only) {
    gf_pool *p = mkpool(1, 0, 0);
    static coll c;
    uint64_t run = submit_req(p, OP_WAITFLAG, 0, 1, 0, 0);
    uint64_t q = submit_req(p, OP_SQUARE, 0, 5, 0, 0);
    uint64_t r = submit_req(p, OP_SQUARE, 0, 6, 0, 0);
    while (atomic_load(&S->sleeper_pid) == 0) usleep(100);
    ASSERT_EQ(gf_pool_cancel_queued(p, run), 1); /* running: left alone */
    ASSERT_EQ(gf_pool_cancel_queued(p, q), 0);
    ASSERT_EQ(gf_pool_cancel_queued(p, 999), GF_ESRCH);
    atomic_store(&S->flag, 1);
    collect(p, &c, 3);
    ASSERT_EQ(c.status[run], GF_TASK_OK); /* it finished normally */
    ASSERT_EQ(c.status[q], GF_TASK_CANCELLED);
    ASSERT_EQ(c.status[r], GF_TASK_OK);
    ASSERT_EQ(c.value[r], 36);
    ASSERT_EQ(atomic_load(&S->runs[5]), 0);
    ASSERT_EQ(atomic_load(&S->runs[6]), 1);
    gf_pool_stats st;
    gf_pool_stats_get(p, &st);
    ASSERT_EQ(st.deaths, 0);
    ASSERT_EQ(gf_pool_cancel_queued(p, r), GF_ESRCH);
    teardown(p);
}

TEST(maxtasksperchild_no_loss_no_dup) {
    gf_pool *p = mkpool(2, 7, 0);
    static coll c;
    const size_t N = 1000;
    size_t sent = 0;
    gf_pool_result res[64];
    while (c.got < N) {
        while (sent < N) {
            req r = {OP_SQUARE, 0, sent};
            struct iovec v = {&r, sizeof r};
            uint64_t id = sent + 1;
            int rc = gf_pool_submit(p, &v, 1, 0, 0, &id, 0);
            if (rc == GF_ETIMEDOUT) break;
            ASSERT_OK(rc);
            sent++;
        }
        int n = gf_pool_next_results(p, res, 64, gf_deadline_after(10000000000));
        ASSERT(n > 0);
        for (int k = 0; k < n; k++) {
            uint64_t id = res[k].id;
            ASSERT(!c.seen[id]);
            c.seen[id] = 1;
            ASSERT_EQ(res[k].status, GF_TASK_OK);
            c.got++;
        }
    }
    for (size_t i = 0; i < N; i++) ASSERT_EQ(atomic_load(&S->runs[i]), 1);
    gf_pool_stats st;
    gf_pool_stats_get(p, &st);
    ASSERT(st.spawned >= N / 7);
    ASSERT_EQ(st.deaths, 0);
    teardown(p);
}

TEST(close_join_then_results) {
    gf_pool *p = mkpool(2, 0, 0);
    for (uint64_t v = 0; v < 100; v++) submit_req(p, OP_SQUARE, 0, v, 0, 0);
    gf_pool_close(p);
    uint64_t id = 0;
    req r = {OP_SQUARE, 0, 1};
    struct iovec v = {&r, sizeof r};
    ASSERT_EQ(gf_pool_submit(p, &v, 1, 0, 0, &id, 0), GF_EPIPE);
    ASSERT_OK(gf_pool_join(p, gf_deadline_after(10000000000)));
    gf_pool_stats st;
    gf_pool_stats_get(p, &st);
    ASSERT_EQ(st.live_workers, 0);
    static coll c;
    collect(p, &c, 100);
    for (uint64_t i = 1; i <= 100; i++) ASSERT_EQ(c.status[i], GF_TASK_OK);
    gf_pool_result res;
    ASSERT_EQ(gf_pool_next_results(p, &res, 1, gf_deadline_after(1000000000)), GF_EPIPE);
    gf_pool_destroy(p);
    gf_arena_detach(A);
}

TEST(join_needs_close) {
    gf_pool *p = mkpool(1, 0, 0);
    ASSERT_EQ(gf_pool_join(p, 0), GF_EINVAL);
    teardown(p);
}

TEST(terminate) {
    gf_pool *p = mkpool(2, 0, 0);
    pid_t w0 = gf_pool_worker_pid(p, 0), w1 = gf_pool_worker_pid(p, 1);
    ASSERT(w0 > 0 && w1 > 0);
    for (uint64_t v = 0; v < 10; v++) submit_req(p, OP_SLEEP, 10000, v, 0, 0);
    while (atomic_load(&S->sleeper_pid) == 0) usleep(100);
    int64_t t0 = gf_now_ns();
    gf_pool_terminate(p);
    ASSERT_OK(gf_pool_join(p, gf_deadline_after(5000000000)));
    ASSERT(gf_now_ns() - t0 < 2000000000LL);
    static coll c;
    collect(p, &c, 10);
    for (uint64_t i = 1; i <= 10; i++) ASSERT_EQ(c.status[i], GF_TASK_CANCELLED);
    ASSERT(kill(w0, 0) < 0 && kill(w1, 0) < 0); /* reaped */
    gf_pool_result res;
    ASSERT_EQ(gf_pool_next_results(p, &res, 1, 0), GF_EPIPE);
    gf_pool_destroy(p);
    gf_arena_detach(A);
}

/* The parent is SIGKILLed: its workers are gone within a second. We are the grandparent and a
 * subreaper, so the orphaned workers become our children and we can reap them. */
TEST(parent_sigkill_workers_exit) {
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t parent = fork();
    ASSERT(parent >= 0);
    if (parent == 0) {
        close(fds[0]);
        gf_pool *p = mkpool(2, 0, 0);
        submit_req(p, OP_SLEEP, 10000, 1, 0, 0); /* one busy, one idle worker */
        while (atomic_load(&S->sleeper_pid) == 0) usleep(100);
        pid_t pids[2] = {gf_pool_worker_pid(p, 0), gf_pool_worker_pid(p, 1)};
        if (write(fds[1], pids, sizeof pids) != sizeof pids) _exit(1);
        pause();
        _exit(0);
    }
    close(fds[1]);
    pid_t pids[2];
    ASSERT_EQ(read(fds[0], pids, sizeof pids), sizeof pids);
    ASSERT(pids[0] > 0 && pids[1] > 0);
    ASSERT_EQ(kill(parent, SIGKILL), 0);
    ASSERT_EQ(waitpid(parent, NULL, 0), parent);
    int64_t t0 = gf_now_ns();
    int gone[2] = {0, 0};
    while ((!gone[0] || !gone[1]) && gf_now_ns() - t0 < 1000000000LL) {
        for (int k = 0; k < 2; k++)
            if (!gone[k] && waitpid(pids[k], NULL, WNOHANG) == pids[k]) gone[k] = 1;
        usleep(1000);
    }
    ASSERT(gone[0] && gone[1]);
    ASSERT(kill(pids[0], 0) < 0 && kill(pids[1], 0) < 0);
}

/* Without PDEATHSIG (a custom spawn may not set it) workers notice the parent's death through
 * its arena life lock, within their 100 ms wait slice. */
static int spawn_no_pdeathsig(void *ctx, gf_pool *p, uint32_t index, gf_proc *out) {
    (void)ctx;
    int rc = gf_proc_fork(out, 0);
    if (rc <= 0) return rc;
    if (gf_arena_after_fork_child(gf_pool_arena(p)) < 0) _exit(70);
    gf_worker *w;
    if (gf_worker_attach(gf_pool_arena(p), gf_pool_shared(p), index, &w) < 0) _exit(71);
    rc = gf_worker_run(w, handler, NULL, 0);
    gf_worker_detach(w);
    _exit(rc < 0 ? 72 : 0);
}

TEST(parent_sigkill_no_pdeathsig) {
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t parent = fork();
    ASSERT(parent >= 0);
    if (parent == 0) {
        close(fds[0]);
        setup_shm();
        ASSERT_OK(gf_arena_create((size_t)1 << 30, &A));
        gf_pool_options o = {0};
        o.nworkers = 2;
        o.spawn = spawn_no_pdeathsig;
        gf_pool *p;
        ASSERT_OK(gf_pool_create(A, &o, &p));
        pid_t pids[2] = {gf_pool_worker_pid(p, 0), gf_pool_worker_pid(p, 1)};
        if (write(fds[1], pids, sizeof pids) != sizeof pids) _exit(1);
        pause();
        _exit(0);
    }
    close(fds[1]);
    pid_t pids[2];
    ASSERT_EQ(read(fds[0], pids, sizeof pids), sizeof pids);
    ASSERT_EQ(kill(parent, SIGKILL), 0);
    ASSERT_EQ(waitpid(parent, NULL, 0), parent);
    int64_t t0 = gf_now_ns();
    int gone[2] = {0, 0};
    while ((!gone[0] || !gone[1]) && gf_now_ns() - t0 < 1000000000LL) {
        for (int k = 0; k < 2; k++)
            if (!gone[k] && waitpid(pids[k], NULL, WNOHANG) == pids[k]) gone[k] = 1;
        usleep(1000);
    }
    ASSERT(gone[0] && gone[1]);
}

static void on_alarm(int sig) { (void)sig; }

TEST(eintr_on_next_results) {
    gf_pool *p = mkpool(1, 0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 50000}, {0, 50000}}, off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
    gf_pool_result r;
    int64_t t0 = gf_now_ns();
    int rc = gf_pool_next_results(p, &r, 1, GF_FOREVER);
    setitimer(ITIMER_REAL, &off, NULL);
    ASSERT_EQ(rc, GF_EINTR);
    ASSERT(gf_now_ns() - t0 < 2000000000LL);
    /* the pool still works afterwards */
    submit_req(p, OP_SQUARE, 0, 9, 0, 0);
    ASSERT_EQ(gf_pool_next_results(p, &r, 1, gf_deadline_after(5000000000)), 1);
    ASSERT_EQ(r.status, GF_TASK_OK);
    teardown(p);
}

TEST(backpressure_submit_times_out) {
    gf_pool *p = mkpool(1, 0, 2);
    submit_req(p, OP_WAITFLAG, 0, 1, 0, 0);
    while (atomic_load(&S->sleeper_pid) == 0) usleep(100);
    submit_req(p, OP_SQUARE, 0, 2, 0, 0);
    submit_req(p, OP_SQUARE, 0, 3, 0, 0);
    req r = {OP_SQUARE, 0, 4};
    struct iovec v = {&r, sizeof r};
    uint64_t id = 0;
    ASSERT_EQ(gf_pool_submit(p, &v, 1, 0, 0, &id, 0), GF_ETIMEDOUT);
    ASSERT_EQ(gf_pool_submit(p, &v, 1, 0, 0, &id, gf_deadline_after(30000000)), GF_ETIMEDOUT);
    /* a signal while waiting for space: GF_EINTR, nothing queued */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    /* repeating: a signal that lands outside the sleep is simply handled (as for any
     * blocking call); the next one interrupts the sleep */
    struct itimerval it = {{0, 30000}, {0, 30000}}, off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
    ASSERT_EQ(gf_pool_submit(p, &v, 1, 0, 0, &id, GF_FOREVER), GF_EINTR);
    setitimer(ITIMER_REAL, &off, NULL);
    atomic_store(&S->flag, 1);
    ASSERT_OK(gf_pool_submit(p, &v, 1, 0, 0, &id, gf_deadline_after(5000000000)));
    ASSERT_EQ(id, 4);
    static coll c;
    collect(p, &c, 4);
    for (uint64_t i = 1; i <= 4; i++) ASSERT_EQ(c.status[i], GF_TASK_OK);
    teardown(p);
}

TEST(resize) {
    gf_pool *p = mkpool(1, 0, 0);
    ASSERT_OK(gf_pool_resize(p, 3));
    wait_live(p, 3);
    static coll c;
    for (uint64_t v = 0; v < 300; v++) submit_req(p, OP_SQUARE, 0, v, 0, 0);
    collect(p, &c, 300);
    ASSERT_OK(gf_pool_resize(p, 1));
    wait_live(p, 1);
    for (uint64_t v = 300; v < 400; v++) submit_req(p, OP_SQUARE, 0, v, 0, 0);
    collect(p, &c, 400);
    for (uint64_t i = 1; i <= 400; i++) ASSERT_EQ(c.status[i], GF_TASK_OK);
    for (uint64_t v = 0; v < 400; v++) ASSERT_EQ(atomic_load(&S->runs[v]), 1);
    ASSERT_EQ(gf_pool_resize(p, 5), GF_EINVAL);
    teardown(p);
}

TEST(map_convenience) {
    gf_pool *p = mkpool(2, 0, 0);
    enum { N = 500 };
    static req in[N];
    static gf_pool_item items[N];
    for (int i = 0; i < N; i++) {
        in[i] = (req){i == 77 ? OP_ABORT : OP_SQUARE, 0, (uint64_t)i};
        items[i] = (gf_pool_item){&in[i], sizeof in[i], -1, NULL, 0};
    }
    ASSERT_OK(gf_pool_map(p, items, N, 0, gf_deadline_after(20000000000)));
    for (int i = 0; i < N; i++) {
        if (i == 77) {
            ASSERT_EQ(items[i].status, GF_TASK_LOST);
            continue;
        }
        ASSERT_EQ(items[i].status, GF_TASK_OK);
        uint64_t v;
        ASSERT_EQ(items[i].outlen, 8);
        memcpy(&v, items[i].out, 8);
        ASSERT_EQ(v, (uint64_t)i * i);
        free(items[i].out);
    }
    teardown(p);
}

/* A custom spawn function driving the worker API by hand (what the Python extension does). */
static int my_spawn(void *ctx, gf_pool *p, uint32_t index, gf_proc *out) {
    (void)ctx;
    int rc = gf_proc_fork(out, GF_PROC_DIE_WITH_PARENT);
    if (rc <= 0) return rc;
    if (gf_arena_after_fork_child(gf_pool_arena(p)) < 0) _exit(70);
    gf_worker *w;
    if (gf_worker_attach(gf_pool_arena(p), gf_pool_shared(p), index, &w) < 0) _exit(71);
    for (;;) {
        gf_task t;
        rc = gf_worker_next(w, &t, GF_FOREVER);
        if (rc == GF_EPIPE) break;
        if (rc < 0) _exit(72);
        char out_[64];
        int n = snprintf(out_, sizeof out_, "w%u:%.*s", index, (int)t.len, (const char *)t.data);
        struct iovec v = {out_, (size_t)n};
        if (gf_worker_result(w, &t, GF_TASK_OK, &v, 1) < 0) _exit(73);
    }
    gf_worker_detach(w);
    _exit(0);
}

TEST(custom_spawn) {
    ASSERT_OK(gf_arena_create((size_t)1 << 30, &A));
    gf_pool_options o = {0};
    o.nworkers = 2;
    o.spawn = my_spawn;
    gf_pool *p;
    ASSERT_OK(gf_pool_create(A, &o, &p));
    struct iovec v = {"hello", 5};
    uint64_t id = 42;
    ASSERT_OK(gf_pool_submit(p, &v, 1, 0, 0, &id, GF_FOREVER));
    ASSERT_EQ(id, 42);
    gf_pool_result r;
    ASSERT_EQ(gf_pool_next_results(p, &r, 1, gf_deadline_after(5000000000)), 1);
    ASSERT_EQ(r.id, 42);
    ASSERT_EQ(r.status, GF_TASK_OK);
    ASSERT(r.len == 8 && memcmp(r.data, "w0:hello", 8) == 0);
    teardown(p);
}

TEST(destroy_without_close) {
    gf_pool *p = mkpool(2, 0, 0);
    pid_t w0 = gf_pool_worker_pid(p, 0);
    submit_req(p, OP_SLEEP, 10000, 1, 0, 0);
    gf_pool_destroy(p);
    ASSERT(kill(w0, 0) < 0);
    gf_arena_stats st;
    ASSERT_OK(gf_arena_stats_get(A, &st));
    gf_arena_detach(A);
}

/* Workers killed at random while tasks flow: every task yields exactly one result; a task
 * that completed ran exactly once; a lost one ran at most once. */
TEST(chaos_kills) {
    gf_pool *p = mkpool(3, 0, 8);
    static coll c;
    const size_t N = 3000;
    size_t sent = 0;
    unsigned seed = 12345;
    int kills = 0;
    gf_pool_result res[64];
    while (c.got < N) {
        while (sent < N) {
            req r = {OP_SQUARE, 0, sent};
            struct iovec v = {&r, sizeof r};
            uint64_t id = sent + 1;
            int rc = gf_pool_submit(p, &v, 1, 0, (sent % 3 == 0) ? 1 : 0, &id, 0);
            if (rc == GF_ETIMEDOUT) break;
            ASSERT_OK(rc);
            sent++;
        }
        if (rand_r(&seed) % 8 == 0 && kills < 40) {
            pid_t w = gf_pool_worker_pid(p, (uint32_t)(rand_r(&seed) % 3));
            if (w > 0 && kill(w, SIGKILL) == 0) kills++;
        }
        int n = gf_pool_next_results(p, res, 64, gf_deadline_after(20000000000));
        ASSERT(n > 0);
        for (int k = 0; k < n; k++) {
            uint64_t id = res[k].id;
            ASSERT(id >= 1 && id <= N && !c.seen[id]);
            c.seen[id] = 1;
            c.status[id] = res[k].status;
            c.got++;
        }
    }
    size_t lost = 0;
    for (size_t id = 1; id <= N; id++) {
        uint32_t runs = atomic_load(&S->runs[id - 1]);
        if (c.status[id] == GF_TASK_OK) ASSERT_EQ(runs, (id - 1) % 3 == 0 ? runs : 1);
        else {
            ASSERT_EQ(c.status[id], GF_TASK_LOST);
            ASSERT(runs <= ((id - 1) % 3 == 0 ? 2u : 1u)); /* retried once at most */
            lost++;
        }
        ASSERT(runs <= 2);
    }
    ASSERT(kills > 0);
    ASSERT(lost <= (size_t)kills);
    printf("chaos: %d kills, %zu tasks lost of %zu\n", kills, lost, N);
    wait_live(p, 3);
    teardown(p);
}

/* gf_pool_wake: a consumer asleep in gf_pool_next_results (no deadline, a task still running)
 * returns GF_ETIMEDOUT; a wake-up with nobody asleep is kept for the next call. */
static void *sleeper(void *arg) {
    gf_pool_result res[4];
    return (void *)(intptr_t)gf_pool_next_results(arg, res, 4, GF_FOREVER);
}

TEST(wake_returns_the_consumer) {
    gf_pool *p = mkpool(1, 0, 0);
    static coll c;
    atomic_store(&S->flag, 0);
    uint64_t run = submit_req(p, OP_WAITFLAG, 0, 1, 0, 0);
    while (atomic_load(&S->sleeper_pid) == 0) usleep(100);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, sleeper, p), 0);
    usleep(20000); /* (asleep or not yet: either way the wake-up reaches it) */
    ASSERT_EQ(gf_pool_wake(p), 0);
    void *rc;
    ASSERT_EQ(pthread_join(th, &rc), 0); /* without the wake-up: hangs until the alarm */
    ASSERT_EQ((intptr_t)rc, GF_ETIMEDOUT);
    ASSERT_EQ(gf_pool_wake(p), 0); /* nobody asleep: the next call returns at once */
    gf_pool_result res[4];
    ASSERT_EQ(gf_pool_next_results(p, res, 4, GF_FOREVER), GF_ETIMEDOUT);
    ASSERT_EQ(gf_pool_wake(NULL), GF_EINVAL);
    atomic_store(&S->flag, 1);
    collect(p, &c, 1);
    ASSERT_EQ(c.status[run], GF_TASK_OK);
    teardown(p);
}

/* The Python extension's shape: one thread submits, another takes results. */
static void *consumer(void *arg) {
    gf_pool *p = arg;
    static coll c;
    gf_pool_result res[32];
    for (;;) {
        int n = gf_pool_next_results(p, res, 32, gf_deadline_after(20000000000));
        if (n == GF_EPIPE) break;
        if (n < 0) FAIL("consumer: %s", gf_strerror(n));
        for (int k = 0; k < n; k++) {
            ASSERT(!c.seen[res[k].id]);
            c.seen[res[k].id] = 1;
            if (res[k].id == 2001)
                ASSERT(res[k].status == GF_TASK_OK || res[k].status == GF_TASK_CANCELLED);
            else
                ASSERT_EQ(res[k].status, GF_TASK_OK);
            c.got++;
        }
    }
    return (void *)(uintptr_t)c.got;
}

TEST(threaded_submit_and_results) {
    gf_pool *p = mkpool(2, 5, 4);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, consumer, p), 0);
    for (uint64_t v = 0; v < 2000; v++) submit_req(p, OP_SQUARE, 0, v, 0, 0);
    uint64_t cancel_me = submit_req(p, OP_SQUARE, 0, 2000, 0, 0);
    (void)gf_pool_cancel(p, cancel_me); /* races with its run: either outcome is one result */
    gf_pool_close(p);
    void *got;
    ASSERT_EQ(pthread_join(th, &got), 0);
    ASSERT_EQ((uintptr_t)got, 2001); /* one result per task, cancelled or not */
    for (uint64_t v = 0; v < 2000; v++) ASSERT_EQ(atomic_load(&S->runs[v]), 1);
    teardown(p);
}

TEST_MAIN()
