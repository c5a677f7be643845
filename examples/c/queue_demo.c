/*
 * queue_demo.c -- gilfree from C, without Python.
 *
 * The parent creates an arena, a ring (a queue) and a counter guarded by a gf_mutex in an
 * arena block, then forks two workers. It puts the numbers 1..N on the ring and closes it;
 * each worker takes numbers until the ring is closed and drained, and adds their squares to
 * the shared counter under the lock. The parent checks the sum against N(N+1)(2N+1)/6.
 *
 *   cc -Iinclude examples/c/queue_demo.c libgilfree.a -lpthread && ./a.out [N]
 */
#include "gilfree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct shared {
    gf_mutex lock;
    uint64_t sum;     /* guarded by lock */
    uint64_t taken[2]; /* per worker, guarded by lock */
} shared;

static void die(const char *what, int err) {
    fprintf(stderr, "queue_demo: %s: %s\n", what, gf_strerror(err));
    exit(1);
}

/* A worker: take numbers in batches until the ring is closed and empty. */
static int worker(gf_arena *a, gf_off ring, shared *s, int id) {
    /* the buffer must hold the largest inline message (bigger ones arrive as blocks) */
    size_t bufcap = gf_ring_inline_max(a, ring);
    char *buf = malloc(bufcap);
    if (!buf) die("malloc", GF_ENOMEM);
    gf_msg msgs[32];
    for (;;) {
        int n = gf_ring_get_many(a, ring, msgs, 32, buf, bufcap, GF_FOREVER);
        if (n == GF_EPIPE) { /* closed and drained */
            free(buf);
            return 0;
        }
        if (n == GF_EINTR) continue;  /* a signal: retry with the same deadline */
        if (n < 0) die("get", n);
        uint64_t part = 0;
        for (int i = 0; i < n; i++) {
            uint64_t x;
            memcpy(&x, msgs[i].data, sizeof x);
            part += x * x;
        }
        int rc = gf_mutex_lock(a, &s->lock, GF_FOREVER);
        if (rc < 0 && rc != GF_EOWNERDEAD) die("lock", rc);
        s->sum += part;
        s->taken[id] += (uint64_t)n;
        gf_mutex_unlock(a, &s->lock);
    }
}

int main(int argc, char **argv) {
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    gf_arena *a;
    int rc = gf_arena_create((size_t)1 << 30, &a);
    if (rc) die("arena", rc);

    gf_off ring, soff;
    if ((rc = gf_ring_create(a, 1 << 16, 0, 0, &ring))) die("ring", rc);
    if ((rc = gf_alloc(a, sizeof(shared), &soff))) die("alloc", rc);
    shared *s = gf_ptr(a, soff);
    memset(s, 0, sizeof *s);
    gf_mutex_init(&s->lock, 0);

    gf_proc kids[2];
    for (int id = 0; id < 2; id++) {
        rc = gf_proc_fork(&kids[id], GF_PROC_DIE_WITH_PARENT);
        if (rc < 0) die("fork", rc);
        if (rc == 1) { /* the child */
            if ((rc = gf_arena_after_fork_child(a))) die("attach", rc);
            _exit(worker(a, ring, s, id));
        }
    }

    for (uint64_t x = 1; x <= n; x++)
        if ((rc = gf_ring_put(a, ring, &x, sizeof x, GF_FOREVER))) die("put", rc);
    gf_ring_close(a, ring);

    int failed = 0;
    for (int id = 0; id < 2; id++) {
        int code;
        if ((rc = gf_proc_wait(&kids[id], GF_FOREVER))) die("wait", rc);
        gf_proc_exitcode(&kids[id], &code);
        gf_proc_close(&kids[id]);
        if (code != 0) failed = 1;
    }
    /* n(n+1)(2n+1)/6 (in 128 bits: no overflow in the product) */
    uint64_t expect = (uint64_t)((unsigned __int128)n * (n + 1) * (2 * n + 1) / 6);
    printf("sum of squares of 1..%llu = %llu (workers took %llu + %llu)\n",
           (unsigned long long)n, (unsigned long long)s->sum,
           (unsigned long long)s->taken[0], (unsigned long long)s->taken[1]);
    if (failed || s->sum != expect || s->taken[0] + s->taken[1] != n) {
        fprintf(stderr, "queue_demo: WRONG, expected %llu\n", (unsigned long long)expect);
        return 1;
    }
    gf_obj_decref(a, ring);
    gf_free(a, soff);
    gf_arena_detach(a);
    return 0;
}
