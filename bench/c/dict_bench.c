/*
 * dict_bench.c -- shared dict and list throughput from C (no Python).
 *
 *   dict_bench [seconds-per-run=1] [rounds=5] [keys-per-proc=65536] [value-bytes=24] [filter]
 *
 * `filter`: run only the variants whose name contains it.
 *
 * Variants (interleaved round by round, medians printed; timings drift on the VM):
 *   set/get x1     one process, random keys of its own range (set replaces existing keys)
 *   set/get x2     two processes at once, each on its own key range: aggregate ops/s
 *   set/get x1 locked   one process inside `with d.lock:` (gf_dict_lock held)
 *   list append / list get x1
 * Keys look like the Python layer's ("key-123456"), values are `value-bytes` long (a small
 * pickle is ~20 bytes).
 */
#include "gilfree.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { V_SET, V_GET, V_LAPPEND, V_LGET };

typedef struct variant {
    const char *name;
    int op;
    int procs;
    int locked;
} variant;

static const variant variants[] = {
    {"dict set x1", V_SET, 1, 0},     {"dict get x1", V_GET, 1, 0},
    {"dict set x2 (agg)", V_SET, 2, 0}, {"dict get x2 (agg)", V_GET, 2, 0},
    {"dict set x1 locked", V_SET, 1, 1}, {"dict get x1 locked", V_GET, 1, 1},
    {"list append x1", V_LAPPEND, 1, 0}, {"list get x1", V_LGET, 1, 0},
};
#define NV (sizeof variants / sizeof variants[0])

typedef struct shared {
    _Atomic int ready;
    _Atomic int go;
    _Atomic int stop;
    _Atomic uint64_t ops;
    _Atomic uint64_t errors;
    _Atomic uint64_t cpu_ns; /* CPU time the workers spent in the timed loop */
} shared;

static int64_t cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static gf_arena *A;
static gf_off D, L;
static int nkeys, vbytes;

static size_t mkkey(int id, int k, char *out) { return (size_t)sprintf(out, "key-%d-%d", id, k); }

/* Keys are formatted once (the Python layer hands over encoded keys): 2 x nkeys x 16 bytes. */
static char (*keys)[16];
static uint8_t *klens;

static void worker(shared *s, const variant *v, int id) {
    char val[4096], buf[4096];
    memset(val, 'v', sizeof val);
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1), n = 0, err = 0;
    if (v->locked && gf_dict_lock(A, D, GF_FOREVER) != 0) err++;
    atomic_fetch_add(&s->ready, 1);
    while (!atomic_load_explicit(&s->go, memory_order_acquire)) {
    }
    int64_t c0 = cpu_now();
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        for (int i = 0; i < 256; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int k = (int)(x % (uint64_t)nkeys);
            gf_buf b;
            int r = 0;
            switch (v->op) {
            case V_SET:
                r = gf_dict_set(A, D, keys[id * nkeys + k], klens[id * nkeys + k], val,
                                (size_t)vbytes);
                break;
            case V_GET:
                r = gf_dict_get(A, D, keys[id * nkeys + k], klens[id * nkeys + k], buf,
                                sizeof buf, &b);
                break;
            case V_LAPPEND: r = gf_list_append(A, L, val, (size_t)vbytes); break;
            case V_LGET: r = gf_list_get(A, L, k, buf, sizeof buf, &b); break;
            }
            if (r < 0) err++;
        }
        n += 256;
    }
    atomic_fetch_add(&s->cpu_ns, (uint64_t)(cpu_now() - c0));
    if (v->locked) gf_dict_unlock(A, D);
    atomic_fetch_add(&s->ops, n);
    atomic_fetch_add(&s->errors, err);
}

/* One timed run of a variant (workers are forked from this process). Result: ops/s;
 * *per_cpu: ops per CPU-second of the workers (independent of how busy the machine is). */
static double run(shared *s, const variant *v, double secs, double *per_cpu) {
    memset(s, 0, sizeof *s);
    if (v->op == V_LAPPEND) gf_list_clear(A, L);
    pid_t pids[8];
    for (int p = 0; p < v->procs; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            if (gf_arena_after_fork_child(A) != 0) _exit(2);
            worker(s, v, p);
            _exit(0);
        }
    }
    while (atomic_load(&s->ready) < v->procs) usleep(100);
    double t0 = (double)gf_now_ns();
    atomic_store_explicit(&s->go, 1, memory_order_release);
    usleep((useconds_t)(secs * 1e6));
    atomic_store(&s->stop, 1);
    for (int p = 0; p < v->procs; p++) waitpid(pids[p], NULL, 0);
    double t = ((double)gf_now_ns() - t0) / 1e9;
    if (atomic_load(&s->errors)) fprintf(stderr, "%s: %llu errors\n", v->name,
                                         (unsigned long long)atomic_load(&s->errors));
    *per_cpu = (double)atomic_load(&s->ops) / ((double)atomic_load(&s->cpu_ns) / 1e9);
    return (double)atomic_load(&s->ops) / t;
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    nkeys = argc > 3 ? atoi(argv[3]) : 65536;
    vbytes = argc > 4 ? atoi(argv[4]) : 24;
    const char *filter = argc > 5 ? argv[5] : "";
    if (rounds < 1 || rounds > 64 || nkeys < 1 || vbytes < 0 || vbytes > 4096) return 2;
    if (gf_arena_create(0, &A) != 0 || gf_dict_create(A, 0, &D) != 0 ||
        gf_list_create(A, 0, &L) != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    char val[4096];
    memset(val, 'v', sizeof val);
    keys = malloc((size_t)nkeys * 2 * sizeof *keys);
    klens = malloc((size_t)nkeys * 2);
    for (int id = 0; id < 2; id++) /* every key exists: set replaces, get hits */
        for (int k = 0; k < nkeys; k++) {
            klens[id * nkeys + k] = (uint8_t)mkkey(id, k, keys[id * nkeys + k]);
            gf_dict_set(A, D, keys[id * nkeys + k], klens[id * nkeys + k], val, (size_t)vbytes);
        }
    for (int k = 0; k < nkeys; k++) gf_list_append(A, L, val, (size_t)vbytes);
    shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    double res[NV][64], pc[NV][64];
    for (int r = 0; r < rounds; r++)
        for (size_t v = 0; v < NV; v++) {
            if (variants[v].op == V_LGET && gf_list_len(A, L) < nkeys)
                for (int k = (int)gf_list_len(A, L); k < nkeys; k++)
                    gf_list_append(A, L, val, (size_t)vbytes);
            res[v][r] = strstr(variants[v].name, filter) ? run(s, &variants[v], secs, &pc[v][r]) : 0;
        }
    printf("dict_bench: %d keys/proc, %d-byte values, %d rounds of %.1fs, medians (min..max)\n",
           nkeys, vbytes, rounds, secs);
    for (size_t v = 0; v < NV; v++) {
        if (!strstr(variants[v].name, filter)) continue;
        qsort(res[v], (size_t)rounds, sizeof(double), cmpd);
        qsort(pc[v], (size_t)rounds, sizeof(double), cmpd);
        printf("  %-20s %10.0f ops/s  (%.0f..%.0f)  %10.0f ops/cpu-s  %5.0f cpu-ns/op\n",
               variants[v].name, res[v][rounds / 2], res[v][0], res[v][rounds - 1],
               pc[v][rounds / 2], 1e9 / pc[v][rounds / 2]);
    }
    gf_arena_detach(A);
    return 0;
}
