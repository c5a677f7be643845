/* test_lock.c -- gf_mutex: exclusion across threads and processes, timeouts, release by
 * another process, recursion, dead holders, signals. */
#include "test_lockutil.h"

typedef struct shared {
    gf_mutex m;
    uint64_t counter;          /* guarded by m (plain accesses: the lock orders them) */
    _Atomic uint32_t flag;     /* test handshakes */
    _Atomic uint32_t flag2;
    _Atomic int result;
    _Atomic uint32_t in_cs;    /* holders inside the critical section (must stay <= 1) */
} shared;

static shared *S;

static void setup(uint32_t flags) {
    S = t_setup(sizeof *S);
    ASSERT_OK(gf_mutex_init(&S->m, flags));
}

/* ---------------------------------------------------------------- basics */

TEST(init_flags) {
    gf_mutex m;
    ASSERT_EQ(gf_mutex_init(&m, 0x10), GF_EINVAL);
    ASSERT_OK(gf_mutex_init(&m, 0));
    ASSERT_OK(gf_mutex_init(&m, GF_MUTEX_RECURSIVE));
}

TEST(trylock_and_state) {
    setup(0);
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 0);
    ASSERT_EQ(gf_mutex_is_mine(T_arena, &S->m), 0);
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, 0), 0);
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 1);
    ASSERT_EQ(gf_mutex_is_mine(T_arena, &S->m), 1);
    /* a plain lock is not recursive: the holder itself blocks */
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, 0), GF_ETIMEDOUT);
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, gf_now_ns() - 1000), GF_ETIMEDOUT);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 0);
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, 0), 0);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
}

TEST(unlock_free_is_overflow) {
    setup(0);
    ASSERT_EQ(gf_mutex_unlock(T_arena, &S->m), GF_EOVERFLOW);
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    ASSERT_EQ(gf_mutex_unlock(T_arena, &S->m), GF_EOVERFLOW);
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 0);
}

TEST(timeout_honoured) {
    setup(0);
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    int64_t t0 = gf_now_ns(), deadline = t0 + 80 * 1000000;
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, deadline), GF_ETIMEDOUT);
    ASSERT(gf_now_ns() >= deadline);
    /* longer than one sleep slice: the owner checks in between must not break the wait */
    deadline = gf_now_ns() + 3 * 50 * 1000000 / 2;
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, deadline), GF_ETIMEDOUT);
    ASSERT(gf_now_ns() >= deadline);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
}

/* ---------------------------------------------------------------- exclusion */

#define NINC 100000

static void bump_many(int n) {
    for (int i = 0; i < n; i++) {
        int r = gf_mutex_lock(T_arena, &S->m, GF_FOREVER);
        if (r != 0) FAIL("lock: %d", r);
        if (atomic_fetch_add(&S->in_cs, 1) != 0) FAIL("two holders at once");
        S->counter++;
        atomic_fetch_sub(&S->in_cs, 1);
        ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    }
}

static void *bump_thread(void *arg) {
    bump_many((int)(intptr_t)arg);
    return NULL;
}

static void run_threads(int nthreads, int n) {
    pthread_t th[8];
    for (int i = 0; i < nthreads; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, bump_thread, (void *)(intptr_t)n), 0);
    for (int i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
}

TEST(exclusion_threads) {
    setup(0);
    run_threads(4, NINC);
    ASSERT_EQ(S->counter, 4 * NINC);
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 0);
}

TEST(exclusion_threads_nospin) {
    setenv("GILFREE_SPIN_NS", "0", 1); /* every contended lock sleeps on the futex */
    setup(0);
    run_threads(3, NINC / 2);
    ASSERT_EQ(S->counter, 3 * (NINC / 2));
}

TEST(exclusion_threads_recursive) {
    setup(GF_MUTEX_RECURSIVE);
    run_threads(4, NINC / 2);
    ASSERT_EQ(S->counter, 4 * (NINC / 2));
}

static void bump_child(void *arg) { bump_many((int)(intptr_t)arg); }

static void run_procs(int nprocs, int n) {
    pid_t pids[8];
    for (int i = 0; i < nprocs; i++) pids[i] = t_spawn(bump_child, (void *)(intptr_t)n);
    for (int i = 0; i < nprocs; i++) t_reap_ok(pids[i]);
}

TEST(exclusion_2procs) {
    SKIP_IF_NO_FORK();
    setup(0);
    run_procs(2, NINC);
    ASSERT_EQ(S->counter, 2 * NINC);
}

TEST(exclusion_4procs) {
    SKIP_IF_NO_FORK();
    setup(0);
    run_procs(4, NINC);
    ASSERT_EQ(S->counter, 4 * NINC);
}

TEST(exclusion_3procs_nospin) {
    SKIP_IF_NO_FORK();
    setenv("GILFREE_SPIN_NS", "0", 1);
    setup(0);
    run_procs(3, NINC / 2);
    ASSERT_EQ(S->counter, 3 * (NINC / 2));
}

TEST(exclusion_procs_and_threads_timeouts) {
    /* Short timeouts in a loop: every return is either a held lock or a clean timeout. */
    SKIP_IF_NO_FORK();
    setup(0);
    pid_t p = t_spawn(bump_child, (void *)(intptr_t)(NINC / 2));
    uint64_t mine = 0, timeouts = 0;
    for (int i = 0; i < NINC / 2;) {
        int r = gf_mutex_lock(T_arena, &S->m, gf_deadline_after(2000));
        if (r == GF_ETIMEDOUT) { timeouts++; continue; }
        ASSERT_EQ(r, 0);
        if (atomic_fetch_add(&S->in_cs, 1) != 0) FAIL("two holders at once");
        S->counter++;
        atomic_fetch_sub(&S->in_cs, 1);
        ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
        mine++;
        i++;
    }
    t_reap_ok(p);
    ASSERT_EQ(S->counter, NINC);
    printf("  (%llu timeouts)\n", (unsigned long long)timeouts);
}

/* ---------------------------------------------------------------- release by another process */

static void unlock_child(void *arg) {
    (void)arg;
    ASSERT_EQ(gf_mutex_is_mine(T_arena, &S->m), 0);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    ASSERT_EQ(gf_mutex_unlock(T_arena, &S->m), GF_EOVERFLOW);
}

TEST(release_by_other_process) {
    SKIP_IF_NO_FORK();
    setup(0);
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    t_reap_ok(t_spawn(unlock_child, NULL));
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 0);
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, 0), 0);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
}

static void lock_then_flag_child(void *arg) {
    (void)arg;
    int r = gf_mutex_lock(T_arena, &S->m, t_ms(10000));
    atomic_store(&S->result, r);
    atomic_store(&S->flag, 1);
}

TEST(release_wakes_sleeper_in_other_process) {
    SKIP_IF_NO_FORK();
    setup(0);
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    pid_t p = t_spawn(lock_then_flag_child, NULL);
    /* wait until the child sleeps (it set the waiters bit) */
    while (!(atomic_load((_Atomic uint32_t *)&S->m.word) & 0x80000000u)) usleep(500);
    t_sleep_ms(20);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    t_reap_ok(p);
    ASSERT_EQ(atomic_load(&S->result), 0);
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 1); /* the child still holds it */
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m)); /* any process may release */
}

/* ---------------------------------------------------------------- recursive */

static void *rec_other_thread(void *arg) {
    (void)arg;
    ASSERT_EQ(gf_mutex_is_mine(T_arena, &S->m), 0);
    ASSERT_EQ(gf_mutex_unlock(T_arena, &S->m), GF_EPERM);
    uint32_t d;
    ASSERT_EQ(gf_mutex_unlock_all(T_arena, &S->m, &d), GF_EPERM);
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, 0), GF_ETIMEDOUT);
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, t_ms(30)), GF_ETIMEDOUT);
    return NULL;
}

TEST(recursive_depth_and_eperm) {
    setup(GF_MUTEX_RECURSIVE);
    ASSERT_EQ(gf_mutex_unlock(T_arena, &S->m), GF_EPERM); /* not held at all */
    for (int i = 0; i < 5; i++) ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, 0), 0);
    ASSERT_EQ(S->m.depth, 5);
    ASSERT_EQ(gf_mutex_is_mine(T_arena, &S->m), 1);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, rec_other_thread, NULL), 0);
    pthread_join(th, NULL);
    for (int i = 0; i < 4; i++) ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 1);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 0);
    ASSERT_EQ(gf_mutex_unlock(T_arena, &S->m), GF_EPERM);
}

TEST(recursive_unlock_all_and_restore) {
    setup(GF_MUTEX_RECURSIVE);
    for (int i = 0; i < 3; i++) ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    uint32_t d = 0;
    ASSERT_OK(gf_mutex_unlock_all(T_arena, &S->m, &d));
    ASSERT_EQ(d, 3);
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 0);
    ASSERT_EQ(gf_mutex_lock_depth(T_arena, &S->m, 0, GF_FOREVER), GF_EINVAL);
    ASSERT_OK(gf_mutex_lock_depth(T_arena, &S->m, d, GF_FOREVER));
    ASSERT_EQ(S->m.depth, 3);
    for (int i = 0; i < 3; i++) ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    ASSERT_EQ(gf_mutex_unlock(T_arena, &S->m), GF_EPERM);
    /* plain mutex: unlock_all reports depth 1 */
    gf_mutex p;
    ASSERT_OK(gf_mutex_init(&p, 0));
    ASSERT_OK(gf_mutex_lock(T_arena, &p, 0));
    ASSERT_OK(gf_mutex_unlock_all(T_arena, &p, &d));
    ASSERT_EQ(d, 1);
    ASSERT_EQ(gf_mutex_unlock_all(T_arena, &p, &d), GF_EOVERFLOW);
}

static void rec_child(void *arg) {
    (void)arg;
    /* another process: not the holder, even if its tid happened to match */
    ASSERT_EQ(gf_mutex_is_mine(T_arena, &S->m), 0);
    ASSERT_EQ(gf_mutex_unlock(T_arena, &S->m), GF_EPERM);
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, 0), GF_ETIMEDOUT);
}

TEST(recursive_other_process) {
    SKIP_IF_NO_FORK();
    setup(GF_MUTEX_RECURSIVE);
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    t_reap_ok(t_spawn(rec_child, NULL));
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
}

/* ---------------------------------------------------------------- dead holders */

static void hold_forever_child(void *arg) {
    (void)arg;
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    atomic_store(&S->flag, 1);
    for (;;) pause();
}

static void after_takeover_child(void *arg) {
    (void)arg;
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, t_ms(10000)), 0);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
}

static void owner_dead_common(uint32_t flags, int64_t deadline_ms) {
    setup(flags);
    pid_t p = t_spawn(hold_forever_child, NULL);
    t_wait_eq(&S->flag, 1);
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, 0), GF_ETIMEDOUT); /* alive: plain trylock fails */
    kill(p, SIGKILL);
    t_reap_any(p);
    int r = gf_mutex_lock(T_arena, &S->m, deadline_ms < 0 ? GF_FOREVER : t_ms(deadline_ms));
    ASSERT_EQ(r, GF_EOWNERDEAD);
    ASSERT_EQ(gf_mutex_is_mine(T_arena, &S->m), 1);
    if (flags & GF_MUTEX_RECURSIVE) {
        ASSERT_OK(gf_mutex_lock(T_arena, &S->m, 0)); /* depth 2 */
        ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    }
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 0);
    t_reap_ok(t_spawn(after_takeover_child, NULL)); /* others proceed */
    ASSERT_EQ(gf_mutex_lock(T_arena, &S->m, 0), 0);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
}

TEST(owner_killed_then_lock) {
    SKIP_IF_NO_FORK();
    owner_dead_common(0, -1);
}

TEST(owner_killed_then_trylock) {
    SKIP_IF_NO_FORK();
    owner_dead_common(0, 0); /* even a non-blocking attempt takes over from a dead holder */
}

TEST(owner_killed_recursive) {
    SKIP_IF_NO_FORK();
    owner_dead_common(GF_MUTEX_RECURSIVE, 5000);
}

static void sleeper_child(void *arg) {
    (void)arg;
    int r = gf_mutex_lock(T_arena, &S->m, t_ms(20000));
    atomic_store(&S->result, r);
    if (r == 0 || r == GF_EOWNERDEAD) {
        ASSERT_EQ(gf_mutex_is_mine(T_arena, &S->m), 1);
        ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    }
}

TEST(owner_killed_while_other_sleeps) {
    SKIP_IF_NO_FORK();
    setup(0);
    pid_t holder = t_spawn(hold_forever_child, NULL);
    t_wait_eq(&S->flag, 1);
    pid_t sleeper = t_spawn(sleeper_child, NULL);
    /* the sleeper has set the waiters bit: it is (about to be) asleep */
    while (!(atomic_load((_Atomic uint32_t *)&S->m.word) & 0x80000000u)) usleep(500);
    t_sleep_ms(120); /* let it pass a slice or two asleep */
    kill(holder, SIGKILL);
    t_reap_any(holder);
    t_reap_ok(sleeper);
    ASSERT_EQ(atomic_load(&S->result), GF_EOWNERDEAD);
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 0);
}

static void racer_child(void *arg) {
    (void)arg;
    int r = gf_mutex_lock(T_arena, &S->m, t_ms(20000));
    if (r == GF_EOWNERDEAD) atomic_fetch_add(&S->flag2, 1);
    else if (r != 0) FAIL("lock: %d", r);
    if (atomic_fetch_add(&S->in_cs, 1) != 0) FAIL("two holders at once");
    t_sleep_ms(5);
    atomic_fetch_sub(&S->in_cs, 1);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
}

TEST(owner_killed_many_sleepers_one_takes_over) {
    SKIP_IF_NO_FORK();
    setup(0);
    pid_t holder = t_spawn(hold_forever_child, NULL);
    t_wait_eq(&S->flag, 1);
    pid_t w[3];
    for (int i = 0; i < 3; i++) w[i] = t_spawn(racer_child, NULL);
    t_sleep_ms(100);
    kill(holder, SIGKILL);
    t_reap_any(holder);
    for (int i = 0; i < 3; i++) t_reap_ok(w[i]);
    ASSERT_EQ(atomic_load(&S->flag2), 1); /* exactly one saw the death */
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 0);
}

/* ---------------------------------------------------------------- signals */

static void *hold_until_flag_thread(void *arg) {
    (void)arg;
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    atomic_store(&S->flag, 1);
    t_wait_eq(&S->flag2, 1);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    return NULL;
}

static void eintr_common(uint32_t flags) {
    setup(flags);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, hold_until_flag_thread, NULL), 0);
    t_wait_eq(&S->flag, 1);
    t_pester p;
    t_pester_start(&p);
    int64_t deadline = t_ms(20000);
    int r = gf_mutex_lock(T_arena, &S->m, deadline);
    t_pester_stop(&p);
    ASSERT_EQ(r, GF_EINTR);
    /* still held by the other thread (is_mine is per process for a plain mutex) */
    if (flags & GF_MUTEX_RECURSIVE) ASSERT_EQ(gf_mutex_is_mine(T_arena, &S->m), 0);
    ASSERT_EQ(gf_mutex_is_locked(&S->m), 1);
    atomic_store(&S->flag2, 1);
    /* retry with the same deadline, as callers do */
    do r = gf_mutex_lock(T_arena, &S->m, deadline); while (r == GF_EINTR);
    ASSERT_EQ(r, 0);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    pthread_join(th, NULL);
}

TEST(eintr_plain) { eintr_common(0); }
TEST(eintr_recursive) { eintr_common(GF_MUTEX_RECURSIVE); }

TEST_MAIN()
