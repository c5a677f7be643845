/*
 * pool.c -- a supervised pool of worker processes: per-worker mailboxes, one shared result
 * ring, claim words that tell the parent exactly which task a dead worker was running.
 *
 * Shared state (a GF_OBJ_POOL object in the arena):
 *   header: magic, sizes, the result ring, the parent's identity, the "space" eventcount;
 *   one slot per worker: its mailbox ring, a generation, a `consumed` counter (records taken
 *   from the mailbox) and an array of claim words, one per dispatch sequence number modulo
 *   `nclaims`.
 *
 * A claim word is ((seq + 1) << 2) | state. The parent writes PENDING before it puts the task
 * record in the mailbox; the worker CASes PENDING -> STARTED just before it runs the task; the
 * parent CASes PENDING -> CANCELLED (queued cancel) or PENDING -> REVOKED (before it kills a
 * worker, so that the worker cannot start another task between the decision and the kill).
 * Whoever wins the CAS decides. When a worker dies the parent first drains the result ring
 * (the worker's committed results are all there: a dead process puts nothing more), then for
 * each task still outstanding on it: STARTED -> LOST (or retried; TIMEOUT / CANCELLED if the
 * parent killed it for that task), PENDING or REVOKED -> dispatched again. No task runs twice
 * because of a death, none is lost that had not started.
 *
 * The parent keeps a copy of each task's payload until its result arrives (for re-dispatch).
 * Backpressure: at most `mailbox_tasks` records not yet taken per worker (next_seq - consumed);
 * that also guarantees that claim word seq % nclaims is free when seq is dispatched.
 *
 * The parent side (gf_pool) is process-local and guarded by one pthread mutex that is never
 * held while blocking or while calling the spawn function.
 */
#include "internal.h"

#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* Shared layout                                                                               */
/* ------------------------------------------------------------------------------------------ */

#define GF__POOL_MAGIC 0x4c4f4f50u /* "POOL" */

enum { GF__CL_PENDING = 0, GF__CL_STARTED = 1, GF__CL_CANCELLED = 2, GF__CL_REVOKED = 3 };
#define GF__CLAIM(seq, st) ((((uint64_t)(seq) + 1) << 2) | (uint64_t)(st))

/* Internal result statuses (never returned to the user). */
#define GF__ST_NOP 100u  /* wake the consumer */
#define GF__ST_EXIT 101u /* worker reached maxtasksperchild and exits */

typedef struct gf__pclaim {
    uint64_t word;    /* GF__CLAIM(seq, state), 0 = never used */
    int64_t deadline; /* written by the worker before it CASes to STARTED */
} gf__pclaim;

typedef struct gf__pslot {
    /* written by the parent before it spawns the worker */
    gf_off mailbox;
    uint32_t gen;
    int32_t pid;
    char pad0[GF_CACHELINE - 16];
    /* written by the worker */
    uint64_t consumed; /* mailbox records taken (started or skipped) */
    uint64_t cur_task; /* id of the task it is running (informational) */
    char pad1[GF_CACHELINE - 16];
    /* then nclaims x gf__pclaim */
} gf__pslot;

typedef struct gf__pshared {
    gf_obj obj;
    uint32_t magic;
    uint32_t maxw;
    uint32_t nclaims;
    uint32_t parent_ident;
    uint32_t closing;
    uint32_t pad;
    gf_off results;
    uint64_t stride; /* bytes per slot, claims included */
    uint64_t maxtasks;
    char pad0[GF_CACHELINE - 56];
    /* eventcount for submitters waiting for mailbox space */
    uint32_t space_seq;
    uint32_t space_waiters;
    char pad1[GF_CACHELINE - 8];
} gf__pshared;

_Static_assert(sizeof(gf__pslot) == 2 * GF_CACHELINE, "slot header layout");
_Static_assert(sizeof(gf__pshared) == 2 * GF_CACHELINE, "pool header layout");

/* Mailbox record header, followed by the payload. */
typedef struct gf__taskrec {
    uint64_t token; /* slab index | generation << 32 (the parent's handle on the task) */
    uint64_t id;
    uint64_t seq;
    int64_t timeout_ns;
} gf__taskrec;

/* Result record header, followed by the payload. */
typedef struct gf__resrec {
    uint64_t token;
    uint64_t id;
    uint32_t status;
    uint32_t worker;
    uint32_t gen;
    uint32_t elapsed; /* ns from gf_worker_next to gf_worker_result, saturated at UINT32_MAX */
} gf__resrec;

static inline gf__pslot *gf__slot(gf__pshared *sh, uint32_t i) {
    return (gf__pslot *)((char *)sh + sizeof(gf__pshared) + (size_t)i * sh->stride);
}
static inline gf__pclaim *gf__claims(gf__pslot *s) { return (gf__pclaim *)(s + 1); }

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
/* Parent side                                                                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct gf__task {
    TAILQ_ENTRY(gf__task) link; /* on a worker's list (dispatch order) or on the backlog */
    uint64_t id;
    int64_t timeout_ns;
    uint32_t retries;
    uint32_t cancelled; /* cancel asked while its worker was being killed: do not rerun */
    uint32_t idx;    /* slab index */
    uint32_t gen;    /* token generation of the current dispatch */
    int32_t worker;  /* -1 = backlog */
    uint64_t seq;    /* dispatch sequence number on `worker` */
    size_t len;
    unsigned char payload[];
} gf__task;

TAILQ_HEAD(gf__tq, gf__task);

enum { W_EMPTY = 0, W_NEED_SPAWN, W_SPAWNING, W_LIVE, W_DEAD };

typedef struct gf__wk {
    int state;
    int open;        /* mailbox not closed */
    int retire;      /* resize: finish the queue, exit, do not replace */
    int kill_reason; /* 0, or GF_TASK_TIMEOUT / GF_TASK_CANCELLED for kill_token */
    int killed;      /* SIGKILL sent: dispatch nothing more */
    uint32_t gen;
    uint64_t kill_token;
    uint64_t next_seq;
    uint32_t nout;
    uint64_t full_stamp;
    gf_proc proc;
    struct gf__tq tasks;
} gf__wk;

/* A result waiting in the parent (synthesised, or drained from the ring). */
typedef struct gf__res {
    struct gf__res *next;
    gf_pool_result r;
    gf_off block; /* the payload lives in this arena block (else in `mem`) */
    unsigned char mem[];
} gf__res;

#define GF__RX_MSGS 256

struct gf_pool {
    gf_arena *a;
    gf_off shoff;
    gf__pshared *sh;
    gf_pool_options opt;
    uint32_t target;   /* workers wanted */
    uint32_t q;        /* mailbox_tasks */
    pthread_mutex_t mu;
    gf__wk *w;
    /* retired processes (maxtasksperchild, resize) still to reap */
    gf_proc *ret;
    size_t nret, capret;
    /* task slab */
    gf__task **tab;
    uint32_t *freeidx;
    uint32_t tabcap, nfree;
    uint32_t tokgen;
    uint64_t next_id, place_stamp;
    struct gf__tq backlog;
    uint64_t outstanding; /* submitted, not yet resolved */
    uint64_t ntimed;      /* outstanding with a timeout */
    /* results waiting in the parent */
    gf__res *lq_head, *lq_tail;
    /* handed out by the last gf_pool_next_results, released at the next call */
    gf__res *given;
    gf_msg given_blk[GF__RX_MSGS];
    size_t ngiven_blk;
    void *rxbuf, *drainbuf;
    size_t rxcap;
    gf_msg msgs[GF__RX_MSGS];
    gf_msg dmsgs[GF__RX_MSGS];
    /* supervision */
    int64_t last_sup, next_timeout;
    int force_sup, need_spawn, need_nop;
    int closing, terminated;
    int spawn_err;
    uint64_t spawned, deaths;
    struct pollfd *pfd;
    uint32_t *pmap;
};

static inline void gf__lock(gf_pool *p) { pthread_mutex_lock(&p->mu); }
static inline void gf__unlock(gf_pool *p) { pthread_mutex_unlock(&p->mu); }

static inline uint64_t gf__token(const gf__task *e) {
    return (uint64_t)e->idx | ((uint64_t)e->gen << 32);
}

/* Push a result on the parent's queue. `data` is copied unless `block` holds it. Result 0.
 * Fails: GF_ENOMEM (the result is then reported without its payload, as GF_TASK_ERROR). */
static int gf__lq_push(gf_pool *p, uint64_t id, int status, int worker, const void *data,
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

/* Slab: give the task an index. Result 0. Fails: GF_ENOMEM. */
static int gf__slab_add(gf_pool *p, gf__task *e) {
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
static void gf__task_free(gf_pool *p, gf__task *e) {
    p->tab[e->idx] = NULL;
    p->freeidx[p->nfree++] = e->idx;
    p->outstanding--;
    if (e->timeout_ns > 0) p->ntimed--;
    free(e);
}

/* Resolve a task without payload (LOST, TIMEOUT, CANCELLED): queue its result, free it. */
static void gf__resolve_bare(gf_pool *p, gf__task *e, int status, int worker) {
    gf__lq_push(p, e->id, status, worker, NULL, 0, 0, 0);
    gf__task_free(p, e);
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
static int gf__place(gf_pool *p, gf__task *e) {
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
static void gf__flush_backlog(gf_pool *p) {
    gf__task *e;
    while ((e = TAILQ_FIRST(&p->backlog)) != NULL) {
        TAILQ_REMOVE(&p->backlog, e, link);
        int rc = gf__place(p, e);
        if (rc == 0) continue;
        if (rc == GF_ETIMEDOUT) {
            TAILQ_INSERT_HEAD(&p->backlog, e, link);
            return;
        }
        /* The task cannot be dispatched at all (e.g. arena full): fail it, keep going. */
        gf__resolve_bare(p, e, GF_TASK_LOST, -1);
    }
}

/* Handle one record from the result ring. With `out` the result is handed to the caller
 * (its payload stays in the message: the caller keeps the block); without, it is queued.
 * Result 1 if *out was filled, else 0. */
static int gf__take_msg(gf_pool *p, gf_msg *m, gf_pool_result *out) {
    gf__resrec h;
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
    gf__task_free(p, e);
    if (out) {
        out->id = id;
        out->status = status;
        out->worker = (int)h.worker;
        out->data = len ? data : NULL;
        out->len = len;
        out->elapsed_ns = h.elapsed;
        return 1;
    }
    gf__lq_push(p, id, status, (int)h.worker, data, len, m->block, h.elapsed);
    return 0;
drop:
    if (!out || m->block) gf_msg_release(p->a, m);
    return 0;
}

/* Move every result now in the ring to the parent's queue. */
static void gf__drain(gf_pool *p) {
    for (;;) {
        int n = gf_ring_get_many(p->a, p->sh->results, p->dmsgs, GF__RX_MSGS, p->drainbuf,
                                 p->rxcap, 0);
        if (n <= 0) return;
        for (int k = 0; k < n; k++) gf__take_msg(p, &p->dmsgs[k], NULL);
    }
}

/* Kill worker i on behalf of task e (a timeout or a cancel). First revoke every task queued
 * behind e so that the worker cannot start one between now and its death. */
static void gf__kill_for(gf_pool *p, uint32_t i, gf__task *e, int reason) {
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
    gf__drain(p); /* its committed results are all in the ring now */
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
            gf__resolve_bare(p, e, GF_TASK_CANCELLED, -1);
        } else if (word == GF__CLAIM(e->seq, GF__CL_STARTED)) {
            if (w->kill_reason && w->kill_token == gf__token(e))
                gf__resolve_bare(p, e, w->kill_reason, (int)i);
            else if (p->terminated)
                gf__resolve_bare(p, e, GF_TASK_CANCELLED, (int)i);
            else if (e->retries > 0) {
                e->retries--;
                TAILQ_INSERT_TAIL(&again, e, link);
            } else
                gf__resolve_bare(p, e, GF_TASK_LOST, (int)i);
        } else if (p->terminated) {
            gf__resolve_bare(p, e, GF_TASK_CANCELLED, -1);
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

/* One supervision pass: reap, detect deaths, enforce timeouts, plan replacements, dispatch
 * the backlog, close mailboxes when closing. */
static void gf__supervise(gf_pool *p, int64_t now) {
    p->last_sup = now;
    p->force_sup = 0;
    p->next_timeout = GF_FOREVER;
    for (size_t k = 0; k < p->nret;) {
        int rc = gf_proc_wait(&p->ret[k], 0);
        if (rc == 0 || rc == GF_ECHILD || p->ret[k].reaped) {
            gf_proc_close(&p->ret[k]);
            p->ret[k] = p->ret[--p->nret];
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
                p->w[p->pmap[k]].proc.pidfd == p->pfd[k].fd)
                gf__on_death(p, p->pmap[k]);
    }
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
            gf__drain(p);
            if (TAILQ_FIRST(&w->tasks) == e) gf__kill_for(p, i, e, GF_TASK_TIMEOUT);
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
    gf__flush_backlog(p);
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

#define GF__CHECK_NS 1000000 /* supervise at most every 1 ms on the fast paths */

static inline void gf__supervise_maybe(gf_pool *p, int64_t now) {
    if (p->force_sup || now - p->last_sup >= GF__CHECK_NS) gf__supervise(p, now);
}

/* Called with the lock held, releases it: wake a consumer for queued results, then start the
 * workers supervision asked for (outside the lock). */
static void gf__unlock_and_spawn(gf_pool *p);

static void gf__post_nop(gf_pool *p) {
    if (!p->need_nop) return;
    p->need_nop = 0;
    gf__resrec h = {.status = GF__ST_NOP};
    gf_ring_put(p->a, p->sh->results, &h, sizeof h, 0); /* full = the consumer is awake */
}

static int gf__default_spawn(void *ctx, gf_pool *p, uint32_t index, gf_proc *out);

static void gf__unlock_and_spawn(gf_pool *p) {
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
                              : gf__default_spawn(NULL, p, i, &pr);
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
            gf__flush_backlog(p);
        }
    }
    gf__post_nop(p);
    gf__unlock(p);
}

/* Number of workers alive or starting. */
static uint32_t gf__nlive(gf_pool *p) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->opt.max_workers; i++)
        if (p->w[i].state == W_LIVE || p->w[i].state == W_SPAWNING ||
            p->w[i].state == W_NEED_SPAWN)
            n++;
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Parent API                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* Create the pool and start its workers. Result 0 and *out. Fails: GF_EINVAL, GF_ENOMEM,
 * GF_ENOSPC, or the first worker's spawn error. */
int gf_pool_create(gf_arena *a, const gf_pool_options *opt, gf_pool **out) {
    if (!a || !opt || !out) return GF_EINVAL;
    if (!opt->spawn && !opt->handler) return GF_EINVAL;
    gf_pool *p = calloc(1, sizeof *p);
    if (!p) return GF_ENOMEM;
    p->a = a;
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
    if (p->opt.max_workers > 4096 || p->opt.mailbox_tasks > (1u << 20)) {
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
    uint64_t stride = sizeof(gf__pslot) + (uint64_t)ncl * sizeof(gf__pclaim);
    stride = (stride + GF_CACHELINE - 1) & ~(uint64_t)(GF_CACHELINE - 1);
    rc = gf_obj_new(a, GF_OBJ_POOL, sizeof(gf__pshared) + stride * maxw, &p->shoff);
    if (rc < 0) goto fail;
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
    if (rc < 0) goto fail;
    {
        size_t im = gf_ring_inline_max(a, p->sh->results);
        p->rxcap = im * 4 > ((size_t)64 << 10) ? im * 4 : ((size_t)64 << 10);
    }
    p->rxbuf = malloc(p->rxcap);
    p->drainbuf = malloc(p->rxcap);
    if (!p->rxbuf || !p->drainbuf) {
        rc = GF_ENOMEM;
        goto fail;
    }
    gf__lock(p);
    for (uint32_t i = 0; i < p->target; i++) p->w[i].state = W_NEED_SPAWN;
    p->need_spawn = 1;
    p->last_sup = gf_now_ns();
    gf__unlock_and_spawn(p);
    gf__lock(p);
    rc = gf__nlive(p) == p->target ? 0 : (p->spawn_err ? p->spawn_err : GF_EAGAIN);
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

/* Submit one task. Result 0 and *id. Fails: GF_EINVAL, GF_EPIPE, GF_ENOMEM, GF_ETIMEDOUT,
 * GF_EINTR, or a ring error from dispatching (GF_ENOSPC, GF_EMSGSIZE). */
int gf_pool_submit(gf_pool *p, const struct iovec *iov, int iovcnt, int64_t timeout_ns,
                   uint32_t retries, uint64_t *id, int64_t deadline) {
    if (!p || !id || iovcnt < 0 || (iovcnt > 0 && !iov) || timeout_ns < 0) return GF_EINVAL;
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
        int rc;
        if (p->closing) {
            rc = GF_EPIPE;
        } else {
            if (force) p->force_sup = 1;
            gf__supervise_maybe(p, gf_now_ns());
            if (!TAILQ_EMPTY(&p->backlog)) gf__flush_backlog(p);
            rc = TAILQ_EMPTY(&p->backlog) ? gf__slab_add(p, e) : GF_ETIMEDOUT;
            if (rc == 0) {
                e->id = *id ? *id : p->next_id;
                p->outstanding++;
                if (timeout_ns > 0) p->ntimed++;
                rc = gf__place(p, e);
                if (rc == 0) {
                    if (!*id) p->next_id++;
                    *id = e->id;
                } else { /* undo */
                    p->tab[e->idx] = NULL;
                    p->freeidx[p->nfree++] = e->idx;
                    p->outstanding--;
                    if (timeout_ns > 0) p->ntimed--;
                }
            }
        }
        int64_t next_to = p->next_timeout;
        gf__unlock_and_spawn(p);
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

/* Release what the previous gf_pool_next_results handed out. Under the lock. */
static void gf__release_given(gf_pool *p) {
    while (p->given) {
        gf__res *r = p->given;
        p->given = r->next;
        if (r->block) gf_free(p->a, r->block);
        free(r);
    }
    for (size_t k = 0; k < p->ngiven_blk; k++) gf_msg_release(p->a, &p->given_blk[k]);
    p->ngiven_blk = 0;
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
        if (first) gf__release_given(p);
        first = 0;
        int64_t now = gf_now_ns();
        if (force) p->force_sup = 1;
        gf__supervise_maybe(p, now);
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
            if (p->force_sup) gf__supervise(p, now);
        }
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
        int64_t next_to = p->next_timeout;
        int idle = p->outstanding == 0;
        p->need_nop = 0; /* we are the consumer: no need to wake ourselves */
        gf__unlock_and_spawn(p);
        if (n > 0) return (int)n;
        if (rc < 0) return rc;
        if (done) return GF_EPIPE;
        now = gf_now_ns();
        if (deadline <= now) return GF_ETIMEDOUT;
        int64_t wake = now + (idle ? 10 * p->opt.supervise_ns : p->opt.supervise_ns);
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
        gf__resolve_bare(p, e, GF_TASK_CANCELLED, -1);
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
        gf__resolve_bare(p, e, GF_TASK_CANCELLED, -1);
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
    gf__drain(p);
    if (p->tab[idx] != e) {
        rc = GF_ESRCH;
        goto out;
    }
    if (!w->killed) {
        gf__kill_for(p, i, e, GF_TASK_CANCELLED);
        p->force_sup = 1;
    }
out:
    gf__unlock_and_spawn(p);
    return rc;
}

/* Cancel a task. Result 0 (was queued), 1 (running: its worker is killed). Fails: GF_ESRCH. */
int gf_pool_cancel(gf_pool *p, uint64_t id) { return gf__cancel(p, id, true); }

/* Cancel only if not started (ProcessPoolExecutor.shutdown(cancel_futures=True)). Result 0
 * (was queued), 1 (running: left alone). Fails: GF_ESRCH. Never kills a worker. */
int gf_pool_cancel_queued(gf_pool *p, uint64_t id) { return gf__cancel(p, id, false); }

/* ---- end p2-exec ---- */

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
        gf__supervise(p, gf_now_ns());
    }
    gf__unlock_and_spawn(p);
    return rc;
}

/* No more submits; workers exit when the queued work is done. */
void gf_pool_close(gf_pool *p) {
    if (!p) return;
    gf__lock(p);
    p->closing = 1;
    /* relaxed: informational for workers; the mailbox close is what stops them. */
    atomic_store_explicit(GF_A32(&p->sh->closing), 1, memory_order_relaxed);
    gf__supervise(p, gf_now_ns());
    p->need_nop = 1; /* a consumer waiting for results may now get GF_EPIPE */
    gf__unlock_and_spawn(p);
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
        gf__resolve_bare(p, e, GF_TASK_CANCELLED, -1);
    }
    p->need_nop = 1;
    gf__unlock_and_spawn(p);
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
        gf__supervise(p, gf_now_ns());
        gf__drain(p); /* results nobody takes must not block the workers */
        nfds_t n = 0;
        for (uint32_t i = 0; i < p->opt.max_workers; i++) {
            if (p->w[i].state != W_LIVE) continue;
            pf[n].fd = p->w[i].proc.pidfd;
            pf[n].events = POLLIN;
            pf[n].revents = 0;
            n++;
        }
        int busy = gf__nlive(p) > 0 || !TAILQ_EMPTY(&p->backlog);
        int retired = p->nret > 0;
        int64_t next_to = p->next_timeout;
        gf__unlock_and_spawn(p);
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
        gf__task *e;
        while ((e = TAILQ_FIRST(&w->tasks)) != NULL) {
            TAILQ_REMOVE(&w->tasks, e, link);
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
        free(e);
    }
    gf__release_given(p);
    p->given = p->lq_head;
    p->lq_head = p->lq_tail = NULL;
    gf__release_given(p);
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
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Worker side                                                                                 */
/* ------------------------------------------------------------------------------------------ */

#define GF__WORKER_SLICE_NS 100000000 /* check that the parent lives every 100 ms */

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
        int64_t slice = gf_deadline_after(GF__WORKER_SLICE_NS);
        int rc = gf_ring_get(w->a, w->mailbox, &w->cur, w->rx, w->rxcap,
                             slice < deadline ? slice : deadline);
        if (rc == GF_ETIMEDOUT) {
            if (slice >= deadline) return rc;
            if (!gf__ident_alive(w->a, w->sh->parent_ident)) return GF_EPIPE;
            continue;
        }
        if (rc < 0) return rc;
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
static int gf__default_spawn(void *ctx, gf_pool *p, uint32_t index, gf_proc *out) {
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
