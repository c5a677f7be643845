/* test_sync.c -- gf_sem, gf_event, gf_cond, gf_barrier across threads and processes. */
#include "test_lockutil.h"

#include "../../src/core/internal.h" /* gf__arena_verify */

typedef struct shared {
    gf_mutex m;
    gf_mutex rm; /* recursive */
    gf_sem s, s2;
    gf_event e;
    gf_cond c;
    gf_barrier b;
    uint64_t counter; /* guarded by m */
    uint64_t items;   /* guarded by m */
    _Atomic uint32_t flag;
    _Atomic uint32_t flag2;
    _Atomic int result;
    _Atomic int results[8];
    _Atomic uint32_t released;
    uint32_t slots[8]; /* barrier rounds: written before the barrier, read after */
    _Atomic uint32_t idx_sum;
} shared;

static shared *S;

static void setup(void) {
    S = t_setup(sizeof *S);
    ASSERT_OK(gf_mutex_init(&S->m, 0));
    ASSERT_OK(gf_mutex_init(&S->rm, GF_MUTEX_RECURSIVE));
    ASSERT_OK(gf_event_init(&S->e));
    ASSERT_OK(gf_cond_init(&S->c));
}

/* ================================================================ semaphore */

TEST(sem_basic) {
    setup();
    ASSERT_OK(gf_sem_init(&S->s, 2, 0));
    ASSERT_EQ(gf_sem_value(&S->s), 2);
    ASSERT_EQ(gf_sem_wait(&S->s, 0), 0);
    ASSERT_EQ(gf_sem_wait(&S->s, GF_FOREVER), 0);
    ASSERT_EQ(gf_sem_wait(&S->s, 0), GF_ETIMEDOUT);
    int64_t deadline = t_ms(60);
    ASSERT_EQ(gf_sem_wait(&S->s, deadline), GF_ETIMEDOUT);
    ASSERT(gf_now_ns() >= deadline);
    ASSERT_OK(gf_sem_post(&S->s));
    ASSERT_EQ(gf_sem_value(&S->s), 1);
    ASSERT_EQ(gf_sem_wait(&S->s, 0), 0);
}

TEST(sem_bounded_overflow) {
    setup();
    ASSERT_EQ(gf_sem_init(&S->s, 3, 2), GF_EINVAL);
    ASSERT_OK(gf_sem_init(&S->s, 1, 2));
    ASSERT_OK(gf_sem_post(&S->s));
    ASSERT_EQ(gf_sem_post(&S->s), GF_EOVERFLOW);
    ASSERT_EQ(gf_sem_value(&S->s), 2);
    ASSERT_OK(gf_sem_wait(&S->s, 0));
    ASSERT_OK(gf_sem_post(&S->s));
    ASSERT_OK(gf_sem_init(&S->s, UINT32_MAX - 1, 0)); /* unbounded still stops at UINT32_MAX */
    ASSERT_OK(gf_sem_post(&S->s));
    ASSERT_EQ(gf_sem_post(&S->s), GF_EOVERFLOW);
}

#define NITEMS 20000

static void *sem_consumer(void *arg) {
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(gf_sem_wait(&S->s, t_ms(20000)), 0);
        atomic_fetch_add(&S->released, 1);
    }
    return NULL;
}

TEST(sem_threads_producer_consumer) {
    setup();
    ASSERT_OK(gf_sem_init(&S->s, 0, 0));
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, sem_consumer, (void *)(intptr_t)NITEMS), 0);
    for (int i = 0; i < 3 * NITEMS; i++) {
        ASSERT_OK(gf_sem_post(&S->s));
        if (i % 1000 == 0) usleep(100); /* let consumers fall asleep now and then */
    }
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    ASSERT_EQ(atomic_load(&S->released), 3 * NITEMS);
    ASSERT_EQ(gf_sem_value(&S->s), 0);
}

static void sem_pong_child(void *arg) {
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(gf_sem_wait(&S->s, t_ms(20000)), 0);
        ASSERT_OK(gf_sem_post(&S->s2));
    }
}

static void sem_pingpong(int n) {
    ASSERT_OK(gf_sem_init(&S->s, 0, 1));
    ASSERT_OK(gf_sem_init(&S->s2, 0, 1));
    pid_t p = t_spawn(sem_pong_child, (void *)(intptr_t)n);
    for (int i = 0; i < n; i++) {
        ASSERT_OK(gf_sem_post(&S->s));
        ASSERT_EQ(gf_sem_wait(&S->s2, t_ms(20000)), 0);
    }
    t_reap_ok(p);
}

TEST(sem_pingpong_processes) {
    SKIP_IF_NO_FORK();
    setup();
    sem_pingpong(10000);
}

TEST(sem_pingpong_processes_nospin) {
    SKIP_IF_NO_FORK();
    setenv("GILFREE_SPIN_NS", "0", 1);
    setup();
    sem_pingpong(3000);
}

TEST(sem_eintr) {
    setup();
    ASSERT_OK(gf_sem_init(&S->s, 0, 0));
    t_pester p;
    t_pester_start(&p);
    int64_t deadline = t_ms(20000);
    int r = gf_sem_wait(&S->s, deadline);
    t_pester_stop(&p);
    ASSERT_EQ(r, GF_EINTR);
    ASSERT_EQ(S->s.waiters, 0);
    ASSERT_OK(gf_sem_post(&S->s));
    ASSERT_EQ(gf_sem_wait(&S->s, deadline), 0);
}

/* ================================================================ event */

TEST(event_basic) {
    setup();
    ASSERT_EQ(gf_event_is_set(&S->e), 0);
    ASSERT_EQ(gf_event_wait(&S->e, 0), GF_ETIMEDOUT);
    int64_t deadline = t_ms(50);
    ASSERT_EQ(gf_event_wait(&S->e, deadline), GF_ETIMEDOUT);
    ASSERT(gf_now_ns() >= deadline);
    gf_event_set(&S->e);
    gf_event_set(&S->e);
    ASSERT_EQ(gf_event_is_set(&S->e), 1);
    ASSERT_EQ(gf_event_wait(&S->e, 0), 0);
    gf_event_clear(&S->e);
    gf_event_clear(&S->e);
    ASSERT_EQ(gf_event_is_set(&S->e), 0);
    ASSERT_EQ(gf_event_wait(&S->e, 0), GF_ETIMEDOUT);
}

static void event_waiter_child(void *arg) {
    int i = (int)(intptr_t)arg;
    atomic_fetch_add(&S->flag, 1);
    int r = gf_event_wait(&S->e, t_ms(20000));
    atomic_store(&S->results[i], r == 0 ? 1 : r);
}

static void event_processes(int clear_at_once) {
    setup();
    pid_t p[4];
    for (int i = 0; i < 4; i++) p[i] = t_spawn(event_waiter_child, (void *)(intptr_t)i);
    t_wait_eq(&S->flag, 4);
    t_sleep_ms(50); /* they are asleep */
    ASSERT_EQ(S->e.waiters, 4);
    gf_event_set(&S->e);
    if (clear_at_once) gf_event_clear(&S->e); /* waiters that were waiting still return */
    for (int i = 0; i < 4; i++) t_reap_ok(p[i]);
    for (int i = 0; i < 4; i++) ASSERT_EQ(atomic_load(&S->results[i]), 1);
    ASSERT_EQ(gf_event_is_set(&S->e), !clear_at_once);
    ASSERT_EQ(S->e.waiters, 0);
}

TEST(event_set_wakes_processes) {
    SKIP_IF_NO_FORK();
    event_processes(0);
}

TEST(event_set_then_clear_still_releases) {
    SKIP_IF_NO_FORK();
    event_processes(1);
}

static void *event_waiter_thread(void *arg) {
    event_waiter_child(arg);
    return NULL;
}

TEST(event_threads_many_rounds) {
    setup();
    for (int round = 0; round < 200; round++) {
        atomic_store(&S->flag, 0);
        pthread_t th[3];
        for (int i = 0; i < 3; i++)
            ASSERT_EQ(pthread_create(&th[i], NULL, event_waiter_thread, (void *)(intptr_t)i), 0);
        t_wait_eq(&S->flag, 3);
        if (round & 1) usleep(100);
        gf_event_set(&S->e);
        for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < 3; i++) ASSERT_EQ(atomic_load(&S->results[i]), 1);
        gf_event_clear(&S->e);
    }
}

TEST(event_eintr) {
    setup();
    t_pester p;
    t_pester_start(&p);
    int r = gf_event_wait(&S->e, t_ms(20000));
    t_pester_stop(&p);
    ASSERT_EQ(r, GF_EINTR);
    ASSERT_EQ(S->e.waiters, 0);
}

/* ================================================================ condition */

TEST(cond_eperm_and_timeout_holds_mutex) {
    setup();
    ASSERT_EQ(gf_cond_wait(T_arena, &S->c, &S->m, 0), GF_EPERM);
    ASSERT_EQ(gf_cond_wait(T_arena, &S->c, &S->rm, 0), GF_EPERM);
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    int64_t deadline = t_ms(60);
    ASSERT_EQ(gf_cond_wait(T_arena, &S->c, &S->m, deadline), GF_ETIMEDOUT);
    ASSERT(gf_now_ns() >= deadline);
    ASSERT_EQ(gf_mutex_is_mine(T_arena, &S->m), 1);
    ASSERT_EQ(gf_cond_wait(T_arena, &S->c, &S->m, 0), GF_ETIMEDOUT);
    ASSERT_EQ(gf_mutex_is_mine(T_arena, &S->m), 1);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    /* recursive at depth 3: restored after the wait */
    for (int i = 0; i < 3; i++) ASSERT_OK(gf_mutex_lock(T_arena, &S->rm, GF_FOREVER));
    ASSERT_EQ(gf_cond_wait(T_arena, &S->c, &S->rm, t_ms(20)), GF_ETIMEDOUT);
    ASSERT_EQ(S->rm.depth, 3);
    for (int i = 0; i < 3; i++) ASSERT_OK(gf_mutex_unlock(T_arena, &S->rm));
    ASSERT_EQ(gf_mutex_unlock(T_arena, &S->rm), GF_EPERM);
    ASSERT_EQ(S->c.waiters, 0);
}

/* Waiters sleep until `items` > 0, take one. */
static void cond_consume(gf_mutex *m, int n) {
    for (int i = 0; i < n; i++) {
        ASSERT_OK(gf_mutex_lock(T_arena, m, GF_FOREVER));
        while (S->items == 0) {
            int r = gf_cond_wait(T_arena, &S->c, m, t_ms(20000));
            ASSERT_EQ(r, 0);
            ASSERT_EQ(gf_mutex_is_mine(T_arena, m), 1);
        }
        S->items--;
        S->counter++;
        ASSERT_OK(gf_mutex_unlock(T_arena, m));
    }
}

static void *cond_consumer_thread(void *arg) {
    cond_consume(&S->rm, (int)(intptr_t)arg);
    return NULL;
}

TEST(cond_threads_producer_consumer) {
    setup();
    pthread_t th[3];
    const int n = 5000;
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, cond_consumer_thread, (void *)(intptr_t)n), 0);
    for (int i = 0; i < 3 * n; i++) {
        ASSERT_OK(gf_mutex_lock(T_arena, &S->rm, GF_FOREVER));
        S->items++;
        ASSERT(gf_cond_notify(T_arena, &S->c, &S->rm, (i & 7) ? 1 : UINT32_MAX) >= 0);
        ASSERT_OK(gf_mutex_unlock(T_arena, &S->rm));
        if (i % 500 == 0) usleep(200);
    }
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    ASSERT_EQ(S->counter, 3 * n);
    ASSERT_EQ(S->items, 0);
}

static void cond_consumer_child(void *arg) { cond_consume(&S->m, (int)(intptr_t)arg); }

TEST(cond_processes_producer_consumer) {
    SKIP_IF_NO_FORK();
    setup();
    const int n = 3000;
    pid_t p[3];
    for (int i = 0; i < 3; i++) p[i] = t_spawn(cond_consumer_child, (void *)(intptr_t)n);
    for (int i = 0; i < 3 * n; i++) {
        ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
        S->items++;
        ASSERT(gf_cond_notify(T_arena, &S->c, &S->m, 1) >= 0);
        ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    }
    for (int i = 0; i < 3; i++) t_reap_ok(p[i]);
    ASSERT_EQ(S->counter, 3 * n);
}

/* Waiters count themselves in (holding m, just before they wait) and out when released. Once
 * `flag` says n and the parent holds m, all n are listed (a waiter links its node before it
 * unlocks): asleep, spinning or not yet either, each is released by exactly one notify. */
static void cond_gate_child(void *arg) {
    (void)arg;
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    atomic_fetch_add(&S->flag, 1);
    while (S->items == 0) ASSERT_EQ(gf_cond_wait(T_arena, &S->c, &S->m, t_ms(20000)), 0);
    atomic_fetch_add(&S->released, 1);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
}

TEST(cond_notify_one_then_all_processes) {
    SKIP_IF_NO_FORK();
    setup();
    pid_t p[4];
    for (int i = 0; i < 4; i++) p[i] = t_spawn(cond_gate_child, NULL);
    t_wait_eq(&S->flag, 4);
    t_sleep_ms(100); /* all asleep in the futex */
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    S->items = 1;
    ASSERT_EQ(gf_cond_notify(T_arena, &S->c, &S->m, 1), 1);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    t_wait_eq(&S->released, 1);
    t_sleep_ms(100);
    ASSERT_EQ(atomic_load(&S->released), 1);
    ASSERT_EQ(S->c.waiters, 3);
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    ASSERT_EQ(gf_cond_notify(T_arena, &S->c, &S->m, UINT32_MAX), 3);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    for (int i = 0; i < 4; i++) t_reap_ok(p[i]);
    ASSERT_EQ(atomic_load(&S->released), 4);
    ASSERT_EQ(S->c.waiters, 0);
}

/* notify(2) with 4 waiters releases exactly 2, however far each waiter got towards sleeping
 * (no pause before the notify: most are still spinning), then notify(2) the other 2. */
TEST(cond_notify_n_exact_processes) {
    SKIP_IF_NO_FORK();
    setup();
    for (int round = 0; round < 20; round++) {
        atomic_store(&S->flag, 0);
        atomic_store(&S->released, 0);
        S->items = 0;
        pid_t p[4];
        for (int i = 0; i < 4; i++) p[i] = t_spawn(cond_gate_child, NULL);
        t_wait_eq(&S->flag, 4);
        ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
        ASSERT_EQ(S->c.waiters, 4);
        S->items = 1;
        ASSERT_EQ(gf_cond_notify(T_arena, &S->c, &S->m, 2), 2);
        ASSERT_EQ(S->c.waiters, 2);
        ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
        t_wait_eq(&S->released, 2);
        if (round == 0) t_sleep_ms(100);
        ASSERT_EQ(atomic_load(&S->released), 2);
        ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
        ASSERT_EQ(gf_cond_notify(T_arena, &S->c, &S->m, 2), 2);
        ASSERT_EQ(gf_cond_notify(T_arena, &S->c, &S->m, 2), 0); /* nobody left */
        ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
        for (int i = 0; i < 4; i++) t_reap_ok(p[i]);
        ASSERT_EQ(atomic_load(&S->released), 4);
    }
}

static void *cond_timed_waiter_thread(void *arg) {
    int64_t ms = (int64_t)(intptr_t)arg;
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    atomic_fetch_add(&S->flag, 1);
    int r = gf_cond_wait(T_arena, &S->c, &S->m, ms ? t_ms(ms) : GF_FOREVER);
    atomic_store(&S->result, r);
    atomic_fetch_add(&S->released, 1);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    return NULL;
}

/* A waiter that timed out takes no later notify; a waiter that comes after a notify is not
 * released by it; notify without the mutex is refused. */
TEST(cond_timeout_and_late_waiter_take_nothing) {
    setup();
    ASSERT_EQ(gf_cond_notify(T_arena, &S->c, &S->m, 1), GF_EPERM);
    pthread_t t1, t2, t3;
    ASSERT_EQ(pthread_create(&t1, NULL, cond_timed_waiter_thread, (void *)(intptr_t)30), 0);
    pthread_join(t1, NULL);
    ASSERT_EQ(atomic_load(&S->result), GF_ETIMEDOUT);
    ASSERT_EQ(S->c.waiters, 0);
    atomic_store(&S->flag, 0);
    ASSERT_EQ(pthread_create(&t2, NULL, cond_timed_waiter_thread, (void *)(intptr_t)0), 0);
    t_wait_eq(&S->flag, 1);
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    ASSERT_EQ(gf_cond_notify(T_arena, &S->c, &S->m, 1), 1); /* t2, not the timed-out one */
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    /* t3 starts waiting after the notify (maybe before t2 re-locks): it must time out */
    ASSERT_EQ(pthread_create(&t3, NULL, cond_timed_waiter_thread, (void *)(intptr_t)150), 0);
    pthread_join(t2, NULL);
    pthread_join(t3, NULL);
    ASSERT_EQ(atomic_load(&S->released), 3);
    ASSERT_EQ(atomic_load(&S->result), GF_ETIMEDOUT); /* t3's, the last to finish */
    ASSERT_EQ(S->c.waiters, 0);
}

static void cond_forever_child(void *arg) {
    (void)arg;
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    atomic_fetch_add(&S->flag2, 1);
    gf_cond_wait(T_arena, &S->c, &S->m, GF_FOREVER);
    for (;;) pause();
}

/* A waiter killed while it waits costs nothing: the next notify frees its node and releases
 * a live waiter instead. */
TEST(cond_dead_waiter_skipped) {
    SKIP_IF_NO_FORK();
    setup();
    int live = gf__arena_verify(T_arena);
    ASSERT(live >= 0);
    pid_t p = t_spawn(cond_forever_child, NULL);
    t_wait_eq(&S->flag2, 1);
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER)); /* the child is listed */
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    kill(p, SIGKILL);
    t_reap_any(p);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, cond_timed_waiter_thread, (void *)(intptr_t)0), 0);
    t_wait_eq(&S->flag, 1);
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    ASSERT_EQ(S->c.waiters, 2);
    ASSERT_EQ(gf_cond_notify(T_arena, &S->c, &S->m, 1), 1);
    ASSERT_EQ(S->c.waiters, 0);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    pthread_join(t, NULL);
    ASSERT_EQ(atomic_load(&S->result), 0);
    ASSERT_EQ(gf__arena_verify(T_arena), live); /* both nodes freed */
}

static void cond_eintr_common(gf_mutex *m, int depth) {
    for (int i = 0; i < depth; i++) ASSERT_OK(gf_mutex_lock(T_arena, m, GF_FOREVER));
    t_pester p;
    t_pester_start(&p);
    int r = gf_cond_wait(T_arena, &S->c, m, t_ms(20000));
    t_pester_stop(&p);
    ASSERT_EQ(r, GF_EINTR);
    ASSERT_EQ(gf_mutex_is_mine(T_arena, m), 1); /* held again */
    for (int i = 0; i < depth; i++) ASSERT_OK(gf_mutex_unlock(T_arena, m));
    ASSERT_EQ(gf_mutex_is_locked(m), 0);
}

TEST(cond_eintr) {
    setup();
    cond_eintr_common(&S->m, 1);
    cond_eintr_common(&S->rm, 2);
}

static void cond_dead_holder_child(void *arg) {
    (void)arg;
    /* wait until the parent sleeps in cond_wait (it released m), take m and die holding it */
    t_wait_eq(&S->flag, 1);
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    ASSERT_EQ(gf_cond_notify(T_arena, &S->c, &S->m, 1), 1);
    atomic_store(&S->flag2, 1);
    for (;;) pause();
}

TEST(cond_wait_reacquire_from_dead_holder) {
    SKIP_IF_NO_FORK();
    setup();
    pid_t p = t_spawn(cond_dead_holder_child, NULL);
    ASSERT_OK(gf_mutex_lock(T_arena, &S->m, GF_FOREVER));
    atomic_store(&S->flag, 1);
    /* the child's notify wakes us; we then need m, which it holds until it is killed */
    pid_t killer = fork();
    ASSERT(killer >= 0);
    if (killer == 0) {
        t_wait_eq(&S->flag2, 1);
        t_sleep_ms(50);
        kill(p, SIGKILL);
        _exit(0);
    }
    int r = gf_cond_wait(T_arena, &S->c, &S->m, t_ms(20000));
    ASSERT_EQ(r, GF_EOWNERDEAD);
    ASSERT_EQ(gf_mutex_is_mine(T_arena, &S->m), 1);
    ASSERT_OK(gf_mutex_unlock(T_arena, &S->m));
    t_reap_ok(killer);
    t_reap_any(p);
}

/* ================================================================ barrier */

TEST(barrier_init) {
    setup();
    ASSERT_EQ(gf_barrier_init(&S->b, 0), GF_EINVAL);
    ASSERT_EQ(gf_barrier_init(&S->b, 70000), GF_EINVAL);
    ASSERT_OK(gf_barrier_init(&S->b, 1));
    for (int i = 0; i < 5; i++) ASSERT_EQ(gf_barrier_wait(&S->b, 0), 0);
}

#define ROUNDS 1000

/* Each party writes its round number into its slot, waits, checks every slot, waits again. */
static void barrier_rounds(int me, int parties) {
    for (uint32_t round = 1; round <= ROUNDS; round++) {
        atomic_store_explicit((_Atomic uint32_t *)&S->slots[me], round, memory_order_relaxed);
        int idx = gf_barrier_wait(&S->b, t_ms(20000));
        if (idx < 0 || idx >= parties) FAIL("round %u: wait -> %d", round, idx);
        atomic_fetch_add(&S->idx_sum, (uint32_t)idx);
        for (int j = 0; j < parties; j++) {
            uint32_t v = atomic_load_explicit((_Atomic uint32_t *)&S->slots[j],
                                              memory_order_relaxed);
            if (v != round) FAIL("round %u: party %d saw slot %d = %u", round, me, j, v);
        }
        idx = gf_barrier_wait(&S->b, t_ms(20000));
        if (idx < 0) FAIL("round %u: second wait -> %d", round, idx);
    }
}

static void barrier_child(void *arg) { barrier_rounds((int)(intptr_t)arg, 3); }
static void *barrier_thread(void *arg) {
    barrier_rounds((int)(intptr_t)arg, 3);
    return NULL;
}

TEST(barrier_3procs_1000_rounds) {
    SKIP_IF_NO_FORK();
    setup();
    ASSERT_OK(gf_barrier_init(&S->b, 3));
    pid_t p[2];
    for (int i = 0; i < 2; i++) p[i] = t_spawn(barrier_child, (void *)(intptr_t)(i + 1));
    barrier_rounds(0, 3);
    for (int i = 0; i < 2; i++) t_reap_ok(p[i]);
    ASSERT_EQ(atomic_load(&S->idx_sum), ROUNDS * 3); /* 0+1+2 per round: indices distinct */
    ASSERT_EQ(gf_barrier_n_waiting(&S->b), 0);
}

TEST(barrier_3procs_nospin) {
    SKIP_IF_NO_FORK();
    setenv("GILFREE_SPIN_NS", "0", 1);
    setup();
    ASSERT_OK(gf_barrier_init(&S->b, 3));
    pid_t p[2];
    for (int i = 0; i < 2; i++) p[i] = t_spawn(barrier_child, (void *)(intptr_t)(i + 1));
    barrier_rounds(0, 3);
    for (int i = 0; i < 2; i++) t_reap_ok(p[i]);
}

TEST(barrier_3threads_1000_rounds) {
    setup();
    ASSERT_OK(gf_barrier_init(&S->b, 3));
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, barrier_thread, (void *)(intptr_t)(i + 1)), 0);
    barrier_rounds(0, 3);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    ASSERT_EQ(atomic_load(&S->idx_sum), ROUNDS * 3);
}

static void *barrier_wait_forever_thread(void *arg) {
    int i = (int)(intptr_t)arg;
    atomic_fetch_add(&S->flag, 1);
    atomic_store(&S->results[i], gf_barrier_wait(&S->b, t_ms(20000)));
    return NULL;
}

TEST(barrier_timeout_breaks) {
    setup();
    ASSERT_OK(gf_barrier_init(&S->b, 3));
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, barrier_wait_forever_thread, (void *)0), 0);
    t_wait_eq(&S->flag, 1);
    while (gf_barrier_n_waiting(&S->b) != 1) usleep(200);
    int64_t deadline = t_ms(60);
    ASSERT_EQ(gf_barrier_wait(&S->b, deadline), GF_ETIMEDOUT);
    ASSERT(gf_now_ns() >= deadline);
    pthread_join(th, NULL);
    ASSERT_EQ(atomic_load(&S->results[0]), GF_EPIPE); /* BrokenBarrierError for everyone */
    ASSERT_EQ(gf_barrier_wait(&S->b, GF_FOREVER), GF_EPIPE); /* stays broken */
    ASSERT_EQ(gf_barrier_n_waiting(&S->b), 0);
    gf_barrier_reset(&S->b);
    ASSERT_EQ(gf_barrier_n_waiting(&S->b), 0);
    /* usable again: 3 threads */
    atomic_store(&S->flag, 0);
    pthread_t t2[2];
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&t2[i], NULL, barrier_wait_forever_thread, (void *)(intptr_t)i),
                  0);
    int me = gf_barrier_wait(&S->b, t_ms(20000));
    for (int i = 0; i < 2; i++) pthread_join(t2[i], NULL);
    ASSERT(me >= 0);
    ASSERT_EQ(me + atomic_load(&S->results[0]) + atomic_load(&S->results[1]), 3);
}

TEST(barrier_abort_and_reset_with_waiters) {
    setup();
    ASSERT_OK(gf_barrier_init(&S->b, 3));
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, barrier_wait_forever_thread, (void *)(intptr_t)i),
                  0);
    while (gf_barrier_n_waiting(&S->b) != 2) usleep(200);
    gf_barrier_abort(&S->b);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) ASSERT_EQ(atomic_load(&S->results[i]), GF_EPIPE);
    ASSERT_EQ(gf_barrier_wait(&S->b, 0), GF_EPIPE);
    gf_barrier_reset(&S->b);

    /* reset while two wait: they get EPIPE, and the barrier works afterwards */
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, barrier_wait_forever_thread, (void *)(intptr_t)i),
                  0);
    while (gf_barrier_n_waiting(&S->b) != 2) usleep(200);
    gf_barrier_reset(&S->b);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) ASSERT_EQ(atomic_load(&S->results[i]), GF_EPIPE);
    ASSERT_EQ(gf_barrier_n_waiting(&S->b), 0);
    ASSERT_EQ(S->b.state & 0xc000ffffu, 0); /* fresh: not broken, not resetting, empty */
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, barrier_wait_forever_thread, (void *)(intptr_t)i),
                  0);
    int me = gf_barrier_wait(&S->b, t_ms(20000));
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    ASSERT_EQ(me + atomic_load(&S->results[0]) + atomic_load(&S->results[1]), 3);
}

static void barrier_abort_child(void *arg) {
    (void)arg;
    while (gf_barrier_n_waiting(&S->b) != 2) usleep(200);
    gf_barrier_abort(&S->b);
}

static void barrier_waiter_child(void *arg) {
    int i = (int)(intptr_t)arg;
    atomic_store(&S->results[i], gf_barrier_wait(&S->b, t_ms(20000)));
}

TEST(barrier_abort_across_processes) {
    SKIP_IF_NO_FORK();
    setup();
    ASSERT_OK(gf_barrier_init(&S->b, 4));
    pid_t w[2];
    for (int i = 0; i < 2; i++) w[i] = t_spawn(barrier_waiter_child, (void *)(intptr_t)i);
    pid_t a = t_spawn(barrier_abort_child, NULL);
    t_reap_ok(a);
    for (int i = 0; i < 2; i++) t_reap_ok(w[i]);
    for (int i = 0; i < 2; i++) ASSERT_EQ(atomic_load(&S->results[i]), GF_EPIPE);
}

TEST(barrier_eintr_withdraws) {
    setup();
    ASSERT_OK(gf_barrier_init(&S->b, 2));
    t_pester p;
    t_pester_start(&p);
    int r = gf_barrier_wait(&S->b, t_ms(20000));
    t_pester_stop(&p);
    ASSERT_EQ(r, GF_EINTR);
    ASSERT_EQ(gf_barrier_n_waiting(&S->b), 0); /* the arrival was taken back */
    /* not broken: a proper 2-party round works */
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, barrier_wait_forever_thread, (void *)0), 0);
    int me = gf_barrier_wait(&S->b, t_ms(20000));
    pthread_join(th, NULL);
    ASSERT_EQ(me + atomic_load(&S->results[0]), 1);
}

TEST_MAIN()
