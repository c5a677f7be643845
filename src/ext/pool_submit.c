/*
 * pool_submit.c -- the parent's task paths of gilfree._core.Pool: submit (a task payload: header,
 * the pickled function, the argument as a packed list -- gathered straight from str / bytes
 * items, or packed int64s -- or a transport frame) and results (decoded into Python values).
 */
#include "pool.h"
#include "packed.h"

#include <stdlib.h>
#include <string.h>

/* The argument part of a task payload: a packed list gathered from the objects (str / bytes
 * items), a packed list made here (int64 items), or a transport frame. */
typedef struct task_arg {
    gf_enc e;           /* the frame; e.iovcnt also counts a packed list made here */
    PyObject *packed;   /* packed int64 items (owned) */
    PyObject *snap;     /* gathered: a tuple snapshot keeping the items alive (owned) */
    char *ghead;        /* gathered: header + table (malloc'd) */
    struct iovec *giov; /* gathered: the iovecs, [0] = ghead (malloc'd) */
    int gcnt;           /* gathered: the iovec count (0: not gathered) */
} task_arg;

/* Encode obj as a task argument: a map chunk of all-str / all-bytes / all-int64 items travels
 * packed (no pickle); str and bytes are gathered straight from the objects (a tuple snapshot
 * keeps them alive while the GIL is released). Result 1 (packed), 0 (a frame), or -1 with an
 * exception set (nothing to release). */
static int task_arg_make(gf_state *st, int kind, PyObject *obj, task_arg *t) {
    t->packed = t->snap = NULL;
    t->ghead = NULL;
    t->giov = NULL;
    t->gcnt = 0;
    if (kind == K_MAP && PyList_CheckExact(obj) && PyList_GET_SIZE(obj) > 0) {
        PyTypeObject *t0 = Py_TYPE(PyList_GET_ITEM(obj, 0));
        if (t0 == &PyUnicode_Type || t0 == &PyBytes_Type) {
            t->snap = PyList_AsTuple(obj);
            if (!t->snap) return -1;
            t->gcnt = gf__pk_gather(((PyTupleObject *)t->snap)->ob_item,
                                    PyTuple_GET_SIZE(t->snap), &t->ghead, &t->giov);
            if (t->gcnt <= 0) Py_CLEAR(t->snap);
        } else {
            t->packed = gf__pk_pack(((PyListObject *)obj)->ob_item, PyList_GET_SIZE(obj));
        }
        if (t->gcnt < 0 || (!t->packed && PyErr_Occurred())) return -1;
    }
    if (t->gcnt > 0) {
        t->e.iovcnt = 0;
        return 1;
    }
    if (t->packed) {
        t->e.iovcnt = 1;
        t->e.iov[0].iov_base = PyBytes_AS_STRING(t->packed);
        t->e.iov[0].iov_len = (size_t)PyBytes_GET_SIZE(t->packed);
        return 1;
    }
    return gf_encode(st, obj, 0, &t->e) < 0 ? -1 : 0;
}

/* The payload's iovecs: header, function, then the argument's (small: room for 6). Result:
 * the iovecs (small, or malloc'd for a gathered list) and *niov, or NULL with MemoryError (the
 * gathered list released). */
static struct iovec *task_iov(task_arg *t, task_hdr *h, Py_buffer *fnb, struct iovec *small,
                              int *niov) {
    struct iovec *iov = small;
    if (t->gcnt > 0) {
        iov = malloc(sizeof *iov * ((size_t)t->gcnt + 2));
        if (!iov) {
            free(t->giov);
            free(t->ghead);
            Py_DECREF(t->snap);
            PyErr_NoMemory();
            return NULL;
        }
        memcpy(iov + 2, t->giov, sizeof *iov * (size_t)t->gcnt);
        free(t->giov);
    }
    iov[0].iov_base = h;
    iov[0].iov_len = sizeof *h;
    iov[1].iov_base = fnb->buf;
    iov[1].iov_len = (size_t)fnb->len;
    for (int i = 0; i < t->e.iovcnt; i++) iov[2 + i] = t->e.iov[i];
    *niov = 2 + (t->gcnt > 0 ? t->gcnt : t->e.iovcnt);
    return iov;
}

/* Keep a frame argument's references and blocks with the task `id` (gf_enc_keep) in
 * self->task_refs, before the submit: its outcome may be collected by another thread before
 * the submitting one is back. A packed list or a plain frame keeps nothing (no cost but this
 * branch). Result 1 (kept), 0 (nothing to keep), or -1 with an exception set (the argument
 * not released). */
static int task_keep(gf_state *st, pool_obj *self, task_arg *t, int packed, uint64_t id) {
    if (packed || (!t->e.undo && !t->e.nbufs)) return 0;
    PyObject *kept;
    if (gf_enc_keep(st, &t->e, &kept) < 0) return -1;
    if (!kept) return 0;
    PyObject *key = PyLong_FromUnsignedLongLong((unsigned long long)id);
    int rc = -1;
    if (key && (self->task_refs || (self->task_refs = PyDict_New())))
        rc = PyDict_SetItem(self->task_refs, key, kept);
    Py_XDECREF(key);
    if (rc < 0) gf_enc_release_kept(st, kept);
    Py_DECREF(kept);
    return rc < 0 ? -1 : 1;
}

/* Release what task `id` kept (its final outcome, or it was never queued), if anything. */
static void task_release(gf_state *st, pool_obj *self, uint64_t id) {
    if (!self->task_refs || PyDict_GET_SIZE(self->task_refs) == 0) return;
    PyObject *key = PyLong_FromUnsignedLongLong((unsigned long long)id);
    if (!key) {
        PyErr_WriteUnraisable(NULL);
        return;
    }
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *kept = PyDict_GetItemWithError(self->task_refs, key); /* borrowed */
    if (kept) {
        Py_INCREF(kept);
        if (PyDict_DelItem(self->task_refs, key) < 0) PyErr_Clear();
        gf_enc_release_kept(st, kept);
        Py_DECREF(kept);
    }
    PyErr_Clear();
    PyErr_Restore(et, ev, tb);
    Py_DECREF(key);
}

/* See pool.h. */
void gf__pool_release_all_refs(gf_state *st, pool_obj *self) {
    PyObject *d = self->task_refs;
    if (!d || self->owner_pid != getpid() || !st || !st->arena) return;
    self->task_refs = NULL;
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    Py_ssize_t pos = 0;
    PyObject *k, *kept;
    while (PyDict_Next(d, &pos, &k, &kept)) gf_enc_release_kept(st, kept);
    Py_DECREF(d);
    PyErr_Restore(et, ev, tb);
}

/* Release the argument after the submit (`sent`: the task was queued). */
static void task_arg_done(gf_state *st, task_arg *t, struct iovec *iov, int sent) {
    if (t->gcnt > 0) {
        free(iov);
        free(t->ghead);
        Py_DECREF(t->snap);
    } else if (t->packed) {
        Py_DECREF(t->packed);
    } else {
        gf_enc_done(st, &t->e, sent);
    }
}

/* See pool.h. Pickling errors raise here (nothing is queued). */
PyObject *gf__pool_submit(PyObject *op, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"kind", "fn", "obj", "timeout", "retries", "block", NULL};
    pool_obj *self = SELF(op);
    int kind;
    Py_buffer fnb;
    PyObject *obj;
    double timeout = 0;
    unsigned int retries = 0;
    int block = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iy*O|dIp:submit", kwlist, &kind, &fnb, &obj,
                                     &timeout, &retries, &block))
        return NULL;
    if (gf__pool_check(self) < 0) {
        PyBuffer_Release(&fnb);
        return NULL;
    }
    gf_state *st = gf_state_of(op);
    task_hdr h = {(uint8_t)kind, {0, 0, 0}, (uint32_t)fnb.len};
    task_arg t;
    struct iovec iov_small[6], *iov = NULL;
    int niov = 0, packed = task_arg_make(st, kind, obj, &t);
    if (packed == 1) h._r[0] = 1;
    if (packed >= 0) iov = task_iov(&t, &h, &fnb, iov_small, &niov);
    if (!iov) {
        PyBuffer_Release(&fnb);
        return NULL;
    }
    /* The id is chosen here (the core takes it): the task's kept references are filed
     * under it before the task can run. An id that was not used is taken back if no other
     * thread took the next one meanwhile. */
    uint64_t id = self->next_id++;
    int kept = task_keep(st, self, &t, packed, id);
    if (kept < 0) {
        task_arg_done(st, &t, iov, 0);
        PyBuffer_Release(&fnb);
        return NULL;
    }
    int64_t tns = timeout > 0 ? (int64_t)(timeout * 1e9) : 0;
    int rc;
    if (!block) {
        Py_BEGIN_ALLOW_THREADS rc = gf_pool_submit(self->pool, iov, niov, tns, retries, &id, 0);
        Py_END_ALLOW_THREADS
    } else {
        GF_BLOCKING(rc, gf_pool_submit(self->pool, iov, niov, tns, retries, &id, GF_FOREVER));
    }
    if (rc != 0) {
        if (kept) task_release(st, self, id); /* never queued: no outcome will come */
        if (self->next_id == id + 1) self->next_id = id;
    }
    task_arg_done(st, &t, iov, rc == 0 || kept); /* what was kept is released above */
    PyBuffer_Release(&fnb);
    if (rc == 0) return PyLong_FromUnsignedLongLong(id);
    if (rc == GF_ETIMEDOUT && !block) Py_RETURN_NONE;
    if (rc == GF_EPIPE) {
        PyErr_SetString(PyExc_ValueError, "Pool not running");
        return NULL;
    }
    return gf_raise(st, rc, "Pool.submit");
}

#define NRES 256

/* A map chunk's packed result decoded straight from the message into its result list: `into`
 * maps the task id to (sink, start), and a sink whose `_gf_into` is a list takes the items at
 * [start:start + n]. Result: a new int (the count), NULL without an exception when it does not
 * apply (then the value is decoded as usual), or NULL with an exception (malformed: the
 * message is consumed). */
static PyObject *result_into(gf_state *st, PyObject *into, const gf_pool_result *r) {
    gf_frame fr;
    if (gf_frame_parse(st->arena, r->data, r->len, &fr) < 0 || fr.kind != GF_FRAME_BYTES ||
        fr.nbufs || fr.body_len < 16 || memcmp(fr.body, "GFPL", 4) != 0)
        return NULL;
    PyObject *key = PyLong_FromUnsignedLongLong((unsigned long long)r->id);
    if (!key) return NULL;
    PyObject *ent = PyDict_GetItemWithError(into, key); /* borrowed */
    Py_DECREF(key);
    if (!ent || !PyTuple_CheckExact(ent) || PyTuple_GET_SIZE(ent) != 2) return NULL;
    Py_ssize_t start = PyLong_AsSsize_t(PyTuple_GET_ITEM(ent, 1));
    PyObject *lst = start < 0 ? NULL : PyObject_GetAttrString(PyTuple_GET_ITEM(ent, 0), "_gf_into");
    if (!lst || !PyList_CheckExact(lst)) {
        PyErr_Clear();
        Py_XDECREF(lst);
        return NULL;
    }
    Py_ssize_t n = gf__pk_fill(fr.body, fr.body_len, lst, start);
    Py_DECREF(lst);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

/* The exception being raised as a value (its traceback attached); never NULL. */
static PyObject *fetch_exc(void) {
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyErr_NormalizeException(&et, &ev, &tb);
    if (tb && ev) PyException_SetTraceback(ev, tb);
    Py_XDECREF(et);
    Py_XDECREF(tb);
    return ev ? ev : (Py_INCREF(Py_None), Py_None);
}

/* See pool.h. */
PyObject *gf__pool_results(PyObject *op, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"max", "timeout", "into", NULL};
    pool_obj *self = SELF(op);
    unsigned int max = NRES;
    PyObject *timeout = Py_None, *into = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|IOO:results", kwlist, &max, &timeout, &into))
        return NULL;
    if (into != Py_None && !PyDict_Check(into)) {
        PyErr_SetString(PyExc_TypeError, "results: into must be a dict or None");
        return NULL;
    }
    if (gf__pool_check(self) < 0) return NULL;
    gf_state *st = gf_state_of(op);
    int64_t deadline;
    if (gf_deadline_arg(timeout, 1, &deadline) < 0) return NULL;
    if (max == 0 || max > NRES) max = NRES;
    gf_pool_result res[NRES];
    int rc;
    if (deadline == 0) {
        Py_BEGIN_ALLOW_THREADS rc = gf_pool_next_results(self->pool, res, max, 0);
        Py_END_ALLOW_THREADS
    } else {
        GF_BLOCKING(rc, gf_pool_next_results(self->pool, res, max, deadline));
    }
    if (rc == GF_ETIMEDOUT) return PyList_New(0);
    if (rc == GF_EPIPE) Py_RETURN_NONE;
    if (rc < 0) return gf_raise(st, rc, "Pool.results");
    PyObject *lst = PyList_New(rc);
    if (!lst) return NULL;
    for (int i = 0; i < rc; i++) {
        int status = res[i].status;
        PyObject *v;
        /* Every result is its task's final outcome: what the task kept goes now. */
        if (self->task_refs && PyDict_GET_SIZE(self->task_refs)) task_release(st, self, res[i].id);
        if ((status == GF_TASK_OK || status == GF_TASK_ERROR) && res[i].len) {
            v = status == GF_TASK_OK && into != Py_None ? result_into(st, into, &res[i]) : NULL;
            if (!v && !PyErr_Occurred()) {
                gf_msg m = {res[i].data, res[i].len, 0, 0};
                v = gf_decode(st, &m, 0);
            }
            if (!v) {
                v = fetch_exc();
                status = ST_DECODE;
            }
        } else {
            Py_INCREF(Py_None);
            v = Py_None;
        }
        PyObject *t = Py_BuildValue("(KiiNK)", (unsigned long long)res[i].id, status,
                                    res[i].worker, v, (unsigned long long)res[i].elapsed_ns);
        if (!t) {
            Py_BEGIN_ALLOW_THREADS gf_pool_results_done(self->pool);
            Py_END_ALLOW_THREADS
            Py_DECREF(lst);
            return NULL;
        }
        PyList_SET_ITEM(lst, i, t);
    }
    /* Every payload was decoded into new objects (or copied into `into`): free the blocks of
     * large results now, not when this thread next collects -- a waiter collects only when
     * it waits again, and until then a whole batch of decoded results kept its blocks. Without
     * the GIL: it takes the pool's lock, and a free may punch pages (under the allocator's). */
    Py_BEGIN_ALLOW_THREADS gf_pool_results_done(self->pool);
    Py_END_ALLOW_THREADS
    return lst;
}


/* See pool.h. */
PyObject *gf__pool_wake(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    if (gf__pool_check(self) < 0) return NULL;
    gf_pool_wake(self->pool);
    Py_RETURN_NONE;
}
