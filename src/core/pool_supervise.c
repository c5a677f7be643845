/*
 * pool_supervise.c -- the pool's supervision: a worker's death (every task it had accounted for
 * through its claim words), per-task timeouts and cancels that kill a worker, replacement and
 * retirement of workers, closing idle mailboxes, and spawning outside the lock.
 */
#include "pool_internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* Kill worker i on behalf of task e (a timeout or a cancel). First revoke every task queued
 * behind e so that the worker cannot start one between now and its death. */
void gf__pool_kill_for(gf_pool *p, uint32_t i, gf__task *e, int reason) {
    gf__wk *w = &p->w[i];
    gf__pclaim *cl = gf__claims(gf__slot(p->sh, i));
    gf__task *t;
    TAILQ_FOREACH(t, &w->tasks, link) {
        if (t == e) continue;
        uint64_t want = GF__CLAIM(t->seq, GF__CL_PENDING);
        /* acq_rel CAS: arbitrates with the worker's PENDING -> STARTED. */
        atomic_compare_exchange_strong_explicit(GF_A64(&cl[t->seq % p->sh->nclaims].word),
                                                &want, GF__CLAIM(t->seq, GF__CL_REVOKED),
                                                memory_order_acq_rel, memory_order_acquire);
    }
    if (!w->killed) {
        w->kill_reason = reason;
        w->kill_token = gf__token(e);
    }
    w->killed = 1;
    gf_proc_signal(&w->proc, SIGKILL);
    p->deaths++;
}

/* Worker i has exited (pidfd readable): account for every task it had. */
static void gf__on_death(gf_pool *p, uint32_t i) {
    gf__wk *w = &p->w[i];
    gf__pslot *s = gf__slot(p->sh, i);
    gf__pclaim *cl = gf__claims(s);
    gf__pool_drain(p); /* its committed results are all in the ring now */
    if (w->state != W_LIVE) return; /* its EXIT record was in there: retired, not dead */
    int code = 0;
    if (gf_proc_wait(&w->proc, 0) < 0 || gf_proc_exitcode(&w->proc, &code) < 0) code = -1;
    if (!w->killed && !p->terminated && code != 0) p->deaths++;
    struct gf__tq again = TAILQ_HEAD_INITIALIZER(again);
    gf__task *e;
    while ((e = TAILQ_FIRST(&w->tasks)) != NULL) {
        TAILQ_REMOVE(&w->tasks, e, link);
        w->nout--;
        /* acquire: pairs with the worker's CAS (its deadline write is visible). */
        uint64_t word =
            atomic_load_explicit(GF_A64(&cl[e->seq % p->sh->nclaims].word), memory_order_acquire);
        e->worker = -1;
        if (e->cancelled) {
            gf__pool_resolve_bare(p, e, GF_TASK_CANCELLED, -1);
        } else if (word == GF__CLAIM(e->seq, GF__CL_STARTED)) {
            if (w->kill_reason && w->kill_token == gf__token(e))
                gf__pool_resolve_bare(p, e, w->kill_reason, (int)i);
            else if (p->terminated)
                gf__pool_resolve_bare(p, e, GF_TASK_CANCELLED, (int)i);
            else if (e->retries > 0) {
                e->retries--;
                TAILQ_INSERT_TAIL(&again, e, link);
            } else
                gf__pool_resolve_bare(p, e, GF_TASK_LOST, (int)i);
        } else if (p->terminated) {
            gf__pool_resolve_bare(p, e, GF_TASK_CANCELLED, -1);
        } else {
            TAILQ_INSERT_TAIL(&again, e, link); /* never started: run it elsewhere */
        }
    }
    TAILQ_CONCAT(&again, &p->backlog, link);
    TAILQ_INIT(&p->backlog);
    TAILQ_CONCAT(&p->backlog, &again, link);
    gf_proc_close(&w->proc);
    if (s->mailbox) {
        gf_ring_close(p->a, s->mailbox);
        gf_obj_decref(p->a, s->mailbox);
        s->mailbox = 0;
    }
    s->pid = 0;
    w->state = W_DEAD;
    w->open = 0;
}

/* The pool's rings: at most once per GF__POOL_TRIM_NS, the pages of the result ring and of
 * the mailboxes that hold no record go back to the kernel (gf_ring_trim skips a ring with
 * nothing left to punch). A ring goes round and touches every page of its data area in time (~7 MiB with
 * the extension's sizes, a small record at a time); trimmed, it keeps about what a second of
 * traffic touched. A busy ring gives (and faults in again) at most 1 MiB per second. */
#define GF__POOL_TRIM_NS 1000000000LL
static void gf__pool_trim_rings(gf_pool *p, int64_t now) {
    if (now - p->trimmed_at < GF__POOL_TRIM_NS) return;
    p->trimmed_at = now;
    gf_ring_trim(p->a, p->sh->results);
    for (uint32_t i = 0; i < p->opt.max_workers; i++) {
        gf__pslot *s = gf__slot(p->sh, i);
        if (p->w[i].state == W_LIVE && s->mailbox) gf_ring_trim(p->a, s->mailbox);
    }
}

/* One supervision pass: reap, detect deaths, enforce timeouts, plan replacements, dispatch
 * the backlog, close mailboxes when closing. */
void gf__pool_supervise(gf_pool *p, int64_t now) {
    p->last_sup = now;
    p->force_sup = 0;
    p->next_timeout = GF_FOREVER;
    int gone = 0; /* workers that ended: what they held in the arena is released below */
    for (size_t k = 0; k < p->nret;) {
        int rc = gf_proc_wait(&p->ret[k], 0);
        if (rc == 0 || rc == GF_ECHILD || p->ret[k].reaped) {
            gf_proc_close(&p->ret[k]);
            p->ret[k] = p->ret[--p->nret];
            gone++;
        } else
            k++;
    }
    /* Deaths. */
    nfds_t n = 0;
    for (uint32_t i = 0; i < p->opt.max_workers; i++) {
        if (p->w[i].state != W_LIVE) continue;
        p->pfd[n].fd = p->w[i].proc.pidfd;
        p->pfd[n].events = POLLIN;
        p->pfd[n].revents = 0;
        p->pmap[n++] = i;
    }
    if (n && poll(p->pfd, n, 0) > 0) {
        for (nfds_t k = 0; k < n; k++)
            if (p->pfd[k].revents && p->w[p->pmap[k]].state == W_LIVE &&
                p->w[p->pmap[k]].proc.pidfd == p->pfd[k].fd) {
                gf__on_death(p, p->pmap[k]);
                gone++;
            }
    }
    if (gone) gf_arena_reclaim(p->a, GF_ARENA_RECLAIM_DEAD);
    gf_arena_trim(p->a, 0); /* freed memory past the warm delay goes back to the kernel */
    gf__pool_trim_rings(p, now);
    /* Timeouts: the running task of a worker is the first on its list. */
    if (p->ntimed) {
        for (uint32_t i = 0; i < p->opt.max_workers; i++) {
            gf__wk *w = &p->w[i];
            if (w->state != W_LIVE || w->killed) continue;
            gf__task *e = TAILQ_FIRST(&w->tasks);
            if (!e || e->timeout_ns <= 0) continue;
            gf__pclaim *c = &gf__claims(gf__slot(p->sh, i))[e->seq % p->sh->nclaims];
            /* acquire: the worker wrote the deadline before its CAS (release). */
            if (atomic_load_explicit(GF_A64(&c->word), memory_order_acquire) !=
                GF__CLAIM(e->seq, GF__CL_STARTED))
                continue;
            int64_t dl = atomic_load_explicit(GF_A64(&c->deadline), memory_order_relaxed);
            if (now < dl) {
                if (dl < p->next_timeout) p->next_timeout = dl;
                continue;
            }
            gf__pool_drain(p);
            if (TAILQ_FIRST(&w->tasks) == e) gf__pool_kill_for(p, i, e, GF_TASK_TIMEOUT);
        }
    }
    /* Replacements. */
    for (uint32_t i = 0; i < p->opt.max_workers; i++) {
        gf__wk *w = &p->w[i];
        if (w->state != W_DEAD && w->state != W_EMPTY) continue;
        if (p->terminated) continue;
        if (i >= p->target || w->retire) {
            w->retire = 0;
            continue;
        }
        if (p->closing && TAILQ_EMPTY(&p->backlog)) continue;
        w->state = W_NEED_SPAWN;
        p->need_spawn = 1;
    }
    gf__pool_flush_backlog(p);
    /* Closing: a mailbox with nothing queued is closed; its worker exits after its task. */
    for (uint32_t i = 0; i < p->opt.max_workers; i++) {
        gf__wk *w = &p->w[i];
        if (w->state != W_LIVE || !w->open) continue;
        if (!(p->closing && TAILQ_EMPTY(&p->backlog)) && !(w->retire && i >= p->target)) continue;
        /* seq_cst load: as in gf__has_room. */
        uint64_t consumed =
            atomic_load_explicit(GF_A64(&gf__slot(p->sh, i)->consumed), memory_order_seq_cst);
        if (consumed != w->next_seq) continue;
        gf_ring_close(p->a, gf__slot(p->sh, i)->mailbox);
        w->open = 0;
    }
}

static void gf__post_nop(gf_pool *p) {
    if (!p->need_nop) return;
    p->need_nop = 0;
    gf__resrec h = {.status = GF__ST_NOP};
    gf_ring_put(p->a, p->sh->results, &h, sizeof h, 0); /* full = the consumer is awake */
}

void gf__pool_unlock_and_spawn(gf_pool *p) {
    gf__post_nop(p);
    while (p->need_spawn) {
        p->need_spawn = 0;
        for (uint32_t i = 0; i < p->opt.max_workers; i++) {
            gf__wk *w = &p->w[i];
            if (w->state != W_NEED_SPAWN) continue;
            gf__pslot *s = gf__slot(p->sh, i);
            gf_off mb = 0;
            int rc = gf_ring_create(p->a, p->opt.mailbox_bytes, 0, 0, &mb);
            if (rc < 0) {
                w->state = W_DEAD;
                p->spawn_err = rc;
                continue;
            }
            memset(gf__claims(s), 0, (size_t)p->sh->nclaims * sizeof(gf__pclaim));
            /* relaxed: the new process starts after these stores (fork / spawn is a full
             * barrier for what it inherits). */
            atomic_store_explicit(GF_A64(&s->consumed), 0, memory_order_relaxed);
            s->mailbox = mb;
            s->gen = ++w->gen;
            w->state = W_SPAWNING;
            w->next_seq = 0;
            w->nout = 0;
            w->killed = 0;
            w->kill_reason = 0;
            w->kill_token = 0;
            gf_proc pr = {.pid = 0, .pidfd = -1};
            gf__unlock(p);
            rc = p->opt.spawn ? p->opt.spawn(p->opt.spawn_ctx, p, i, &pr)
                              : gf__pool_default_spawn(NULL, p, i, &pr);
            gf__lock(p);
            if (rc < 0) {
                gf_obj_decref(p->a, mb);
                s->mailbox = 0;
                w->state = W_DEAD;
                p->spawn_err = rc;
                continue;
            }
            p->spawned++;
            p->spawn_err = 0;
            w->proc = pr;
            s->pid = pr.pid;
            w->state = W_LIVE;
            w->open = 1;
            if (p->terminated) {
                w->killed = 1;
                gf_ring_close(p->a, mb);
                w->open = 0;
                gf_proc_signal(&w->proc, SIGKILL);
            }
            gf__pool_flush_backlog(p);
        }
    }
    gf__post_nop(p);
    gf__unlock(p);
}

/* Number of workers alive or starting. */
uint32_t gf__pool_nlive(gf_pool *p) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->opt.max_workers; i++)
        if (p->w[i].state == W_LIVE || p->w[i].state == W_SPAWNING ||
            p->w[i].state == W_NEED_SPAWN)
            n++;
    return n;
}
