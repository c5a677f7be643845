/*
 * pool_worker.c -- the worker side of the pool: attach to a worker slot, take tasks from the
 * mailbox (claiming each with a CAS PENDING -> STARTED), publish results to the result ring
 * (giving up when the parent died), the C handler loop, and the default fork-based spawn.
 */
#include "pool_internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* Worker side                                                                                 */
/* ------------------------------------------------------------------------------------------ */

#define GF__WORKER_SLICE_NS 100000000 /* check that the parent lives every 100 ms ... */
#define GF__WORKER_IDLE_MAX_NS 1000000000 /* ... backing off to 1 s while no task comes */

struct gf_worker {
    gf_arena *a;
    gf__pshared *sh;
    gf__pslot *slot;
    gf__pclaim *claims;
    uint32_t index, gen;
    gf_off mailbox, results;
    uint64_t consumed, maxtasks;
    void *rx;
    size_t rxcap;
    gf_msg cur;
    int exit_sent;
    int64_t idle_slice; /* the mailbox wait's current slice: grows while idle */
    int64_t t0; /* when gf_worker_next handed out the current task */
};

/* Attach as worker `index`. Result 0. Fails: GF_EINVAL, GF_EBADMSG, GF_ENOMEM. */
int gf_worker_attach(gf_arena *a, gf_off pool, uint32_t index, gf_worker **out) {
    if (!a || !out) return GF_EINVAL;
    if (gf_obj_check(a, pool, GF_OBJ_POOL) < 0) return GF_EBADMSG;
    gf__pshared *sh = gf_ptr(a, pool);
    if (sh->magic != GF__POOL_MAGIC) return GF_EBADMSG;
    if (index >= sh->maxw) return GF_EINVAL;
    gf__pslot *s = gf__slot(sh, index);
    if (!s->mailbox) return GF_EINVAL;
    gf_worker *w = calloc(1, sizeof *w);
    if (!w) return GF_ENOMEM;
    w->a = a;
    w->sh = sh;
    w->slot = s;
    w->claims = gf__claims(s);
    w->index = index;
    w->gen = s->gen;
    w->mailbox = s->mailbox;
    w->results = sh->results;
    w->maxtasks = sh->maxtasks;
    w->rxcap = gf_ring_inline_max(a, w->mailbox);
    if (w->rxcap < 64) w->rxcap = 64;
    w->rx = malloc(w->rxcap);
    if (!w->rx) {
        free(w);
        return GF_ENOMEM;
    }
    /* relaxed: informational. */
    atomic_store_explicit(GF_A32(&s->pid), (uint32_t)getpid(), memory_order_relaxed);
    *out = w;
    return 0;
}

/* Put a record in the result ring, in slices, giving up if the parent died. Result 0. Fails:
 * GF_EPIPE, GF_EINTR, and the ring's errors. */
static int gf__worker_put(gf_worker *w, const struct iovec *iov, int n) {
    for (;;) {
        int rc = gf_ring_putv(w->a, w->results, iov, n, gf_deadline_after(GF__WORKER_SLICE_NS));
        if (rc != GF_ETIMEDOUT) return rc;
        if (!gf__ident_alive(w->a, w->sh->parent_ident)) return GF_EPIPE;
    }
}

/* Take the next task. Result 0 and *t. Fails: GF_EPIPE, GF_ETIMEDOUT, GF_EINTR, GF_EBADMSG. */
int gf_worker_next(gf_worker *w, gf_task *t, int64_t deadline) {
    if (!w || !t) return GF_EINVAL;
    gf_msg_release(w->a, &w->cur);
    for (;;) {
        if (w->maxtasks && w->consumed >= w->maxtasks) {
            if (!w->exit_sent) {
                gf__resrec h = {.status = GF__ST_EXIT, .worker = w->index, .gen = w->gen};
                struct iovec v = {&h, sizeof h};
                int rc = gf__worker_put(w, &v, 1);
                if (rc == GF_EINTR) return rc;
                w->exit_sent = 1;
            }
            return GF_EPIPE;
        }
        /* An idle worker checks on its parent ever less often (a worker forked by the pool
         * also dies with it: PR_SET_PDEATHSIG), so that it does not wake ten times a second. */
        if (w->idle_slice < GF__WORKER_SLICE_NS) w->idle_slice = GF__WORKER_SLICE_NS;
        int64_t slice = gf_deadline_after(w->idle_slice);
        int rc = gf_ring_get(w->a, w->mailbox, &w->cur, w->rx, w->rxcap,
                             slice < deadline ? slice : deadline);
        if (rc == GF_ETIMEDOUT) {
            if (slice >= deadline) return rc;
            if (!gf__ident_alive(w->a, w->sh->parent_ident)) return GF_EPIPE;
            if (w->idle_slice < GF__WORKER_IDLE_MAX_NS) w->idle_slice *= 2;
            continue;
        }
        if (rc < 0) return rc;
        w->idle_slice = GF__WORKER_SLICE_NS;
        gf__taskrec h;
        if (w->cur.len < sizeof h) {
            gf_msg_release(w->a, &w->cur);
            return GF_EBADMSG;
        }
        memcpy(&h, w->cur.data, sizeof h);
        gf__pclaim *c = &w->claims[h.seq % w->sh->nclaims];
        int64_t dl = h.timeout_ns > 0 ? gf_deadline_after(h.timeout_ns) : GF_FOREVER;
        /* relaxed: published by the release half of the CAS below. */
        atomic_store_explicit(GF_A64(&c->deadline), (uint64_t)dl, memory_order_relaxed);
        atomic_store_explicit(GF_A64(&w->slot->cur_task), h.id, memory_order_relaxed);
        uint64_t want = GF__CLAIM(h.seq, GF__CL_PENDING);
        /* acq_rel: the claim arbitrates with the parent's cancel / revoke CAS. */
        int mine = atomic_compare_exchange_strong_explicit(
            GF_A64(&c->word), &want, GF__CLAIM(h.seq, GF__CL_STARTED), memory_order_acq_rel,
            memory_order_acquire);
        w->consumed++;
        /* seq_cst store + seq_cst load: the waker half of the submitters' eventcount. */
        atomic_store_explicit(GF_A64(&w->slot->consumed), w->consumed, memory_order_seq_cst);
        if (atomic_load_explicit(GF_A32(&w->sh->space_waiters), memory_order_seq_cst)) {
            atomic_fetch_add_explicit(GF_A32(&w->sh->space_seq), 1, memory_order_seq_cst);
            gf__futex_wake(&w->sh->space_seq, INT32_MAX);
        }
        if (!mine) { /* cancelled or revoked: skip it */
            gf_msg_release(w->a, &w->cur);
            continue;
        }
        t->id = h.id;
        t->data = (const unsigned char *)w->cur.data + sizeof h;
        t->len = w->cur.len - sizeof h;
        t->deadline = dl;
        t->_token = h.token;
        t->_seq = h.seq;
        w->t0 = gf_now_ns();
        return 0;
    }
}

/* Publish t's result. Result 0. Fails: GF_EINVAL, GF_EPIPE, GF_EINTR, ring errors. */
int gf_worker_result(gf_worker *w, const gf_task *t, int status, const struct iovec *iov,
                     int iovcnt) {
    if (!w || !t || iovcnt < 0 || iovcnt > 63 || (iovcnt && !iov)) return GF_EINVAL;
    if (status != GF_TASK_OK && status != GF_TASK_ERROR) return GF_EINVAL;
    int64_t el = gf_now_ns() - w->t0;
    gf__resrec h = {.token = t->_token, .id = t->id, .status = (uint32_t)status,
                    .worker = w->index, .gen = w->gen,
                    .elapsed = el <= 0 ? 0 : el >= UINT32_MAX ? UINT32_MAX : (uint32_t)el};
    struct iovec v[64];
    v[0].iov_base = &h;
    v[0].iov_len = sizeof h;
    for (int k = 0; k < iovcnt; k++) v[k + 1] = iov[k];
    return gf__worker_put(w, v, iovcnt + 1);
}

/* Serve tasks with a C handler until the pool closes this worker. Result 0. Fails: the first
 * error that is not GF_EPIPE / GF_EINTR, GF_ENOMEM. */
int gf_worker_run(gf_worker *w, gf_pool_handler fn, void *ctx, size_t out_cap) {
    if (!w || !fn) return GF_EINVAL;
    if (!out_cap) out_cap = (size_t)64 << 10;
    void *buf = malloc(out_cap);
    if (!buf) return GF_ENOMEM;
    int rc;
    for (;;) {
        gf_task t;
        rc = gf_worker_next(w, &t, GF_FOREVER);
        if (rc == GF_EINTR) continue;
        if (rc < 0) break;
        gf_pool_out o = {.data = buf, .len = 0, .buf = buf, .cap = out_cap};
        int st = fn(ctx, t.data, t.len, &o) == 0 ? GF_TASK_OK : GF_TASK_ERROR;
        struct iovec v = {(void *)o.data, o.len};
        do rc = gf_worker_result(w, &t, st, &v, o.len ? 1 : 0);
        while (rc == GF_EINTR);
        if (rc < 0) break;
    }
    free(buf);
    return rc == GF_EPIPE ? 0 : rc;
}

/* Forget the worker handle (the shared pool is the parent's). */
void gf_worker_detach(gf_worker *w) {
    if (!w) return;
    gf_msg_release(w->a, &w->cur);
    free(w->rx);
    free(w);
}

/* The default spawn: fork, die with the parent, serve with the C handler, exit. SIGINT is
 * ignored in the worker: the parent decides what a Ctrl-C does (terminate kills workers). */
int gf__pool_default_spawn(void *ctx, gf_pool *p, uint32_t index, gf_proc *out) {
    (void)ctx;
    int rc = gf_proc_fork(out, GF_PROC_DIE_WITH_PARENT);
    if (rc < 0) return rc;
    if (rc == 0) return 0;
    signal(SIGINT, SIG_IGN);
    if (gf_arena_after_fork_child(p->a) < 0) _exit(70);
    gf_worker *w;
    if (gf_worker_attach(p->a, p->shoff, index, &w) < 0) _exit(71);
    rc = gf_worker_run(w, p->opt.handler, p->opt.handler_ctx, p->opt.handler_out_cap);
    gf_worker_detach(w);
    _exit(rc < 0 ? 72 : 0);
}
