/*
 * value.c -- value storage of the shared containers (SharedDict, SharedList; see container.h):
 * a value is a transport frame with its out-of-band buffers appended inline (an entry must own
 * all its bytes), encoded through the transport's encoder (transport.c); decoding pays for the
 * references that shared handles inside a stored value adopt. No shared lock is held while
 * Python code runs: values are copied out, then decoded.
 */
#include "container.h"

#include <string.h>

/* ------------------------------------------------------------------ values */

/* See container.h. */
int gf_val_encode(gf_state *st, PyObject *obj, gf_venc *v) {
    v->heap = NULL;
    v->data = NULL;
    v->len = 0;
    if (gf_encode(st, obj, 0, &v->e) < 0) return -1;
    gf_enc *e = &v->e;
    size_t extra = 0;
    for (uint32_t i = 0; i < e->nbufs; i++) extra += (size_t)e->bufs[i].len;
    size_t total = e->total + extra;
    if (total <= sizeof v->small) {
        v->data = v->small;
    } else {
        v->heap = PyMem_Malloc(total);
        if (!v->heap) {
            gf_enc_done(st, e, 0);
            PyErr_NoMemory();
            return -1;
        }
        v->data = v->heap;
    }
    gf_enc_flatten(e, v->data);
    char *dst = v->data + e->total;
    gf_frame_buf *tab = (gf_frame_buf *)(v->data + e->total - sizeof(gf_frame_buf) * e->nbufs);
    for (uint32_t i = 0; i < e->nbufs; i++) {
        size_t n = (size_t)e->bufs[i].len;
        const void *src = gf_ptr(st->arena, e->bufs[i].block);
        if (n >= ((size_t)1 << 20)) {
            Py_BEGIN_ALLOW_THREADS memcpy(dst, src, n);
            Py_END_ALLOW_THREADS
        } else {
            memcpy(dst, src, n);
        }
        dst += n;
        gf_frame_buf b = {0, (uint64_t)n};
        memcpy(&tab[i], &b, sizeof b); /* unaligned-safe */
        gf_free(st->arena, e->bufs[i].block);
    }
    e->nbufs = 0; /* the blocks are freed; gf_enc_done must not free them again */
    v->len = total;
    return 0;
}

/* See container.h. */
void gf_val_done(gf_state *st, gf_venc *v, int stored) {
    gf_enc_done(st, &v->e, stored);
    PyMem_Free(v->heap);
    v->heap = NULL;
}

/* A stored value stays stored after a read, so the shared handles (SharedDict, Lock, Queue,
 * SharedBuffer, ...) that its pickle names must not be *adopted* by the reader: their
 * references belong to the stored copy. Every _rebuild adopts one, so after decoding such a
 * value we pickle it once more and drop the bytes: each handle's __reduce__ takes one reference
 * for "a receiver", which pays for the one the rebuild adopted. Only pickles that mention
 * "_rebuild" (every handle reducer does) pay this. Result 0 or -1. */
static int pay_adopted_refs(gf_state *st, const gf_frame_hdr *h, const char *body,
                            PyObject *obj) {
    static const char pat[] = "_rebuild";
    if (h->kind != GF_FRAME_PICKLE || h->body_len < sizeof pat - 1 ||
        !memmem(body, (size_t)h->body_len, pat, sizeof pat - 1))
        return 0;
    gf_enc e;
    if (gf_encode(st, obj, 0, &e) < 0) return -1;
    for (uint32_t i = 0; i < e.nbufs; i++) gf_free(st->arena, e.bufs[i].block);
    e.nbufs = 0;
    gf_enc_done(st, &e, 1); /* "sent": the references stay taken */
    return 0;
}

/* See container.h. */
PyObject *gf_val_decode(gf_state *st, const void *data, size_t len) {
    gf_frame_hdr h;
    if (len < sizeof h) goto bad;
    memcpy(&h, data, sizeof h);
    if (h.magic != GF_FRAME_MAGIC) goto bad;
    if (h.nbufs == 0) {
        gf_msg m = {data, len, 0, 0};
        PyObject *r = gf_decode(st, &m, 0);
        if (r && h.kind == GF_FRAME_PICKLE && h.body_len <= len - sizeof h &&
            pay_adopted_refs(st, &h, (const char *)data + sizeof h, r) < 0)
            Py_CLEAR(r);
        return r;
    }
    if (h.kind != GF_FRAME_PICKLE || h.nbufs > GF_FRAME_MAX_BUFS) goto bad;
    size_t tabsz = sizeof(gf_frame_buf) * h.nbufs;
    if (h.body_len > len - sizeof h || tabsz > len - sizeof h - h.body_len) goto bad;
    const char *body = (const char *)data + sizeof h;
    const char *tab = body + h.body_len;
    const char *p = tab + tabsz;
    size_t left = len - sizeof h - h.body_len - tabsz;
    PyObject *bufs = PyList_New(h.nbufs);
    if (!bufs) return NULL;
    for (uint32_t i = 0; i < h.nbufs; i++) {
        gf_frame_buf b;
        memcpy(&b, tab + i * sizeof b, sizeof b);
        if (b.len > left) {
            Py_DECREF(bufs);
            goto bad;
        }
        /* A private, writable copy (like a value read from a Manager dict). */
        PyObject *ba = PyByteArray_FromStringAndSize(p, (Py_ssize_t)b.len);
        if (!ba) {
            Py_DECREF(bufs);
            return NULL;
        }
        PyList_SET_ITEM(bufs, i, ba);
        p += b.len;
        left -= b.len;
    }
    if (left != 0) {
        Py_DECREF(bufs);
        goto bad;
    }
    PyObject *bodyb = PyBytes_FromStringAndSize(body, (Py_ssize_t)h.body_len);
    PyObject *res = NULL;
    if (bodyb) {
        PyObject *kw = Py_BuildValue("{sO}", "buffers", bufs);
        PyObject *args = kw ? PyTuple_Pack(1, bodyb) : NULL;
        int own = gf_adopt_own_refs; /* (a read nested in a pool task's decode adopts) */
        gf_adopt_own_refs = 0;
        res = args ? PyObject_Call(st->pickle_loads, args, kw) : NULL;
        gf_adopt_own_refs = own;
        Py_XDECREF(args);
        Py_XDECREF(kw);
        Py_DECREF(bodyb);
        if (res && pay_adopted_refs(st, &h, body, res) < 0) Py_CLEAR(res);
    }
    Py_DECREF(bufs);
    return res;
bad:
    PyErr_SetString(st->ProtocolError, "corrupt value in a shared container");
    return NULL;
}
