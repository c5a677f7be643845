/* test_futex.c -- the shared wait mechanism: deadlines, the interrupt slice, spin budget. */
#include "gilfree.h"
#include "test.h"

#include <stdint.h>

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

TEST_MAIN()
