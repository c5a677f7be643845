/*
 * lock_bench.c -- gf_mutex throughput: processes incrementing one shared counter under one
 * gf_mutex, with the default spin budget and with spinning disabled (GILFREE_SPIN_NS=0).
 *
 *   lock_bench [seconds-per-run=1] [rounds=5] [procs=2]
 *
 * gf__spin_ns() reads GILFREE_SPIN_NS once per process, so every run happens in a fresh child
 * (which sets the variable before touching any lock) that forks the workers. Variants are
 * interleaved round by round (timings drift on the VM); the medians are printed.
 * "cs": work done inside the critical section (the same amount is done outside it), so that
 * a waiter has to wait for a holder that is running: spinning catches the release, sleeping
 * pays a futex wake. "handoffs": times per second the lock went to the other process.
 */
#include "gilfree.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct shared {
    gf_mutex m;
    char pad1[64 - sizeof(gf_mutex)];
    uint64_t counter; /* guarded by m */
    uint64_t last;    /* guarded by m: worker that held it last */
    uint64_t handoffs; /* guarded by m: times the holder changed */
    char pad2[40];
    _Atomic int ready;
    _Atomic int go;
    _Atomic int stop;
    _Atomic uint64_t ops;
    _Atomic uint64_t errors;
} shared;

typedef struct variant {
    const char *name;
    const char *spin_env; /* NULL: default */
    int procs;            /* 0: the command-line count */
    int work;             /* iterations of private work between two critical sections */
    int cs_work;          /* iterations of work inside the critical section */
} variant;

static volatile uint64_t sink;

static void worker(gf_arena *a, shared *s, uint64_t me, int work, int cs_work) {
    atomic_fetch_add(&s->ready, 1);
    while (!atomic_load_explicit(&s->go, memory_order_acquire)) {
    }
    uint64_t n = 0, err = 0, x = me;
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        for (int i = 0; i < 256; i++) {
            if (gf_mutex_lock(a, &s->m, GF_FOREVER) != 0) err++;
            s->counter++;
            for (int k = 0; k < cs_work; k++) x = x * 6364136223846793005ull + 1;
            if (s->last != me) {
                s->last = me;
                s->handoffs++;
            }
            if (gf_mutex_unlock(a, &s->m) != 0) err++;
            for (int k = 0; k < work; k++) x = x * 6364136223846793005ull + 1; /* private work */
        }
        n += 256;
    }
    sink = x;
    atomic_fetch_add(&s->ops, n);
    atomic_fetch_add(&s->errors, err);
}

/* One run in a fresh process. Result: ops/s (negative on error); *handoffs: lock hand-overs
 * between processes per second. */
static double run_once(const variant *v, int procs, double seconds, double *handoffs) {
    double *res = mmap(NULL, 2 * sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                       -1, 0);
    if (res == MAP_FAILED) return -1;
    double *out = res;
    out[0] = out[1] = -1;
    fflush(NULL);
    pid_t runner = fork();
    if (runner < 0) return -1;
    if (runner == 0) {
        if (v->spin_env) setenv("GILFREE_SPIN_NS", v->spin_env, 1);
        else unsetenv("GILFREE_SPIN_NS");
        gf_arena *a;
        if (gf_arena_create((size_t)64 << 20, &a) != 0) _exit(2);
        shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                         -1, 0);
        if (s == MAP_FAILED) _exit(2);
        memset(s, 0, sizeof *s);
        gf_mutex_init(&s->m, 0);
        pid_t pids[16];
        for (int i = 0; i < procs; i++) {
            pids[i] = fork();
            if (pids[i] == 0) {
                if (gf_arena_after_fork_child(a) != 0) _exit(3);
                worker(a, s, (uint64_t)i + 1, v->work, v->cs_work);
                _exit(0);
            }
        }
        while (atomic_load(&s->ready) < procs) usleep(100);
        int64_t t0 = gf_now_ns();
        atomic_store_explicit(&s->go, 1, memory_order_release);
        usleep((useconds_t)(seconds * 1e6));
        atomic_store(&s->stop, 1);
        int ok = 1;
        for (int i = 0; i < procs; i++) {
            int st;
            waitpid(pids[i], &st, 0);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ok = 0;
        }
        int64_t t1 = gf_now_ns();
        uint64_t ops = atomic_load(&s->ops);
        if (!ok || atomic_load(&s->errors) || s->counter != ops) _exit(4);
        out[0] = (double)ops / ((double)(t1 - t0) / 1e9);
        out[1] = (double)s->handoffs / ((double)(t1 - t0) / 1e9);
        _exit(0);
    }
    int st;
    waitpid(runner, &st, 0);
    double r = (WIFEXITED(st) && WEXITSTATUS(st) == 0) ? out[0] : -1;
    *handoffs = out[1];
    munmap(res, 2 * sizeof(double));
    return r;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    int procs = argc > 3 ? atoi(argv[3]) : 2;
    if (seconds <= 0 || rounds < 1 || rounds > 100 || procs < 1 || procs > 16) {
        fprintf(stderr, "usage: lock_bench [seconds] [rounds] [procs<=16]\n");
        return 2;
    }
    const variant vs[] = {
        {"spin default, cs 0", NULL, 0, 0, 0},
        {"spin 0,       cs 0", "0", 0, 0, 0},
        {"spin default, cs ~0.5us", NULL, 0, 300, 300},
        {"spin 0,       cs ~0.5us", "0", 0, 300, 300},
        {"1 process, uncontended", NULL, 1, 0, 0},
    };
    enum { NV = sizeof vs / sizeof vs[0] };
    double r[NV][100], h[NV][100];
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < NV; i++) {
            int n = vs[i].procs ? vs[i].procs : procs;
            r[i][round] = run_once(&vs[i], n, seconds, &h[i][round]);
            if (r[i][round] < 0) {
                fprintf(stderr, "run failed: %s\n", vs[i].name);
                return 1;
            }
            printf("round %d  %-24s %12.0f ops/s %10.0f handoffs/s\n", round + 1, vs[i].name,
                   r[i][round], h[i][round]);
            fflush(stdout);
        }
    }
    printf("\nmedians over %d rounds (%g s each, %d processes contending):\n", rounds, seconds,
           procs);
    for (int i = 0; i < NV; i++) {
        qsort(r[i], (size_t)rounds, sizeof(double), cmp_double);
        qsort(h[i], (size_t)rounds, sizeof(double), cmp_double);
        double med = rounds % 2 ? r[i][rounds / 2] : (r[i][rounds / 2 - 1] + r[i][rounds / 2]) / 2;
        double hmed = rounds % 2 ? h[i][rounds / 2] : (h[i][rounds / 2 - 1] + h[i][rounds / 2]) / 2;
        printf("  %-24s %12.0f ops/s  (%.1f ns/op, min %.0f, max %.0f)  %10.0f handoffs/s\n",
               vs[i].name, med, 1e9 / med, r[i][0], r[i][rounds - 1], hmed);
    }
    return 0;
}
