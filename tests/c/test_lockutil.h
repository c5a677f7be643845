/*
 * test_lockutil.h -- helpers shared by test_lock.c and test_sync.c: shared memory, an arena for
 * process identities, forked helpers that are always reaped, threads, and signals.
 */
#ifndef GF_TEST_LOCKUTIL_H
#define GF_TEST_LOCKUTIL_H

#include "gilfree.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

/* Under TSan, forking tests are skipped when GF_TEST_NO_FORK is set (TSan does not see
 * synchronisation between processes; the threaded tests cover the same code). */
#if defined(__SANITIZE_THREAD__)
#define GF_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GF_TSAN 1
#endif
#endif
#ifndef GF_TSAN
#define GF_TSAN 0
#endif

#define SKIP_IF_NO_FORK()                                                          \
    do {                                                                           \
        if (getenv("GF_TEST_NO_FORK")) {                                           \
            printf("  (skipped: GF_TEST_NO_FORK)\n");                              \
            return;                                                                \
        }                                                                          \
    } while (0)

static gf_arena *T_arena;

/* A fresh arena (identities) and `size` bytes of zeroed MAP_SHARED memory. */
static void *t_setup(size_t size) {
    ASSERT_OK(gf_arena_create((size_t)64 << 20, &T_arena));
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    return p;
}

/* Fork a child that takes its own arena slot, runs fn(arg) and exits 0 (a failed ASSERT
 * aborts it). Result: its pid. */
static pid_t t_spawn(void (*fn)(void *), void *arg) {
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        if (gf_arena_after_fork_child(T_arena) != 0) _exit(99);
        fn(arg);
        fflush(NULL);
        _exit(0);
    }
    return pid;
}

/* Reap a child and check that it exited 0. */
static void t_reap_ok(pid_t pid) {
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        FAIL("child %d failed: status 0x%x", (int)pid, st);
}

/* Reap a child we killed (any status). */
static void t_reap_any(pid_t pid) {
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
}

static int64_t t_ms(int64_t ms) { return gf_deadline_after(ms * 1000000); }

static void t_sleep_ms(int ms) { usleep((useconds_t)ms * 1000); }

/* Wait (polling) until *p == v, for at most 10 s. */
static void t_wait_eq(_Atomic uint32_t *p, uint32_t v) {
    int64_t end = t_ms(10000);
    while (atomic_load(p) != v) {
        if (gf_now_ns() > end) FAIL("timed out waiting for a flag to become %u", v);
        usleep(200);
    }
}

/* ---- signals: a SIGUSR1 handler without SA_RESTART, and a thread that keeps sending it to a
 * target thread until told to stop (a single signal could land before the target sleeps). */

static void t_on_usr1(int sig) { (void)sig; }

static void t_install_usr1(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = t_on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART */
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
}

typedef struct t_pester {
    pthread_t target, thread;
    _Atomic int stop;
} t_pester;

static void *t_pester_main(void *arg) {
    t_pester *p = arg;
    while (!atomic_load(&p->stop)) {
        usleep(20000);
        if (!atomic_load(&p->stop)) pthread_kill(p->target, SIGUSR1);
    }
    return NULL;
}

/* Start sending SIGUSR1 to the calling thread every 20 ms. */
static void t_pester_start(t_pester *p) {
    t_install_usr1();
    p->target = pthread_self();
    atomic_store(&p->stop, 0);
    ASSERT_EQ(pthread_create(&p->thread, NULL, t_pester_main, p), 0);
}

static void t_pester_stop(t_pester *p) {
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
}

#endif
