/*
 * pool_dispatch.c -- the pool's task dispatch: the task slab, placement on the least loaded
 * worker with room (mailbox record + PENDING claim word), the backlog, gf_pool_submit (with its
 * wait for mailbox space), cancellation through the claim words, and gf_pool_map.
 */
#include "pool_internal.h"

#include <stdlib.h>
#include <string.h>

/* Slab: give the task an index. Result 0. Fails: GF_ENOMEM. */
int gf__pool_slab_add(gf_pool *p, gf__task *e) {
    if (p->nfree == 0) {
        uint32_t ncap = p->tabcap ? p->tabcap * 2 : 256;
        gf__task **nt = realloc(p->tab, ncap * sizeof *nt);
        if (!nt) return GF_ENOMEM;
        p->tab = nt;
        uint32_t *nf = realloc(p->freeidx, ncap * sizeof *nf);
        if (!nf) return GF_ENOMEM;
        p->freeidx = nf;
        for (uint32_t i = ncap; i > p->tabcap; i--) {
            p->tab[i - 1] = NULL;
            p->freeidx[p->nfree++] = i - 1;
        }
        p->tabcap = ncap;
    }
    e->idx = p->freeidx[--p->nfree];
    p->tab[e->idx] = e;
    return 0;
}

/* Forget a resolved task: slab slot, counters, memory. */
void gf__pool_task_free(gf_pool *p, gf__task *e) {
    p->tab[e->idx] = NULL;
    p->freeidx[p->nfree++] = e->idx;
    p->outstanding--;
    if (e->timeout_ns > 0) p->ntimed--;
    free(e);
}

/* Hand the payload of a task no worker started to the drop callback (what it owns goes). */
void gf__pool_task_drop(gf_pool *p, gf__task *e) {
    if (p->opt.drop) p->opt.drop(p->opt.drop_ctx, e->payload, e->len);
}

/* Resolve a task without payload (LOST, TIMEOUT, CANCELLED): queue its result, free it.
 * worker < 0: no worker started it (every caller passes the worker that started it, else
 * -1), so its payload is dropped. */
void gf__pool_resolve_bare(gf_pool *p, gf__task *e, int status, int worker) {
    gf__pool_lq_push(p, e->id, status, worker, NULL, 0, 0, 0);
    if (worker < 0) gf__pool_task_drop(p, e);
    gf__pool_task_free(p, e);
}

/* Put a task in worker i's mailbox (never blocks). Result 0. Fails: GF_ETIMEDOUT (the ring
 * has no room in bytes), GF_EPIPE, GF_ENOSPC, GF_EMSGSIZE. */
static int gf__dispatch(gf_pool *p, uint32_t i, gf__task *e) {
    gf__wk *w = &p->w[i];
    gf__pslot *s = gf__slot(p->sh, i);
    uint64_t seq = w->next_seq;
    gf__pclaim *c = &gf__claims(s)[seq % p->sh->nclaims];
    if (++p->tokgen == 0) p->tokgen = 1;
    e->gen = p->tokgen;
    /* relaxed: published to the worker by the ring's release-store of tail below. The slot's
     * previous user (seq - nclaims) was consumed already (backpressure rule). */
    atomic_store_explicit(GF_A64(&c->deadline), 0, memory_order_relaxed);
    atomic_store_explicit(GF_A64(&c->word), GF__CLAIM(seq, GF__CL_PENDING),
                          memory_order_relaxed);
    gf__taskrec h = {.token = gf__token(e), .id = e->id, .seq = seq,
                     .timeout_ns = e->timeout_ns};
    struct iovec iov[2] = {{&h, sizeof h}, {e->payload, e->len}};
    int rc = gf_ring_putv(p->a, s->mailbox, iov, e->len ? 2 : 1, 0);
    if (rc < 0) return rc == GF_EAGAIN ? GF_ETIMEDOUT : rc;
    w->next_seq = seq + 1;
    e->worker = (int32_t)i;
    e->seq = seq;
    TAILQ_INSERT_TAIL(&w->tasks, e, link);
    w->nout++;
    return 0;
}

/* 1 if worker i can take one more task now. */
static int gf__has_room(gf_pool *p, uint32_t i) {
    gf__wk *w = &p->w[i];
    if (w->state != W_LIVE || !w->open || w->killed || w->retire) return 0;
    if (p->sh->maxtasks && w->next_seq >= p->sh->maxtasks) return 0;
    /* seq_cst: pairs with the submitter's space_waiters increment (Dekker with the worker's
     * consumed store + waiters load); acquire is implied. */
    uint64_t consumed =
        atomic_load_explicit(GF_A64(&gf__slot(p->sh, i)->consumed), memory_order_seq_cst);
    return w->next_seq - consumed < p->q;
}

/* Dispatch e to the worker with the fewest outstanding tasks that has room (ties: the lowest
 * index, which keeps one-at-a-time work on one hot worker). Result 0. Fails: GF_ETIMEDOUT (no
 * room anywhere), or a ring error. */
int gf__pool_place(gf_pool *p, gf__task *e) {
    uint64_t stamp = ++p->place_stamp;
    for (;;) {
        int best = -1;
        for (uint32_t i = 0; i < p->opt.max_workers; i++) {
            if (p->w[i].full_stamp == stamp || !gf__has_room(p, i)) continue;
            if (best < 0 || p->w[i].nout < p->w[best].nout) best = (int)i;
        }
        if (best < 0) return GF_ETIMEDOUT;
        int rc = gf__dispatch(p, (uint32_t)best, e);
        if (rc != GF_ETIMEDOUT) return rc;
        p->w[best].full_stamp = stamp; /* that mailbox is full in bytes: try another */
    }
}

/* Dispatch as much of the backlog as fits. */
void gf__pool_flush_backlog(gf_pool *p) {
    gf__task *e;
    while ((e = TAILQ_FIRST(&p->backlog)) != NULL) {
        TAILQ_REMOVE(&p->backlog, e, link);
        int rc = gf__pool_place(p, e);
        if (rc == 0) continue;
        if (rc == GF_ETIMEDOUT) {
            TAILQ_INSERT_HEAD(&p->backlog, e, link);
            return;
        }
        /* The task cannot be dispatched at all (e.g. arena full): fail it, keep going. */
        gf__pool_resolve_bare(p, e, GF_TASK_LOST, -1);
    }
}

/* A task holding a copy of the iovecs' bytes. Result 0 and *out. Fails: GF_EMSGSIZE,
 * GF_ENOMEM. */
static int gf__task_new(const struct iovec *iov, int iovcnt, int64_t timeout_ns,
                        uint32_t retries, gf__task **out) {
    size_t len = 0;
    for (int k = 0; k < iovcnt; k++) {
        if (iov[k].iov_len > SIZE_MAX / 2 - len) return GF_EMSGSIZE;
        len += iov[k].iov_len;
    }
    gf__task *e = malloc(sizeof *e + len);
    if (!e) return GF_ENOMEM;
    size_t off = 0;
    for (int k = 0; k < iovcnt; k++) {
        if (iov[k].iov_len) memcpy(e->payload + off, iov[k].iov_base, iov[k].iov_len);
        off += iov[k].iov_len;
    }
    e->len = len;
    e->timeout_ns = timeout_ns;
    e->retries = retries;
    e->cancelled = 0;
    e->worker = -1;
    e->seq = 0;
    e->gen = 0;
    *out = e;
    return 0;
}

/* One attempt of gf_pool_submit, with the lock held: supervise if due (forced by `force`),
 * dispatch the backlog, then e (id *id, or the next one) unless a backlog remains. Result 0
 * (*id set). Fails: GF_EPIPE (closing), GF_ETIMEDOUT (no room: e is not queued), GF_ENOMEM,
 * or a ring error. */
static int gf__submit_locked(gf_pool *p, gf__task *e, uint64_t *id, int force) {
    if (p->closing) return GF_EPIPE;
    if (force) p->force_sup = 1;
    gf__pool_supervise_maybe(p, gf_now_ns());
    if (!TAILQ_EMPTY(&p->backlog)) gf__pool_flush_backlog(p);
    int rc = TAILQ_EMPTY(&p->backlog) ? gf__pool_slab_add(p, e) : GF_ETIMEDOUT;
    if (rc != 0) return rc;
    e->id = *id ? *id : p->next_id;
    p->outstanding++;
    if (e->timeout_ns > 0) p->ntimed++;
    rc = gf__pool_place(p, e);
    if (rc == 0) {
        if (!*id) p->next_id++;
        *id = e->id;
    } else { /* undo */
        p->tab[e->idx] = NULL;
        p->freeidx[p->nfree++] = e->idx;
        p->outstanding--;
        if (e->timeout_ns > 0) p->ntimed--;
    }
    return rc;
}

/* Submit one task. Result 0 and *id. Fails: GF_EINVAL, GF_EPIPE, GF_ENOMEM, GF_ETIMEDOUT,
 * GF_EINTR, or a ring error from dispatching (GF_ENOSPC, GF_EMSGSIZE). */
int gf_pool_submit(gf_pool *p, const struct iovec *iov, int iovcnt, int64_t timeout_ns,
                   uint32_t retries, uint64_t *id, int64_t deadline) {
    if (!p || !id || iovcnt < 0 || (iovcnt > 0 && !iov) || timeout_ns < 0) return GF_EINVAL;
    gf__task *e;
    int made = gf__task_new(iov, iovcnt, timeout_ns, retries, &e);
    if (made < 0) return made;
    gf__pshared *sh = p->sh;
    int waiting = 0, force = 0;
    int64_t since = gf_now_ns(); /* for the interrupt slice (gf_set_interrupt_slice) */
    for (;;) {
        uint32_t seen = 0;
        if (waiting) {
            /* seq_cst: the Dekker half against the worker's consumed store + waiters load:
             * either it sees us waiting, or our attempt below sees its consumed count. */
            atomic_fetch_add_explicit(GF_A32(&sh->space_waiters), 1, memory_order_seq_cst);
            seen = atomic_load_explicit(GF_A32(&sh->space_seq), memory_order_seq_cst);
        }
        gf__lock(p);
        int rc = gf__submit_locked(p, e, id, force);
        int64_t next_to = p->next_timeout;
        gf__pool_unlock_and_spawn(p);
        if (rc == 0 || rc != GF_ETIMEDOUT || deadline <= gf_now_ns()) {
            if (waiting)
                /* relaxed: a hint for workers; a stale count costs one extra wake. */
                atomic_fetch_sub_explicit(GF_A32(&sh->space_waiters), 1, memory_order_relaxed);
            if (rc < 0) free(e);
            return rc;
        }
        if (!waiting) {
            waiting = 1; /* register as a waiter, then re-check before sleeping */
            continue;
        }
        int64_t now = gf_now_ns();
        int64_t wake = now + p->opt.supervise_ns;
        if (next_to < wake) wake = next_to;
        if (deadline < wake) wake = deadline;
        int w = gf__futex_wait(&sh->space_seq, seen, wake);
        atomic_fetch_sub_explicit(GF_A32(&sh->space_waiters), 1, memory_order_relaxed);
        if (w == GF_EINTR || gf__interrupt_due(since)) {
            free(e);
            return GF_EINTR;
        }
        force = w == GF_ETIMEDOUT;
    }
}

/* Cancel task `id`. A task not started yet never runs and yields GF_TASK_CANCELLED (result 0).
 * A started one (result 1) has its worker killed and replaced when `kill_running`, else is left
 * to finish. Fails: GF_ESRCH (no such outstanding task), GF_EINVAL. */
static int gf__cancel(gf_pool *p, uint64_t id, bool kill_running) {
    if (!p) return GF_EINVAL;
    gf__lock(p);
    gf__task *e = NULL;
    for (uint32_t k = 0; k < p->tabcap; k++)
        if (p->tab[k] && p->tab[k]->id == id) {
            e = p->tab[k];
            break;
        }
    int rc = GF_ESRCH;
    if (!e) goto out;
    if (e->worker < 0) {
        TAILQ_REMOVE(&p->backlog, e, link);
        gf__pool_resolve_bare(p, e, GF_TASK_CANCELLED, -1);
        rc = 0;
        goto out;
    }
    uint32_t i = (uint32_t)e->worker;
    gf__wk *w = &p->w[i];
    gf__pclaim *c = &gf__claims(gf__slot(p->sh, i))[e->seq % p->sh->nclaims];
    uint64_t want = GF__CLAIM(e->seq, GF__CL_PENDING);
    /* acq_rel: arbitrates with the worker's PENDING -> STARTED; the winner decides. */
    if (atomic_compare_exchange_strong_explicit(GF_A64(&c->word), &want,
                                                GF__CLAIM(e->seq, GF__CL_CANCELLED),
                                                memory_order_acq_rel, memory_order_acquire)) {
        TAILQ_REMOVE(&w->tasks, e, link);
        w->nout--;
        gf__pool_resolve_bare(p, e, GF_TASK_CANCELLED, -1);
        rc = 0;
        goto out;
    }
    if (want == GF__CLAIM(e->seq, GF__CL_REVOKED)) {
        /* Queued behind a task whose worker is being killed: it never ran; when the death is
         * handled it is reported cancelled instead of dispatched again. */
        e->cancelled = 1;
        rc = 0;
        goto out;
    }
    rc = 1; /* started */
    if (!kill_running) goto out;
    /* Its result may be in the ring already. */
    uint32_t idx = e->idx;
    gf__pool_drain(p);
    if (p->tab[idx] != e) {
        rc = GF_ESRCH;
        goto out;
    }
    if (!w->killed) {
        gf__pool_kill_for(p, i, e, GF_TASK_CANCELLED);
        p->force_sup = 1;
    }
out:
    gf__pool_unlock_and_spawn(p);
    return rc;
}

/* Cancel a task. Result 0 (was queued), 1 (running: its worker is killed). Fails: GF_ESRCH. */
int gf_pool_cancel(gf_pool *p, uint64_t id) { return gf__cancel(p, id, true); }

/* Cancel only if not started (ProcessPoolExecutor.shutdown(cancel_futures=True)). Result 0
 * (was queued), 1 (running: left alone). Fails: GF_ESRCH. Never kills a worker. */
int gf_pool_cancel_queued(gf_pool *p, uint64_t id) { return gf__cancel(p, id, false); }

/* Run the handler over items (ids 1..n). Result 0. Fails: GF_EINVAL, GF_ETIMEDOUT, GF_EINTR,
 * GF_ENOMEM, GF_EPIPE, or a submit failure. */
int gf_pool_map(gf_pool *p, gf_pool_item *items, size_t n, int64_t timeout_ns, int64_t deadline) {
    if (!p || (n && !items)) return GF_EINVAL;
    size_t next = 0, inflight = 0, left = 0;
    for (size_t k = 0; k < n; k++) {
        if (items[k].status == -2) inflight++;
        if (items[k].status < 0) left++;
    }
    gf_pool_result res[64];
    while (left > 0) {
        for (; next < n; next++) {
            if (items[next].status != -1) continue;
            struct iovec v = {(void *)items[next].in, items[next].inlen};
            uint64_t id = next + 1;
            int rc = gf_pool_submit(p, &v, 1, timeout_ns, 0, &id, 0);
            if (rc == GF_ETIMEDOUT) break;
            if (rc < 0) return rc;
            items[next].status = -2;
            inflight++;
        }
        int64_t d = deadline;
        if (next < n && inflight == 0) { /* no worker yet: poll, do not block */
            int64_t soon = gf_deadline_after(1000000);
            if (soon < d) d = soon;
        }
        int r = gf_pool_next_results(p, res, 64, d);
        if (r == GF_ETIMEDOUT && d != deadline) continue;
        if (r < 0) return r;
        for (int k = 0; k < r; k++) {
            uint64_t id = res[k].id;
            if (id == 0 || id > n || items[id - 1].status != -2) continue;
            gf_pool_item *it = &items[id - 1];
            it->out = NULL;
            it->outlen = 0;
            if (res[k].len) {
                it->out = malloc(res[k].len);
                if (!it->out) return GF_ENOMEM;
                memcpy(it->out, res[k].data, res[k].len);
                it->outlen = res[k].len;
            }
            it->status = res[k].status;
            inflight--;
            left--;
        }
        gf_pool_results_done(p); /* copied: their blocks go now, not at the next call */
    }
    return 0;
}
