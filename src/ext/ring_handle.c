/*
 * ring_handle.c -- the plumbing of a Ring handle shared by queue.c and connection.c: the live
 * handles of this process (fork hooks, release before _exit), allocation and release of a
 * handle's references, the stdlib's errors, waits that re-check the peer and the handle every
 * GF_SLICE_NS, the receive buffer, and put / get of one object.
 */
#include "ring_handle.h"

#include <string.h>
#include <unistd.h>

/* Process-wide (the extension is single-phase per interpreter; these are the stdlib's). */
static PyObject *Empty, *Full;

static RingObject *live_head;

static void live_link(RingObject *r) {
    r->prev = NULL;
    r->next = live_head;
    if (live_head) live_head->prev = r;
    live_head = r;
}

void gf__ring_live_unlink(RingObject *r) {
    if (r->prev)
        r->prev->next = r->next;
    else if (live_head == r)
        live_head = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* ------------------------------------------------------------------ construction */

/* A new handle of type tp owning the given references (no incref here). */
RingObject *gf__ring_alloc(PyTypeObject *tp) {
    RingObject *r = (RingObject *)tp->tp_alloc(tp, 0);
    if (!r) return NULL;
    r->end = -1;
    r->owner = getpid();
    live_link(r);
    return r;
}

/* Drop this handle's references (and, for a pipe end, its holder count; if it was the last
 * holder of its end, close the rings so that the peer sees EOF / BrokenPipe at once). */
void gf__ring_release(gf_state *st, RingObject *self) {
    if (self->closed) return;
    self->closed = 1;
    if (self->inflight > 0) {
        self->deferred = 1; /* the last blocking call in flight calls gf__ring_drop */
        return;
    }
    gf__ring_drop(st, self);
}

/* Drop the references (see gf__ring_release). */
void gf__ring_drop(gf_state *st, RingObject *self) {
    self->deferred = 0;
    if (!st || self->owner != getpid()) return; /* inherited without our at-fork hooks */
    gf_arena *a = st->arena;
    if (self->chan) {
        gf_chan *c = gf__chan_of(st, self->chan);
        if (self->end >= 0) {
            gf__chan_holders_remove(st, c, self->end);
            if (!gf__chan_holders_alive(st, c, self->end)) {
                if (self->tx) gf_ring_close(a, self->tx);
                if (self->rx) gf_ring_close(a, self->rx);
            }
        }
    }
    if (self->tx) gf_obj_decref_held(a, self->tx);
    if (self->rx && self->rx != self->tx) gf_obj_decref_held(a, self->rx);
    if (self->chan) gf_obj_decref_held(a, self->chan);
}

/* See ring_handle.h. */
void gf__ring_hold_refs(gf_state *st, RingObject *self) {
    gf_arena *a = st->arena;
    if (self->tx) gf_ref_hold(a, self->tx);
    if (self->rx && self->rx != self->tx) gf_ref_hold(a, self->rx);
    if (self->chan) gf_ref_hold(a, self->chan);
}

/* ------------------------------------------------------------------ errors */

PyObject *gf__ring_closed_error(RingObject *self) {
    if (self->mode == MODE_QUEUE)
        PyErr_Format(PyExc_ValueError, "Queue %R is closed", (PyObject *)self);
    else
        PyErr_SetString(PyExc_OSError, "handle is closed");
    return NULL;
}

/* Usable for receiving? Result 0, or -1 with the stdlib's exception. */
int gf__ring_check_rx(RingObject *self) {
    if (self->closed) return gf__ring_closed_error(self), -1;
    if (!self->rx || self->noread) {
        PyErr_SetString(PyExc_OSError, "connection is write-only");
        return -1;
    }
    return 0;
}

int gf__ring_check_tx(RingObject *self) {
    if (self->closed) return gf__ring_closed_error(self), -1;
    if (!self->tx) {
        PyErr_SetString(PyExc_OSError, "connection is read-only");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ waiting with peer checks */

/* Is the peer of this pipe end gone (no live holder of the other end)? */
int gf__ring_peer_gone(gf_state *st, RingObject *self) {
    if (!self->chan || self->end < 0) return 0;
    return !gf__chan_holders_alive(st, gf__chan_of(st, self->chan), 1 - self->end);
}

/* Put one frame (gathered). Result >= 0, or a core error (GF_EINTR with an exception set;
 * GF_EPIPE also when the peer is gone). */
int gf__ring_put_frame(gf_state *st, RingObject *self, gf_enc *e, int64_t deadline) {
    int rc, sliced;
    /* First without releasing the GIL: the common case (room in the ring) costs no switch. */
    rc = gf_ring_putv_frame(st->arena, self->tx, e->iov, e->iovcnt, 0);
    if (rc != GF_ETIMEDOUT || deadline == 0) return rc;
    for (;;) {
        if (self->closed) return GF__HANDLE_CLOSED;
        int64_t d = gf__ring_slice_deadline(self, deadline, &sliced);
        RING_BLOCKING(self, st, rc,
                      gf_ring_putv_frame(st->arena, self->tx, e->iov, e->iovcnt, d));
        if (rc < 0 && rc != GF_EINTR && self->closed) return GF__HANDLE_CLOSED;
        if (rc == GF_ETIMEDOUT && sliced) {
            if (gf__ring_peer_gone(st, self)) return GF_EPIPE;
            continue;
        }
        return rc;
    }
}

/* Take up to max messages from rx. Result >= 1, or a core error; GF_EPIPE when the ring is
 * closed and empty or (pipe ends) the peer is gone and nothing is left. */
int gf__ring_get_msgs(gf_state *st, RingObject *self, gf_msg *msgs, size_t max, char *buf,
                      size_t cap, int64_t deadline) {
    int rc, sliced;
    /* First without releasing the GIL: the common case (a message waiting) costs no switch. */
    rc = gf_ring_get_many(st->arena, self->rx, msgs, max, buf, cap, 0);
    if (rc != GF_ETIMEDOUT) return rc;
    if (deadline == 0) return (self->end >= 0 && gf__ring_peer_gone(st, self)) ? GF_EPIPE : rc;
    for (;;) {
        if (self->closed) return GF__HANDLE_CLOSED;
        int64_t d = gf__ring_slice_deadline(self, deadline, &sliced);
        RING_BLOCKING(self, st, rc, gf_ring_get_many(st->arena, self->rx, msgs, max, buf, cap, d));
        if (rc < 0 && rc != GF_EINTR && self->closed) return GF__HANDLE_CLOSED;
        if (rc == GF_ETIMEDOUT && sliced) {
            if (gf__ring_peer_gone(st, self)) {
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
char *gf__ring_rbuf_acquire(gf_state *st, RingObject *self, size_t *cap, int *tmp) {
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

void gf__ring_rbuf_release(RingObject *self, char *b, int tmp) {
    if (tmp)
        PyMem_RawFree(b);
    else
        self->busy = 0;
}

/* Raise for a failed get. */
PyObject *gf__ring_get_error(gf_state *st, RingObject *self, int rc) {
    if (rc == GF_EINTR && PyErr_Occurred()) return NULL;
    if (rc == GF__HANDLE_CLOSED) return gf__ring_closed_error(self);
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

PyObject *gf__ring_put_error(gf_state *st, RingObject *self, int rc) {
    if (rc == GF_EINTR && PyErr_Occurred()) return NULL;
    if (rc == GF__HANDLE_CLOSED) return gf__ring_closed_error(self);
    if (self->mode == MODE_QUEUE && rc == GF_ETIMEDOUT) {
        PyErr_SetNone(Full);
        return NULL;
    }
    return gf_raise(st, rc, "put");
}

int gf__ring_pop_pending(RingObject *self) {
    if (!self->pending_exc) return 0;
    PyObject *e = self->pending_exc;
    self->pending_exc = NULL;
    PyErr_SetObject((PyObject *)Py_TYPE(e), e);
    Py_DECREF(e);
    return -1;
}

/* Shared by get() and recv(): one message, decoded. raw_as: see gf_decode. */
PyObject *gf__ring_get_one(gf_state *st, RingObject *self, int64_t deadline, int raw_as) {
    if (gf__ring_pop_pending(self) < 0) return NULL;
    size_t cap;
    int tmp;
    char *buf = gf__ring_rbuf_acquire(st, self, &cap, &tmp);
    if (!buf) return NULL;
    gf_msg msg;
    int rc = gf__ring_get_msgs(st, self, &msg, 1, buf, cap, deadline);
    if (rc < 0) {
        gf__ring_rbuf_release(self, buf, tmp);
        return gf__ring_get_error(st, self, rc);
    }
    PyObject *res = gf_decode(st, &msg, raw_as);
    gf__ring_rbuf_release(self, buf, tmp);
    return res;
}

/* See ring_handle.h. */
PyObject *gf__ring_put_obj(gf_state *st, RingObject *self, PyObject *obj, int64_t deadline) {
    gf_enc e;
    if (gf_encode_for_put(st, obj, 0, &e) < 0) return NULL;
    gf_chan *c = self->tasks ? gf__chan_of(st, self->chan) : NULL;
    if (c) gf__chan_tasks_add(c, 1);
    int rc = gf__ring_put_frame(st, self, &e, deadline);
    gf_enc_done(st, &e, rc >= 0);
    if (rc < 0) {
        if (c) gf__chan_tasks_done(c, 1);
        return gf__ring_put_error(st, self, rc);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ fork */

/* Before fork (parent): take the references and holder counts the child's copies will own. */
static PyObject *mod_ring_before_fork(PyObject *m, PyObject *Py_UNUSED(a)) {
    gf_state *st = PyModule_GetState(m);
    pid_t me = getpid();
    for (RingObject *r = live_head; r; r = r->next) {
        r->forking = 0;
        if (r->closed || r->owner != me) continue;
        r->forking = 1;
        if (r->tx) gf_obj_incref(st->arena, r->tx);
        if (r->rx && r->rx != r->tx) gf_obj_incref(st->arena, r->rx);
        if (r->chan) {
            gf_obj_incref(st->arena, r->chan);
            if (r->end >= 0) gf__chan_pending_add(gf__chan_of(st, r->chan), r->end, 1);
        }
    }
    Py_RETURN_NONE;
}

/* Record the references taken for this (forked) child in its own ledger and turn the pipe
 * ends it inherited from "in transit" into "held by this process". */
static void ring_fork_take(gf_state *st, RingObject *r) {
    gf__ring_hold_refs(st, r);
    if (r->chan && r->end >= 0) {
        gf_chan *c = gf__chan_of(st, r->chan);
        gf__chan_holders_add(st, c, r->end);
        gf__chan_pending_add(c, r->end, -1);
    }
}

/* See ext.h. In the child, inside fork(): a child killed at its first instruction neither
 * leaks these references nor leaves its pipe ends "in transit" for ever (its peer sees EOF). */
void gf__rings_fork_record(gf_state *st) {
    for (RingObject *r = live_head; r; r = r->next)
        if (!r->closed && r->forking == 1) {
            ring_fork_take(st, r);
            r->forking = 2;
        }
}

/* After fork (child): own those references (recorded inside fork() already: forking == 2;
 * else now) and the inherited pipe ends. */
static PyObject *mod_ring_after_fork_child(PyObject *m, PyObject *Py_UNUSED(a)) {
    gf_state *st = PyModule_GetState(m);
    if (gf_ensure_attached(st) < 0) return NULL;
    pid_t me = getpid();
    for (RingObject *r = live_head; r; r = r->next) {
        r->busy = 0;
        if (r->closed) continue;
        if (!r->forking) { /* no references were taken for this child: it owns none */
            r->owner = 0;
            continue;
        }
        if (r->forking == 1) ring_fork_take(st, r);
        r->forking = 0;
        r->owner = me;
    }
    Py_RETURN_NONE;
}

/* Release every live handle of this process (a worker about to os._exit() calls this, as a
 * step of gf_release_before_exit, so that its references and holder counts are returned at
 * once). */
static void rings_release_all(gf_state *st) {
    for (RingObject *r = live_head; r; r = r->next) gf__ring_release(st, r);
}

static PyObject *mod_ring_release_all(PyObject *m, PyObject *Py_UNUSED(a)) {
    rings_release_all(PyModule_GetState(m));
    Py_RETURN_NONE;
}

static PyMethodDef ring_handle_functions[] = {
    {"_ring_before_fork", mod_ring_before_fork, METH_NOARGS, NULL},
    {"_ring_after_fork_child", mod_ring_after_fork_child, METH_NOARGS, NULL},
    {"_ring_release_all", mod_ring_release_all, METH_NOARGS,
     "Release every queue/connection handle of this process (before os._exit)."},
    {NULL, NULL, 0, NULL},
};

/* See ring_handle.h. */
int gf__ring_handle_register(PyObject *m, gf_state *st) {
    if (PyModule_AddFunctions(m, ring_handle_functions) < 0) return -1;
    PyObject *q = PyImport_ImportModule("queue");
    if (!q) return -1;
    Py_XSETREF(Empty, PyObject_GetAttrString(q, "Empty"));
    Py_XSETREF(Full, PyObject_GetAttrString(q, "Full"));
    Py_DECREF(q);
    if (!Empty || !Full) return -1;
    if (gf_on_release_before_exit(st, rings_release_all) < 0) return -1;
    return gf_register_at_fork(m, "_ring_before_fork", NULL, "_ring_after_fork_child");
}
