/*
 * connection.c -- the Connection side of the Ring type (the two ends of a gilfree.Pipe):
 * send / recv, send_bytes / recv_bytes / recv_bytes_into with the standard library's
 * semantics, poll, and _pipe() which makes a pair of ends.
 */
#include "ring_handle.h"

#include <string.h>

/* ------------------------------------------------------------------ connection methods */

/* send(obj): put(obj), blocking. */
PyObject *gf__conn_send(RingObject *self, PyObject *obj) {
    gf_state *st = gf_state_of((PyObject *)self);
    if (gf__ring_check_tx(self) < 0) return NULL;
    return gf__ring_put_obj(st, self, obj, GF_FOREVER);
}

PyObject *gf__conn_recv(RingObject *self, PyObject *Py_UNUSED(a)) {
    if (gf__ring_check_rx(self) < 0) return NULL;
    return gf__ring_get_one(gf_state_of((PyObject *)self), self, GF_FOREVER, 1);
}

/* send_bytes(buf, offset=0, size=None) */
PyObject *gf__conn_send_bytes(RingObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"buf", "offset", "size", NULL};
    Py_buffer v;
    Py_ssize_t offset = 0;
    PyObject *sizeobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|nO", kwlist, &v, &offset, &sizeobj))
        return NULL;
    PyObject *res = NULL;
    gf_state *st = gf_state_of((PyObject *)self);
    if (gf__ring_check_tx(self) < 0) goto out;
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
    rc = gf__ring_put_frame(st, self, &e, GF_FOREVER);
    if (rc < 0)
        gf__ring_put_error(st, self, rc);
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
    if (gf__ring_pop_pending(self) < 0) return -1;
    *buf = gf__ring_rbuf_acquire(st, self, cap, tmp);
    if (!*buf) return -1;
    int rc = gf__ring_get_msgs(st, self, msg, 1, *buf, *cap, GF_FOREVER);
    if (rc < 0) {
        gf__ring_rbuf_release(self, *buf, *tmp);
        gf__ring_get_error(st, self, rc);
        return -1;
    }
    if (gf_decode_frame(st, msg, fr) < 0) {
        gf_msg_release(st->arena, msg);
        gf__ring_rbuf_release(self, *buf, *tmp);
        return -1;
    }
    if (fr->kind == GF_FRAME_RAW) return 0;
    PyObject *o = gf_decode(st, msg, 1); /* releases msg */
    gf__ring_rbuf_release(self, *buf, *tmp);
    if (!o) return -1;
    *obj = gf_pickle_bytes(st, o);
    Py_DECREF(o);
    return *obj ? 1 : -1;
}

static PyObject *bad_length(RingObject *self) {
    if (self->tx)
        self->noread = 1;
    else
        gf__ring_release(gf_state_of((PyObject *)self), self);
    PyErr_SetString(PyExc_OSError, "bad message length");
    return NULL;
}

/* recv_bytes(maxlength=None) */
PyObject *gf__conn_recv_bytes(RingObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"maxlength", NULL};
    PyObject *maxobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", kwlist, &maxobj)) return NULL;
    if (gf__ring_check_rx(self) < 0) return NULL;
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
    gf__ring_rbuf_release(self, buf, tmp);
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
PyObject *gf__conn_recv_bytes_into(RingObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"buf", "offset", NULL};
    Py_buffer v;
    Py_ssize_t offset = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "w*|n", kwlist, &v, &offset)) return NULL;
    PyObject *res = NULL;
    gf_state *st = gf_state_of((PyObject *)self);
    if (gf__ring_check_rx(self) < 0) goto out;
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
        gf__ring_rbuf_release(self, buf, tmp);
    }
out:
    PyBuffer_Release(&v);
    return res;
}

/* poll(timeout=0.0) -> bool: a message is waiting, or the connection reached EOF. */
PyObject *gf__conn_poll(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames) {
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nk > 1 ||
        (nk && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout"))) {
        PyErr_SetString(PyExc_TypeError, "poll() takes at most 1 argument (timeout)");
        return NULL;
    }
    if (gf__ring_check_rx(self) < 0) return NULL;
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
        int64_t d = gf__ring_slice_deadline(self, deadline, &sliced);
        if (d == 0) {
            rc = gf_ring_wait_readable(st->arena, self->rx, 0);
        } else {
            if (self->closed) return gf__ring_closed_error(self);
            RING_BLOCKING(self, st, rc, gf_ring_wait_readable(st->arena, self->rx, d));
        }
        if (rc == GF_ETIMEDOUT && (sliced || d == 0)) {
            if (gf__ring_peer_gone(st, self)) Py_RETURN_TRUE;
            if (sliced) continue;
        }
        break;
    }
    if (rc == 0 || rc == GF_EPIPE) Py_RETURN_TRUE;
    if (rc == GF_ETIMEDOUT) Py_RETURN_FALSE;
    return gf_raise(st, rc, "poll");
}


/* ------------------------------------------------------------------ _pipe */

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
    if (rc == 0) rc = gf__chan_create(st, &chan);
    if (rc < 0) {
        if (r1) gf_obj_decref(a, r1);
        if (r2) gf_obj_decref(a, r2);
        return gf_raise(st, rc, "cannot create a pipe");
    }
    RingObject *c0 = gf__ring_alloc(cls), *c1 = c0 ? gf__ring_alloc(cls) : NULL;
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
    gf_chan *c = gf__chan_of(st, chan);
    gf__chan_holders_add(st, c, 0);
    gf__chan_holders_add(st, c, 1);
    gf__ring_hold_refs(st, c0);
    gf__ring_hold_refs(st, c1);
    return Py_BuildValue("(NN)", c0, c1);
}

static PyMethodDef conn_functions[] = {
    {"_pipe", mod_pipe, METH_VARARGS, "_pipe(cls, duplex=True, capacity=0) -> (end0, end1)"},
    {NULL, NULL, 0, NULL},
};

/* Add _pipe (after the Ring type: it makes Ring instances). Result 0 or -1. */
int gf__conn_register(PyObject *m, gf_state *Py_UNUSED(st)) {
    return PyModule_AddFunctions(m, conn_functions);
}
