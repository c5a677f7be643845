/*
 * pool_demo.c -- a pool of worker processes over a C handler, with a crash.
 *
 * Squares the numbers 0..99 in 3 worker processes. The handler calls abort() on 42, which
 * kills the worker running it: that one task is reported LOST, the worker is replaced, and
 * every other number is squared. Exit status 0 when exactly that happened.
 */
#include "gilfree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int square(void *ctx, const void *in, size_t inlen, gf_pool_out *out) {
    (void)ctx;
    long long x;
    if (inlen != sizeof x) return 1;
    memcpy(&x, in, sizeof x);
    if (x == 42) abort(); /* a bug in a worker: it only costs this task */
    out->len = (size_t)snprintf(out->buf, out->cap, "%lld", x * x);
    return 0;
}

int main(void) {
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore); /* the demo crash should not leave a core file */

    gf_arena *a;
    int rc = gf_arena_create(0, &a);
    if (rc < 0) {
        fprintf(stderr, "arena: %s\n", gf_strerror(rc));
        return 1;
    }
    gf_pool_options opt = {.nworkers = 3, .handler = square};
    gf_pool *pool;
    if ((rc = gf_pool_create(a, &opt, &pool)) < 0) {
        fprintf(stderr, "pool: %s\n", gf_strerror(rc));
        return 1;
    }

    enum { N = 100 };
    long long in[N];
    gf_pool_item items[N];
    for (int i = 0; i < N; i++) {
        in[i] = i;
        items[i] = (gf_pool_item){.in = &in[i], .inlen = sizeof in[i], .status = -1};
    }
    rc = gf_pool_map(pool, items, N, 0, gf_deadline_after(30000000000LL));
    if (rc < 0) {
        fprintf(stderr, "map: %s\n", gf_strerror(rc));
        return 1;
    }

    int ok = 0, lost = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        if (items[i].status == GF_TASK_OK) {
            char want[32];
            snprintf(want, sizeof want, "%lld", (long long)i * i);
            if (items[i].outlen != strlen(want) || memcmp(items[i].out, want, items[i].outlen))
                bad++;
            ok++;
            if (i < 4 || i == N - 1)
                printf("%d^2 = %.*s\n", i, (int)items[i].outlen, (char *)items[i].out);
        } else if (items[i].status == GF_TASK_LOST) {
            printf("task %d: LOST (its worker died)\n", i);
            lost += i == 42;
            bad += i != 42;
        } else {
            bad++;
        }
        free(items[i].out);
    }
    printf("%d ok, %d lost\n", ok, lost);

    gf_pool_stats st;
    gf_pool_stats_get(pool, &st);
    printf("workers live %u, started %llu, deaths %llu\n", st.live_workers,
           (unsigned long long)st.spawned, (unsigned long long)st.deaths);
    gf_pool_close(pool);
    rc = gf_pool_join(pool, gf_deadline_after(10000000000LL));
    gf_pool_destroy(pool);
    gf_arena_detach(a);
    return (rc == 0 && ok == N - 1 && lost == 1 && bad == 0) ? 0 : 1;
}
