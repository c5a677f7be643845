/*
 * ring_bench.c -- gf_ring between two processes.
 *
 *   thr16      1 producer process -> 1 consumer process, 16-byte messages, put/get (msgs/s)
 *   thr16x64   the same with put_many/get_many batches of 64 (msgs/s)
 *   big1m      1 MiB messages (block path: one copy in put, zero-copy get; the consumer reads
 *              one byte per 4 KiB page and frees the block) (GB/s)
 *   pingpong   round trip through two rings, 8-byte messages: median and p99 of 100k (us)
 *
 * Every variant runs with the default spin and with GILFREE_SPIN_NS=0, interleaved, for
 * `rounds` rounds (default 5); the medians are printed. Each measurement runs in a fresh
 * forked process (so that GILFREE_SPIN_NS is read anew) that forks its peer.
 *
 *   ring_bench [-rounds=5] [-quick]
 *   ring_bench -syscheck     100k uncontended put+get in one process (run under strace -c)
 */
#include "gilfree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static double now_s(void) { return (double)gf_now_ns() / 1e9; }

static void die(const char *what, int rc) {
    fprintf(stderr, "ring_bench: %s: %s\n", what, gf_strerror(rc));
    _exit(2);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct env {
    gf_arena *a;
    gf_off r1, r2;
    char *buf;
    size_t bufcap;
} env;

static pid_t fork_peer(env *e) {
    fflush(NULL);
    pid_t p = fork();
    if (p < 0) die("fork", GF_EAGAIN);
    if (p == 0) {
        int rc = gf_arena_after_fork_child(e->a);
        if (rc) die("after_fork", rc);
    }
    return p;
}

static void reap(pid_t p) {
    int st;
    waitpid(p, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "ring_bench: peer failed\n");
        _exit(2);
    }
}

/* 16-byte messages; batch = 1 (put/get) or 64 (put_many/get_many). Result: msgs/s. */
static double run_small(env *e, long n, int batch) {
    pid_t p = fork_peer(e);
    if (p == 0) {
        gf_msg m[64];
        long got = 0;
        uint64_t check = 0;
        while (got < n) {
            int k = batch > 1 ? gf_ring_get_many(e->a, e->r1, m, 64, e->buf, e->bufcap, GF_FOREVER)
                              : gf_ring_get(e->a, e->r1, m, e->buf, e->bufcap, GF_FOREVER);
            if (k < 0) die("get", k);
            for (int i = 0; i < k; i++) check += *(const uint64_t *)m[i].data;
            got += k;
        }
        _exit(check == (uint64_t)n * (uint64_t)(n - 1) / 2 ? 0 : 3);
    }
    uint64_t msg[64][2];
    struct iovec v[64];
    for (int i = 0; i < 64; i++) v[i] = (struct iovec){msg[i], 16};
    double t0 = now_s();
    for (long s = 0; s < n;) {
        if (batch > 1) {
            int k = n - s < 64 ? (int)(n - s) : 64;
            for (int i = 0; i < k; i++) msg[i][0] = (uint64_t)(s + i);
            int rc = gf_ring_put_many(e->a, e->r1, v, (size_t)k, GF_FOREVER);
            if (rc != k) die("put_many", rc);
            s += k;
        } else {
            msg[0][0] = (uint64_t)s;
            int rc = gf_ring_put(e->a, e->r1, msg[0], 16, GF_FOREVER);
            if (rc) die("put", rc);
            s++;
        }
    }
    reap(p);
    return (double)n / (now_s() - t0);
}

/* 1 MiB messages. Result: GB/s. */
static double run_big(env *e, long n) {
    const size_t sz = 1 << 20;
    pid_t p = fork_peer(e);
    if (p == 0) {
        uint64_t sum = 0;
        for (long got = 0; got < n; got++) {
            gf_msg m;
            int k = gf_ring_get(e->a, e->r1, &m, e->buf, e->bufcap, GF_FOREVER);
            if (k < 0) die("get", k);
            if (m.len != sz) _exit(3);
            for (size_t i = 0; i < sz; i += 4096) sum += ((const unsigned char *)m.data)[i];
            gf_msg_release(e->a, &m);
        }
        _exit(sum == (uint64_t)n * (sz / 4096) * 7 ? 0 : 4);
    }
    char *msg = malloc(sz);
    memset(msg, 7, sz);
    double t0 = now_s();
    for (long s = 0; s < n; s++) {
        int rc = gf_ring_put(e->a, e->r1, msg, sz, GF_FOREVER);
        if (rc) die("put", rc);
    }
    reap(p);
    double dt = now_s() - t0;
    free(msg);
    return (double)n * (double)sz / dt / 1e9;
}

/* Ping-pong. Result: median round trip (us); *p99 gets the 99th percentile. */
static double run_pingpong(env *e, long n, double *p99) {
    pid_t p = fork_peer(e);
    if (p == 0) {
        for (long i = 0; i < n; i++) {
            gf_msg m;
            int k = gf_ring_get(e->a, e->r1, &m, e->buf, e->bufcap, GF_FOREVER);
            if (k < 0) die("get", k);
            int rc = gf_ring_put(e->a, e->r2, m.data, m.len, GF_FOREVER);
            if (rc) die("put", rc);
        }
        _exit(0);
    }
    double *rt = malloc(sizeof(double) * (size_t)n);
    for (long i = 0; i < n; i++) {
        int64_t t0 = gf_now_ns();
        uint64_t v = (uint64_t)i;
        int rc = gf_ring_put(e->a, e->r1, &v, 8, GF_FOREVER);
        if (rc) die("put", rc);
        gf_msg m;
        int k = gf_ring_get(e->a, e->r2, &m, e->buf, e->bufcap, GF_FOREVER);
        if (k < 0) die("get", k);
        rt[i] = (double)(gf_now_ns() - t0) / 1000.0;
    }
    reap(p);
    qsort(rt, (size_t)n, sizeof *rt, cmp_d);
    *p99 = rt[(size_t)((double)n * 0.99)];
    double med = rt[n / 2];
    free(rt);
    return med;
}

enum { V_THR16, V_THR16X64, V_BIG, V_PP, V__N };
static const char *vname[V__N] = {"thr16 (Mmsg/s)", "thr16x64 (Mmsg/s)", "big1m (GB/s)",
                                  "pingpong median (us)"};

/* One measurement in a fresh process. Result through a pipe: value and p99. */
static void measure(int variant, int spin_off, int quick, double out[2]) {
    int fds[2];
    if (pipe(fds)) _exit(2);
    fflush(NULL);
    pid_t p = fork();
    if (p == 0) {
        close(fds[0]);
        if (spin_off) setenv("GILFREE_SPIN_NS", "0", 1);
        else unsetenv("GILFREE_SPIN_NS");
        env e;
        int rc = gf_arena_create((size_t)4 << 30, &e.a);
        if (rc) die("arena", rc);
        if ((rc = gf_ring_create(e.a, 1 << 16, 0, 0, &e.r1))) die("ring", rc);
        if ((rc = gf_ring_create(e.a, 1 << 16, 0, 0, &e.r2))) die("ring", rc);
        e.bufcap = gf_ring_inline_max(e.a, e.r1) * 8;
        e.buf = malloc(e.bufcap);
        double res[2] = {0, 0};
        long q = quick ? 10 : 1;
        switch (variant) {
        case V_THR16: res[0] = run_small(&e, 2000000 / q, 1) / 1e6; break;
        case V_THR16X64: res[0] = run_small(&e, 10000000 / q, 64) / 1e6; break;
        case V_BIG: res[0] = run_big(&e, 3000 / q); break;
        case V_PP: res[0] = run_pingpong(&e, 100000 / q, &res[1]); break;
        }
        if (write(fds[1], res, sizeof res) != sizeof res) _exit(2);
        _exit(0);
    }
    close(fds[1]);
    if (read(fds[0], out, sizeof(double) * 2) != sizeof(double) * 2) {
        fprintf(stderr, "ring_bench: measurement %d failed\n", variant);
        exit(2);
    }
    close(fds[0]);
    waitpid(p, NULL, 0);
}

/* 100k uncontended put+get pairs in one process: run under `strace -c -f` to see that the
 * loop itself makes no system call. */
static int syscheck(void) {
    gf_arena *a;
    gf_off r;
    if (gf_arena_create((size_t)1 << 30, &a) || gf_ring_create(a, 1 << 16, 0, 0, &r)) return 2;
    char buf[8192];
    for (int i = 0; i < 100000; i++) {
        gf_msg m;
        uint64_t v[2] = {(uint64_t)i, 0};
        if (gf_ring_put(a, r, v, 16, GF_FOREVER)) return 3;
        if (gf_ring_get(a, r, &m, buf, sizeof buf, GF_FOREVER) != 1) return 4;
    }
    printf("syscheck: 100000 put+get done\n");
    return 0;
}

int main(int argc, char **argv) {
    int rounds = 5, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-rounds=", 8) == 0) rounds = atoi(argv[i] + 8);
        else if (strcmp(argv[i], "-quick") == 0) quick = 1;
        else if (strcmp(argv[i], "-syscheck") == 0) return syscheck();
    }
    if (rounds < 1 || rounds > 99) rounds = 5;
    static double res[V__N][2][100], p99[V__N][2][100];
    for (int r = 0; r < rounds; r++)
        for (int v = 0; v < V__N; v++)
            for (int s = 0; s < 2; s++) {
                double out[2];
                measure(v, s, quick, out);
                res[v][s][r] = out[0];
                p99[v][s][r] = out[1];
                fprintf(stderr, "  round %d %-22s spin %-3s %10.3f\n", r, vname[v],
                        s ? "off" : "on", out[0]);
            }
    printf("ring_bench: 1 producer process -> 1 consumer process, %d rounds, medians%s\n",
           rounds, quick ? " (quick)" : "");
    printf("%-24s %14s %14s\n", "", "spin on", "GILFREE_SPIN_NS=0");
    for (int v = 0; v < V__N; v++) {
        printf("%-24s %14.3f %14.3f\n", vname[v], median(res[v][0], rounds),
               median(res[v][1], rounds));
        if (v == V_PP)
            printf("%-24s %14.3f %14.3f\n", "pingpong p99 (us)", median(p99[v][0], rounds),
                   median(p99[v][1], rounds));
    }
    return 0;
}
