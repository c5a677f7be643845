/*
 * transport.c -- encode a Python object into a gilfree frame and decode it back.
 *
 * Frame = gf_frame_hdr, body, then nbufs x gf_frame_buf (see gilfree.h). The encoder produces
 * iovecs (no copy of the body: the ring copies once); the decoder reads the message in place.
 *
 * Fast paths (exact types only, so that True stays a bool and subclasses keep their class):
 * bytes, str (UTF-8 with surrogatepass, as pickle does), int that fits int64, float (the 8
 * bytes, so NaN payloads and -0.0 survive), None, bytearray. Everything else: pickle protocol
 * 5 with a buffer_callback that sends PickleBuffers >= GF_OOB_MIN out of band in arena blocks.
 *
 * Pickler choice: plain pickle.dumps (the C pickler with copyreg's table) is ~3x cheaper than
 * building a multiprocessing.reduction.ForkingPickler per message; the ForkingPickler's extra
 * reducers only matter for objects plain pickle refuses (sockets, stdlib Connections), so a
 * message that plain pickle refuses is retried with ForkingPickler before the error is raised.
 *
 * Reducers of shared handles take references for the receiver; they register an undo action
 * (gf_transport_on_abort) so that a message that is never enqueued gives them back.
 */
#include "transport.h"

#include "../core/internal.h"
#include "npalloc.h"

#include <string.h>

/* Set while gf_encode_for_put runs: every out-of-band block is held in the ledger as soon as
 * it exists (the copy into it takes a while: a sender killed meanwhile loses nothing). */
static __thread int hold_for_put;

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "frames are little-endian; add byte swapping for this target"
#endif

/* Where the encode running in this thread keeps its undo list (created on first use), or
 * NULL when no encode runs. */
static _Thread_local PyObject **tl_undo;

/* See transport.h. An action is stored as (callable, args, refs): refs a tuple of the offsets
 * (ints) whose references it drops, for gf_enc_keep's ledger records. */
int gf_transport_on_abort(PyObject *callable, PyObject *args, const gf_off *refs, int nrefs) {
    if (!tl_undo) return 0;
    if (!*tl_undo && !(*tl_undo = PyList_New(0))) return -1;
    PyObject *offs = PyTuple_New(nrefs);
    if (!offs) return -1;
    for (int i = 0; i < nrefs; i++) {
        PyObject *o = PyLong_FromUnsignedLongLong((unsigned long long)refs[i]);
        if (!o) {
            Py_DECREF(offs);
            return -1;
        }
        PyTuple_SET_ITEM(offs, i, o);
    }
    PyObject *t = PyTuple_Pack(3, callable, args, offs);
    Py_DECREF(offs);
    if (!t) return -1;
    int r = PyList_Append(*tl_undo, t);
    Py_DECREF(t);
    return r;
}

/* Run and clear the undo actions in `lst`; errors are reported as unraisable. */
static void run_undo(PyObject *lst) {
    if (!lst) return;
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    Py_ssize_t n = PyList_GET_SIZE(lst);
    for (Py_ssize_t i = n - 1; i >= 0; i--) {
        PyObject *t = PyList_GET_ITEM(lst, i);
        PyObject *r = PyObject_Call(PyTuple_GET_ITEM(t, 0), PyTuple_GET_ITEM(t, 1), NULL);
        if (!r)
            PyErr_WriteUnraisable(PyTuple_GET_ITEM(t, 0));
        else
            Py_DECREF(r);
    }
    PyList_SetSlice(lst, 0, n, NULL);
    PyErr_Restore(et, ev, tb);
}

/* ------------------------------------------------------------------ out-of-band callback */

/* buffer_callback for pickle: large contiguous buffers go out of band (appended to the list
 * `self`, return None); others stay in band (return True). */
static PyObject *oob_cb(PyObject *self, PyObject *pb) {
    Py_buffer v;
    if (PyObject_GetBuffer(pb, &v, PyBUF_ANY_CONTIGUOUS) < 0) {
        PyErr_Clear();
        Py_RETURN_TRUE;
    }
    Py_ssize_t len = v.len;
    PyBuffer_Release(&v);
    if (len < GF_OOB_MIN) Py_RETURN_TRUE;
    if (PyList_Append(self, pb) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef oob_cb_def = {"_gilfree_oob", oob_cb, METH_O, NULL};

/* Copy the collected PickleBuffers into arena blocks (e->bufs). Result 0 or -1 (blocks made so
 * far are recorded in e and freed by gf_enc_done). */
static int oob_copy(gf_state *st, PyObject *lst, gf_enc *e) {
    Py_ssize_t n = PyList_GET_SIZE(lst);
    if (n == 0) return 0;
    if ((size_t)n > GF_FRAME_MAX_BUFS) {
        PyErr_SetString(PyExc_ValueError, "too many out-of-band buffers in one message");
        return -1;
    }
    if (n <= 4) {
        e->bufs = e->bufs_small;
    } else {
        e->bufs = PyMem_Malloc(sizeof(gf_frame_buf) * (size_t)n);
        if (!e->bufs) {
            PyErr_NoMemory();
            return -1;
        }
    }
    const char *base = gf_arena_base(st->arena);
    size_t asize = gf_arena_size(st->arena);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_buffer v;
        if (PyObject_GetBuffer(PyList_GET_ITEM(lst, i), &v, PyBUF_ANY_CONTIGUOUS) < 0) return -1;
        gf_off blk;
        /* A buffer that already is a whole arena block from its start (e.g. an array received
         * from another process, sent on or returned) travels by reference: one more holder
         * of the block, no copy. Both sides then share that memory. Not the data of a NumPy
         * array made here by the arena handler and still alive (npalloc.h): copied. */
        if ((const char *)v.buf > base && (const char *)v.buf < base + asize) {
            blk = (gf_off)((const char *)v.buf - base);
            if (gf_block_size(st->arena, blk) >= (size_t)v.len && gf_npalloc_may_share(blk)) {
                /* The message's record before its share: a sender killed between the two
                 * has its record freed once -- one of the holders it has itself (its view of
                 * the buffer) -- instead of leaking the share it took. */
                if (hold_for_put) gf__block_hold_for_put(st->arena, blk);
                if (gf_block_share(st->arena, blk) == 0) {
                    e->bufs[i].block = blk;
                    e->bufs[i].len = (uint64_t)v.len;
                    e->nbufs = (uint32_t)(i + 1);
                    PyBuffer_Release(&v);
                    continue;
                }
                gf__block_unhold_off(st->arena, blk); /* no share: copied below instead */
            }
        }
        /* One copy into a new block (split over threads when large). The exported view keeps
         * the buffer alive and unresized while the GIL is released. */
        int rc, hold = hold_for_put;
        if (v.len >= (1 << 20)) {
            Py_BEGIN_ALLOW_THREADS rc = gf__alloc_copy_held(st->arena, v.buf, (size_t)v.len,
                                                            &blk, hold);
            Py_END_ALLOW_THREADS
        } else {
            rc = gf__alloc_copy_held(st->arena, v.buf, (size_t)v.len, &blk, hold);
        }
        if (rc < 0) {
            PyBuffer_Release(&v);
            gf_raise(st, rc, "out-of-band buffer");
            return -1;
        }
        e->bufs[i].block = blk;
        e->bufs[i].len = (uint64_t)v.len;
        e->nbufs = (uint32_t)(i + 1);
        PyBuffer_Release(&v);
    }
    return 0;
}

/* Pickle with multiprocessing.reduction.ForkingPickler (its extra reducers). New ref or NULL. */
static PyObject *forking_dumps(PyObject *obj, PyObject *cb) {
    PyObject *red = PyImport_ImportModule("multiprocessing.reduction");
    if (!red) return NULL;
    PyObject *fp = PyObject_GetAttrString(red, "ForkingPickler");
    Py_DECREF(red);
    if (!fp) return NULL;
    PyObject *io = PyImport_ImportModule("io");
    PyObject *bio = io ? PyObject_CallMethod(io, "BytesIO", NULL) : NULL;
    Py_XDECREF(io);
    PyObject *res = NULL;
    if (bio) {
        PyObject *p = PyObject_CallFunction(fp, "OiOO", bio, 5, Py_True, cb);
        if (p) {
            PyObject *r = PyObject_CallMethod(p, "dump", "O", obj);
            if (r) {
                Py_DECREF(r);
                res = PyObject_CallMethod(bio, "getvalue", NULL);
            }
            Py_DECREF(p);
        }
        Py_DECREF(bio);
    }
    Py_DECREF(fp);
    return res;
}

/* A per-thread (callback, list) pair reused by encodes that do not nest (the common case). */
static _Thread_local PyObject *tl_cb, *tl_lst;
static _Thread_local int tl_cb_busy;

/* Pickle obj into e->keep (bytes) with out-of-band buffers. Result 0 or -1. */
static int encode_pickle(gf_state *st, PyObject *obj, gf_enc *e) {
    PyObject *lst, *cb;
    int cached = 0;
    if (!tl_cb_busy && tl_cb) {
        lst = Py_NewRef(tl_lst);
        cb = Py_NewRef(tl_cb);
        cached = 1;
    } else {
        lst = PyList_New(0);
        if (!lst) return -1;
        cb = PyCFunction_New(&oob_cb_def, lst);
        if (!cb) {
            Py_DECREF(lst);
            return -1;
        }
        if (!tl_cb_busy && !tl_cb) { /* keep it for the next encodes of this thread */
            tl_cb = Py_NewRef(cb);
            tl_lst = Py_NewRef(lst);
            cached = 1;
        }
    }
    if (cached) tl_cb_busy = 1;
    PyObject **prev = tl_undo;
    tl_undo = &e->undo;
    static PyObject *kwnames, *proto;
    if (!kwnames) kwnames = Py_BuildValue("(ss)", "protocol", "buffer_callback");
    if (!proto) proto = PyLong_FromLong(5);
    PyObject *args[3] = {obj, proto, cb};
    PyObject *data = kwnames && proto ? PyObject_Vectorcall(st->pickle_dumps, args, 1, kwnames)
                                      : NULL;
    if (!data && !PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) &&
        !PyErr_ExceptionMatches(PyExc_MemoryError) &&
        !PyErr_ExceptionMatches(PyExc_RecursionError)) {
        /* Plain pickle refused: retry with the multiprocessing reducers. */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        run_undo(e->undo);
        PyList_SetSlice(lst, 0, PyList_GET_SIZE(lst), NULL);
        PyErr_Clear();
        data = forking_dumps(obj, cb);
        if (!data) {
            /* Report the plain pickler's error (what pickle.dumps says). */
            PyErr_Clear();
            PyErr_Restore(et, ev, tb);
        } else {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(tb);
        }
    }
    tl_undo = prev;
    if (cached) tl_cb_busy = 0;
    if (!data) goto fail;
    if (!PyBytes_Check(data)) {
        Py_DECREF(data);
        PyErr_SetString(PyExc_TypeError, "pickle.dumps did not return bytes");
        goto fail;
    }
    e->keep = data;
    if (PyList_GET_SIZE(lst) && oob_copy(st, lst, e) < 0) goto fail;
    PyList_SetSlice(lst, 0, PyList_GET_SIZE(lst), NULL);
    Py_DECREF(cb);
    Py_DECREF(lst);
    e->iov[1].iov_base = PyBytes_AS_STRING(data);
    e->iov[1].iov_len = (size_t)PyBytes_GET_SIZE(data);
    return 0;
fail:
    PyList_SetSlice(lst, 0, PyList_GET_SIZE(lst), NULL);
    Py_DECREF(cb);
    Py_DECREF(lst);
    return -1;
}

/* ------------------------------------------------------------------ encode */

/* See transport.h. */
int gf_encode(gf_state *st, PyObject *obj, int raw, gf_enc *e) {
    e->keep = NULL;
    e->has_view = 0;
    e->bufs = NULL;
    e->nbufs = 0;
    e->undo = NULL;
    e->kept = 0;
    e->iovcnt = 2;
    e->iov[1].iov_base = NULL;
    e->iov[1].iov_len = 0;
    int kind;
    PyTypeObject *tp = Py_TYPE(obj);
    if (raw) {
        if (PyObject_GetBuffer(obj, &e->view, PyBUF_SIMPLE) < 0) return -1;
        e->has_view = 1;
        e->iov[1].iov_base = e->view.buf;
        e->iov[1].iov_len = (size_t)e->view.len;
        kind = GF_FRAME_RAW;
    } else if (tp == &PyLong_Type) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (overflow) goto pickle;
        if (v == -1 && PyErr_Occurred()) return -1;
        int64_t v64 = (int64_t)v;
        memcpy(e->scalar, &v64, 8);
        e->iov[1].iov_base = e->scalar;
        e->iov[1].iov_len = 8;
        kind = GF_FRAME_INT;
    } else if (tp == &PyBytes_Type) {
        e->iov[1].iov_base = PyBytes_AS_STRING(obj);
        e->iov[1].iov_len = (size_t)PyBytes_GET_SIZE(obj);
        kind = GF_FRAME_BYTES;
    } else if (tp == &PyUnicode_Type) {
        if (PyUnicode_IS_ASCII(obj)) {
            Py_ssize_t n;
            const char *s = PyUnicode_AsUTF8AndSize(obj, &n);
            if (!s) return -1;
            e->iov[1].iov_base = (void *)s;
            e->iov[1].iov_len = (size_t)n;
        } else {
            PyObject *b = PyUnicode_AsEncodedString(obj, "utf-8", "surrogatepass");
            if (!b) return -1;
            e->keep = b;
            e->iov[1].iov_base = PyBytes_AS_STRING(b);
            e->iov[1].iov_len = (size_t)PyBytes_GET_SIZE(b);
        }
        kind = GF_FRAME_STR;
    } else if (tp == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(obj);
        memcpy(e->scalar, &d, 8);
        e->iov[1].iov_base = e->scalar;
        e->iov[1].iov_len = 8;
        kind = GF_FRAME_FLOAT;
    } else if (obj == Py_None) {
        kind = GF_FRAME_NONE;
    } else if (tp == &PyByteArray_Type) {
        if (PyObject_GetBuffer(obj, &e->view, PyBUF_SIMPLE) < 0) return -1;
        e->has_view = 1;
        e->iov[1].iov_base = e->view.buf;
        e->iov[1].iov_len = (size_t)e->view.len;
        kind = GF_FRAME_BYTEARRAY;
    } else {
    pickle:
        if (encode_pickle(st, obj, e) < 0) {
            gf_enc_done(st, e, 0);
            return -1;
        }
        kind = GF_FRAME_PICKLE;
    }
    int rc = gf_frame_header(&e->hdr, kind, e->iov[1].iov_len, e->nbufs);
    if (rc < 0) {
        gf_enc_done(st, e, 0);
        return gf_raise_int(st, rc, "frame");
    }
    e->iov[0].iov_base = &e->hdr;
    e->iov[0].iov_len = sizeof e->hdr;
    e->total = sizeof e->hdr + e->iov[1].iov_len;
    if (e->nbufs) {
        e->iov[2].iov_base = e->bufs;
        e->iov[2].iov_len = sizeof(gf_frame_buf) * e->nbufs;
        e->total += e->iov[2].iov_len;
        e->iovcnt = 3;
    }
    return 0;
}

/* See transport.h. */
int gf_encode_for_put(gf_state *st, PyObject *obj, int raw, gf_enc *e) {
    hold_for_put = 1;
    int rc = gf_encode(st, obj, raw, e);
    hold_for_put = 0;
    return rc;
}

/* See transport.h. */
void gf_enc_done(gf_state *st, gf_enc *e, int sent) {
    if (!sent && !e->kept) {
        for (uint32_t i = 0; i < e->nbufs; i++) {
            gf__block_unhold_off(st->arena, e->bufs[i].block);
            gf_free(st->arena, e->bufs[i].block);
        }
        if (e->undo) run_undo(e->undo);
    }
    if (e->bufs && e->bufs != e->bufs_small) PyMem_Free(e->bufs);
    e->bufs = NULL;
    e->nbufs = 0;
    e->kept = 0;
    if (e->has_view) {
        PyBuffer_Release(&e->view);
        e->has_view = 0;
    }
    Py_CLEAR(e->keep);
    Py_CLEAR(e->undo);
}

/* Call the ledger function `fn` (gf_ref_hold / gf_ref_unhold) on every offset of the undo
 * actions' refs tuples. */
static void undo_refs(gf_state *st, PyObject *lst, int (*fn)(gf_arena *, gf_off)) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lst); i++) {
        PyObject *offs = PyTuple_GET_ITEM(PyList_GET_ITEM(lst, i), 2);
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(offs); k++) {
            unsigned long long off = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(offs, k));
            fn(st->arena, (gf_off)off);
        }
    }
}

/* See transport.h. The kept object is a tuple (undo list or None, bytes of nbufs gf_offs or
 * None). */
int gf_enc_keep(gf_state *st, gf_enc *e, PyObject **kept) {
    *kept = NULL;
    int has_undo = e->undo && PyList_GET_SIZE(e->undo) > 0;
    if (!has_undo && !e->nbufs) return 0;
    PyObject *blocks = Py_None, *undo = has_undo ? e->undo : Py_None;
    Py_INCREF(blocks);
    if (e->nbufs) {
        Py_DECREF(blocks);
        blocks = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(e->nbufs * sizeof(gf_off)));
        if (!blocks) return -1;
        gf_off *b = (gf_off *)PyBytes_AS_STRING(blocks);
        for (uint32_t i = 0; i < e->nbufs; i++) b[i] = e->bufs[i].block;
    }
    PyObject *t = PyTuple_Pack(2, undo, blocks);
    Py_DECREF(blocks);
    if (!t) return -1;
    /* Recorded after they were taken (by the encode); nothing below can fail. */
    if (has_undo) undo_refs(st, e->undo, gf_ref_hold);
    for (uint32_t i = 0; i < e->nbufs; i++) gf_ref_hold(st->arena, e->bufs[i].block);
    Py_CLEAR(e->undo);
    e->kept = 1;
    *kept = t;
    return 0;
}

/* See transport.h. */
void gf_enc_release_kept(gf_state *st, PyObject *kept) {
    PyObject *undo = PyTuple_GET_ITEM(kept, 0), *blocks = PyTuple_GET_ITEM(kept, 1);
    if (blocks != Py_None) {
        const gf_off *b = (const gf_off *)PyBytes_AS_STRING(blocks);
        Py_ssize_t n = PyBytes_GET_SIZE(blocks) / (Py_ssize_t)sizeof(gf_off);
        for (Py_ssize_t i = 0; i < n; i++) gf_free_held(st->arena, b[i]);
    }
    if (undo != Py_None) {
        undo_refs(st, undo, gf_ref_unhold); /* forgotten before they are dropped */
        run_undo(undo);
    }
}

/* See transport.h. */
void gf_enc_flatten(const gf_enc *e, char *dst) {
    for (int i = 0; i < e->iovcnt; i++) {
        if (e->iov[i].iov_len) memcpy(dst, e->iov[i].iov_base, e->iov[i].iov_len);
        dst += e->iov[i].iov_len;
    }
}

/* ------------------------------------------------------------------ decode */

/* See transport.h. */
int gf_decode_frame(gf_state *st, const gf_msg *msg, gf_frame *fr) {
    int rc = gf_frame_parse(st->arena, msg->data, msg->len, fr);
    if (rc < 0) {
        gf_raise(st, GF_EBADMSG, "malformed message");
        return -1;
    }
    return 0;
}

/* Free the out-of-band blocks of a parsed frame from index i on. */
static void free_bufs(gf_state *st, const gf_frame *fr, uint32_t i) {
    for (; i < fr->nbufs; i++) {
        gf_frame_buf b;
        memcpy(&b, (const char *)fr->bufs + i * sizeof b, sizeof b);
        gf_free(st->arena, b.block);
    }
}

/* See transport.h. */
void gf_msg_discard(gf_state *st, gf_msg *msg) {
    gf_frame fr;
    if (gf_frame_parse(st->arena, msg->data, msg->len, &fr) == 0 &&
        (fr.kind == GF_FRAME_PICKLE || fr.kind == GF_FRAME_ERROR)) /* both own their buffers */
        free_bufs(st, &fr, 0);
    gf_msg_release(st->arena, msg);
}

/* pickle.loads(body, buffers=bufs). New reference or NULL. */
static PyObject *loads_body(gf_state *st, const void *body, size_t len, PyObject *bufs) {
    if (len <= 4096 && !bufs) { /* a small copy is cheaper than a view we must release */
        PyObject *b = PyBytes_FromStringAndSize(body, (Py_ssize_t)len);
        if (!b) return NULL;
        PyObject *res = PyObject_CallOneArg(st->pickle_loads, b);
        Py_DECREF(b);
        return res;
    }
    PyObject *mv = PyMemoryView_FromMemory((char *)body, (Py_ssize_t)len, PyBUF_READ);
    if (!mv) return NULL;
    PyObject *res;
    if (bufs) {
        static PyObject *kwnames;
        if (!kwnames) kwnames = Py_BuildValue("(s)", "buffers");
        PyObject *args[2] = {mv, bufs};
        res = kwnames ? PyObject_Vectorcall(st->pickle_loads, args, 1, kwnames) : NULL;
    } else {
        res = PyObject_CallOneArg(st->pickle_loads, mv);
    }
    /* The body may live in a buffer reused by the next get: make sure nothing keeps it. */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *r = PyObject_CallMethod(mv, "release", NULL);
    if (!r) {
        /* Something still exports it (cannot happen with pickle); keep the result anyway. */
        PyErr_Clear();
    } else {
        Py_DECREF(r);
    }
    PyErr_Restore(et, ev, tb);
    Py_DECREF(mv);
    return res;
}

/* The out-of-band buffers of a pickle frame as a list of memoryviews over BlockViews. `shared`
 * (a pool task's frame): each BlockView takes a holder of its own (gf_block_share), the
 * frame's stay the message's; else it takes over the frame's. Result: a new list, or NULL
 * with an exception (the frame's blocks freed unless shared). */
static PyObject *frame_views(gf_state *st, const gf_frame *fr, int shared) {
    PyObject *bufs = PyList_New(fr->nbufs);
    if (!bufs) {
        if (!shared) free_bufs(st, fr, 0);
        return NULL;
    }
    for (uint32_t i = 0; i < fr->nbufs; i++) {
        gf_frame_buf b;
        memcpy(&b, (const char *)fr->bufs + i * sizeof b, sizeof b);
        int rc = shared ? gf_block_share(st->arena, b.block) : 0;
        if (rc < 0) gf_raise(st, GF_EBADMSG, "malformed message (out-of-band buffer)");
        PyObject *bv = rc < 0 ? NULL : gf_blockview_new(st, b.block, (size_t)b.len);
        PyObject *mv = bv ? PyMemoryView_FromObject(bv) : NULL;
        Py_XDECREF(bv); /* the memoryview keeps it (or it freed the block) */
        if (!mv) {
            if (!shared) free_bufs(st, fr, i + 1);
            Py_DECREF(bufs); /* frees the blocks (holders) of views already made */
            return NULL;
        }
        PyList_SET_ITEM(bufs, i, mv);
    }
    return bufs;
}

static PyObject *decode(gf_state *st, gf_msg *msg, int raw_as, int shared);

/* See transport.h. A decode nested in a task's (a reducer that reads a queue while the task's
 * argument is unpickled) adopts the references of its own message, as usual. */
PyObject *gf_decode(gf_state *st, gf_msg *msg, int raw_as) {
    if (__builtin_expect(!gf_adopt_own_refs, 1)) return decode(st, msg, raw_as, 0);
    gf_adopt_own_refs = 0;
    PyObject *res = decode(st, msg, raw_as, 0);
    gf_adopt_own_refs = 1;
    return res;
}

/* See transport.h. */
PyObject *gf_decode_shared(gf_state *st, gf_msg *msg) {
    int prev = gf_adopt_own_refs;
    gf_adopt_own_refs = 1;
    PyObject *res = decode(st, msg, 0, 1);
    gf_adopt_own_refs = prev;
    return res;
}

/* gf_decode; `shared`: see gf_decode_shared. */
static PyObject *decode(gf_state *st, gf_msg *msg, int raw_as, int shared) {
    gf_frame fr;
    if (gf_decode_frame(st, msg, &fr) < 0) {
        gf_msg_release(st->arena, msg);
        return NULL;
    }
    PyObject *res = NULL;
    const char *body = fr.body;
    size_t n = fr.body_len;
    if (fr.nbufs && fr.kind != GF_FRAME_PICKLE && fr.kind != GF_FRAME_ERROR) {
        /* Only pickles carry buffers; do not trust (or free) the offsets. */
        gf_raise(st, GF_EBADMSG, "malformed message (buffers on a non-pickle frame)");
        gf_msg_release(st->arena, msg);
        return NULL;
    }
    switch (fr.kind) {
    case GF_FRAME_INT:
    case GF_FRAME_FLOAT:
        if (n != 8) {
            gf_raise(st, GF_EBADMSG, "malformed message (scalar length)");
            break;
        }
        if (fr.kind == GF_FRAME_INT) {
            int64_t v;
            memcpy(&v, body, 8);
            res = PyLong_FromLongLong((long long)v);
        } else {
            double d;
            memcpy(&d, body, 8);
            res = PyFloat_FromDouble(d);
        }
        break;
    case GF_FRAME_BYTES: res = PyBytes_FromStringAndSize(body, (Py_ssize_t)n); break;
    case GF_FRAME_STR: res = PyUnicode_DecodeUTF8(body, (Py_ssize_t)n, "surrogatepass"); break;
    case GF_FRAME_NONE: res = Py_NewRef(Py_None); break;
    case GF_FRAME_BYTEARRAY: res = PyByteArray_FromStringAndSize(body, (Py_ssize_t)n); break;
    case GF_FRAME_RAW:
        if (raw_as == 0)
            res = PyBytes_FromStringAndSize(body, (Py_ssize_t)n);
        else
            res = loads_body(st, body, n, NULL);
        break;
    case GF_FRAME_PICKLE:
    case GF_FRAME_ERROR: {
        PyObject *bufs = NULL;
        if (fr.nbufs && !(bufs = frame_views(st, &fr, shared))) break;
        res = loads_body(st, body, n, bufs);
        Py_XDECREF(bufs);
        break;
    }
    default: gf_raise(st, GF_EBADMSG, "malformed message (kind)"); break;
    }
    gf_msg_release(st->arena, msg);
    return res;
}

/* See transport.h. */
PyObject *gf_pickle_bytes(gf_state *st, PyObject *obj) {
    return PyObject_CallFunction(st->pickle_dumps, "Oi", obj, 5);
}

/* buffer_callback of _pickle_check: every buffer out of band, dropped (no copy). */
static PyObject *discard_cb(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(pb)) {
    Py_RETURN_NONE;
}
static PyMethodDef discard_cb_def = {"_gilfree_discard", discard_cb, METH_O, NULL};

/* _pickle_check(obj): pickle.dumps(obj, protocol=5) as a picklability check -- buffers out of
 * band and dropped, and the references the reducers of shared handles take for a receiver
 * given back (a plain pickle.dumps leaked one per handle). Result None, or NULL with the
 * pickling error set. */
static PyObject *mod_pickle_check(PyObject *m, PyObject *obj) {
    gf_state *st = PyModule_GetState(m);
    PyObject *cb = PyCFunction_New(&discard_cb_def, NULL);
    if (!cb) return NULL;
    PyObject *undo = NULL, **prev = tl_undo;
    tl_undo = &undo;
    PyObject *kw = Py_BuildValue("{sisO}", "protocol", 5, "buffer_callback", cb);
    PyObject *args = kw ? PyTuple_Pack(1, obj) : NULL;
    PyObject *r = args ? PyObject_Call(st->pickle_dumps, args, kw) : NULL;
    tl_undo = prev;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_DECREF(cb);
    if (undo) run_undo(undo);
    Py_XDECREF(undo);
    if (!r) return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyMethodDef transport_functions[] = {
    {"_pickle_check", mod_pickle_check, METH_O,
     "_pickle_check(obj): raise what pickle.dumps(obj, protocol=5) raises (buffers dropped, "
     "shared handles' references for a receiver given back)."},
    {NULL, NULL, 0, NULL},
};

/* Cache pickle.dumps / pickle.loads / PickleBuffer in the module state; add _pickle_check.
 * Result 0 or -1. */
int gf__transport_register(PyObject *m, gf_state *st) {
    if (PyModule_AddFunctions(m, transport_functions) < 0) return -1;
    PyObject *pickle = PyImport_ImportModule("pickle");
    if (!pickle) return -1;
    st->pickle_dumps = PyObject_GetAttrString(pickle, "dumps");
    st->pickle_loads = PyObject_GetAttrString(pickle, "loads");
    st->PickleBuffer = PyObject_GetAttrString(pickle, "PickleBuffer");
    Py_DECREF(pickle);
    if (!st->pickle_dumps || !st->pickle_loads || !st->PickleBuffer) return -1;
    return 0;
}
