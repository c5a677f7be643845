/*
 * pool_internal.h -- the pool's shared layout (the GF_OBJ_POOL object: header, worker slots,
 * claim words, mailbox and result record headers) and the parent's process-local state
 * (struct gf_pool), shared by pool.c (life cycle), pool_dispatch.c (submit, placement,
 * cancel), pool_results.c (the result ring and the parent's result queue), pool_supervise.c
 * (deaths, timeouts, spawning) and pool_worker.c (the worker side). Not installed.
 *
 * A claim word is ((seq + 1) << 2) | state. The parent writes PENDING before it puts the task
 * record in the mailbox; the worker CASes PENDING -> STARTED just before it runs the task; the
 * parent CASes PENDING -> CANCELLED (queued cancel) or PENDING -> REVOKED (before it kills a
 * worker, so that the worker cannot start another task between the decision and the kill).
 * Whoever wins the CAS decides.
 */
#ifndef GF_POOL_INTERNAL_H
#define GF_POOL_INTERNAL_H

#include "internal.h"

#include <poll.h>
#include <pthread.h>
#include <sys/queue.h>

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
    int64_t trimmed_at; /* the last gf__pool_trim_rings that trimmed (gf_now_ns) */
    int64_t sup_wait;  /* gf_pool_next_results' current sleep between passes (backs off) */
    int force_sup, need_spawn, need_nop;
    int kicked; /* gf_pool_wake: the consumer returns GF_ETIMEDOUT at its next empty look */
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

#define GF__CHECK_NS 1000000 /* supervise at most every 1 ms on the fast paths */

/* ------------------------------------------------------------------------------------------ */
/* Shared between the pool's files (all called with p->mu held unless said otherwise)         */
/* ------------------------------------------------------------------------------------------ */

/* pool_dispatch.c: give the task a slab index. Result 0. Fails: GF_ENOMEM. */
int gf__pool_slab_add(gf_pool *p, gf__task *e);
/* pool_dispatch.c: forget a resolved task (slab slot, counters, memory). */
void gf__pool_task_free(gf_pool *p, gf__task *e);
/* pool_dispatch.c: pass the payload of a task no worker started to opt.drop. */
void gf__pool_task_drop(gf_pool *p, gf__task *e);
/* pool_dispatch.c: resolve a task without payload (LOST, TIMEOUT, CANCELLED): queue its
 * result, free it; worker < 0 (no worker started it): its payload is dropped first. */
void gf__pool_resolve_bare(gf_pool *p, gf__task *e, int status, int worker);
/* pool_dispatch.c: dispatch e to the least loaded worker with room. Result 0. Fails:
 * GF_ETIMEDOUT (no room anywhere), or a ring error. */
int gf__pool_place(gf_pool *p, gf__task *e);
/* pool_dispatch.c: dispatch as much of the backlog as fits. */
void gf__pool_flush_backlog(gf_pool *p);

/* pool_results.c: push a result on the parent's queue (`data` copied unless `block` holds
 * it). Result 0. Fails: GF_ENOMEM (the result is lost). */
int gf__pool_lq_push(gf_pool *p, uint64_t id, int status, int worker, const void *data,
                     size_t len, gf_off block, uint64_t elapsed_ns);
/* pool_results.c: move every result now in the ring to the parent's queue. */
void gf__pool_drain(gf_pool *p);
/* pool_results.c: release what the previous gf_pool_next_results handed out. */
void gf__pool_release_given(gf_pool *p);

/* pool_supervise.c: kill worker i on behalf of task e (GF_TASK_TIMEOUT / GF_TASK_CANCELLED),
 * revoking the tasks queued behind e first. */
void gf__pool_kill_for(gf_pool *p, uint32_t i, gf__task *e, int reason);
/* pool_supervise.c: one supervision pass (reap, deaths, timeouts, replacements, backlog,
 * closing mailboxes). */
void gf__pool_supervise(gf_pool *p, int64_t now);
/* pool_supervise.c: called with the lock held, releases it: wake a consumer for queued
 * results, then start the workers supervision asked for (outside the lock). */
void gf__pool_unlock_and_spawn(gf_pool *p);
/* pool_supervise.c: number of workers alive or starting. */
uint32_t gf__pool_nlive(gf_pool *p);

/* pool_worker.c: the default spawn (fork, serve with the C handler, _exit). Result 0 in the
 * parent. Fails: gf_proc_fork's errors. */
int gf__pool_default_spawn(void *ctx, gf_pool *p, uint32_t index, gf_proc *out);

/* Supervise at most every GF__CHECK_NS on the fast paths. */
static inline void gf__pool_supervise_maybe(gf_pool *p, int64_t now) {
    if (p->force_sup || now - p->last_sup >= GF__CHECK_NS) gf__pool_supervise(p, now);
}

#endif /* GF_POOL_INTERNAL_H */
