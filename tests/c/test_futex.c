/* test_futex.c -- the shared wait mechanism: deadlines, the interrupt slice, spin budget. */
#include "gilfree.h"
#include "test.h"

#include <signal.h>
#include <stdint.h>
#include <unistd.h>

/* A blocking get on an empty ring returns GF_EINTR once per interrupt slice (so CPython can
 * poll its signal flags), and GF_ETIMEDOUT when the real deadline passes. */
TEST(interrupt_slice_wakes_blocking_calls) {
    gf_arena *a;
    ASSERT_OK(gf_arena_create((size_t)1 << 30, &a));
    gf_off r;
    ASSERT_OK(gf_ring_create(a, 4096, 0, 0, &r));
    char buf[4096];
    gf_msg m;
    gf_set_interrupt_slice(20 * 1000000LL);
    int64_t t0 = gf_now_ns();
    ASSERT_EQ(gf_ring_get(a, r, &m, buf, sizeof buf, GF_FOREVER), GF_EINTR);
    int64_t dt = gf_now_ns() - t0;
    ASSERT(dt >= 19 * 1000000LL); /* not before the slice */
    /* A deadline shorter than the slice is a plain timeout. */
    ASSERT_EQ(gf_ring_get(a, r, &m, buf, sizeof buf, gf_deadline_after(5 * 1000000LL)),
              GF_ETIMEDOUT);
    /* The same for a contended mutex and a semaphore. */
    gf_sem s;
    ASSERT_OK(gf_sem_init(&s, 0, 0));
    ASSERT_EQ(gf_sem_wait(&s, GF_FOREVER), GF_EINTR);
    gf_set_interrupt_slice(0);
    ASSERT_EQ(gf_sem_wait(&s, gf_deadline_after(30 * 1000000LL)), GF_ETIMEDOUT);
    gf_obj_decref(a, r);
    gf_arena_detach(a);
}

/* A child that waits forever for its parent... is reaped by gf_proc_wait, which returns
 * GF_EINTR per slice while the child is alive, then 0. */
TEST(interrupt_slice_proc_wait) {
    gf_proc p;
    int rc = gf_proc_fork(&p, 0);
    ASSERT(rc >= 0);
    if (rc == 1) {
        usleep(60 * 1000);
        _exit(7);
    }
    gf_set_interrupt_slice(10 * 1000000LL);
    int eintr = 0;
    for (;;) {
        rc = gf_proc_wait(&p, GF_FOREVER);
        if (rc == GF_EINTR) { eintr++; continue; }
        ASSERT_OK(rc);
        break;
    }
    ASSERT(eintr >= 2);
    int code;
    ASSERT_OK(gf_proc_exitcode(&p, &code));
    ASSERT_EQ(code, 7);
    gf_proc_close(&p);
}

TEST(deadline_after_saturates) {
    ASSERT_EQ(gf_deadline_after(-1), GF_FOREVER);
    ASSERT_EQ(gf_deadline_after(INT64_MAX), GF_FOREVER);
    int64_t d = gf_deadline_after(1000);
    ASSERT(d > 0 && d < GF_FOREVER);
}

/* The lock's own death-check slices (50 ms) are shorter than the interrupt slice: a waiter on
 * a lock held (forever) by a live process must still come back with GF_EINTR. */
TEST(interrupt_slice_contended_mutex) {
    gf_arena *a;
    ASSERT_OK(gf_arena_create((size_t)1 << 30, &a));
    gf_off off;
    ASSERT_OK(gf_alloc(a, sizeof(gf_mutex), &off));
    gf_mutex *m = gf_ptr(a, off);
    ASSERT_OK(gf_mutex_init(m, 0));
    int pfd[2];
    ASSERT(pipe(pfd) == 0);
    gf_proc p;
    int rc = gf_proc_fork(&p, GF_PROC_DIE_WITH_PARENT);
    ASSERT(rc >= 0);
    if (rc == 1) {
        gf_arena_after_fork_child(a);
        gf_mutex_lock(a, m, GF_FOREVER);
        char c = 1;
        if (write(pfd[1], &c, 1) != 1) _exit(2);
        pause();
        _exit(0);
    }
    char c;
    ASSERT(read(pfd[0], &c, 1) == 1);
    gf_set_interrupt_slice(120 * 1000000LL);
    ASSERT_EQ(gf_mutex_lock(a, m, GF_FOREVER), GF_EINTR);
    gf_set_interrupt_slice(0);
    ASSERT_OK(gf_proc_signal(&p, SIGKILL));
    ASSERT_OK(gf_proc_wait(&p, GF_FOREVER));
    ASSERT_EQ(gf_mutex_lock(a, m, GF_FOREVER), GF_EOWNERDEAD);
    gf_proc_close(&p);
    gf_arena_detach(a);
}

static int slow_handler(void *ctx, const void *in, size_t inlen, gf_pool_out *out) {
    (void)ctx;
    (void)in;
    (void)inlen;
    sleep(5);
    out->data = "";
    out->len = 0;
    return 0;
}

/* gf_pool_next_results supervises in 10 ms slices: it must still honour the interrupt slice. */
TEST(interrupt_slice_pool_next_results) {
    SKIP_UNDER_TSAN();
    gf_arena *a;
    ASSERT_OK(gf_arena_create((size_t)1 << 30, &a));
    gf_pool_options o = {0};
    o.nworkers = 1;
    o.handler = slow_handler;
    gf_pool *p;
    ASSERT_OK(gf_pool_create(a, &o, &p));
    uint64_t id = 0;
    ASSERT_OK(gf_pool_submit(p, NULL, 0, 0, 0, &id, GF_FOREVER));
    gf_pool_result r;
    gf_set_interrupt_slice(100 * 1000000LL);
    int64_t t0 = gf_now_ns();
    ASSERT_EQ(gf_pool_next_results(p, &r, 1, GF_FOREVER), GF_EINTR);
    ASSERT(gf_now_ns() - t0 < 3000 * 1000000LL);
    gf_set_interrupt_slice(0);
    gf_pool_terminate(p);
    gf_pool_destroy(p);
    gf_arena_detach(a);
}

TEST_MAIN()
