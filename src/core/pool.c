/*
 * pool.c -- a supervised pool of worker processes: per-worker mailboxes, one shared result
 * ring, claim words that tell the parent exactly which task a dead worker was running. This
 * file owns the pool's life cycle (create, resize, close, terminate, join, destroy) and its
 * accessors; see pool_internal.h for the layout and the other pool_*.c files for the rest.
 *
 * Shared state (a GF_OBJ_POOL object in the arena):
 *   header: magic, sizes, the result ring, the parent's identity, the "space" eventcount;
 *   one slot per worker: its mailbox ring, a generation, a `consumed` counter (records taken
 *   from the mailbox) and an array of claim words, one per dispatch sequence number modulo
 *   `nclaims`.
 *
 * When a worker dies the parent first drains the result ring (the worker's committed results
 * are all there: a dead process puts nothing more), then for each task still outstanding on
 * it: STARTED -> LOST (or retried; TIMEOUT / CANCELLED if the parent killed it for that task),
 * PENDING or REVOKED -> dispatched again. No task runs twice because of a death, none is lost
 * that had not started.
 *
 * The parent keeps a copy of each task's payload until its result arrives (for re-dispatch).
 * Backpressure: at most `mailbox_tasks` records not yet taken per worker (next_seq - consumed);
 * that also guarantees that claim word seq % nclaims is free when seq is dispatched.
 *
 * The parent side (gf_pool) is process-local and guarded by one pthread mutex that is never
 * held while blocking or while calling the spawn function.
 */
#include "pool_internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Destructor called by gf_obj_decref at zero: drop the rings the pool object owns. */
void gf__pool_destroy(gf_arena *a, gf_off off) {
    gf__pshared *sh = gf_ptr(a, off);
    for (uint32_t i = 0; i < sh->maxw; i++) {
        gf__pslot *s = gf__slot(sh, i);
        if (s->mailbox) gf_obj_decref(a, s->mailbox);
        s->mailbox = 0;
    }
    if (sh->results) gf_obj_decref(a, sh->results);
    sh->results = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Parent API                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* Copy the options into p with their defaults filled in. Result 0. Fails: GF_EINVAL (too many
 * workers, mailboxes too deep). */
static int gf__pool_options(gf_pool *p, const gf_pool_options *opt) {
    p->opt = *opt;
    if (!p->opt.nworkers) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        p->opt.nworkers = c > 0 ? (uint32_t)c : 1;
    }
    if (p->opt.max_workers < p->opt.nworkers) p->opt.max_workers = p->opt.nworkers;
    if (!p->opt.mailbox_tasks) p->opt.mailbox_tasks = 64;
    if (!p->opt.mailbox_bytes) p->opt.mailbox_bytes = (size_t)256 << 10;
    if (!p->opt.result_bytes) p->opt.result_bytes = (size_t)1 << 20;
    if (!p->opt.supervise_ns) p->opt.supervise_ns = 10000000;
    if (!p->opt.handler_out_cap) p->opt.handler_out_cap = (size_t)64 << 10;
    if (p->opt.max_workers > 4096 || p->opt.mailbox_tasks > (1u << 20)) return GF_EINVAL;
    return 0;
}

/* Create the shared pool object (maxw worker slots of ncl claim words each), its result ring
 * and the parent's receive buffers. Result 0. Fails: GF_ENOSPC, GF_ENOMEM (the caller frees
 * what was made). */
static int gf__pool_shared_new(gf_pool *p, uint32_t maxw, uint32_t ncl) {
    gf_arena *a = p->a;
    uint64_t stride = sizeof(gf__pslot) + (uint64_t)ncl * sizeof(gf__pclaim);
    stride = (stride + GF_CACHELINE - 1) & ~(uint64_t)(GF_CACHELINE - 1);
    int rc = gf_obj_new(a, GF_OBJ_POOL, sizeof(gf__pshared) + stride * maxw, &p->shoff);
    if (rc < 0) return rc;
    p->sh = gf_ptr(a, p->shoff);
    {
        gf__pshared *sh = p->sh;
        memset((char *)sh + sizeof(gf_obj), 0, sizeof(gf__pshared) + stride * maxw - sizeof(gf_obj));
        sh->magic = GF__POOL_MAGIC;
        sh->maxw = maxw;
        sh->nclaims = ncl;
        sh->stride = stride;
        sh->maxtasks = p->opt.maxtasksperchild;
        sh->parent_ident = gf__self_ident(a);
    }
    rc = gf_ring_create(a, p->opt.result_bytes, 0, 0, &p->sh->results);
    if (rc < 0) return rc;
    {
        size_t im = gf_ring_inline_max(a, p->sh->results);
        p->rxcap = im * 4 > ((size_t)64 << 10) ? im * 4 : ((size_t)64 << 10);
    }
    p->rxbuf = malloc(p->rxcap);
    p->drainbuf = malloc(p->rxcap);
    if (!p->rxbuf || !p->drainbuf) return GF_ENOMEM;
    return 0;
}

/* Create the pool and start its workers. Result 0 and *out. Fails: GF_EINVAL, GF_ENOMEM,
 * GF_ENOSPC, or the first worker's spawn error. */
int gf_pool_create(gf_arena *a, const gf_pool_options *opt, gf_pool **out) {
    if (!a || !opt || !out) return GF_EINVAL;
    if (!opt->spawn && !opt->handler) return GF_EINVAL;
    gf_pool *p = calloc(1, sizeof *p);
    if (!p) return GF_ENOMEM;
    p->a = a;
    if (gf__pool_options(p, opt) < 0) {
        free(p);
        return GF_EINVAL;
    }
    p->target = p->opt.nworkers;
    p->q = p->opt.mailbox_tasks;
    p->next_id = 1;
    TAILQ_INIT(&p->backlog);
    pthread_mutex_init(&p->mu, NULL);
    int rc = GF_ENOMEM;
    uint32_t maxw = p->opt.max_workers, ncl = p->q + 2;
    p->w = calloc(maxw, sizeof *p->w);
    p->pfd = calloc(maxw, sizeof *p->pfd);
    p->pmap = calloc(maxw, sizeof *p->pmap);
    if (!p->w || !p->pfd || !p->pmap) goto fail;
    for (uint32_t i = 0; i < maxw; i++) {
        TAILQ_INIT(&p->w[i].tasks);
        p->w[i].proc.pidfd = -1;
    }
    rc = gf__pool_shared_new(p, maxw, ncl);
    if (rc < 0) goto fail;
    gf__lock(p);
    for (uint32_t i = 0; i < p->target; i++) p->w[i].state = W_NEED_SPAWN;
    p->need_spawn = 1;
    p->last_sup = gf_now_ns();
    gf__pool_unlock_and_spawn(p);
    gf__lock(p);
    rc = gf__pool_nlive(p) == p->target ? 0 : (p->spawn_err ? p->spawn_err : GF_EAGAIN);
    gf__unlock(p);
    if (rc < 0) {
        gf_pool_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
fail:
    if (p->shoff) gf_obj_decref(a, p->shoff);
    free(p->rxbuf);
    free(p->drainbuf);
    free(p->w);
    free(p->pfd);
    free(p->pmap);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return rc;
}

/* Change the number of workers. Result 0. Fails: GF_EINVAL, GF_EPIPE. */
int gf_pool_resize(gf_pool *p, uint32_t nworkers) {
    if (!p || nworkers == 0 || nworkers > p->opt.max_workers) return GF_EINVAL;
    gf__lock(p);
    int rc = 0;
    if (p->closing) {
        rc = GF_EPIPE;
    } else {
        p->target = nworkers;
        for (uint32_t i = 0; i < p->opt.max_workers; i++) {
            gf__wk *w = &p->w[i];
            if (i >= nworkers && (w->state == W_LIVE || w->state == W_SPAWNING)) w->retire = 1;
            if (i >= nworkers && w->state == W_NEED_SPAWN) w->state = W_DEAD;
            if (i < nworkers) w->retire = 0;
        }
        gf__pool_supervise(p, gf_now_ns());
    }
    gf__pool_unlock_and_spawn(p);
    return rc;
}

/* No more submits; workers exit when the queued work is done. */
void gf_pool_close(gf_pool *p) {
    if (!p) return;
    gf__lock(p);
    p->closing = 1;
    /* relaxed: informational for workers; the mailbox close is what stops them. */
    atomic_store_explicit(GF_A32(&p->sh->closing), 1, memory_order_relaxed);
    gf__pool_supervise(p, gf_now_ns());
    p->need_nop = 1; /* a consumer waiting for results may now get GF_EPIPE */
    gf__pool_unlock_and_spawn(p);
}

/* Kill every worker; unfinished tasks yield GF_TASK_CANCELLED. */
void gf_pool_terminate(gf_pool *p) {
    if (!p) return;
    gf__lock(p);
    p->closing = 1;
    p->terminated = 1;
    atomic_store_explicit(GF_A32(&p->sh->closing), 1, memory_order_relaxed);
    for (uint32_t i = 0; i < p->opt.max_workers; i++) {
        gf__wk *w = &p->w[i];
        if (w->state == W_NEED_SPAWN) w->state = W_DEAD;
        if (w->state != W_LIVE) continue;
        if (w->open) gf_ring_close(p->a, gf__slot(p->sh, i)->mailbox);
        w->open = 0;
        w->killed = 1;
        gf_proc_signal(&w->proc, SIGKILL);
    }
    for (size_t k = 0; k < p->nret; k++) gf_proc_signal(&p->ret[k], SIGKILL);
    gf__task *e;
    while ((e = TAILQ_FIRST(&p->backlog)) != NULL) {
        TAILQ_REMOVE(&p->backlog, e, link);
        gf__pool_resolve_bare(p, e, GF_TASK_CANCELLED, -1);
    }
    p->need_nop = 1;
    gf__pool_unlock_and_spawn(p);
}

/* Wait for every worker to exit. Result 0. Fails: GF_EINVAL, GF_ETIMEDOUT, GF_EINTR,
 * GF_ENOMEM. */
int gf_pool_join(gf_pool *p, int64_t deadline) {
    if (!p) return GF_EINVAL;
    struct pollfd *pf = calloc(p->opt.max_workers, sizeof *pf);
    if (!pf) return GF_ENOMEM;
    int rc;
    int64_t since = gf_now_ns();
    for (;;) {
        gf__lock(p);
        if (!p->closing) {
            gf__unlock(p);
            rc = GF_EINVAL;
            break;
        }
        gf__pool_supervise(p, gf_now_ns());
        gf__pool_drain(p); /* results nobody takes must not block the workers */
        nfds_t n = 0;
        for (uint32_t i = 0; i < p->opt.max_workers; i++) {
            if (p->w[i].state != W_LIVE) continue;
            pf[n].fd = p->w[i].proc.pidfd;
            pf[n].events = POLLIN;
            pf[n].revents = 0;
            n++;
        }
        int busy = gf__pool_nlive(p) > 0 || !TAILQ_EMPTY(&p->backlog);
        int retired = p->nret > 0;
        int64_t next_to = p->next_timeout;
        gf__pool_unlock_and_spawn(p);
        if (!busy && !retired) {
            rc = 0;
            break;
        }
        int64_t now = gf_now_ns();
        if (deadline <= now) {
            rc = GF_ETIMEDOUT;
            break;
        }
        /* Retiring workers are not polled: a short slice catches their exit. */
        int64_t wake = now + (retired ? 1000000 : p->opt.supervise_ns);
        if (next_to < wake) wake = next_to;
        if (deadline < wake) wake = deadline;
        int64_t left = wake > now ? wake - now : 0;
        struct timespec ts = {left / 1000000000, left % 1000000000};
        /* A pidfd may be closed by another thread meanwhile: the wait is bounded anyway. */
        if (ppoll(pf, n, &ts, NULL) < 0 && errno == EINTR) {
            rc = GF_EINTR;
            break;
        }
        if (gf__interrupt_due(since)) { /* let the embedding runtime check its signals */
            rc = GF_EINTR;
            break;
        }
    }
    free(pf);
    return rc;
}

/* Kill and reap whatever is left, free everything. */
void gf_pool_destroy(gf_pool *p) {
    if (!p) return;
    gf__lock(p);
    p->closing = 1;
    p->terminated = 1;
    for (uint32_t i = 0; i < p->opt.max_workers; i++) {
        gf__wk *w = &p->w[i];
        if (w->state == W_LIVE) gf_proc_signal(&w->proc, SIGKILL);
    }
    for (size_t k = 0; k < p->nret; k++) gf_proc_signal(&p->ret[k], SIGKILL);
    for (uint32_t i = 0; i < p->opt.max_workers; i++) {
        gf__wk *w = &p->w[i];
        if (w->state == W_LIVE) {
            while (gf_proc_wait(&w->proc, GF_FOREVER) == GF_EINTR) {}
            gf_proc_close(&w->proc);
        }
        gf__pclaim *cl = gf__claims(gf__slot(p->sh, i));
        gf__task *e;
        while ((e = TAILQ_FIRST(&w->tasks)) != NULL) {
            TAILQ_REMOVE(&w->tasks, e, link);
            /* acquire: pairs with the worker's claim CAS. A started task's payload was its
             * (dead) worker's. */
            if (atomic_load_explicit(GF_A64(&cl[e->seq % p->sh->nclaims].word),
                                     memory_order_acquire) != GF__CLAIM(e->seq, GF__CL_STARTED))
                gf__pool_task_drop(p, e);
            free(e);
        }
    }
    for (size_t k = 0; k < p->nret; k++) {
        while (gf_proc_wait(&p->ret[k], GF_FOREVER) == GF_EINTR) {}
        gf_proc_close(&p->ret[k]);
    }
    gf__task *e;
    while ((e = TAILQ_FIRST(&p->backlog)) != NULL) {
        TAILQ_REMOVE(&p->backlog, e, link);
        gf__pool_task_drop(p, e);
        free(e);
    }
    gf__pool_release_given(p);
    p->given = p->lq_head;
    p->lq_head = p->lq_tail = NULL;
    gf__pool_release_given(p);
    /* Results still in the ring own blocks: free them before the ring goes. */
    for (;;) {
        int n = gf_ring_get_many(p->a, p->sh->results, p->dmsgs, GF__RX_MSGS, p->drainbuf,
                                 p->rxcap, 0);
        if (n <= 0) break;
        for (int k = 0; k < n; k++) gf_msg_release(p->a, &p->dmsgs[k]);
    }
    gf_ring_close(p->a, p->sh->results);
    for (uint32_t i = 0; i < p->opt.max_workers; i++) {
        gf__pslot *s = gf__slot(p->sh, i);
        if (s->mailbox) gf_ring_close(p->a, s->mailbox);
    }
    gf__unlock(p);
    gf_obj_decref(p->a, p->shoff); /* its destructor drops the rings */
    free(p->tab);
    free(p->freeidx);
    free(p->ret);
    free(p->rxbuf);
    free(p->drainbuf);
    free(p->w);
    free(p->pfd);
    free(p->pmap);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* Counters (a snapshot). */
void gf_pool_stats_get(gf_pool *p, gf_pool_stats *st) {
    memset(st, 0, sizeof *st);
    if (!p) return;
    gf__lock(p);
    for (uint32_t i = 0; i < p->opt.max_workers; i++)
        if (p->w[i].state == W_LIVE && !p->w[i].killed) st->live_workers++;
    st->outstanding = p->outstanding;
    st->spawned = p->spawned;
    st->deaths = p->deaths;
    gf__unlock(p);
}

/* Pid of worker `index`, 0 if none. */
pid_t gf_pool_worker_pid(gf_pool *p, uint32_t index) {
    if (!p || index >= p->opt.max_workers) return 0;
    gf__lock(p);
    pid_t pid = p->w[index].state == W_LIVE ? p->w[index].proc.pid : 0;
    gf__unlock(p);
    return pid;
}

gf_off gf_pool_shared(const gf_pool *p) { return p ? p->shoff : 0; }
gf_arena *gf_pool_arena(const gf_pool *p) { return p ? p->a : NULL; }
