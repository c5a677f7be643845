/*
 * container.h -- helpers shared by the SharedDict (dict.c) and SharedList (list.c) types:
 * value storage through the transport's encoder (value.c), canonical keys (key.c), the
 * `.lock` object (clock.c), and the scalar fast paths (inline here).
 */
#ifndef GF_CONTAINER_H
#define GF_CONTAINER_H

#include "transport.h"

#include <string.h>

/* A value encoded for storage in a shared container: one flat byte string
 *   [gf_frame_hdr][body][nbufs x gf_frame_buf (block = 0)][buffer bytes ...]
 * i.e. a transport frame whose out-of-band buffers follow it inline (a container entry must
 * own all its bytes: the core frees entries without calling back into Python). */
typedef struct gf_venc {
    gf_enc e;          /* the transport's encoding (keeps handle references until done) */
    char *data;        /* the flat bytes (small or heap) */
    size_t len;
    char *heap;
    char small[256];
} gf_venc;

/* value.c: encode `obj` for storage. Result 0, or -1 with an exception set (unpicklable: the
 * pickling error; MemoryError). Always call gf_val_done afterwards when it succeeded. */
int gf_val_encode(gf_state *st, PyObject *obj, gf_venc *v);
/* Release an encoding; `stored` 0 gives back the references taken for a receiver. */
void gf_val_done(gf_state *st, gf_venc *v, int stored);
/* Decode a stored value. Result: new reference, or NULL with an exception set. */
PyObject *gf_val_decode(gf_state *st, const void *data, size_t len);

/* Canonical key bytes (equal keys -> equal bytes in every process). */
typedef struct gf_kbuf {
    char *p;
    size_t len, cap;
    char small[192];
} gf_kbuf;
/* key.c: encode `key`. Result 0 or -1 with an exception set (TypeError: unhashable). Free with
 * gf_key_free. */
int gf_key_encode(gf_state *st, PyObject *key, gf_kbuf *b);
void gf_key_free(gf_kbuf *b);
/* Decode canonical key bytes. New reference or NULL (ProtocolError on malformed bytes). */
PyObject *gf_key_decode(gf_state *st, const void *p, size_t n);

/* Fast paths. Scalar keys and values (exact int fitting int64, exact ASCII str / bytes up to
 * GF_FAST_MAX bytes, float, None) are encoded straight into stack buffers, bytes-identical to
 * gf_key_encode / gf_val_encode; the core call is first tried without waiting while the GIL is
 * held (no GIL release for an uncontended operation) and only falls back to the waiting call,
 * GIL released, when it would wait (contended stripe, `with d.lock:` held elsewhere, a resize).
 * Small values are decoded straight from the copy-out buffer. */
#define GF_FAST_MAX 120

/* Canonical key bytes of a scalar key into buf (>= GF_FAST_MAX + 9 bytes). Result: length,
 * or 0 when the key needs the general encoder (no exception set). */
static inline size_t fast_key(PyObject *k, char *buf) {
    PyTypeObject *tp = Py_TYPE(k);
    if (tp == &PyLong_Type) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(k, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 0;
        }
        int64_t v64 = (int64_t)v;
        buf[0] = 'i';
        memcpy(buf + 1, &v64, 8);
        return 9;
    }
    if (tp == &PyUnicode_Type && PyUnicode_IS_COMPACT_ASCII(k)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(k);
        if (n > GF_FAST_MAX) return 0;
        buf[0] = 's';
        memcpy(buf + 1, PyUnicode_DATA(k), (size_t)n);
        return (size_t)n + 1;
    }
    if (tp == &PyBytes_Type && PyBytes_GET_SIZE(k) <= GF_FAST_MAX) {
        Py_ssize_t n = PyBytes_GET_SIZE(k);
        buf[0] = 'b';
        memcpy(buf + 1, PyBytes_AS_STRING(k), (size_t)n);
        return (size_t)n + 1;
    }
    return 0;
}

/* A scalar value as a stored frame (what gf_val_encode makes for it) into buf (>=
 * sizeof(gf_frame_hdr) + GF_FAST_MAX). Result: length, or 0 for the general encoder. */
static inline size_t fast_val(PyObject *v, char *buf) {
    PyTypeObject *tp = Py_TYPE(v);
    gf_frame_hdr h = {GF_FRAME_MAGIC, 0, 0, 0, 0};
    char *body = buf + sizeof h;
    if (tp == &PyLong_Type) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (x == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 0;
        }
        int64_t x64 = (int64_t)x;
        memcpy(body, &x64, 8);
        h.kind = GF_FRAME_INT;
        h.body_len = 8;
    } else if (tp == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(v);
        memcpy(body, &d, 8);
        h.kind = GF_FRAME_FLOAT;
        h.body_len = 8;
    } else if (v == Py_None) {
        h.kind = GF_FRAME_NONE;
    } else if (tp == &PyUnicode_Type && PyUnicode_IS_COMPACT_ASCII(v) &&
               PyUnicode_GET_LENGTH(v) <= GF_FAST_MAX) {
        h.kind = GF_FRAME_STR;
        h.body_len = (uint64_t)PyUnicode_GET_LENGTH(v);
        memcpy(body, PyUnicode_DATA(v), (size_t)h.body_len);
    } else if (tp == &PyBytes_Type && PyBytes_GET_SIZE(v) <= GF_FAST_MAX) {
        h.kind = GF_FRAME_BYTES;
        h.body_len = (uint64_t)PyBytes_GET_SIZE(v);
        memcpy(body, PyBytes_AS_STRING(v), (size_t)h.body_len);
    } else {
        return 0;
    }
    memcpy(buf, &h, sizeof h);
    return sizeof h + (size_t)h.body_len;
}

/* Decode a stored scalar frame directly. Result: new reference, or NULL with no exception when
 * the general decoder must handle it. */
static inline PyObject *fast_decode(const void *data, size_t len) {
    gf_frame_hdr h;
    if (len < sizeof h) return NULL;
    memcpy(&h, data, sizeof h);
    if (h.magic != GF_FRAME_MAGIC || h.nbufs != 0 || h.body_len != len - sizeof h) return NULL;
    const char *body = (const char *)data + sizeof h;
    switch (h.kind) {
    case GF_FRAME_INT: {
        if (h.body_len != 8) return NULL;
        int64_t x;
        memcpy(&x, body, 8);
        return PyLong_FromLongLong((long long)x);
    }
    case GF_FRAME_FLOAT: {
        if (h.body_len != 8) return NULL;
        double d;
        memcpy(&d, body, 8);
        return PyFloat_FromDouble(d);
    }
    case GF_FRAME_NONE: return h.body_len == 0 ? Py_NewRef(Py_None) : NULL;
    default: return NULL;
    }
}

/* The module state of a container handle: cached in it (hot paths skip
 * PyType_GetModuleByDef). */
static inline gf_state *gf_cst(PyObject *self) {
    gf_state *st = GF_HST(self);
    return st != NULL ? st : gf_state_of(self);
}

/* clock.c: the `.lock` of a container: kind 0 = dict, 1 = list. New reference or NULL. */
PyObject *gf_clock_new(gf_state *st, PyObject *owner, int kind);

/* The module state from a dealloc: walks tp_base (not the MRO, which interpreter shutdown may
 * already have cleared on a Python subclass) up to the type whose tp_dealloc is `dealloc`. */
static inline gf_state *gf_state_for_dealloc(PyObject *self, destructor dealloc) {
    PyTypeObject *tp = Py_TYPE(self);
    while (tp && tp->tp_dealloc != dealloc) tp = tp->tp_base;
    if (!tp || !(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) return NULL;
    PyObject *m = PyType_GetModule(tp);
    if (!m) {
        PyErr_Clear();
        return NULL;
    }
    return (gf_state *)PyModule_GetState(m);
}

#endif /* GF_CONTAINER_H */
