/*
 * pool_bench.c -- the worker pool from C: tiny-task throughput, one-at-a-time round trip, and
 * pool start-up (create + close + join).
 *
 *   pool_bench [rounds=5] [tasks=200000] [roundtrips=20000] [workers=2]
 *
 * Tasks are 8-byte integers squared by a C handler in the workers. Throughput keeps the
 * mailboxes full (submit without waiting, take results in batches of 256). The round trip
 * submits one task and waits for its result, `roundtrips` times; median and p99 are printed.
 * Rounds interleave the measurements (timings drift on the VM); medians over rounds printed.
 */
#include "gilfree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int square(void *ctx, const void *in, size_t inlen, gf_pool_out *out) {
    (void)ctx;
    uint64_t x = 0;
    memcpy(&x, in, inlen < 8 ? inlen : 8);
    x *= x;
    memcpy(out->buf, &x, 8);
    out->len = 8;
    return 0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static gf_pool *mk(gf_arena *a, uint32_t workers) {
    gf_pool_options o = {.nworkers = workers, .handler = square};
    gf_pool *p;
    int rc = gf_pool_create(a, &o, &p);
    if (rc < 0) {
        fprintf(stderr, "pool: %s\n", gf_strerror(rc));
        exit(1);
    }
    return p;
}

static void done(gf_pool *p) {
    gf_pool_close(p);
    gf_pool_join(p, GF_FOREVER);
    gf_pool_destroy(p);
}

static double throughput(gf_arena *a, uint32_t workers, size_t n) {
    gf_pool *p = mk(a, workers);
    gf_pool_result res[256];
    size_t sent = 0, got = 0;
    int64_t t0 = gf_now_ns();
    while (got < n) {
        while (sent < n) {
            uint64_t x = sent, id = sent + 1;
            struct iovec v = {&x, 8};
            if (gf_pool_submit(p, &v, 1, 0, 0, &id, 0) < 0) break;
            sent++;
        }
        int r = gf_pool_next_results(p, res, 256, GF_FOREVER);
        if (r < 0) {
            fprintf(stderr, "next_results: %s\n", gf_strerror(r));
            exit(1);
        }
        got += (size_t)r;
    }
    double secs = (double)(gf_now_ns() - t0) / 1e9;
    done(p);
    return (double)n / secs;
}

static void roundtrip(gf_arena *a, uint32_t workers, size_t n, double *med, double *p99) {
    gf_pool *p = mk(a, workers);
    double *lat = malloc(n * sizeof *lat);
    gf_pool_result res;
    for (size_t i = 0; i < n + 100; i++) {
        uint64_t x = i, id = 0;
        struct iovec v = {&x, 8};
        int64_t t0 = gf_now_ns();
        if (gf_pool_submit(p, &v, 1, 0, 0, &id, GF_FOREVER) < 0 ||
            gf_pool_next_results(p, &res, 1, GF_FOREVER) != 1) {
            fprintf(stderr, "round trip failed\n");
            exit(1);
        }
        if (i >= 100) lat[i - 100] = (double)(gf_now_ns() - t0) / 1e3; /* after warm-up */
    }
    qsort(lat, n, sizeof *lat, cmp_d);
    *med = lat[n / 2];
    *p99 = lat[n * 99 / 100];
    free(lat);
    done(p);
}

static double startup(gf_arena *a, uint32_t workers) {
    int64_t t0 = gf_now_ns();
    gf_pool *p = mk(a, workers);
    done(p);
    return (double)(gf_now_ns() - t0) / 1e6;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    size_t tasks = argc > 2 ? (size_t)atoll(argv[2]) : 200000;
    size_t rts = argc > 3 ? (size_t)atoll(argv[3]) : 20000;
    uint32_t workers = argc > 4 ? (uint32_t)atoi(argv[4]) : 2;
    if (rounds < 1) rounds = 1;
    gf_arena *a;
    if (gf_arena_create(0, &a) < 0) return 1;
    double *tp = calloc((size_t)rounds, sizeof *tp), *md = calloc((size_t)rounds, sizeof *md),
           *pn = calloc((size_t)rounds, sizeof *pn), *st = calloc((size_t)rounds, sizeof *st);
    for (int r = 0; r < rounds; r++) {
        tp[r] = throughput(a, workers, tasks);
        roundtrip(a, workers, rts, &md[r], &pn[r]);
        st[r] = startup(a, workers);
        printf("round %d: %.0f tasks/s, round trip median %.1f us p99 %.1f us, start+stop %.2f ms\n",
               r, tp[r], md[r], pn[r], st[r]);
    }
    qsort(tp, (size_t)rounds, sizeof *tp, cmp_d);
    qsort(md, (size_t)rounds, sizeof *md, cmp_d);
    qsort(pn, (size_t)rounds, sizeof *pn, cmp_d);
    qsort(st, (size_t)rounds, sizeof *st, cmp_d);
    printf("median of %d rounds, %u workers: throughput %.0f tasks/s; round trip median %.1f us, "
           "p99 %.1f us; pool create+close+join %.2f ms\n",
           rounds, workers, tp[rounds / 2], md[rounds / 2], pn[rounds / 2], st[rounds / 2]);
    gf_arena_detach(a);
    return 0;
}
