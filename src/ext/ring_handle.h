/*
 * ring_handle.h -- the Ring handle (_core.Ring: the engine of gilfree.Queue / SimpleQueue /
 * JoinableQueue and of both ends of a gilfree.Pipe) as shared by its files:
 *   chan.c         the channel block (pipe-end holders, JoinableQueue's task counter);
 *   ring_handle.c  the handle's plumbing: references, the live-handle list and fork hooks,
 *                  errors, waits with peer checks, the receive buffer, put / get of one object;
 *   connection.c   the Connection methods (send/recv, *_bytes, poll) and _pipe();
 *   queue.c        the Queue methods (put/get, *_many, task_done/join, ...) and the type.
 * Direction: queue.c -> connection.c -> ring_handle.c -> chan.c (and queue.c -> the others).
 *
 * References. A handle holds one arena reference on each ring and on its channel block.
 * Pickling a handle takes references for the receiver (rebuilt from offsets, validated with
 * gf_obj_check). A fork gives the child its own references (the at-fork hooks walk the list of
 * live handles), so the parent may drop its handle while a child uses the queue.
 *
 * The channel block (a GF_OBJ_RAW object, `gf_chan`) holds what a ring does not:
 *   - JoinableQueue's unfinished-task counter and the futex word join() sleeps on;
 *   - for pipes, the holders of each end: {process ident, handle count} words plus a count of
 *     handles in transit (pickled, not yet rebuilt; or forked, not yet registered). A receiver
 *     whose peer end has no live holder left gets EOFError instead of waiting forever: a
 *     normal close of the last handle closes the rings (immediate wake-up); a SIGKILLed holder
 *     is noticed by the waiter, which re-checks the holders' life locks every GF_SLICE_NS.
 */
#ifndef GF_RING_HANDLE_H
#define GF_RING_HANDLE_H

#include "transport.h"

#include "../core/internal.h"

/* ------------------------------------------------------------------ the channel block (chan.c) */

#define CHAN_MAGIC 0x4e414843u /* "CHAN" */
#define CHAN_HOLDERS 30

typedef struct gf_chan_end {
    uint64_t pending;               /* handles in transit (atomic) */
    uint64_t slot[CHAN_HOLDERS];    /* ident << 32 | count; 0 = free (atomic) */
    uint64_t pad;
} gf_chan_end;

typedef struct gf_chan {
    gf_obj obj;
    uint32_t magic;
    uint32_t flags;
    uint32_t unfinished; /* JoinableQueue: tasks put and not yet task_done()'d (atomic) */
    uint32_t tasks_seq;  /* futex word: bumped whenever `unfinished` drops to 0 */
    uint64_t pad[5];
    gf_chan_end ends[2];
} gf_chan;

static inline gf_chan *gf__chan_of(gf_state *st, gf_off off) {
    return (gf_chan *)((char *)gf_arena_base(st->arena) + off);
}

/* Create a channel block (refs = 1). Result 0 or a core error. */
int gf__chan_create(gf_state *st, gf_off *out);
/* Validate a channel offset received from another process. Result 0 or GF_EBADMSG. */
int gf__chan_check(gf_state *st, gf_off off);
/* Count one more / one less handle of pipe end `end` held by this process. */
void gf__chan_holders_add(gf_state *st, gf_chan *c, int end);
void gf__chan_holders_remove(gf_state *st, gf_chan *c, int end);
/* 1 if some live process holds (or is about to hold) a handle of `end`, else 0. */
int gf__chan_holders_alive(gf_state *st, gf_chan *c, int end);
/* Add d to the count of handles of `end` in transit (pickled or forked, not yet adopted). */
void gf__chan_pending_add(gf_chan *c, int end, int64_t d);
/* JoinableQueue: n tasks less (wakes join() at zero). Result 0, or -1 if fewer were left. */
int gf__chan_tasks_done(gf_chan *c, uint32_t n);
/* JoinableQueue: n tasks more. */
void gf__chan_tasks_add(gf_chan *c, uint32_t n);

/* ------------------------------------------------------------------ the handle */

enum { MODE_QUEUE = 0, MODE_SIMPLE = 1, MODE_CONN = 2 };

typedef struct RingObject {
    PyObject_HEAD
    gf_off tx, rx;  /* rings (0 = none); a queue has tx == rx */
    gf_off chan;    /* gf_chan, or 0 */
    int end;        /* pipe end (0/1) whose holder this handle is; -1 = not a pipe end */
    int mode;       /* MODE_* (error messages and EOF semantics) */
    int closed;
    int noread;     /* recv_bytes hit a too-long message on a duplex end (stdlib semantics) */
    int busy;       /* the receive buffer is in use by a thread */
    int inflight;   /* blocking calls running on this handle with the GIL released */
    int deferred;   /* close() came while calls were in flight: the last one releases */
    int tasks;      /* JoinableQueue: count tasks in chan */
    uint64_t maxsize;
    pid_t owner;    /* the process whose references this handle holds */
    int forking;    /* the last before-fork hook took references for the child (1); the
                     * child recorded them inside fork() (2) */
    char *buf;
    size_t bufcap;
    PyObject *pending_exc; /* an error from a get_many batch, raised by the next get */
    struct RingObject *prev, *next; /* live handles (for fork) */
} RingObject;

/* ------------------------------------------------------------------ ring_handle.c */

/* A new handle of type tp (registered in the live list) owning no references yet. NULL with
 * an exception on failure. */
RingObject *gf__ring_alloc(PyTypeObject *tp);
/* Take the handle off the live list (dealloc). */
void gf__ring_live_unlink(RingObject *r);
/* Drop this handle's references (and, for a pipe end, its holder count; if it was the last
 * holder of its end, close the rings so that the peer sees EOF / BrokenPipe at once). Deferred
 * to the last blocking call in flight, if any. */
void gf__ring_release(gf_state *st, RingObject *self);
/* Drop the references now (see gf__ring_release). */
void gf__ring_drop(gf_state *st, RingObject *self);
/* Record the handle's references (tx, rx, chan) in this process's reference ledger, so that
 * the survivors drop them if it dies (gf_ref_hold). Never fails. */
void gf__ring_hold_refs(gf_state *st, RingObject *self);

/* A blocking call on this handle with the GIL released. close() from another thread meanwhile
 * only marks the handle; the references are dropped when the last such call returns, so a
 * ring is never freed under a thread that waits on it. */
#define RING_BLOCKING(self, st, rc, expr)                                                     \
    do {                                                                                       \
        (self)->inflight++;                                                                    \
        GF_BLOCKING(rc, expr);                                                                 \
        if (--(self)->inflight == 0 && (self)->deferred) gf__ring_drop(st, self);                  \
    } while (0)

/* Internal code for "this handle was closed by another thread while we waited". */
#define GF__HANDLE_CLOSED GF_ECANCELED

/* The stdlib's error for a closed handle. Result: always NULL. */
PyObject *gf__ring_closed_error(RingObject *self);
/* Usable for receiving / sending? Result 0, or -1 with the stdlib's exception. */
int gf__ring_check_rx(RingObject *self);
int gf__ring_check_tx(RingObject *self);
/* Is the peer of this pipe end gone (no live holder of the other end)? */
int gf__ring_peer_gone(gf_state *st, RingObject *self);

/* The deadline of the next wait slice: every GF_SLICE_NS a waiter re-checks that its handle
 * was not closed by another thread and (pipe ends) that its peer is alive. */
static inline int64_t gf__ring_slice_deadline(RingObject *self, int64_t deadline, int *sliced) {
    *sliced = 0;
    (void)self;
    if (deadline == 0) return deadline;
    int64_t s = gf_now_ns() + GF_SLICE_NS;
    if (s < deadline) {
        *sliced = 1;
        return s;
    }
    return deadline;
}

/* Put one frame (gathered). Result >= 0, or a core error (GF_EINTR with an exception set;
 * GF_EPIPE also when the peer is gone). */
int gf__ring_put_frame(gf_state *st, RingObject *self, gf_enc *e, int64_t deadline);
/* Take up to max messages from rx. Result >= 1, or a core error; GF_EPIPE when the ring is
 * closed and empty or (pipe ends) the peer is gone and nothing is left. */
int gf__ring_get_msgs(gf_state *st, RingObject *self, gf_msg *msgs, size_t max, char *buf,
                      size_t cap, int64_t deadline);
/* The receive buffer (the handle's own, or a temporary one while another thread uses it).
 * Result: the buffer (*tmp set if it must be freed), or NULL with MemoryError. */
char *gf__ring_rbuf_acquire(gf_state *st, RingObject *self, size_t *cap, int *tmp);
void gf__ring_rbuf_release(RingObject *self, char *b, int tmp);
/* Raise for a failed get / put (queue.Empty / queue.Full, EOFError, closed, ...). Result:
 * always NULL. */
PyObject *gf__ring_get_error(gf_state *st, RingObject *self, int rc);
PyObject *gf__ring_put_error(gf_state *st, RingObject *self, int rc);
/* Raise the error a get_many batch left for the next get. Result 0 (none), or -1. */
int gf__ring_pop_pending(RingObject *self);
/* Shared by get() and recv(): one message, decoded (raw_as: see gf_decode). New reference or
 * NULL with an exception set. */
PyObject *gf__ring_get_one(gf_state *st, RingObject *self, int64_t deadline, int raw_as);
/* Shared by put() and send(): encode obj and put it (counted as a task for a JoinableQueue).
 * Result: None, or NULL with an exception set. */
PyObject *gf__ring_put_obj(gf_state *st, RingObject *self, PyObject *obj, int64_t deadline);
/* Add the fork hooks and _ring_release_all, register them (at fork, before _exit) and fetch
 * queue.Empty / queue.Full. Called by gf__ring_register. Result 0 or -1. */
int gf__ring_handle_register(PyObject *m, gf_state *st);

/* ------------------------------------------------------------------ connection.c */

/* The Connection methods of the Ring type (in its method table, queue.c). */
PyObject *gf__conn_send(RingObject *self, PyObject *obj);
PyObject *gf__conn_recv(RingObject *self, PyObject *Py_UNUSED(a));
PyObject *gf__conn_send_bytes(RingObject *self, PyObject *args, PyObject *kw);
PyObject *gf__conn_recv_bytes(RingObject *self, PyObject *args, PyObject *kw);
PyObject *gf__conn_recv_bytes_into(RingObject *self, PyObject *args, PyObject *kw);
PyObject *gf__conn_poll(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames);

#endif /* GF_RING_HANDLE_H */
