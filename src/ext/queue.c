/*
 * queue.c -- _core.Ring: a handle to one or two shared-memory rings. It is the engine of
 * gilfree.Queue / SimpleQueue / JoinableQueue (one ring, both directions) and of the two
 * ends of a gilfree.Pipe (a Connection sends on `tx` and receives on `rx`). This file owns
 * the type (construction, pickling, the method table) and the Queue methods; the Connection
 * methods are in connection.c, the shared plumbing in ring_handle.c, the channel block in
 * chan.c (see ring_handle.h).
 *
 * References. A handle holds one arena reference on each ring and on its channel block.
 * Pickling a handle takes references for the receiver (rebuilt from offsets, validated with
 * gf_obj_check). A fork gives the child its own references (the at-fork hooks walk the list of
 * live handles), so the parent may drop its handle while a child uses the queue. The
 * references a handle owns are recorded in its process's reference ledger
 * (gf__ring_hold_refs), so a SIGKILLed holder's are dropped by the survivors.
 *
 * The channel block (a GF_OBJ_RAW object, `gf_chan`) holds what a ring does not:
 *   - JoinableQueue's unfinished-task counter and the futex word join() sleeps on;
 *   - for pipes, the holders of each end: {process ident, handle count} words plus a count of
 *     handles in transit (pickled, not yet rebuilt; or forked, not yet registered). A receiver
 *     whose peer end has no live holder left gets EOFError instead of waiting forever: a
 *     normal close of the last handle closes the rings (immediate wake-up); a SIGKILLed holder
 *     is noticed by the waiter, which re-checks the holders' life locks every GF_SLICE_NS.
 */
#include "ring_handle.h"

#include <string.h>

/* ------------------------------------------------------------------ construction */

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
    if (tasks && (rc = gf__chan_create(st, &chan)) < 0) {
        gf_obj_decref(st->arena, ring);
        return gf_raise(st, rc, "cannot create a queue");
    }
    RingObject *r = gf__ring_alloc(tp);
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
    gf__ring_hold_refs(st, r);
    return (PyObject *)r;
}

/* Under gf_adopt_own_refs: one reference of our own on each of tx, rx (if another ring) and
 * chan (0 = none), all or none. Result 0, or -1 (one is not a live object). */
static int rebuild_take_refs(gf_state *st, gf_off tx, gf_off rx, gf_off chan) {
    gf_off offs[3] = {tx, rx != tx ? rx : 0, chan};
    for (int i = 0; i < 3; i++) {
        if (!offs[i] || gf_obj_incref(st->arena, offs[i]) == 0) continue;
        while (i-- > 0)
            if (offs[i]) gf_obj_decref(st->arena, offs[i]);
        return -1;
    }
    return 0;
}

/* _ring_rebuild(cls, tx, rx, chan, end, mode, maxsize, tasks): a handle from a pickle. The
 * references it adopts were taken by __reduce__ (a pool task's: it takes its own). */
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
        (chan && gf__chan_check(st, chan) < 0) || end < -1 || end > 1 || (end >= 0 && !chan) ||
        mode < 0 || mode > MODE_CONN)
        return gf_raise(st, GF_EBADMSG, "cannot rebuild a queue or connection handle");
    int own = gf_adopt_own_refs; /* a pool task's: take our own, the message keeps its */
    if (own && rebuild_take_refs(st, tx, rx, chan) < 0)
        return gf_raise(st, GF_EBADMSG, "cannot rebuild a queue or connection handle");
    RingObject *r = gf__ring_alloc(cls);
    if (!r) return NULL; /* the references leak (bounded: one handle) */
    r->tx = tx;
    r->rx = rx;
    r->chan = chan;
    r->end = end;
    r->mode = mode;
    r->maxsize = maxsize;
    r->tasks = tasks && chan;
    gf__ring_hold_refs(st, r); /* __reduce__'s references (or our own) are this process's */
    if (end >= 0) {
        gf_chan *c = gf__chan_of(st, chan);
        gf__chan_holders_add(st, c, end);
        /* A pool task's end stays in transit until the task's outcome (its undo). */
        if (!own) gf__chan_pending_add(c, end, -1);
    }
    return (PyObject *)r;
}

/* _ring_unreduce(tx, rx, chan, end): give back what __reduce__ took (message never sent). */
static PyObject *mod_unreduce(PyObject *m, PyObject *args) {
    unsigned long long tx, rx, chan;
    int end;
    if (!PyArg_ParseTuple(args, "KKKi", &tx, &rx, &chan, &end)) return NULL;
    gf_state *st = PyModule_GetState(m);
    if (end >= 0 && chan && gf__chan_check(st, chan) == 0)
        gf__chan_pending_add(gf__chan_of(st, chan), end, -1);
    if (tx) gf_obj_decref(st->arena, tx);
    if (rx && rx != tx) gf_obj_decref(st->arena, rx);
    if (chan) gf_obj_decref(st->arena, chan);
    Py_RETURN_NONE;
}

static PyObject *ring_reduce(RingObject *self, PyObject *Py_UNUSED(a)) {
    gf_state *st = gf_state_of((PyObject *)self);
    if (self->closed) return gf__ring_closed_error(self);
    gf_arena *a = st->arena;
    if (self->tx) gf_obj_incref(a, self->tx);
    if (self->rx && self->rx != self->tx) gf_obj_incref(a, self->rx);
    if (self->chan) gf_obj_incref(a, self->chan);
    if (self->end >= 0) gf__chan_pending_add(gf__chan_of(st, self->chan), self->end, 1);
    PyObject *mod = gf_module_of((PyObject *)self);
    PyObject *undo = mod ? PyObject_GetAttrString(mod, "_ring_unreduce") : NULL;
    PyObject *uargs = undo ? Py_BuildValue("(KKKi)", (unsigned long long)self->tx,
                                           (unsigned long long)self->rx,
                                           (unsigned long long)self->chan, self->end)
                           : NULL;
    PyObject *rebuild = uargs ? PyObject_GetAttrString(mod, "_ring_rebuild") : NULL;
    PyObject *res = NULL;
    gf_off refs[3];
    int nrefs = 0;
    if (self->tx) refs[nrefs++] = self->tx;
    if (self->rx && self->rx != self->tx) refs[nrefs++] = self->rx;
    if (self->chan) refs[nrefs++] = self->chan;
    if (rebuild && gf_transport_on_abort(undo, uargs, refs, nrefs) == 0)
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
    gf__ring_live_unlink(self);
    gf_state *st = gf_state_of((PyObject *)self);
    gf__ring_release(st, self);
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
    if (gf__ring_check_tx(self) < 0) return NULL;
    int block = PyObject_IsTrue(blockobj);
    if (block < 0) return NULL;
    int64_t deadline;
    if (gf_deadline_arg(timeout, block, &deadline) < 0) return NULL;
    return gf__ring_put_obj(st, self, obj, deadline);
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

static PyObject *ring_get(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames) {
    int block = 1;
    PyObject *timeout = Py_None;
    if (nargs || kwnames) {
        if (parse_block_timeout("get", args, nargs, kwnames, 0, NULL, &block, &timeout) < 0)
            return NULL;
    }
    if (gf__ring_check_rx(self) < 0) return NULL;
    int64_t deadline;
    if (gf_deadline_arg(timeout, block, &deadline) < 0) return NULL;
    return gf__ring_get_one(gf_state_of((PyObject *)self), self, deadline, 1);
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

/* get_many's max_items: an int >= 1. Result 0, or -1 with an exception set. */
static int parse_max_items(PyObject *maxobj, Py_ssize_t *maxn) {
    *maxn = PyLong_AsSsize_t(maxobj);
    if (*maxn == -1 && PyErr_Occurred()) return -1;
    if (*maxn < 1) {
        PyErr_SetString(PyExc_ValueError, "max_items must be >= 1");
        return -1;
    }
    return 0;
}

/* Decode rc messages into the list out. A message that does not decode is skipped: the first
 * such error is kept in *first_exc (later ones are dropped). Result 0, or -1 with MemoryError
 * (appending failed: the rest of the batch is discarded). */
static int decode_batch(gf_state *st, gf_msg *msgs, int rc, PyObject *out, PyObject **first_exc) {
    for (int i = 0; i < rc; i++) {
        PyObject *o = gf_decode(st, &msgs[i], 1);
        if (!o) {
            if (!*first_exc) {
                PyObject *et, *ev, *tb;
                PyErr_Fetch(&et, &ev, &tb);
                PyErr_NormalizeException(&et, &ev, &tb);
                if (tb) PyException_SetTraceback(ev, tb);
                *first_exc = ev;
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
            return -1;
        }
    }
    return 0;
}

/* get_many(max_items=1024, block=True, timeout=None) -> list (at least one item). */
static PyObject *ring_get_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    int block = 1;
    PyObject *timeout = Py_None, *maxobj = NULL;
    if (parse_block_timeout("get_many", args, nargs, kwnames, 1, &maxobj, &block, &timeout) <
        0)
        return NULL;
    Py_ssize_t maxn = 1024;
    if (maxobj && maxobj != Py_None && parse_max_items(maxobj, &maxn) < 0) return NULL;
    gf_state *st = gf_state_of((PyObject *)self);
    if (gf__ring_check_rx(self) < 0) return NULL;
    if (gf__ring_pop_pending(self) < 0) return NULL;
    int64_t deadline;
    if (gf_deadline_arg(timeout, block, &deadline) < 0) return NULL;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    size_t cap;
    int tmp;
    char *buf = gf__ring_rbuf_acquire(st, self, &cap, &tmp);
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
        int rc = gf__ring_get_msgs(st, self, msgs, want, buf, cap,
                                   PyList_GET_SIZE(out) || first_exc ? 0 : deadline);
        if (rc < 0) {
            if (PyList_GET_SIZE(out) || first_exc) {
                if (rc == GF_EINTR) PyErr_Clear();
                break;
            }
            gf__ring_rbuf_release(self, buf, tmp);
            Py_DECREF(out);
            return gf__ring_get_error(st, self, rc);
        }
        if (decode_batch(st, msgs, rc, out, &first_exc) < 0) {
            gf__ring_rbuf_release(self, buf, tmp);
            Py_DECREF(out);
            Py_XDECREF(first_exc);
            return NULL;
        }
        if ((size_t)rc < want) break;
    }
    gf__ring_rbuf_release(self, buf, tmp);
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

/* Encode every item of the sequence seq (n > 0 items) for put_many. Result: the encodings
 * (PyMem_Malloc'd; gf_enc_done each, then free), or NULL with an exception set (nothing to
 * release: a pickling error puts nothing). */
static gf_enc *encode_all(gf_state *st, PyObject *seq, Py_ssize_t n) {
    gf_enc *encs = PyMem_Malloc(sizeof(gf_enc) * (size_t)n);
    if (!encs) return (gf_enc *)PyErr_NoMemory();
    Py_ssize_t ne = 0;
    for (; ne < n; ne++)
        if (gf_encode(st, PySequence_Fast_GET_ITEM(seq, ne), 0, &encs[ne]) < 0) break;
    if (ne < n) {
        for (Py_ssize_t i = 0; i < ne; i++) gf_enc_done(st, &encs[i], 0);
        PyMem_Free(encs);
        return NULL;
    }
    return encs;
}

/* Batches of small frames flattened into one scratch buffer; large frames alone. */
enum { PUT_SCRATCH = 64 << 10, PUT_SMALL = 4 << 10 };

/* Put encs[0..n) in order: large frames one by one, runs of small ones flattened into
 * `scratch` (PUT_SCRATCH bytes) and put as one batch. Each frame put is released (sent);
 * *donep = how many were put. Result >= 0, or the first error (a core code; GF_EINTR with an
 * exception set; GF__HANDLE_CLOSED). */
static int put_encoded(gf_state *st, RingObject *self, gf_enc *encs, Py_ssize_t n,
                       int64_t deadline, char *scratch, Py_ssize_t *donep) {
    struct iovec iov[BATCH_MAX];
    Py_ssize_t done = 0;
    int rc = 0;
    while (rc >= 0 && done < n) {
        if (encs[done].total > PUT_SMALL) {
            rc = gf__ring_put_frame(st, self, &encs[done], deadline);
            if (rc >= 0) {
                gf_enc_done(st, &encs[done], 1);
                done++;
            }
            continue;
        }
        size_t used = 0, k = 0;
        Py_ssize_t j = done;
        while (j < n && k < BATCH_MAX && encs[j].total <= PUT_SMALL &&
               used + encs[j].total <= PUT_SCRATCH) {
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
            RING_BLOCKING(self, st, r,
                          gf_ring_put_many_frame(st->arena, self->tx, iov + put, k - put,
                                                 deadline));
            if (r < 0) {
                rc = r;
                break;
            }
            for (int q = 0; q < r; q++) gf_enc_done(st, &encs[done + (Py_ssize_t)put + q], 1);
            put += (size_t)r;
        }
        done += (Py_ssize_t)put;
    }
    *donep = done;
    return rc;
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
    if (gf__ring_check_tx(self) < 0) return NULL;
    int64_t deadline;
    if (gf_deadline_arg(timeout, block, &deadline) < 0) return NULL;
    PyObject *seq = PySequence_Fast(items, "put_many() expects an iterable");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n == 0) {
        Py_DECREF(seq);
        Py_RETURN_NONE;
    }
    gf_enc *encs = encode_all(st, seq, n);
    if (!encs) {
        Py_DECREF(seq);
        return NULL;
    }
    gf_chan *c = self->tasks ? gf__chan_of(st, self->chan) : NULL;
    if (c) gf__chan_tasks_add(c, (uint32_t)n);
    char *scratch = PyMem_Malloc(PUT_SCRATCH);
    Py_ssize_t done = 0;
    int rc = scratch ? put_encoded(st, self, encs, n, deadline, scratch, &done) : GF_ENOMEM;
    for (Py_ssize_t i = done; i < n; i++) gf_enc_done(st, &encs[i], 0);
    PyMem_Free(scratch);
    PyMem_Free(encs);
    Py_DECREF(seq);
    if (rc < 0) {
        if (c && done < n) gf__chan_tasks_done(c, (uint32_t)(n - done));
        if (rc == GF_ENOMEM && !scratch) return PyErr_NoMemory();
        return gf__ring_put_error(st, self, rc);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ misc methods */

/* _put_raw(bytes): put bytes as they are, no frame header (tests: malformed messages). */
static PyObject *ring_put_raw(RingObject *self, PyObject *arg) {
    Py_buffer v;
    if (gf__ring_check_tx(self) < 0) return NULL;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) return NULL;
    gf_state *st = gf_state_of((PyObject *)self);
    int rc = gf_ring_put(st->arena, self->tx, v.buf, (size_t)v.len, 0);
    PyBuffer_Release(&v);
    if (rc < 0) return gf__ring_put_error(st, self, rc);
    Py_RETURN_NONE;
}

static PyObject *ring_close(RingObject *self, PyObject *Py_UNUSED(a)) {
    gf__ring_release(gf_state_of((PyObject *)self), self);
    Py_RETURN_NONE;
}

static PyObject *ring_shutdown(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (self->closed) return gf__ring_closed_error(self);
    gf_state *st = gf_state_of((PyObject *)self);
    if (self->tx) gf_ring_close(st->arena, self->tx);
    if (self->rx) gf_ring_close(st->arena, self->rx);
    Py_RETURN_NONE;
}

static PyObject *ring_qsize(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (self->closed) return gf__ring_closed_error(self);
    gf_off r = self->rx ? self->rx : self->tx;
    return PyLong_FromUnsignedLongLong(gf_ring_count(gf_state_of((PyObject *)self)->arena, r));
}

static PyObject *ring_empty(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (self->closed) return gf__ring_closed_error(self);
    gf_off r = self->rx ? self->rx : self->tx;
    return PyBool_FromLong(gf_ring_count(gf_state_of((PyObject *)self)->arena, r) == 0);
}

static PyObject *ring_full(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (self->closed) return gf__ring_closed_error(self);
    gf_off r = self->rx ? self->rx : self->tx;
    uint64_t n = gf_ring_count(gf_state_of((PyObject *)self)->arena, r);
    return PyBool_FromLong(self->maxsize && n >= self->maxsize);
}

static PyObject *ring_fileno(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (self->closed) return gf__ring_closed_error(self);
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
    if (self->closed) return gf__ring_closed_error(self);
    if (gf__chan_tasks_done(gf__chan_of(gf_state_of((PyObject *)self), self->chan), 1) < 0) {
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
    if (self->closed) return gf__ring_closed_error(self);
    gf_chan *c = gf__chan_of(gf_state_of((PyObject *)self), self->chan);
    for (;;) {
        /* acquire: pairs with the seq_cst bump in gf__chan_tasks_done. */
        uint32_t seq = atomic_load_explicit(GF_A32(&c->tasks_seq), memory_order_seq_cst);
        if (atomic_load_explicit(GF_A32(&c->unfinished), memory_order_seq_cst) == 0) break;
        int rc;
        if (self->closed) return gf__ring_closed_error(self);
        RING_BLOCKING(self, gf_state_of((PyObject *)self), rc,
                      gf__futex_wait(&c->tasks_seq, seq, GF_FOREVER));
        if (rc == GF_EINTR && PyErr_Occurred()) return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *ring_unfinished(RingObject *self, void *Py_UNUSED(c)) {
    if (!self->tasks || self->closed) return PyLong_FromLong(0);
    gf_chan *c = gf__chan_of(gf_state_of((PyObject *)self), self->chan);
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
    if (self->closed) return gf__ring_closed_error(self);
    gf_state *st = gf_state_of((PyObject *)self);
    gf_off r = self->rx ? self->rx : self->tx;
    return PyBool_FromLong(gf__ring_peer_gone(st, self) || gf_ring_is_closed(st->arena, r));
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
    {"send", (PyCFunction)gf__conn_send, METH_O, "Send a (picklable) object."},
    {"recv", (PyCFunction)gf__conn_recv, METH_NOARGS,
     "Receive an object; EOFError when the peer is gone and nothing is left."},
    {"send_bytes", (PyCFunction)(void (*)(void))gf__conn_send_bytes, METH_VARARGS | METH_KEYWORDS,
     "send_bytes(buf, offset=0, size=None)"},
    {"recv_bytes", (PyCFunction)(void (*)(void))gf__conn_recv_bytes, METH_VARARGS | METH_KEYWORDS,
     "recv_bytes(maxlength=None) -> bytes"},
    {"recv_bytes_into", (PyCFunction)(void (*)(void))gf__conn_recv_bytes_into,
     METH_VARARGS | METH_KEYWORDS, "recv_bytes_into(buf, offset=0) -> size"},
    {"poll", (PyCFunction)(void (*)(void))gf__conn_poll, METH_FASTCALL | METH_KEYWORDS,
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
static PyMethodDef ring_mod_methods[] = {
    {"_ring_rebuild", mod_rebuild, METH_VARARGS, NULL},
    {"_ring_unreduce", mod_unreduce, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* Create the Ring type and its module functions; register the handles' fork hooks and their
 * release before _exit (ring_handle.c). Result 0/-1. */
int gf__ring_register(PyObject *m, gf_state *st) {
    st->Queue_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &ring_spec, NULL);
    if (!st->Queue_type) return -1;
    if (PyModule_AddObjectRef(m, "Ring", (PyObject *)st->Queue_type) < 0) return -1;
    if (PyModule_AddFunctions(m, ring_mod_methods) < 0) return -1;
    return gf__ring_handle_register(m, st);
}
