/*
 * pool_results.c -- the pool's results: records taken from the shared result ring (a task's
 * result, a worker's EXIT notice, a wake-up NOP), the parent's queue of results not handed out
 * yet (drained or synthesised: LOST, CANCELLED, ...), and gf_pool_next_results.
 */
#include "pool_internal.h"

#include <stdlib.h>
#include <string.h>

/* Push a result on the parent's queue. `data` is copied unless `block` holds it. Result 0.
 * Fails: GF_ENOMEM (the result is then reported without its payload, as GF_TASK_ERROR). */
int gf__pool_lq_push(gf_pool *p, uint64_t id, int status, int worker, const void *data,
                     size_t len, gf_off block, uint64_t elapsed_ns) {
    size_t extra = block ? 0 : len;
    gf__res *r = malloc(sizeof *r + extra);
    if (!r) { /* out of process memory: the result is lost (known gap) */
        if (block) gf_free(p->a, block);
        return GF_ENOMEM;
    }
    r->next = NULL;
    r->r.id = id;
    r->r.status = status;
    r->r.worker = worker;
    r->r.elapsed_ns = elapsed_ns;
    r->block = block;
    if (block) {
        r->r.data = data;
        r->r.len = len;
    } else {
        if (len) memcpy(r->mem, data, len);
        r->r.data = len ? r->mem : NULL;
        r->r.len = len;
    }
    if (p->lq_tail) p->lq_tail->next = r;
    else p->lq_head = r;
    p->lq_tail = r;
    p->need_nop = 1;
    return 0;
}

/* Handle one record from the result ring. With `out` the result is handed to the caller
 * (its payload stays in the message: the caller keeps the block); without, it is queued.
 * Result 1 if *out was filled, else 0. */
static int gf__take_msg(gf_pool *p, gf_msg *m, gf_pool_result *out) {
    gf__resrec h = {0};
    if (m->len < sizeof h) goto drop;
    memcpy(&h, m->data, sizeof h);
    if (h.status == GF__ST_NOP) goto drop;
    if (h.status == GF__ST_EXIT) {
        /* The worker consumed its quota; all its results came before this record. */
        if (h.worker < p->opt.max_workers) {
            gf__wk *w = &p->w[h.worker];
            if (w->state == W_LIVE && w->gen == h.gen && TAILQ_EMPTY(&w->tasks)) {
                gf__pslot *s = gf__slot(p->sh, h.worker);
                if (p->nret == p->capret) {
                    size_t nc = p->capret ? p->capret * 2 : 16;
                    gf_proc *nr = realloc(p->ret, nc * sizeof *nr);
                    if (!nr) goto drop; /* then its death is handled through its pidfd */
                    p->ret = nr;
                    p->capret = nc;
                }
                p->ret[p->nret++] = w->proc;
                w->proc.pidfd = -1;
                gf_ring_close(p->a, s->mailbox);
                gf_obj_decref(p->a, s->mailbox);
                s->mailbox = 0;
                w->state = W_DEAD;
                w->open = 0;
                p->force_sup = 1;
            }
        }
        goto drop;
    }
    uint32_t idx = (uint32_t)h.token, gen = (uint32_t)(h.token >> 32);
    if (idx >= p->tabcap || !p->tab[idx]) goto drop;
    gf__task *e = p->tab[idx];
    if (e->gen != gen || e->worker < 0 || (uint32_t)e->worker != h.worker) goto drop;
    gf__wk *w = &p->w[e->worker];
    TAILQ_REMOVE(&w->tasks, e, link);
    w->nout--;
    int status = h.status == GF_TASK_OK ? GF_TASK_OK : GF_TASK_ERROR;
    const unsigned char *data = (const unsigned char *)m->data + sizeof h;
    size_t len = m->len - sizeof h;
    uint64_t id = e->id;
    gf__pool_task_free(p, e);
    if (out) {
        out->id = id;
        out->status = status;
        out->worker = (int)h.worker;
        out->data = len ? data : NULL;
        out->len = len;
        out->elapsed_ns = h.elapsed;
        return 1;
    }
    /* the block moves to the parent's queue (freed from there with gf_free) */
    gf_off blk = gf_msg_keep(p->a, m);
    gf__pool_lq_push(p, id, status, (int)h.worker, data, len, blk, h.elapsed);
    return 0;
drop:
    /* a result nobody will take (its task was resolved or re-run after its worker died):
     * its out-of-band buffers go with it */
    if (m->len >= sizeof h && (h.status == GF_TASK_OK || h.status == GF_TASK_ERROR))
        gf__frame_drop(p->a, (const unsigned char *)m->data + sizeof h, m->len - sizeof h);
    if (!out || m->block) gf_msg_release(p->a, m);
    return 0;
}

/* Move every result now in the ring to the parent's queue. */
void gf__pool_drain(gf_pool *p) {
    for (;;) {
        int n = gf_ring_get_many(p->a, p->sh->results, p->dmsgs, GF__RX_MSGS, p->drainbuf,
                                 p->rxcap, 0);
        if (n <= 0) return;
        for (int k = 0; k < n; k++) gf__take_msg(p, &p->dmsgs[k], NULL);
    }
}

/* Release what the previous gf_pool_next_results handed out. Under the lock. */
void gf__pool_release_given(gf_pool *p) {
    while (p->given) {
        gf__res *r = p->given;
        p->given = r->next;
        if (r->block) gf_free(p->a, r->block);
        free(r);
    }
    for (size_t k = 0; k < p->ngiven_blk; k++) gf_msg_release(p->a, &p->given_blk[k]);
    p->ngiven_blk = 0;
}

/* What a supervision pass can change, summed: a pass that leaves it alike found nothing. */
static uint64_t gf__sup_mark(const gf_pool *p) {
    return p->deaths + p->spawned + p->nret + (p->lq_head != NULL) + (uint64_t)p->need_spawn;
}

/* The sleep before the next supervision pass of a waiting consumer: supervise_ns while
 * something happens (results, deaths, spawns, tasks with a timeout), doubling up to 10 x
 * supervise_ns after each pass that finds nothing -- every wake-up of the parent takes a CPU
 * from a worker on a small machine (a futex wake costs ~45 us here). `quiet`: the last pass
 * found nothing. */
static int64_t gf__sup_wait(gf_pool *p, int quiet) {
    int64_t base = p->opt.supervise_ns, top = 10 * base;
    if (!quiet || p->ntimed || p->closing || p->sup_wait < base) p->sup_wait = base;
    else if (p->sup_wait < top) p->sup_wait = 2 * p->sup_wait < top ? 2 * p->sup_wait : top;
    return p->outstanding == 0 ? top : p->sup_wait;
}

/* Take 1..max results. Result: the count. Fails: GF_EINVAL, GF_ETIMEDOUT, GF_EINTR, GF_EPIPE
 * (closed and nothing more to come), GF_EBADMSG (result ring corrupt). */
int gf_pool_next_results(gf_pool *p, gf_pool_result *out, size_t max, int64_t deadline) {
    if (!p || !out || max == 0) return GF_EINVAL;
    if (max > GF__RX_MSGS) max = GF__RX_MSGS;
    int force = 0, first = 1;
    int64_t since = gf_now_ns(); /* for the interrupt slice (gf_set_interrupt_slice) */
    for (;;) {
        gf__lock(p);
        if (first) gf__pool_release_given(p);
        first = 0;
        int64_t now = gf_now_ns();
        if (force) p->force_sup = 1;
        uint64_t mark = gf__sup_mark(p);
        gf__pool_supervise_maybe(p, now);
        size_t n = 0;
        int rc = 0;
        /* Fresh results straight from the ring (payloads stay in rxbuf / their blocks). */
        if (!p->lq_head) {
            int m = gf_ring_get_many(p->a, p->sh->results, p->msgs, max, p->rxbuf, p->rxcap, 0);
            if (m == GF_EBADMSG) rc = m;
            for (int k = 0; k < m; k++) {
                if (gf__take_msg(p, &p->msgs[k], &out[n])) {
                    if (p->msgs[k].block) p->given_blk[p->ngiven_blk++] = p->msgs[k];
                    n++;
                }
            }
            if (p->force_sup) gf__pool_supervise(p, now);
        }
        int quiet = n == 0 && gf__sup_mark(p) == mark;
        /* Then results queued in the parent (drained, or made up: LOST, CANCELLED, ...). */
        gf__res *tail = NULL;
        while (n < max && p->lq_head) {
            gf__res *r = p->lq_head;
            p->lq_head = r->next;
            if (!p->lq_head) p->lq_tail = NULL;
            r->next = NULL;
            if (tail) tail->next = r;
            else p->given = r;
            tail = r;
            out[n++] = r->r;
        }
        int done = n == 0 && p->closing && p->outstanding == 0;
        int kicked = n == 0 && p->kicked;
        if (kicked) p->kicked = 0;
        int64_t next_to = p->next_timeout;
        int64_t sleep = gf__sup_wait(p, quiet);
        p->need_nop = 0; /* we are the consumer: no need to wake ourselves */
        gf__pool_unlock_and_spawn(p);
        if (n > 0) return (int)n;
        if (rc < 0) return rc;
        if (done) return GF_EPIPE;
        if (kicked) return GF_ETIMEDOUT;
        now = gf_now_ns();
        if (deadline <= now) return GF_ETIMEDOUT;
        int64_t wake = now + sleep;
        if (next_to < wake) wake = next_to;
        if (deadline < wake) wake = deadline;
        int w = gf_ring_wait_readable(p->a, p->sh->results, wake);
        if (w == GF_EINTR) return GF_EINTR;
        if (w == GF_EPIPE) return GF_EPIPE;
        /* Supervision slices are shorter than the interrupt slice: honour it here. */
        if (gf__interrupt_due(since)) return GF_EINTR;
        force = w == GF_ETIMEDOUT;
    }
}

/* See gilfree.h. */
int gf_pool_results_done(gf_pool *p) {
    if (!p) return GF_EINVAL;
    gf__lock(p);
    gf__pool_release_given(p);
    gf__unlock(p);
    return 0;
}

/* See gilfree.h. */
int gf_pool_wake(gf_pool *p) {
    if (!p) return GF_EINVAL;
    gf__lock(p);
    p->kicked = 1;
    p->need_nop = 1; /* a NOP record wakes the sleeper */
    gf__pool_unlock_and_spawn(p);
    return 0;
}
