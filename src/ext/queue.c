/*
 * queue.c -- _core.Ring: a handle to one or two shared-memory rings. It is the engine of
 * gilfree.Queue / SimpleQueue / JoinableQueue (one ring, both directions) and of the two
 * ends of a gilfree.Pipe (a Connection sends on `tx` and receives on `rx`).
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
#include "transport.h"

#include "../core/internal.h"

#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ the channel block */

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

enum { MODE_QUEUE = 0, MODE_SIMPLE = 1, MODE_CONN = 2 };

/* Process-wide (the extension is single-phase per interpreter; these are the stdlib's). */
static PyObject *Empty, *Full;

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
    char *buf;
    size_t bufcap;
    PyObject *pending_exc; /* an error from a get_many batch, raised by the next get */
    struct RingObject *prev, *next; /* live handles (for fork) */
} RingObject;

static RingObject *live_head;

static void live_link(RingObject *r) {
    r->prev = NULL;
    r->next = live_head;
    if (live_head) live_head->prev = r;
    live_head = r;
}

static void live_unlink(RingObject *r) {
    if (r->prev)
        r->prev->next = r->next;
    else if (live_head == r)
        live_head = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static inline gf_chan *chan_of(gf_state *st, gf_off off) {
    return (gf_chan *)((char *)gf_arena_base(st->arena) + off);
}

/* Create a channel block (refs = 1). Result 0 or a core error. */
static int chan_create(gf_state *st, gf_off *out) {
    int rc = gf_obj_new(st->arena, GF_OBJ_RAW, sizeof(gf_chan), out);
    if (rc < 0) return rc;
    gf_chan *c = chan_of(st, *out);
    memset((char *)c + sizeof(gf_obj), 0, sizeof *c - sizeof(gf_obj));
    c->magic = CHAN_MAGIC;
    return 0;
}

/* Validate a channel offset received from another process. Result 0 or GF_EBADMSG. */
static int chan_check(gf_state *st, gf_off off) {
    if (gf_obj_check(st->arena, off, GF_OBJ_RAW) < 0 ||
        gf_arena_check_block(st->arena, off, sizeof(gf_chan)) < 0)
        return GF_EBADMSG;
    return chan_of(st, off)->magic == CHAN_MAGIC ? 0 : GF_EBADMSG;
}

/* Holder words: all seq_cst -- rare operations (create, close, fork, pickling) whose
 * interleavings with the liveness check must be simple to reason about. */
#define HW_IDENT(w) ((uint32_t)((w) >> 32))
#define HW_COUNT(w) ((uint32_t)(w))

/* Count one more handle of `end` held by this process. If the table is full the handle is
 * counted as "in transit" forever (the end then never reads as abandoned: safe, not exact). */
static void holders_add(gf_state *st, gf_chan *c, int end) {
    gf_chan_end *e = &c->ends[end];
    uint32_t me = gf__self_ident(st->arena);
    for (int i = 0; i < CHAN_HOLDERS; i++) {
        uint64_t w = atomic_load_explicit(GF_A64(&e->slot[i]), memory_order_seq_cst);
        while (HW_IDENT(w) == me && HW_COUNT(w) > 0) {
            if (atomic_compare_exchange_weak_explicit(GF_A64(&e->slot[i]), &w, w + 1,
                                                      memory_order_seq_cst,
                                                      memory_order_seq_cst))
                return;
        }
    }
    for (int i = 0; i < CHAN_HOLDERS; i++) {
        uint64_t w = atomic_load_explicit(GF_A64(&e->slot[i]), memory_order_seq_cst);
        if (w == 0 || HW_COUNT(w) == 0 || !gf__ident_alive(st->arena, HW_IDENT(w))) {
            uint64_t nw = (uint64_t)me << 32 | 1u;
            if (atomic_compare_exchange_strong_explicit(GF_A64(&e->slot[i]), &w, nw,
                                                        memory_order_seq_cst,
                                                        memory_order_seq_cst))
                return;
        }
    }
    atomic_fetch_add_explicit(GF_A64(&e->pending), 1, memory_order_seq_cst);
}

/* Count one handle of `end` less for this process. */
static void holders_remove(gf_state *st, gf_chan *c, int end) {
    gf_chan_end *e = &c->ends[end];
    uint32_t me = gf__self_ident(st->arena);
    for (int i = 0; i < CHAN_HOLDERS; i++) {
        uint64_t w = atomic_load_explicit(GF_A64(&e->slot[i]), memory_order_seq_cst);
        while (HW_IDENT(w) == me && HW_COUNT(w) > 0) {
            uint64_t nw = HW_COUNT(w) == 1 ? 0 : w - 1;
            if (atomic_compare_exchange_weak_explicit(GF_A64(&e->slot[i]), &w, nw,
                                                      memory_order_seq_cst,
                                                      memory_order_seq_cst))
                return;
        }
    }
}

/* 1 if some live process holds (or is about to hold) a handle of `end`, else 0. */
static int holders_alive(gf_state *st, gf_chan *c, int end) {
    gf_chan_end *e = &c->ends[end];
    if (atomic_load_explicit(GF_A64(&e->pending), memory_order_seq_cst) > 0) return 1;
    for (int i = 0; i < CHAN_HOLDERS; i++) {
        uint64_t w = atomic_load_explicit(GF_A64(&e->slot[i]), memory_order_seq_cst);
        if (HW_COUNT(w) > 0 && gf__ident_alive(st->arena, HW_IDENT(w))) return 1;
    }
    return 0;
}

static void pending_add(gf_chan *c, int end, int64_t d) {
    /* seq_cst: see the holder words. */
    atomic_fetch_add_explicit(GF_A64(&c->ends[end].pending), (uint64_t)d, memory_order_seq_cst);
}

/* JoinableQueue: one task less; wakes join() at zero. Result 0, or -1 if already zero. */
static int tasks_done(gf_chan *c, uint32_t n) {
    uint32_t v = atomic_load_explicit(GF_A32(&c->unfinished), memory_order_seq_cst);
    do {
        if (v < n) return -1;
        /* seq_cst: ordered before the tasks_seq bump that join() compares in the kernel. */
    } while (!atomic_compare_exchange_weak_explicit(GF_A32(&c->unfinished), &v, v - n,
                                                    memory_order_seq_cst, memory_order_seq_cst));
    if (v == n) {
        atomic_fetch_add_explicit(GF_A32(&c->tasks_seq), 1, memory_order_seq_cst);
        gf__futex_wake(&c->tasks_seq, INT32_MAX);
    }
    return 0;
}

static void tasks_add(gf_chan *c, uint32_t n) {
    /* relaxed: the put that follows commits with a release store that the consumer acquires
     * before it can call task_done() for this item. */
    atomic_fetch_add_explicit(GF_A32(&c->unfinished), n, memory_order_relaxed);
}

/* ------------------------------------------------------------------ errors */

static PyObject *closed_error(RingObject *self) {
    if (self->mode == MODE_QUEUE)
        PyErr_Format(PyExc_ValueError, "Queue %R is closed", (PyObject *)self);
    else
        PyErr_SetString(PyExc_OSError, "handle is closed");
    return NULL;
}

/* Usable for receiving? Result 0, or -1 with the stdlib's exception. */
static int check_rx(RingObject *self) {
    if (self->closed) return closed_error(self), -1;
    if (!self->rx || self->noread) {
        PyErr_SetString(PyExc_OSError, "connection is write-only");
        return -1;
    }
    return 0;
}

static int check_tx(RingObject *self) {
    if (self->closed) return closed_error(self), -1;
    if (!self->tx) {
        PyErr_SetString(PyExc_OSError, "connection is read-only");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ waiting with peer checks */

static void ring_drop(gf_state *st, RingObject *self);

/* A blocking call on this handle with the GIL released. close() from another thread meanwhile
 * only marks the handle; the references are dropped when the last such call returns, so a
 * ring is never freed under a thread that waits on it. */
#define RING_BLOCKING(self, st, rc, expr)                                                     \
    do {                                                                                       \
        (self)->inflight++;                                                                    \
        GF_BLOCKING(rc, expr);                                                                 \
        if (--(self)->inflight == 0 && (self)->deferred) ring_drop(st, self);                  \
    } while (0)

/* Internal code for "this handle was closed by another thread while we waited". */
#define GF__HANDLE_CLOSED GF_ECANCELED

/* Is the peer of this pipe end gone (no live holder of the other end)? */
static int peer_gone(gf_state *st, RingObject *self) {
    if (!self->chan || self->end < 0) return 0;
    return !holders_alive(st, chan_of(st, self->chan), 1 - self->end);
}

/* The deadline of the next wait slice: every GF_SLICE_NS a waiter re-checks that its handle
 * was not closed by another thread and (pipe ends) that its peer is alive. */
static inline int64_t slice_deadline(RingObject *self, int64_t deadline, int *sliced) {
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
static int put_frame(gf_state *st, RingObject *self, gf_enc *e, int64_t deadline) {
    int rc, sliced;
    /* First without releasing the GIL: the common case (room in the ring) costs no switch. */
    rc = gf_ring_putv(st->arena, self->tx, e->iov, e->iovcnt, 0);
    if (rc != GF_ETIMEDOUT || deadline == 0) return rc;
    for (;;) {
        if (self->closed) return GF__HANDLE_CLOSED;
        int64_t d = slice_deadline(self, deadline, &sliced);
        RING_BLOCKING(self, st, rc, gf_ring_putv(st->arena, self->tx, e->iov, e->iovcnt, d));
        if (rc < 0 && rc != GF_EINTR && self->closed) return GF__HANDLE_CLOSED;
        if (rc == GF_ETIMEDOUT && sliced) {
            if (peer_gone(st, self)) return GF_EPIPE;
            continue;
        }
        return rc;
    }
}

/* Take up to max messages from rx. Result >= 1, or a core error; GF_EPIPE when the ring is
 * closed and empty or (pipe ends) the peer is gone and nothing is left. */
static int get_msgs(gf_state *st, RingObject *self, gf_msg *msgs, size_t max, char *buf,
                    size_t cap, int64_t deadline) {
    int rc, sliced;
    /* First without releasing the GIL: the common case (a message waiting) costs no switch. */
    rc = gf_ring_get_many(st->arena, self->rx, msgs, max, buf, cap, 0);
    if (rc != GF_ETIMEDOUT) return rc;
    if (deadline == 0) return (self->end >= 0 && peer_gone(st, self)) ? GF_EPIPE : rc;
    for (;;) {
        if (self->closed) return GF__HANDLE_CLOSED;
        int64_t d = slice_deadline(self, deadline, &sliced);
        RING_BLOCKING(self, st, rc, gf_ring_get_many(st->arena, self->rx, msgs, max, buf, cap, d));
        if (rc < 0 && rc != GF_EINTR && self->closed) return GF__HANDLE_CLOSED;
        if (rc == GF_ETIMEDOUT && sliced) {
            if (peer_gone(st, self)) {
                rc = gf_ring_get_many(st->arena, self->rx, msgs, max, buf, cap, 0);
                return rc == GF_ETIMEDOUT ? GF_EPIPE : rc;
            }
            continue;
        }
        return rc;
    }
}

/* The receive buffer: the handle's own (allocated once), or a temporary one when another
 * thread of this process is using it. Result: the buffer (*tmp set if it must be freed), or
 * NULL with MemoryError. */
static char *rbuf_acquire(gf_state *st, RingObject *self, size_t *cap, int *tmp) {
    size_t need = gf_ring_inline_max(st->arena, self->rx) * 2;
    if (need < 4096) need = 4096;
    *tmp = 0;
    *cap = need;
    if (!self->busy) {
        if (!self->buf || self->bufcap < need) {
            PyMem_RawFree(self->buf);
            self->buf = PyMem_RawMalloc(need);
            self->bufcap = self->buf ? need : 0;
            if (!self->buf) return PyErr_NoMemory(), NULL;
        }
        self->busy = 1;
        return self->buf;
    }
    char *b = PyMem_RawMalloc(need);
    if (!b) return PyErr_NoMemory(), NULL;
    *tmp = 1;
    return b;
}

static void rbuf_release(RingObject *self, char *b, int tmp) {
    if (tmp)
        PyMem_RawFree(b);
    else
        self->busy = 0;
}

/* Raise for a failed get. */
static PyObject *get_error(gf_state *st, RingObject *self, int rc) {
    if (rc == GF_EINTR && PyErr_Occurred()) return NULL;
    if (rc == GF__HANDLE_CLOSED) return closed_error(self);
    if (self->mode == MODE_QUEUE && rc == GF_ETIMEDOUT) {
        PyErr_SetNone(Empty);
        return NULL;
    }
    if (rc == GF_EPIPE && self->mode != MODE_QUEUE) {
        PyErr_SetNone(PyExc_EOFError);
        return NULL;
    }
    return gf_raise(st, rc, "get");
}

static PyObject *put_error(gf_state *st, RingObject *self, int rc) {
    if (rc == GF_EINTR && PyErr_Occurred()) return NULL;
    if (rc == GF__HANDLE_CLOSED) return closed_error(self);
    if (self->mode == MODE_QUEUE && rc == GF_ETIMEDOUT) {
        PyErr_SetNone(Full);
        return NULL;
    }
    return gf_raise(st, rc, "put");
}

static int pop_pending(RingObject *self) {
    if (!self->pending_exc) return 0;
    PyObject *e = self->pending_exc;
    self->pending_exc = NULL;
    PyErr_SetObject((PyObject *)Py_TYPE(e), e);
    Py_DECREF(e);
    return -1;
}

/* ------------------------------------------------------------------ construction */

/* A new handle of type tp owning the given references (no incref here). */
static RingObject *ring_alloc(PyTypeObject *tp) {
    RingObject *r = (RingObject *)tp->tp_alloc(tp, 0);
    if (!r) return NULL;
    r->end = -1;
    r->owner = getpid();
    live_link(r);
    return r;
}

/* Drop this handle's references (and, for a pipe end, its holder count; if it was the last
 * holder of its end, close the rings so that the peer sees EOF / BrokenPipe at once). */
static void ring_release(gf_state *st, RingObject *self) {
    if (self->closed) return;
    self->closed = 1;
    if (self->inflight > 0) {
        self->deferred = 1; /* the last blocking call in flight calls ring_drop */
        return;
    }
    ring_drop(st, self);
}

/* Drop the references (see ring_release). */
static void ring_drop(gf_state *st, RingObject *self) {
    self->deferred = 0;
    if (!st || self->owner != getpid()) return; /* inherited without our at-fork hooks */
    gf_arena *a = st->arena;
    if (self->chan) {
        gf_chan *c = chan_of(st, self->chan);
        if (self->end >= 0) {
            holders_remove(st, c, self->end);
            if (!holders_alive(st, c, self->end)) {
                if (self->tx) gf_ring_close(a, self->tx);
                if (self->rx) gf_ring_close(a, self->rx);
            }
        }
    }
    if (self->tx) gf_obj_decref(a, self->tx);
    if (self->rx && self->rx != self->tx) gf_obj_decref(a, self->rx);
    if (self->chan) gf_obj_decref(a, self->chan);
}

/* Ring(maxsize=0, *, capacity=0, eventfd=False, tasks=False, mode=0) */
static PyObject *ring_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"maxsize", "capacity", "eventfd", "tasks", "mode", NULL};
    long long maxsize = 0;
    Py_ssize_t capacity = 0;
    int efd = 0, tasks = 0, mode = MODE_QUEUE;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|L$nppi", kwlist, &maxsize, &capacity, &efd,
                                     &tasks, &mode))
        return NULL;
    gf_state *st = gf_state_of_type(tp);
    if (!st) return NULL;
    if (gf_ensure_attached(st) < 0) return NULL;
    if (capacity < 0 || mode < 0 || mode > MODE_CONN) {
        PyErr_SetString(PyExc_ValueError, "invalid capacity or mode");
        return NULL;
    }
    if (capacity == 0) capacity = 512 << 10;
    if (maxsize < 0) maxsize = 0;
    gf_off ring, chan = 0;
    int rc = gf_ring_create(st->arena, (size_t)capacity, (uint64_t)maxsize,
                            efd ? GF_RING_EVENTFD : 0, &ring);
    if (rc < 0) return gf_raise(st, rc, "cannot create a queue");
    if (tasks && (rc = chan_create(st, &chan)) < 0) {
        gf_obj_decref(st->arena, ring);
        return gf_raise(st, rc, "cannot create a queue");
    }
    RingObject *r = ring_alloc(tp);
    if (!r) {
        gf_obj_decref(st->arena, ring);
        if (chan) gf_obj_decref(st->arena, chan);
        return NULL;
    }
    r->tx = r->rx = ring;
    r->chan = chan;
    r->tasks = tasks;
    r->mode = mode;
    r->maxsize = (uint64_t)maxsize;
    return (PyObject *)r;
}

/* _pipe(cls, duplex=True, capacity=0) -> (end0, end1): end0 receives (simplex) or both. */
static PyObject *mod_pipe(PyObject *m, PyObject *args) {
    PyTypeObject *cls;
    int duplex = 1;
    Py_ssize_t capacity = 0;
    if (!PyArg_ParseTuple(args, "O!|pn", &PyType_Type, &cls, &duplex, &capacity)) return NULL;
    gf_state *st = PyModule_GetState(m);
    if (!PyType_IsSubtype(cls, st->Queue_type)) {
        PyErr_SetString(PyExc_TypeError, "_pipe: cls must be a Ring subclass");
        return NULL;
    }
    if (gf_ensure_attached(st) < 0) return NULL;
    if (capacity <= 0) capacity = 256 << 10;
    gf_arena *a = st->arena;
    gf_off r1 = 0, r2 = 0, chan = 0;
    int rc = gf_ring_create(a, (size_t)capacity, 0, GF_RING_EVENTFD, &r1);
    if (rc == 0 && duplex) rc = gf_ring_create(a, (size_t)capacity, 0, GF_RING_EVENTFD, &r2);
    if (rc == 0) rc = chan_create(st, &chan);
    if (rc < 0) {
        if (r1) gf_obj_decref(a, r1);
        if (r2) gf_obj_decref(a, r2);
        return gf_raise(st, rc, "cannot create a pipe");
    }
    RingObject *c0 = ring_alloc(cls), *c1 = c0 ? ring_alloc(cls) : NULL;
    if (!c1) {
        Py_XDECREF(c0); /* closed flag is 0 but refs are not its own yet: mark closed */
        gf_obj_decref(a, r1);
        if (r2) gf_obj_decref(a, r2);
        gf_obj_decref(a, chan);
        return NULL;
    }
    /* Each handle owns one reference of every ring it uses and of the channel: the objects
     * were created with refs = 1, one more each for the second handle. */
    gf_obj_incref(a, chan);
    gf_obj_incref(a, r1);
    if (duplex) {
        gf_obj_incref(a, r2);
        c0->tx = r1;
        c0->rx = r2;
        c1->tx = r2;
        c1->rx = r1;
    } else {
        c0->rx = r1; /* the reader */
        c1->tx = r1; /* the writer */
    }
    c0->chan = c1->chan = chan;
    c0->end = 0;
    c1->end = 1;
    c0->mode = c1->mode = MODE_CONN;
    gf_chan *c = chan_of(st, chan);
    holders_add(st, c, 0);
    holders_add(st, c, 1);
    return Py_BuildValue("(NN)", c0, c1);
}

/* _ring_rebuild(cls, tx, rx, chan, end, mode, maxsize, tasks): a handle from a pickle. The
 * references it adopts were taken by __reduce__. */
static PyObject *mod_rebuild(PyObject *m, PyObject *args) {
    PyTypeObject *cls;
    unsigned long long tx, rx, chan, maxsize;
    int end, mode, tasks;
    if (!PyArg_ParseTuple(args, "O!KKKiiKp", &PyType_Type, &cls, &tx, &rx, &chan, &end, &mode,
                          &maxsize, &tasks))
        return NULL;
    gf_state *st = PyModule_GetState(m);
    if (!PyType_IsSubtype(cls, st->Queue_type)) {
        PyErr_SetString(PyExc_TypeError, "_ring_rebuild: cls must be a Ring subclass");
        return NULL;
    }
    if (gf_ensure_attached(st) < 0) return NULL;
    if ((tx && gf_obj_check(st->arena, tx, GF_OBJ_RING) < 0) ||
        (rx && gf_obj_check(st->arena, rx, GF_OBJ_RING) < 0) || (!tx && !rx) ||
        (chan && chan_check(st, chan) < 0) || end < -1 || end > 1 || (end >= 0 && !chan) ||
        mode < 0 || mode > MODE_CONN)
        return gf_raise(st, GF_EBADMSG, "cannot rebuild a queue or connection handle");
    RingObject *r = ring_alloc(cls);
    if (!r) return NULL; /* the references leak (bounded: one handle) */
    r->tx = tx;
    r->rx = rx;
    r->chan = chan;
    r->end = end;
    r->mode = mode;
    r->maxsize = maxsize;
    r->tasks = tasks && chan;
    if (end >= 0) {
        gf_chan *c = chan_of(st, chan);
        holders_add(st, c, end);
        pending_add(c, end, -1);
    }
    return (PyObject *)r;
}

/* _ring_unreduce(tx, rx, chan, end): give back what __reduce__ took (message never sent). */
static PyObject *mod_unreduce(PyObject *m, PyObject *args) {
    unsigned long long tx, rx, chan;
    int end;
    if (!PyArg_ParseTuple(args, "KKKi", &tx, &rx, &chan, &end)) return NULL;
    gf_state *st = PyModule_GetState(m);
    if (end >= 0 && chan && chan_check(st, chan) == 0) pending_add(chan_of(st, chan), end, -1);
    if (tx) gf_obj_decref(st->arena, tx);
    if (rx && rx != tx) gf_obj_decref(st->arena, rx);
    if (chan) gf_obj_decref(st->arena, chan);
    Py_RETURN_NONE;
}

static PyObject *ring_reduce(RingObject *self, PyObject *Py_UNUSED(a)) {
    gf_state *st = gf_state_of((PyObject *)self);
    if (self->closed) return closed_error(self);
    gf_arena *a = st->arena;
    if (self->tx) gf_obj_incref(a, self->tx);
    if (self->rx && self->rx != self->tx) gf_obj_incref(a, self->rx);
    if (self->chan) gf_obj_incref(a, self->chan);
    if (self->end >= 0) pending_add(chan_of(st, self->chan), self->end, 1);
    PyObject *mod = PyType_GetModuleByDef(Py_TYPE(self), &gf_module_def);
    PyObject *undo = mod ? PyObject_GetAttrString(mod, "_ring_unreduce") : NULL;
    PyObject *uargs = undo ? Py_BuildValue("(KKKi)", (unsigned long long)self->tx,
                                           (unsigned long long)self->rx,
                                           (unsigned long long)self->chan, self->end)
                           : NULL;
    PyObject *rebuild = uargs ? PyObject_GetAttrString(mod, "_ring_rebuild") : NULL;
    PyObject *res = NULL;
    if (rebuild && gf_transport_on_abort(undo, uargs) == 0)
        res = Py_BuildValue("(O(OKKKiiKi))", rebuild, (PyObject *)Py_TYPE(self),
                            (unsigned long long)self->tx, (unsigned long long)self->rx,
                            (unsigned long long)self->chan, self->end, self->mode,
                            (unsigned long long)self->maxsize, self->tasks);
    if (!res && undo && uargs) {
        PyObject *r = PyObject_Call(undo, uargs, NULL);
        Py_XDECREF(r);
    }
    Py_XDECREF(undo);
    Py_XDECREF(uargs);
    Py_XDECREF(rebuild);
    return res;
}

static void ring_dealloc(RingObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    live_unlink(self);
    gf_state *st = gf_state_of((PyObject *)self);
    ring_release(st, self);
    PyMem_RawFree(self->buf);
    Py_CLEAR(self->pending_exc);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int ring_traverse(RingObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->pending_exc);
    return 0;
}

/* ------------------------------------------------------------------ put / get */

static PyObject *ring_put(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames) {
    static const char *const names[] = {"obj", "block", "timeout"};
    PyObject *obj = NULL, *blockobj = Py_True, *timeout = Py_None;
    /* fast path: positional only */
    if (!kwnames && nargs >= 1 && nargs <= 3) {
        obj = args[0];
        if (nargs > 1) blockobj = args[1];
        if (nargs > 2) timeout = args[2];
    } else {
        PyObject *vals[3] = {NULL, Py_True, Py_None};
        for (Py_ssize_t i = 0; i < nargs && i < 3; i++) vals[i] = args[i];
        if (nargs > 3) {
            PyErr_SetString(PyExc_TypeError, "put() takes at most 3 arguments");
            return NULL;
        }
        Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
        for (Py_ssize_t k = 0; k < nk; k++) {
            const char *kn = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
            int found = 0;
            for (int j = 0; j < 3 && kn; j++)
                if (strcmp(kn, names[j]) == 0) {
                    vals[j] = args[nargs + k];
                    found = 1;
                }
            if (!found) {
                PyErr_Format(PyExc_TypeError, "put() got an unexpected keyword argument '%s'",
                             kn ? kn : "?");
                return NULL;
            }
        }
        if (!vals[0]) {
            PyErr_SetString(PyExc_TypeError, "put() missing required argument 'obj'");
            return NULL;
        }
        obj = vals[0];
        blockobj = vals[1];
        timeout = vals[2];
    }
    gf_state *st = gf_state_of((PyObject *)self);
    if (check_tx(self) < 0) return NULL;
    int block = PyObject_IsTrue(blockobj);
    if (block < 0) return NULL;
    int64_t deadline;
    if (gf_deadline_arg(timeout, block, &deadline) < 0) return NULL;
    gf_enc e;
    if (gf_encode(st, obj, 0, &e) < 0) return NULL;
    gf_chan *c = self->tasks ? chan_of(st, self->chan) : NULL;
    if (c) tasks_add(c, 1);
    int rc = put_frame(st, self, &e, deadline);
    gf_enc_done(st, &e, rc >= 0);
    if (rc < 0) {
        if (c) tasks_done(c, 1);
        return put_error(st, self, rc);
    }
    Py_RETURN_NONE;
}

/* Parse (block=True, timeout=None) from vectorcall args starting at index `first`. */
static int parse_block_timeout(const char *fn, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames, int first, PyObject **extra, int *block,
                               PyObject **timeout) {
    /* names: [extra], block, timeout */
    static const char *const bnames[] = {"block", "timeout"};
    PyObject *vals[3] = {NULL, Py_True, Py_None};
    int base = first; /* number of leading params before block */
    if (nargs > base + 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments", fn, base + 2);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) vals[i + (1 - base)] = args[i];
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nk; k++) {
        const char *kn = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
        if (!kn) return -1;
        int found = 0;
        for (int j = 0; j < 2; j++)
            if (strcmp(kn, bnames[j]) == 0) {
                vals[1 + j] = args[nargs + k];
                found = 1;
            }
        if (!found && base == 1 && extra && strcmp(kn, "max_items") == 0) {
            vals[0] = args[nargs + k];
            found = 1;
        }
        if (!found) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%s'", fn,
                         kn);
            return -1;
        }
    }
    if (extra) *extra = vals[0];
    int b = PyObject_IsTrue(vals[1]);
    if (b < 0) return -1;
    *block = b;
    *timeout = vals[2];
    return 0;
}

/* Shared by get() and recv(): one message, decoded. raw_as: see gf_decode. */
static PyObject *get_one(gf_state *st, RingObject *self, int64_t deadline, int raw_as) {
    if (pop_pending(self) < 0) return NULL;
    size_t cap;
    int tmp;
    char *buf = rbuf_acquire(st, self, &cap, &tmp);
    if (!buf) return NULL;
    gf_msg msg;
    int rc = get_msgs(st, self, &msg, 1, buf, cap, deadline);
    if (rc < 0) {
        rbuf_release(self, buf, tmp);
        return get_error(st, self, rc);
    }
    PyObject *res = gf_decode(st, &msg, raw_as);
    rbuf_release(self, buf, tmp);
    return res;
}

static PyObject *ring_get(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames) {
    int block = 1;
    PyObject *timeout = Py_None;
    if (nargs || kwnames) {
        if (parse_block_timeout("get", args, nargs, kwnames, 0, NULL, &block, &timeout) < 0)
            return NULL;
    }
    if (check_rx(self) < 0) return NULL;
    int64_t deadline;
    if (gf_deadline_arg(timeout, block, &deadline) < 0) return NULL;
    return get_one(gf_state_of((PyObject *)self), self, deadline, 1);
}

static PyObject *ring_put_nowait(RingObject *self, PyObject *obj) {
    PyObject *args[2] = {obj, Py_False};
    return ring_put(self, args, 2, NULL);
}

static PyObject *ring_get_nowait(RingObject *self, PyObject *Py_UNUSED(a)) {
    PyObject *args[1] = {Py_False};
    return ring_get(self, args, 1, NULL);
}

#define BATCH_MAX 256

/* get_many(max_items=1024, block=True, timeout=None) -> list (at least one item). */
static PyObject *ring_get_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    int block = 1;
    PyObject *timeout = Py_None, *maxobj = NULL;
    if (parse_block_timeout("get_many", args, nargs, kwnames, 1, &maxobj, &block, &timeout) <
        0)
        return NULL;
    Py_ssize_t maxn = 1024;
    if (maxobj && maxobj != Py_None) {
        maxn = PyLong_AsSsize_t(maxobj);
        if (maxn == -1 && PyErr_Occurred()) return NULL;
        if (maxn < 1) {
            PyErr_SetString(PyExc_ValueError, "max_items must be >= 1");
            return NULL;
        }
    }
    gf_state *st = gf_state_of((PyObject *)self);
    if (check_rx(self) < 0) return NULL;
    if (pop_pending(self) < 0) return NULL;
    int64_t deadline;
    if (gf_deadline_arg(timeout, block, &deadline) < 0) return NULL;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    size_t cap;
    int tmp;
    char *buf = rbuf_acquire(st, self, &cap, &tmp);
    if (!buf) {
        Py_DECREF(out);
        return NULL;
    }
    gf_msg msgs[BATCH_MAX];
    PyObject *first_exc = NULL;
    while (PyList_GET_SIZE(out) < maxn) {
        size_t want = (size_t)(maxn - PyList_GET_SIZE(out));
        if (want > BATCH_MAX) want = BATCH_MAX;
        /* Block only for the first batch; then take what is there. */
        int rc = get_msgs(st, self, msgs, want, buf, cap,
                          PyList_GET_SIZE(out) || first_exc ? 0 : deadline);
        if (rc < 0) {
            if (PyList_GET_SIZE(out) || first_exc) {
                if (rc == GF_EINTR) PyErr_Clear();
                break;
            }
            rbuf_release(self, buf, tmp);
            Py_DECREF(out);
            return get_error(st, self, rc);
        }
        for (int i = 0; i < rc; i++) {
            PyObject *o = gf_decode(st, &msgs[i], 1);
            if (!o) {
                if (!first_exc) {
                    PyObject *et, *ev, *tb;
                    PyErr_Fetch(&et, &ev, &tb);
                    PyErr_NormalizeException(&et, &ev, &tb);
                    if (tb) PyException_SetTraceback(ev, tb);
                    first_exc = ev;
                    Py_XDECREF(et);
                    Py_XDECREF(tb);
                } else {
                    PyErr_Clear();
                }
                continue;
            }
            int ar = PyList_Append(out, o);
            Py_DECREF(o);
            if (ar < 0) { /* MemoryError: drop the rest of this batch */
                for (int j = i + 1; j < rc; j++) gf_msg_discard(st, &msgs[j]);
                rbuf_release(self, buf, tmp);
                Py_DECREF(out);
                Py_XDECREF(first_exc);
                return NULL;
            }
        }
        if ((size_t)rc < want) break;
    }
    rbuf_release(self, buf, tmp);
    if (first_exc) {
        if (PyList_GET_SIZE(out) == 0) {
            Py_DECREF(out);
            PyErr_SetObject((PyObject *)Py_TYPE(first_exc), first_exc);
            Py_DECREF(first_exc);
            return NULL;
        }
        Py_XSETREF(self->pending_exc, first_exc);
    }
    return out;
}

/* put_many(iterable, block=True, timeout=None): all encoded first (a pickling error enqueues
 * nothing), then put in batches. A timeout part way raises queue.Full: the items before it
 * were put (and stay put), the rest were not. */
static PyObject *ring_put_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    int block = 1;
    PyObject *timeout = Py_None, *items = NULL;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "put_many() missing required argument 'items'");
        return NULL;
    }
    if (parse_block_timeout("put_many", args + 1, nargs - 1, kwnames, 0, NULL, &block,
                            &timeout) < 0)
        return NULL;
    items = args[0];
    gf_state *st = gf_state_of((PyObject *)self);
    if (check_tx(self) < 0) return NULL;
    int64_t deadline;
    if (gf_deadline_arg(timeout, block, &deadline) < 0) return NULL;
    PyObject *seq = PySequence_Fast(items, "put_many() expects an iterable");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n == 0) {
        Py_DECREF(seq);
        Py_RETURN_NONE;
    }
    gf_enc *encs = PyMem_Malloc(sizeof(gf_enc) * (size_t)n);
    if (!encs) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    Py_ssize_t ne = 0;
    for (; ne < n; ne++)
        if (gf_encode(st, PySequence_Fast_GET_ITEM(seq, ne), 0, &encs[ne]) < 0) break;
    if (ne < n) {
        for (Py_ssize_t i = 0; i < ne; i++) gf_enc_done(st, &encs[i], 0);
        PyMem_Free(encs);
        Py_DECREF(seq);
        return NULL;
    }
    gf_chan *c = self->tasks ? chan_of(st, self->chan) : NULL;
    if (c) tasks_add(c, (uint32_t)n);
    /* Batches of small frames flattened into one scratch buffer; large frames alone. */
    enum { SCRATCH = 64 << 10, SMALL = 4 << 10 };
    char *scratch = PyMem_Malloc(SCRATCH);
    struct iovec iov[BATCH_MAX];
    Py_ssize_t done = 0;
    int rc = scratch ? 0 : GF_ENOMEM;
    while (rc >= 0 && done < n) {
        if (encs[done].total > SMALL) {
            rc = put_frame(st, self, &encs[done], deadline);
            if (rc >= 0) {
                gf_enc_done(st, &encs[done], 1);
                done++;
            }
            continue;
        }
        size_t used = 0, k = 0;
        Py_ssize_t j = done;
        while (j < n && k < BATCH_MAX && encs[j].total <= SMALL && used + encs[j].total <= SCRATCH) {
            gf_enc_flatten(&encs[j], scratch + used);
            iov[k].iov_base = scratch + used;
            iov[k].iov_len = encs[j].total;
            used += (encs[j].total + 7) & ~(size_t)7;
            k++;
            j++;
        }
        size_t put = 0;
        while (put < k) {
            int r;
            if (self->closed) {
                rc = GF__HANDLE_CLOSED;
                break;
            }
            RING_BLOCKING(self, st, r, gf_ring_put_many(st->arena, self->tx, iov + put, k - put, deadline));
            if (r < 0) {
                rc = r;
                break;
            }
            for (int q = 0; q < r; q++) gf_enc_done(st, &encs[done + (Py_ssize_t)put + q], 1);
            put += (size_t)r;
        }
        done += (Py_ssize_t)put;
    }
    for (Py_ssize_t i = done; i < n; i++) gf_enc_done(st, &encs[i], 0);
    PyMem_Free(scratch);
    PyMem_Free(encs);
    Py_DECREF(seq);
    if (rc < 0) {
        if (c && done < n) tasks_done(c, (uint32_t)(n - done));
        if (rc == GF_ENOMEM && !scratch) return PyErr_NoMemory();
        return put_error(st, self, rc);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ connection methods */

static PyObject *ring_send(RingObject *self, PyObject *obj) {
    PyObject *args[1] = {obj};
    return ring_put(self, args, 1, NULL);
}

static PyObject *ring_recv(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (check_rx(self) < 0) return NULL;
    return get_one(gf_state_of((PyObject *)self), self, GF_FOREVER, 1);
}

/* send_bytes(buf, offset=0, size=None) */
static PyObject *ring_send_bytes(RingObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"buf", "offset", "size", NULL};
    Py_buffer v;
    Py_ssize_t offset = 0;
    PyObject *sizeobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|nO", kwlist, &v, &offset, &sizeobj))
        return NULL;
    PyObject *res = NULL;
    gf_state *st = gf_state_of((PyObject *)self);
    if (check_tx(self) < 0) goto out;
    Py_ssize_t n = v.len, size;
    if (offset < 0) {
        PyErr_SetString(PyExc_ValueError, "offset is negative");
        goto out;
    }
    if (n < offset) {
        PyErr_SetString(PyExc_ValueError, "buffer length < offset");
        goto out;
    }
    if (sizeobj == Py_None) {
        size = n - offset;
    } else {
        size = PyLong_AsSsize_t(sizeobj);
        if (size == -1 && PyErr_Occurred()) goto out;
        if (size < 0) {
            PyErr_SetString(PyExc_ValueError, "size is negative");
            goto out;
        }
        if (offset + size > n) {
            PyErr_SetString(PyExc_ValueError, "buffer length < offset + size");
            goto out;
        }
    }
    gf_enc e;
    memset(&e, 0, sizeof e);
    int rc = gf_frame_header(&e.hdr, GF_FRAME_RAW, (size_t)size, 0);
    if (rc < 0) {
        gf_raise(st, rc, "send_bytes");
        goto out;
    }
    e.iov[0].iov_base = &e.hdr;
    e.iov[0].iov_len = sizeof e.hdr;
    e.iov[1].iov_base = (char *)v.buf + offset;
    e.iov[1].iov_len = (size_t)size;
    e.iovcnt = 2;
    rc = put_frame(st, self, &e, GF_FOREVER);
    if (rc < 0)
        put_error(st, self, rc);
    else
        res = Py_NewRef(Py_None);
out:
    PyBuffer_Release(&v);
    return res;
}

/* Receive one message as bytes (a RAW frame's body; anything else re-pickled). Result: 0 and
 * *msg and *fr filled (the caller releases msg), 1 if it was not RAW and *obj holds the pickle
 * bytes, or -1 with an exception set. */
static int recv_raw(gf_state *st, RingObject *self, gf_msg *msg, gf_frame *fr, PyObject **obj,
                    char **buf, size_t *cap, int *tmp) {
    if (pop_pending(self) < 0) return -1;
    *buf = rbuf_acquire(st, self, cap, tmp);
    if (!*buf) return -1;
    int rc = get_msgs(st, self, msg, 1, *buf, *cap, GF_FOREVER);
    if (rc < 0) {
        rbuf_release(self, *buf, *tmp);
        get_error(st, self, rc);
        return -1;
    }
    if (gf_decode_frame(st, msg, fr) < 0) {
        gf_msg_release(st->arena, msg);
        rbuf_release(self, *buf, *tmp);
        return -1;
    }
    if (fr->kind == GF_FRAME_RAW) return 0;
    PyObject *o = gf_decode(st, msg, 1); /* releases msg */
    rbuf_release(self, *buf, *tmp);
    if (!o) return -1;
    *obj = gf_pickle_bytes(st, o);
    Py_DECREF(o);
    return *obj ? 1 : -1;
}

static PyObject *bad_length(RingObject *self) {
    if (self->tx)
        self->noread = 1;
    else
        ring_release(gf_state_of((PyObject *)self), self);
    PyErr_SetString(PyExc_OSError, "bad message length");
    return NULL;
}

/* recv_bytes(maxlength=None) */
static PyObject *ring_recv_bytes(RingObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"maxlength", NULL};
    PyObject *maxobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", kwlist, &maxobj)) return NULL;
    if (check_rx(self) < 0) return NULL;
    Py_ssize_t maxlen = -1;
    if (maxobj != Py_None) {
        maxlen = PyLong_AsSsize_t(maxobj);
        if (maxlen == -1 && PyErr_Occurred()) return NULL;
        if (maxlen < 0) {
            PyErr_SetString(PyExc_ValueError, "negative maxlength");
            return NULL;
        }
    }
    gf_state *st = gf_state_of((PyObject *)self);
    gf_msg msg;
    gf_frame fr;
    PyObject *obj = NULL;
    char *buf;
    size_t cap;
    int tmp;
    int r = recv_raw(st, self, &msg, &fr, &obj, &buf, &cap, &tmp);
    if (r < 0) return NULL;
    if (r == 1) {
        if (maxlen >= 0 && PyBytes_GET_SIZE(obj) > maxlen) {
            Py_DECREF(obj);
            return bad_length(self);
        }
        return obj;
    }
    PyObject *res = NULL;
    if (maxlen >= 0 && (Py_ssize_t)fr.body_len > maxlen)
        bad_length(self);
    else
        res = PyBytes_FromStringAndSize(fr.body, (Py_ssize_t)fr.body_len);
    gf_msg_release(st->arena, &msg);
    rbuf_release(self, buf, tmp);
    return res;
}

/* BufferTooShort(data): multiprocessing's, so that `except multiprocessing.BufferTooShort`
 * and gilfree's (the same class) both work. */
static void raise_too_short(const void *data, size_t len) {
    PyObject *mod = PyImport_ImportModule("multiprocessing");
    PyObject *cls = mod ? PyObject_GetAttrString(mod, "BufferTooShort") : NULL;
    Py_XDECREF(mod);
    if (!cls) return;
    PyObject *b = PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
    if (b) {
        PyErr_SetObject(cls, b);
        Py_DECREF(b);
    }
    Py_DECREF(cls);
}

/* recv_bytes_into(buf, offset=0) -> size */
static PyObject *ring_recv_bytes_into(RingObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"buf", "offset", NULL};
    Py_buffer v;
    Py_ssize_t offset = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "w*|n", kwlist, &v, &offset)) return NULL;
    PyObject *res = NULL;
    gf_state *st = gf_state_of((PyObject *)self);
    if (check_rx(self) < 0) goto out;
    if (offset < 0) {
        PyErr_SetString(PyExc_ValueError, "negative offset");
        goto out;
    }
    if (offset > v.len) {
        PyErr_SetString(PyExc_ValueError, "offset too large");
        goto out;
    }
    gf_msg msg;
    gf_frame fr;
    PyObject *obj = NULL;
    char *buf;
    size_t cap;
    int tmp;
    int r = recv_raw(st, self, &msg, &fr, &obj, &buf, &cap, &tmp);
    if (r < 0) goto out;
    const char *data = r == 1 ? PyBytes_AS_STRING(obj) : fr.body;
    size_t len = r == 1 ? (size_t)PyBytes_GET_SIZE(obj) : fr.body_len;
    if ((size_t)(v.len - offset) < len) {
        raise_too_short(data, len);
    } else {
        if (len >= (1 << 20)) {
            Py_BEGIN_ALLOW_THREADS memcpy((char *)v.buf + offset, data, len);
            Py_END_ALLOW_THREADS
        } else {
            memcpy((char *)v.buf + offset, data, len);
        }
        res = PyLong_FromSize_t(len);
    }
    if (r == 1) {
        Py_DECREF(obj);
    } else {
        gf_msg_release(st->arena, &msg);
        rbuf_release(self, buf, tmp);
    }
out:
    PyBuffer_Release(&v);
    return res;
}

/* poll(timeout=0.0) -> bool: a message is waiting, or the connection reached EOF. */
static PyObject *ring_poll(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames) {
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nk > 1 ||
        (nk && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout"))) {
        PyErr_SetString(PyExc_TypeError, "poll() takes at most 1 argument (timeout)");
        return NULL;
    }
    if (check_rx(self) < 0) return NULL;
    gf_state *st = gf_state_of((PyObject *)self);
    if (self->pending_exc || gf_ring_count(st->arena, self->rx) > 0) Py_RETURN_TRUE;
    PyObject *timeout = nargs + nk ? args[0] : NULL;
    int64_t deadline = 0;
    if (timeout == Py_None) {
        deadline = GF_FOREVER;
    } else if (timeout) {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred()) return NULL;
        if (t > 0) {
            if (gf_deadline_arg(timeout, 1, &deadline) < 0) return NULL;
        }
    }
    int rc, sliced;
    for (;;) {
        int64_t d = slice_deadline(self, deadline, &sliced);
        if (d == 0) {
            rc = gf_ring_wait_readable(st->arena, self->rx, 0);
        } else {
            if (self->closed) return closed_error(self);
            RING_BLOCKING(self, st, rc, gf_ring_wait_readable(st->arena, self->rx, d));
        }
        if (rc == GF_ETIMEDOUT && (sliced || d == 0)) {
            if (peer_gone(st, self)) Py_RETURN_TRUE;
            if (sliced) continue;
        }
        break;
    }
    if (rc == 0 || rc == GF_EPIPE) Py_RETURN_TRUE;
    if (rc == GF_ETIMEDOUT) Py_RETURN_FALSE;
    return gf_raise(st, rc, "poll");
}

/* ------------------------------------------------------------------ misc methods */

/* _put_raw(bytes): put bytes as they are, no frame header (tests: malformed messages). */
static PyObject *ring_put_raw(RingObject *self, PyObject *arg) {
    Py_buffer v;
    if (check_tx(self) < 0) return NULL;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) return NULL;
    gf_state *st = gf_state_of((PyObject *)self);
    int rc = gf_ring_put(st->arena, self->tx, v.buf, (size_t)v.len, 0);
    PyBuffer_Release(&v);
    if (rc < 0) return put_error(st, self, rc);
    Py_RETURN_NONE;
}

static PyObject *ring_close(RingObject *self, PyObject *Py_UNUSED(a)) {
    ring_release(gf_state_of((PyObject *)self), self);
    Py_RETURN_NONE;
}

static PyObject *ring_shutdown(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (self->closed) return closed_error(self);
    gf_state *st = gf_state_of((PyObject *)self);
    if (self->tx) gf_ring_close(st->arena, self->tx);
    if (self->rx) gf_ring_close(st->arena, self->rx);
    Py_RETURN_NONE;
}

static PyObject *ring_qsize(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (self->closed) return closed_error(self);
    gf_off r = self->rx ? self->rx : self->tx;
    return PyLong_FromUnsignedLongLong(gf_ring_count(gf_state_of((PyObject *)self)->arena, r));
}

static PyObject *ring_empty(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (self->closed) return closed_error(self);
    gf_off r = self->rx ? self->rx : self->tx;
    return PyBool_FromLong(gf_ring_count(gf_state_of((PyObject *)self)->arena, r) == 0);
}

static PyObject *ring_full(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (self->closed) return closed_error(self);
    gf_off r = self->rx ? self->rx : self->tx;
    uint64_t n = gf_ring_count(gf_state_of((PyObject *)self)->arena, r);
    return PyBool_FromLong(self->maxsize && n >= self->maxsize);
}

static PyObject *ring_fileno(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (self->closed) return closed_error(self);
    gf_off r = self->rx ? self->rx : self->tx;
    int fd = gf_ring_fd(gf_state_of((PyObject *)self)->arena, r);
    if (fd < 0) {
        PyErr_SetString(PyExc_OSError,
                        "no file descriptor: this connection was not created by this process "
                        "or one of its ancestors (use gilfree.connection.wait)");
        return NULL;
    }
    return PyLong_FromLong(fd);
}

static PyObject *ring_task_done(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (!self->tasks) {
        PyErr_SetString(PyExc_AttributeError, "task_done: not a JoinableQueue");
        return NULL;
    }
    if (self->closed) return closed_error(self);
    if (tasks_done(chan_of(gf_state_of((PyObject *)self), self->chan), 1) < 0) {
        PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *ring_join(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (!self->tasks) {
        PyErr_SetString(PyExc_AttributeError, "join: not a JoinableQueue");
        return NULL;
    }
    if (self->closed) return closed_error(self);
    gf_chan *c = chan_of(gf_state_of((PyObject *)self), self->chan);
    for (;;) {
        /* acquire: pairs with the seq_cst bump in tasks_done. */
        uint32_t seq = atomic_load_explicit(GF_A32(&c->tasks_seq), memory_order_seq_cst);
        if (atomic_load_explicit(GF_A32(&c->unfinished), memory_order_seq_cst) == 0) break;
        int rc;
        if (self->closed) return closed_error(self);
        RING_BLOCKING(self, gf_state_of((PyObject *)self), rc,
                      gf__futex_wait(&c->tasks_seq, seq, GF_FOREVER));
        if (rc == GF_EINTR && PyErr_Occurred()) return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *ring_unfinished(RingObject *self, void *Py_UNUSED(c)) {
    if (!self->tasks || self->closed) return PyLong_FromLong(0);
    gf_chan *c = chan_of(gf_state_of((PyObject *)self), self->chan);
    return PyLong_FromUnsignedLong(
        atomic_load_explicit(GF_A32(&c->unfinished), memory_order_relaxed));
}

static PyObject *ring_get_closed(RingObject *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->closed);
}
static PyObject *ring_get_readable(RingObject *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->rx != 0 && !self->noread);
}
static PyObject *ring_get_writable(RingObject *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->tx != 0);
}
static PyObject *ring_get_maxsize(RingObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(self->maxsize);
}
static PyObject *ring_get_offsets(RingObject *self, void *Py_UNUSED(c)) {
    return Py_BuildValue("(KKKi)", (unsigned long long)self->tx, (unsigned long long)self->rx,
                         (unsigned long long)self->chan, self->end);
}

/* Is the peer end of this pipe gone (every holder closed or dead)? False for queues. */
static PyObject *ring_peer_gone(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (self->closed) return closed_error(self);
    gf_state *st = gf_state_of((PyObject *)self);
    gf_off r = self->rx ? self->rx : self->tx;
    return PyBool_FromLong(peer_gone(st, self) || gf_ring_is_closed(st->arena, r));
}

static PyMethodDef ring_methods[] = {
    {"put", (PyCFunction)(void (*)(void))ring_put, METH_FASTCALL | METH_KEYWORDS,
     "put(obj, block=True, timeout=None): queue.Full on timeout."},
    {"get", (PyCFunction)(void (*)(void))ring_get, METH_FASTCALL | METH_KEYWORDS,
     "get(block=True, timeout=None): queue.Empty on timeout."},
    {"put_nowait", (PyCFunction)ring_put_nowait, METH_O, "put(obj, False)"},
    {"get_nowait", (PyCFunction)ring_get_nowait, METH_NOARGS, "get(False)"},
    {"put_many", (PyCFunction)(void (*)(void))ring_put_many, METH_FASTCALL | METH_KEYWORDS,
     "put_many(items, block=True, timeout=None): put every item (encoded first: a pickling\n"
     "error puts nothing). queue.Full on timeout, after the items that fitted."},
    {"get_many", (PyCFunction)(void (*)(void))ring_get_many, METH_FASTCALL | METH_KEYWORDS,
     "get_many(max_items=1024, block=True, timeout=None) -> list of 1..max_items items."},
    {"send", (PyCFunction)ring_send, METH_O, "Send a (picklable) object."},
    {"recv", (PyCFunction)ring_recv, METH_NOARGS,
     "Receive an object; EOFError when the peer is gone and nothing is left."},
    {"send_bytes", (PyCFunction)(void (*)(void))ring_send_bytes, METH_VARARGS | METH_KEYWORDS,
     "send_bytes(buf, offset=0, size=None)"},
    {"recv_bytes", (PyCFunction)(void (*)(void))ring_recv_bytes, METH_VARARGS | METH_KEYWORDS,
     "recv_bytes(maxlength=None) -> bytes"},
    {"recv_bytes_into", (PyCFunction)(void (*)(void))ring_recv_bytes_into,
     METH_VARARGS | METH_KEYWORDS, "recv_bytes_into(buf, offset=0) -> size"},
    {"poll", (PyCFunction)(void (*)(void))ring_poll, METH_FASTCALL | METH_KEYWORDS,
     "poll(timeout=0.0) -> bool (None waits forever)"},
    {"close", (PyCFunction)ring_close, METH_NOARGS, "Release this handle."},
    {"shutdown", (PyCFunction)ring_shutdown, METH_NOARGS,
     "Close the shared ring(s) for every process: puts fail, gets drain then fail."},
    {"qsize", (PyCFunction)ring_qsize, METH_NOARGS, "Number of messages queued (exact, shared by every process)."},
    {"empty", (PyCFunction)ring_empty, METH_NOARGS, "True if no message is queued."},
    {"full", (PyCFunction)ring_full, METH_NOARGS, "True if maxsize messages are queued (never for maxsize 0)."},
    {"fileno", (PyCFunction)ring_fileno, METH_NOARGS,
     "An eventfd readable while messages are queued (pipes)."},
    {"task_done", (PyCFunction)ring_task_done, METH_NOARGS,
     "JoinableQueue: a task taken with get() is complete (ValueError if called too often)."},
    {"join", (PyCFunction)ring_join, METH_NOARGS,
     "JoinableQueue: block until every item put has been marked task_done()."},
    {"_peer_gone", (PyCFunction)ring_peer_gone, METH_NOARGS, "True if the other end of a pipe is closed."},
    {"_put_raw", (PyCFunction)ring_put_raw, METH_O, "Put bytes without a frame (tests)."},
    {"__reduce__", (PyCFunction)ring_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ring_getset[] = {
    {"closed", (getter)ring_get_closed, NULL, "True once close() was called.", NULL},
    {"readable", (getter)ring_get_readable, NULL, "True if this end can receive.", NULL},
    {"writable", (getter)ring_get_writable, NULL, "True if this end can send.", NULL},
    {"maxsize", (getter)ring_get_maxsize, NULL, "Maximum number of queued messages (0 = unbounded).", NULL},
    {"_offsets", (getter)ring_get_offsets, NULL, "Arena offsets of the ring(s) (tests).", NULL},
    {"_unfinished", (getter)ring_unfinished, NULL, "JoinableQueue: tasks not yet done.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot ring_slots[] = {
    {Py_tp_new, ring_new},
    {Py_tp_dealloc, ring_dealloc},
    {Py_tp_traverse, ring_traverse},
    {Py_tp_methods, ring_methods},
    {Py_tp_getset, ring_getset},
    {Py_tp_doc, "Ring(maxsize=0, *, capacity=0, eventfd=False, tasks=False, mode=0)\n"
                "A handle to gilfree shared-memory ring(s): the engine of Queue and Pipe."},
    {0, NULL},
};

static PyType_Spec ring_spec = {
    .name = "gilfree._core.Ring",
    .basicsize = sizeof(RingObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = ring_slots,
};

/* ------------------------------------------------------------------ fork */

/* Before fork (parent): take the references and holder counts the child's copies will own. */
static PyObject *mod_ring_before_fork(PyObject *m, PyObject *Py_UNUSED(a)) {
    gf_state *st = PyModule_GetState(m);
    pid_t me = getpid();
    for (RingObject *r = live_head; r; r = r->next) {
        if (r->closed || r->owner != me) continue;
        if (r->tx) gf_obj_incref(st->arena, r->tx);
        if (r->rx && r->rx != r->tx) gf_obj_incref(st->arena, r->rx);
        if (r->chan) {
            gf_obj_incref(st->arena, r->chan);
            if (r->end >= 0) pending_add(chan_of(st, r->chan), r->end, 1);
        }
    }
    Py_RETURN_NONE;
}

/* After fork (child): own those references; register as a holder of inherited pipe ends. */
static PyObject *mod_ring_after_fork_child(PyObject *m, PyObject *Py_UNUSED(a)) {
    gf_state *st = PyModule_GetState(m);
    if (gf_ensure_attached(st) < 0) return NULL;
    pid_t me = getpid();
    for (RingObject *r = live_head; r; r = r->next) {
        r->busy = 0;
        if (r->closed) continue;
        r->owner = me;
        if (r->chan && r->end >= 0) {
            gf_chan *c = chan_of(st, r->chan);
            holders_add(st, c, r->end);
            pending_add(c, r->end, -1);
        }
    }
    Py_RETURN_NONE;
}

/* Release every live handle of this process (a worker about to os._exit() calls this so that
 * its references and holder counts are returned at once). */
/* See ext.h. */
void gf_rings_release_all(gf_state *st) {
    for (RingObject *r = live_head; r; r = r->next) ring_release(st, r);
}

static PyObject *mod_ring_release_all(PyObject *m, PyObject *Py_UNUSED(a)) {
    gf_rings_release_all(PyModule_GetState(m));
    Py_RETURN_NONE;
}

static PyMethodDef ring_mod_methods[] = {
    {"_pipe", mod_pipe, METH_VARARGS, "_pipe(cls, duplex=True, capacity=0) -> (end0, end1)"},
    {"_ring_rebuild", mod_rebuild, METH_VARARGS, NULL},
    {"_ring_unreduce", mod_unreduce, METH_VARARGS, NULL},
    {"_ring_before_fork", mod_ring_before_fork, METH_NOARGS, NULL},
    {"_ring_after_fork_child", mod_ring_after_fork_child, METH_NOARGS, NULL},
    {"_ring_release_all", mod_ring_release_all, METH_NOARGS,
     "Release every queue/connection handle of this process (before os._exit)."},
    {NULL, NULL, 0, NULL},
};

/* Create the Ring type and its module functions; register the at-fork hooks. Result 0/-1. */
int gf_ring_type_init(PyObject *m, gf_state *st) {
    st->Queue_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &ring_spec, NULL);
    if (!st->Queue_type) return -1;
    if (PyModule_AddObjectRef(m, "Ring", (PyObject *)st->Queue_type) < 0) return -1;
    if (PyModule_AddFunctions(m, ring_mod_methods) < 0) return -1;
    PyObject *q = PyImport_ImportModule("queue");
    if (!q) return -1;
    Py_XSETREF(Empty, PyObject_GetAttrString(q, "Empty"));
    Py_XSETREF(Full, PyObject_GetAttrString(q, "Full"));
    Py_DECREF(q);
    if (!Empty || !Full) return -1;
    return gf_register_at_fork(m, "_ring_before_fork", NULL, "_ring_after_fork_child");
}
