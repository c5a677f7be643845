/*
 * dict.c -- gilfree._core.SharedDict: a mapping in the arena (gf_dict), usable from every
 * process of the tree at once, plus the helpers list.c shares (container.h): value storage,
 * canonical keys and the `.lock` object.
 *
 * Keys are encoded canonically, so that keys that are equal in Python have equal bytes in
 * every process (the core compares bytes):
 *   None                  'N'
 *   int, bool, integral float (1 == 1.0 == True, -0.0 == 0.0)
 *                         'i' + int64 little-endian, or 'I' + decimal digits beyond int64
 *   other float           'f' + IEEE 754 binary64 (every NaN is one key)
 *   str                   's' + UTF-8 (surrogatepass)
 *   bytes                 'b' + the bytes
 *   tuple                 't' + u32 count + per item (u32 length + encoding)
 *   frozenset             'F' + u32 count + items as for tuples, sorted by their bytes
 *   anything else         'p' + pickle (protocol 5): such keys are "equal by pickle"
 * Subclasses of int/str/bytes/tuple are keyed by their value and come back as the base type
 * (like a key equal to an existing one: the stored key is kept), so d[True] = x; list(d) ->
 * [1]; d[1.0] = x; list(d) -> [1].
 *
 * Values go through the transport's encoder (transport.c), flattened (container.h). No
 * shared lock is held while Python code runs: values are copied out, then decoded.
 */
#include "container.h"

#include <math.h>
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
        gf_msg m = {data, len, 0};
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
        res = args ? PyObject_Call(st->pickle_loads, args, kw) : NULL;
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

/* ------------------------------------------------------------------ canonical keys */

static int kb_reserve(gf_kbuf *b, size_t n) {
    if (b->len + n <= b->cap) return 0;
    size_t cap = b->cap * 2;
    while (cap < b->len + n) cap *= 2;
    char *np;
    if (b->p == b->small) {
        np = PyMem_Malloc(cap);
        if (np) memcpy(np, b->p, b->len);
    } else {
        np = PyMem_Realloc(b->p, cap);
    }
    if (!np) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

static int kb_put(gf_kbuf *b, const void *d, size_t n) {
    if (kb_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
    return 0;
}

static int kb_putc(gf_kbuf *b, char c) { return kb_put(b, &c, 1); }

static int kb_put_u32(gf_kbuf *b, uint32_t v) { return kb_put(b, &v, 4); }

static void kb_init(gf_kbuf *b) {
    b->p = b->small;
    b->len = 0;
    b->cap = sizeof b->small;
}

/* See container.h. */
void gf_key_free(gf_kbuf *b) {
    if (b->p != b->small) PyMem_Free(b->p);
    kb_init(b);
}

static int key_enc(gf_state *st, PyObject *k, gf_kbuf *b, int depth);

/* An int (any int subclass) as 'i' + int64 or 'I' + decimal. */
static int key_enc_int(gf_kbuf *b, PyObject *k) {
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(k, &overflow);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (!overflow) {
        int64_t v64 = (int64_t)v;
        if (kb_putc(b, 'i') < 0) return -1;
        return kb_put(b, &v64, 8);
    }
    PyObject *s = PyLong_Type.tp_repr(k); /* decimal, whatever the subclass's repr */
    if (!s) return -1;
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    int r = u ? kb_putc(b, 'I') : -1;
    if (r == 0) r = kb_put(b, u, (size_t)n);
    Py_DECREF(s);
    return r;
}

/* Items of a tuple/frozenset: u32 count + (u32 len + encoding) each, sorted when `sort`. */
static int cmp_enc(const void *x, const void *y) {
    const gf_kbuf *a = x, *c = y;
    size_t n = a->len < c->len ? a->len : c->len;
    int r = memcmp(a->p, c->p, n);
    if (r) return r;
    return (a->len > c->len) - (a->len < c->len);
}

static int key_enc_items(gf_state *st, PyObject *seq, gf_kbuf *b, int depth, int sort) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "key too large");
        return -1;
    }
    if (kb_put_u32(b, (uint32_t)n) < 0) return -1;
    PyObject **items = PySequence_Fast_ITEMS(seq);
    if (!sort) {
        for (Py_ssize_t i = 0; i < n; i++) {
            size_t at = b->len;
            if (kb_put_u32(b, 0) < 0 || key_enc(st, items[i], b, depth + 1) < 0) return -1;
            uint32_t len = (uint32_t)(b->len - at - 4);
            memcpy(b->p + at, &len, 4);
        }
        return 0;
    }
    gf_kbuf *parts = PyMem_Calloc((size_t)n + 1, sizeof *parts);
    if (!parts) {
        PyErr_NoMemory();
        return -1;
    }
    int r = 0;
    Py_ssize_t made = 0;
    for (; made < n; made++) {
        kb_init(&parts[made]);
        if (key_enc(st, items[made], &parts[made], depth + 1) < 0) {
            gf_key_free(&parts[made]);
            r = -1;
            break;
        }
    }
    if (r == 0) {
        /* kb_init pointed p at each element's own small buffer: fix after qsort moves them. */
        /* qsort moves the structs, so `p` must not point into their own `small`: move
         * every element's bytes to the heap first. */
        for (Py_ssize_t i = 0; i < n; i++)
            if (parts[i].p == parts[i].small) parts[i].p = NULL;
    }
    for (Py_ssize_t i = 0; i < made; i++) {
        if (r == 0 && parts[i].p == NULL) {
            char *h = PyMem_Malloc(parts[i].len ? parts[i].len : 1);
            if (!h) {
                PyErr_NoMemory();
                r = -1;
                continue;
            }
            memcpy(h, parts[i].small, parts[i].len);
            parts[i].p = h;
            parts[i].cap = 0; /* marks heap */
        }
    }
    if (r == 0) {
        qsort(parts, (size_t)n, sizeof *parts, cmp_enc);
        for (Py_ssize_t i = 0; i < n && r == 0; i++) {
            if (kb_put_u32(b, (uint32_t)parts[i].len) < 0 ||
                kb_put(b, parts[i].p, parts[i].len) < 0)
                r = -1;
        }
    }
    for (Py_ssize_t i = 0; i < made; i++)
        if (parts[i].p && parts[i].p != parts[i].small) PyMem_Free(parts[i].p);
    PyMem_Free(parts);
    return r;
}

static int key_enc(gf_state *st, PyObject *k, gf_kbuf *b, int depth) {
    if (depth > 200) {
        PyErr_SetString(PyExc_RecursionError, "key nested too deeply");
        return -1;
    }
    if (k == Py_None) return kb_putc(b, 'N');
    if (PyLong_Check(k)) return key_enc_int(b, k);
    if (PyFloat_Check(k)) {
        double d = PyFloat_AS_DOUBLE(k);
        if (isfinite(d) && d == floor(d)) {
            if (d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
                int64_t v = (int64_t)d;
                if (kb_putc(b, 'i') < 0) return -1;
                return kb_put(b, &v, 8);
            }
            PyObject *i = PyLong_FromDouble(d);
            if (!i) return -1;
            int r = key_enc_int(b, i);
            Py_DECREF(i);
            return r;
        }
        if (isnan(d)) d = NAN;
        if (kb_putc(b, 'f') < 0) return -1;
        return kb_put(b, &d, 8);
    }
    if (PyUnicode_Check(k)) {
        if (kb_putc(b, 's') < 0) return -1;
        if (PyUnicode_IS_ASCII(k)) {
            Py_ssize_t n;
            const char *s = PyUnicode_AsUTF8AndSize(k, &n);
            return s ? kb_put(b, s, (size_t)n) : -1;
        }
        PyObject *u = PyUnicode_AsEncodedString(k, "utf-8", "surrogatepass");
        if (!u) return -1;
        int r = kb_put(b, PyBytes_AS_STRING(u), (size_t)PyBytes_GET_SIZE(u));
        Py_DECREF(u);
        return r;
    }
    if (PyBytes_Check(k)) {
        if (kb_putc(b, 'b') < 0) return -1;
        return kb_put(b, PyBytes_AS_STRING(k), (size_t)PyBytes_GET_SIZE(k));
    }
    if (PyTuple_Check(k)) {
        if (kb_putc(b, 't') < 0) return -1;
        return key_enc_items(st, k, b, depth, 0);
    }
    if (PyFrozenSet_Check(k)) {
        PyObject *seq = PySequence_List(k);
        if (!seq) return -1;
        int r = kb_putc(b, 'F');
        if (r == 0) r = key_enc_items(st, seq, b, depth, 1);
        Py_DECREF(seq);
        return r;
    }
    /* Anything else: hashable, then equal by pickle. */
    if (PyObject_Hash(k) == -1) return -1;
    PyObject *p = PyObject_CallFunction(st->pickle_dumps, "Oi", k, 5);
    if (!p) return -1;
    int r = kb_putc(b, 'p');
    if (r == 0) r = kb_put(b, PyBytes_AS_STRING(p), (size_t)PyBytes_GET_SIZE(p));
    Py_DECREF(p);
    return r;
}

/* See container.h. */
int gf_key_encode(gf_state *st, PyObject *key, gf_kbuf *b) {
    kb_init(b);
    if (key_enc(st, key, b, 0) < 0) {
        gf_key_free(b);
        return -1;
    }
    return 0;
}

static PyObject *key_dec(gf_state *st, const char *p, size_t n, int depth);

static PyObject *key_dec_items(gf_state *st, const char *p, size_t n, int depth, int set) {
    uint32_t cnt;
    if (n < 4) return NULL;
    memcpy(&cnt, p, 4);
    p += 4;
    n -= 4;
    if (cnt > n / 4) return NULL;
    PyObject *t = PyTuple_New(cnt);
    if (!t) return NULL;
    for (uint32_t i = 0; i < cnt; i++) {
        uint32_t len;
        if (n < 4) goto bad;
        memcpy(&len, p, 4);
        p += 4;
        n -= 4;
        if (len > n) goto bad;
        PyObject *it = key_dec(st, p, len, depth + 1);
        if (!it) goto bad;
        PyTuple_SET_ITEM(t, i, it);
        p += len;
        n -= len;
    }
    if (n != 0) goto bad;
    if (set) {
        PyObject *fs = PyFrozenSet_New(t);
        Py_DECREF(t);
        return fs;
    }
    return t;
bad:
    Py_DECREF(t);
    return NULL;
}

/* Decode; NULL with or without an exception (the caller sets ProtocolError if none). */
static PyObject *key_dec(gf_state *st, const char *p, size_t n, int depth) {
    if (n < 1 || depth > 200) return NULL;
    char tag = p[0];
    p++;
    n--;
    switch (tag) {
    case 'N': return n == 0 ? Py_NewRef(Py_None) : NULL;
    case 'i': {
        if (n != 8) return NULL;
        int64_t v;
        memcpy(&v, p, 8);
        return PyLong_FromLongLong((long long)v);
    }
    case 'I': {
        char tmp[512];
        if (n == 0 || n >= sizeof tmp) return NULL;
        memcpy(tmp, p, n);
        tmp[n] = 0;
        return PyLong_FromString(tmp, NULL, 10);
    }
    case 'f': {
        if (n != 8) return NULL;
        double d;
        memcpy(&d, p, 8);
        return PyFloat_FromDouble(d);
    }
    case 's': return PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "surrogatepass");
    case 'b': return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    case 't': return key_dec_items(st, p, n, depth, 0);
    case 'F': return key_dec_items(st, p, n, depth, 1);
    case 'p': {
        PyObject *mv = PyMemoryView_FromMemory((char *)p, (Py_ssize_t)n, PyBUF_READ);
        if (!mv) return NULL;
        PyObject *r = PyObject_CallOneArg(st->pickle_loads, mv);
        Py_DECREF(mv);
        return r;
    }
    default: return NULL;
    }
}

/* See container.h. */
PyObject *gf_key_decode(gf_state *st, const void *p, size_t n) {
    PyObject *r = key_dec(st, p, n, 0);
    if (!r && !PyErr_Occurred())
        PyErr_SetString(st->ProtocolError, "corrupt key in a shared dict");
    return r;
}

/* ------------------------------------------------------------------ the .lock object */

typedef struct {
    PyObject_HEAD
    PyObject *owner; /* the SharedDict / SharedList (a gf_handle) */
    int kind;        /* 0 dict, 1 list */
} gf_clock;

static PyTypeObject *clock_type; /* one per process is fine: module is single-phase in use */

static int clock_do_lock(gf_state *st, gf_clock *c, int64_t deadline) {
    gf_handle *h = (gf_handle *)c->owner;
    if (gf_ensure_attached(st) < 0) return -1;
    int rc;
    if (c->kind == 0)
        GF_BLOCKING(rc, gf_dict_lock(st->arena, h->off, deadline));
    else
        GF_BLOCKING(rc, gf_list_lock(st->arena, h->off, deadline));
    /* GF_EOWNERDEAD: acquired; the previous holder died inside `with d.lock:`. The container
     * itself is consistent (every core mutation commits atomically), so we proceed; only the
     * dead holder's unfinished group of operations may be partly applied. */
    if (rc == 0 || rc == GF_EOWNERDEAD) return 1;
    if (rc == GF_ETIMEDOUT) return 0;
    return gf_raise_int(st, rc, "lock");
}

static PyObject *clock_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    gf_state *st = gf_state_of(((gf_clock *)self)->owner);
    int64_t deadline;
    if (gf_parse_block_timeout(args, nargs, kwnames, "acquire", &deadline) < 0) return NULL;
    int r = clock_do_lock(st, (gf_clock *)self, deadline);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *clock_release(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_clock *c = (gf_clock *)self;
    gf_state *st = gf_state_of(c->owner);
    gf_handle *h = (gf_handle *)c->owner;
    int rc = c->kind == 0 ? gf_dict_unlock(st->arena, h->off) : gf_list_unlock(st->arena, h->off);
    if (rc == GF_EPERM || rc == GF_EOVERFLOW) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    if (rc < 0) return gf_raise(st, rc, "release");
    Py_RETURN_NONE;
}

static PyObject *clock_enter(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_state *st = gf_state_of(((gf_clock *)self)->owner);
    int r = clock_do_lock(st, (gf_clock *)self, GF_FOREVER);
    if (r < 0) return NULL;
    Py_RETURN_TRUE;
}

static PyObject *clock_exit(PyObject *self, PyObject *Py_UNUSED(args)) {
    return clock_release(self, NULL);
}

static void clock_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_CLEAR(((gf_clock *)self)->owner);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static int clock_traverse(PyObject *self, visitproc visit, void *arg) {
    Py_VISIT(((gf_clock *)self)->owner);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static PyObject *clock_repr(PyObject *self) {
    gf_clock *c = (gf_clock *)self;
    return PyUnicode_FromFormat("<gilfree %s lock at 0x%llx>", c->kind ? "SharedList" : "SharedDict",
                                (unsigned long long)((gf_handle *)c->owner)->off);
}

static PyMethodDef clock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))clock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None): take the container's recursive lock."},
    {"release", clock_release, METH_NOARGS, "Release the container's lock."},
    {"__enter__", clock_enter, METH_NOARGS, NULL},
    {"__exit__", clock_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot clock_slots[] = {
    {Py_tp_dealloc, clock_dealloc},
    {Py_tp_traverse, clock_traverse},
    {Py_tp_methods, clock_methods},
    {Py_tp_repr, clock_repr},
    {Py_tp_doc, "The recursive lock of a SharedDict / SharedList: `with d.lock:` groups "
                "operations (other threads' and processes' operations on it wait)."},
    {0, NULL},
};

static PyType_Spec clock_spec = {
    .name = "gilfree._core.ContainerLock",
    .basicsize = sizeof(gf_clock),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = clock_slots,
};

/* See container.h. */
PyObject *gf_clock_new(gf_state *Py_UNUSED(st), PyObject *owner, int kind) {
    gf_clock *c = PyObject_GC_New(gf_clock, clock_type);
    if (!c) return NULL;
    c->owner = Py_NewRef(owner);
    c->kind = kind;
    PyObject_GC_Track(c);
    return (PyObject *)c;
}

/* ------------------------------------------------------------------ SharedDict */

typedef struct {
    GF_HANDLE_HEAD;
} gf_dict_obj;

#define OFF(self) (((gf_handle *)(self))->off)
#define GETBUF 512

static int dict_check_live(PyObject *self) {
    if (!OFF(self)) {
        PyErr_SetString(PyExc_ValueError, "SharedDict handle is not initialised");
        return -1;
    }
    return 0;
}

/* d[key] = value. Result 0, -1 with an exception. */
static int dict_set_item(gf_state *st, PyObject *self, PyObject *key, PyObject *val) {
    char kfast[GF_FAST_MAX + 16], vfast[GF_FAST_MAX + sizeof(gf_frame_hdr)];
    size_t kl = fast_key(key, kfast), vl;
    int rc;
    if (kl && (vl = fast_val(val, vfast)) != 0) {
        rc = gf_dict_try_set(st->arena, OFF(self), kfast, kl, vfast, vl);
        if (rc == GF_EAGAIN)
            GF_BLOCKING(rc, gf_dict_set(st->arena, OFF(self), kfast, kl, vfast, vl));
        if (rc < 0) return rc == GF_EINTR ? -1 : gf_raise_int(st, rc, "SharedDict: cannot store");
        return 0;
    }
    gf_kbuf k;
    if (gf_key_encode(st, key, &k) < 0) return -1;
    gf_venc v;
    if (gf_val_encode(st, val, &v) < 0) {
        gf_key_free(&k);
        return -1;
    }
    rc = gf_dict_try_set(st->arena, OFF(self), k.p, k.len, v.data, v.len);
    if (rc == GF_EAGAIN)
        GF_BLOCKING(rc, gf_dict_set(st->arena, OFF(self), k.p, k.len, v.data, v.len));
    gf_val_done(st, &v, rc >= 0);
    gf_key_free(&k);
    if (rc < 0) return rc == GF_EINTR ? -1 : gf_raise_int(st, rc, "SharedDict: cannot store");
    return 0;
}

/* d[key]. Result: new reference; NULL with KeyError (when `missing` is NULL) or another
 * exception; or a new reference to `missing` when the key is absent. */
static PyObject *dict_get_item(gf_state *st, PyObject *self, PyObject *key, PyObject *missing) {
    char kfast[GF_FAST_MAX + 16];
    size_t kl = fast_key(key, kfast);
    gf_kbuf k;
    if (kl) {
        k.p = kfast;
        k.len = kl;
    } else if (gf_key_encode(st, key, &k) < 0) {
        return NULL;
    }
    char tmp[GETBUF];
    gf_buf out = {0};
    int rc = gf_dict_try_get(st->arena, OFF(self), k.p, k.len, tmp, sizeof tmp, &out);
    if (rc == GF_EAGAIN)
        GF_BLOCKING(rc, gf_dict_get(st->arena, OFF(self), k.p, k.len, tmp, sizeof tmp, &out));
    if (!kl) gf_key_free(&k);
    if (rc == GF_ENOENT) {
        if (missing) return Py_NewRef(missing);
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    if (rc < 0) return rc == GF_EINTR ? NULL : gf_raise(st, rc, "SharedDict");
    PyObject *r = fast_decode(out.data, out.len);
    if (!r) r = gf_val_decode(st, out.data, out.len);
    gf_buf_release(&out);
    return r;
}

static PyObject *dict_subscript(PyObject *self, PyObject *key) {
    return dict_get_item(gf_cst(self), self, key, NULL);
}

static int dict_delete_key(gf_state *st, PyObject *self, PyObject *key) {
    gf_kbuf k;
    if (gf_key_encode(st, key, &k) < 0) return -1;
    int rc;
    GF_BLOCKING(rc, gf_dict_delete(st->arena, OFF(self), k.p, k.len));
    gf_key_free(&k);
    if (rc == GF_ENOENT) {
        PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    }
    if (rc < 0) return rc == GF_EINTR ? -1 : gf_raise_int(st, rc, "SharedDict");
    return 0;
}

static int dict_ass_subscript(PyObject *self, PyObject *key, PyObject *val) {
    gf_state *st = gf_cst(self);
    if (val == NULL) return dict_delete_key(st, self, key);
    return dict_set_item(st, self, key, val);
}

static Py_ssize_t dict_length(PyObject *self) {
    gf_state *st = gf_cst(self);
    int64_t n;
    GF_BLOCKING(n, gf_dict_len(st->arena, OFF(self)));
    if (n < 0) return n == GF_EINTR ? -1 : gf_raise_int(st, (int)n, "SharedDict");
    return (Py_ssize_t)n;
}

static int dict_contains(PyObject *self, PyObject *key) {
    gf_state *st = gf_cst(self);
    char kfast[GF_FAST_MAX + 16];
    size_t kl = fast_key(key, kfast);
    gf_kbuf k;
    if (kl) {
        k.p = kfast;
        k.len = kl;
    } else if (gf_key_encode(st, key, &k) < 0) {
        return -1; /* unhashable: TypeError, as for a dict */
    }
    int rc = gf_dict_try_contains(st->arena, OFF(self), k.p, k.len);
    if (rc == GF_EAGAIN) GF_BLOCKING(rc, gf_dict_contains(st->arena, OFF(self), k.p, k.len));
    if (!kl) gf_key_free(&k);
    if (rc < 0) return rc == GF_EINTR ? -1 : gf_raise_int(st, rc, "SharedDict");
    return rc;
}

/* A snapshot as a list of keys / values / (key, value) tuples (what: 1, 2, 3). */
static PyObject *dict_snapshot_list(PyObject *self, unsigned what) {
    gf_state *st = gf_cst(self);
    gf_snap s = {0};
    int rc;
    GF_BLOCKING(rc, gf_dict_snapshot(st->arena, OFF(self), what, &s));
    if (rc < 0) return rc == GF_EINTR ? NULL : gf_raise(st, rc, "SharedDict snapshot");
    PyObject *lst = PyList_New((Py_ssize_t)s.count);
    if (!lst) goto done;
    size_t pos = 0;
    gf_snap_item it;
    Py_ssize_t i = 0;
    while (i < (Py_ssize_t)s.count && gf_snap_next(&s, &pos, &it)) {
        PyObject *k = NULL, *v = NULL, *o;
        if (what & GF_SNAP_KEYS) {
            k = gf_key_decode(st, it.key, it.klen);
            if (!k) goto fail;
        }
        if (what & GF_SNAP_VALUES) {
            v = gf_val_decode(st, it.val, it.vlen);
            if (!v) {
                Py_XDECREF(k);
                goto fail;
            }
        }
        if (k && v) {
            o = PyTuple_Pack(2, k, v);
            Py_DECREF(k);
            Py_DECREF(v);
            if (!o) goto fail;
        } else {
            o = k ? k : v;
        }
        PyList_SET_ITEM(lst, i, o);
        i++;
    }
    if (i != (Py_ssize_t)s.count) {
        PyErr_SetString(st->ProtocolError, "SharedDict snapshot: count mismatch");
        goto fail;
    }
done:
    gf_snap_free(&s);
    return lst;
fail:
    Py_CLEAR(lst);
    goto done;
}

static PyObject *dict_keys(PyObject *self, PyObject *Py_UNUSED(a)) {
    return dict_snapshot_list(self, GF_SNAP_KEYS);
}
static PyObject *dict_values(PyObject *self, PyObject *Py_UNUSED(a)) {
    return dict_snapshot_list(self, GF_SNAP_VALUES);
}
static PyObject *dict_items(PyObject *self, PyObject *Py_UNUSED(a)) {
    return dict_snapshot_list(self, GF_SNAP_KEYS | GF_SNAP_VALUES);
}

static PyObject *dict_iter(PyObject *self) {
    PyObject *lst = dict_snapshot_list(self, GF_SNAP_KEYS);
    if (!lst) return NULL;
    PyObject *it = PyObject_GetIter(lst);
    Py_DECREF(lst);
    return it;
}

/* copy(): a plain dict. */
static PyObject *dict_copy(PyObject *self, PyObject *Py_UNUSED(a)) {
    PyObject *items = dict_snapshot_list(self, GF_SNAP_KEYS | GF_SNAP_VALUES);
    if (!items) return NULL;
    PyObject *d = PyDict_New();
    if (d) {
        Py_ssize_t n = PyList_GET_SIZE(items);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *t = PyList_GET_ITEM(items, i);
            if (PyDict_SetItem(d, PyTuple_GET_ITEM(t, 0), PyTuple_GET_ITEM(t, 1)) < 0) {
                Py_CLEAR(d);
                break;
            }
        }
    }
    Py_DECREF(items);
    return d;
}

static PyObject *dict_get(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!_PyArg_CheckPositional("get", nargs, 1, 2)) return NULL;
    return dict_get_item(gf_cst(self), self, args[0], nargs > 1 ? args[1] : Py_None);
}

static PyObject *dict_setdefault(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!_PyArg_CheckPositional("setdefault", nargs, 1, 2)) return NULL;
    gf_state *st = gf_cst(self);
    PyObject *dflt = nargs > 1 ? args[1] : Py_None;
    gf_kbuf k;
    if (gf_key_encode(st, args[0], &k) < 0) return NULL;
    gf_venc v;
    if (gf_val_encode(st, dflt, &v) < 0) {
        gf_key_free(&k);
        return NULL;
    }
    char tmp[GETBUF];
    gf_buf out = {0};
    int rc;
    GF_BLOCKING(rc, gf_dict_setdefault(st->arena, OFF(self), k.p, k.len, v.data, v.len, tmp,
                                       sizeof tmp, &out));
    gf_val_done(st, &v, rc == 1);
    gf_key_free(&k);
    if (rc < 0) return rc == GF_EINTR ? NULL : gf_raise(st, rc, "SharedDict.setdefault");
    if (rc == 1) {
        gf_buf_release(&out);
        return Py_NewRef(dflt);
    }
    PyObject *r = gf_val_decode(st, out.data, out.len);
    gf_buf_release(&out);
    return r;
}

static PyObject *dict_pop(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!_PyArg_CheckPositional("pop", nargs, 1, 2)) return NULL;
    gf_state *st = gf_cst(self);
    gf_kbuf k;
    if (gf_key_encode(st, args[0], &k) < 0) return NULL;
    char tmp[GETBUF];
    gf_buf out = {0};
    int rc;
    GF_BLOCKING(rc, gf_dict_pop(st->arena, OFF(self), k.p, k.len, tmp, sizeof tmp, &out));
    gf_key_free(&k);
    if (rc == GF_ENOENT) {
        if (nargs > 1) return Py_NewRef(args[1]);
        PyErr_SetObject(PyExc_KeyError, args[0]);
        return NULL;
    }
    if (rc < 0) return rc == GF_EINTR ? NULL : gf_raise(st, rc, "SharedDict.pop");
    PyObject *r = gf_val_decode(st, out.data, out.len);
    gf_buf_release(&out);
    return r;
}

static PyObject *dict_popitem(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_state *st = gf_cst(self);
    gf_buf kb = {0}, vb = {0};
    int rc;
    GF_BLOCKING(rc, gf_dict_popitem(st->arena, OFF(self), &kb, &vb));
    if (rc == GF_ENOENT) {
        PyErr_SetString(PyExc_KeyError, "popitem(): dictionary is empty");
        return NULL;
    }
    if (rc < 0) return rc == GF_EINTR ? NULL : gf_raise(st, rc, "SharedDict.popitem");
    PyObject *k = gf_key_decode(st, kb.data, kb.len);
    PyObject *v = k ? gf_val_decode(st, vb.data, vb.len) : NULL;
    gf_buf_release(&kb);
    gf_buf_release(&vb);
    PyObject *r = v ? PyTuple_Pack(2, k, v) : NULL;
    Py_XDECREF(k);
    Py_XDECREF(v);
    return r;
}

static PyObject *dict_clear(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_state *st = gf_cst(self);
    int rc;
    GF_BLOCKING(rc, gf_dict_clear(st->arena, OFF(self)));
    if (rc < 0) return rc == GF_EINTR ? NULL : gf_raise(st, rc, "SharedDict.clear");
    Py_RETURN_NONE;
}

/* Merge `src` (mapping with keys(), or iterable of pairs) into self. Result 0 or -1. */
static int dict_merge(gf_state *st, PyObject *self, PyObject *src) {
    PyObject *items;
    if (PyDict_Check(src)) {
        items = PyDict_Items(src);
    } else if (PyObject_HasAttrString(src, "keys")) {
        PyObject *keys = PyObject_CallMethod(src, "keys", NULL);
        if (!keys) return -1;
        PyObject *it = PyObject_GetIter(keys);
        Py_DECREF(keys);
        if (!it) return -1;
        PyObject *k;
        while ((k = PyIter_Next(it))) {
            PyObject *v = PyObject_GetItem(src, k);
            int r = v ? dict_set_item(st, self, k, v) : -1;
            Py_XDECREF(v);
            Py_DECREF(k);
            if (r < 0) {
                Py_DECREF(it);
                return -1;
            }
        }
        Py_DECREF(it);
        return PyErr_Occurred() ? -1 : 0;
    } else {
        items = PySequence_List(src);
    }
    if (!items) return -1;
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast(PyList_GET_ITEM(items, i),
                                         "cannot convert dictionary update sequence element");
        if (!pair) goto fail;
        if (PySequence_Fast_GET_SIZE(pair) != 2) {
            PyErr_Format(PyExc_ValueError,
                         "dictionary update sequence element #%zd has length %zd; 2 is required",
                         i, PySequence_Fast_GET_SIZE(pair));
            Py_DECREF(pair);
            goto fail;
        }
        int r = dict_set_item(st, self, PySequence_Fast_GET_ITEM(pair, 0),
                              PySequence_Fast_GET_ITEM(pair, 1));
        Py_DECREF(pair);
        if (r < 0) goto fail;
    }
    Py_DECREF(items);
    return 0;
fail:
    Py_DECREF(items);
    return -1;
}

static int dict_update_common(PyObject *self, PyObject *args, PyObject *kw, const char *name) {
    gf_state *st = gf_cst(self);
    PyObject *src = NULL;
    if (!PyArg_UnpackTuple(args, name, 0, 1, &src)) return -1;
    if (src && dict_merge(st, self, src) < 0) return -1;
    if (kw && PyDict_GET_SIZE(kw) && dict_merge(st, self, kw) < 0) return -1;
    return 0;
}

static PyObject *dict_update(PyObject *self, PyObject *args, PyObject *kw) {
    if (dict_update_common(self, args, kw, "update") < 0) return NULL;
    Py_RETURN_NONE;
}

/* update_item(key, fn, default=<missing>): atomically d[key] = fn(d[key]) (fn(default) when
 * absent; KeyError when absent without a default). fn runs with no lock held; if another
 * process changed the value meanwhile, fn runs again on the new value. Returns the stored
 * value. */
static PyObject *dict_update_item(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"key", "fn", "default", NULL};
    PyObject *key, *fn, *dflt = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:update_item", kwlist, &key, &fn, &dflt))
        return NULL;
    gf_state *st = gf_cst(self);
    gf_kbuf k;
    if (gf_key_encode(st, key, &k) < 0) return NULL;
    PyObject *res = NULL;
    for (;;) {
        char tmp[GETBUF];
        gf_buf out = {0};
        int rc;
        GF_BLOCKING(rc, gf_dict_get(st->arena, OFF(self), k.p, k.len, tmp, sizeof tmp, &out));
        PyObject *old;
        int absent = 0;
        if (rc == GF_ENOENT) {
            if (!dflt) {
                PyErr_SetObject(PyExc_KeyError, key);
                break;
            }
            absent = 1;
            old = Py_NewRef(dflt);
        } else if (rc < 0) {
            if (rc != GF_EINTR) gf_raise(st, rc, "SharedDict.update_item");
            break;
        } else {
            old = gf_val_decode(st, out.data, out.len);
            if (!old) {
                gf_buf_release(&out);
                break;
            }
        }
        PyObject *nv = PyObject_CallOneArg(fn, old);
        Py_DECREF(old);
        if (!nv) {
            gf_buf_release(&out);
            break;
        }
        gf_venc v;
        if (gf_val_encode(st, nv, &v) < 0) {
            Py_DECREF(nv);
            gf_buf_release(&out);
            break;
        }
        GF_BLOCKING(rc, gf_dict_cas(st->arena, OFF(self), k.p, k.len, absent ? NULL : out.data,
                                    absent ? 0 : out.len, v.data, v.len));
        gf_val_done(st, &v, rc == 1);
        gf_buf_release(&out);
        if (rc == 1) {
            res = nv;
            break;
        }
        Py_DECREF(nv);
        if (rc < 0) {
            if (rc != GF_EINTR) gf_raise(st, rc, "SharedDict.update_item");
            break;
        }
        /* rc == 0: someone else changed it; run fn again on the new value. */
    }
    gf_key_free(&k);
    return res;
}

static PyObject *dict_richcompare(PyObject *self, PyObject *other, int op) {
    if (op != Py_EQ && op != Py_NE) Py_RETURN_NOTIMPLEMENTED;
    PyObject *mine = dict_copy(self, NULL);
    if (!mine) return NULL;
    PyObject *theirs;
    if (PyDict_Check(other)) {
        theirs = Py_NewRef(other);
    } else if (PyObject_TypeCheck(other, Py_TYPE(self)) ||
               (PyObject_HasAttrString(other, "keys") && PyObject_HasAttrString(other, "items") &&
                PyMapping_Check(other))) {
        theirs = PyObject_CallFunctionObjArgs((PyObject *)&PyDict_Type, other, NULL);
        if (!theirs) {
            Py_DECREF(mine);
            return NULL;
        }
    } else {
        Py_DECREF(mine);
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *r = PyObject_RichCompare(mine, theirs, op);
    Py_DECREF(mine);
    Py_DECREF(theirs);
    return r;
}

static PyObject *dict_repr(PyObject *self) {
    PyObject *d = dict_copy(self, NULL);
    if (!d) return NULL;
    PyObject *r = PyObject_Repr(d);
    Py_DECREF(d);
    return r;
}

static int dict_create(gf_arena *a, gf_off *out) { return gf_dict_create(a, 0, out); }

static PyObject *dict_new(PyTypeObject *tp, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kw)) {
    return gf_handle_new_object(tp, dict_create, GF_OBJ_DICT, "SharedDict: cannot create");
}

static int dict_init(PyObject *self, PyObject *args, PyObject *kw) {
    if (dict_check_live(self) < 0) return -1;
    return dict_update_common(self, args, kw, "SharedDict");
}

static void dict_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    gf_handle_release(gf_state_for_dealloc(self, dict_dealloc), (gf_handle *)self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *dict_reduce(PyObject *self, PyObject *Py_UNUSED(a)) {
    return gf_handle_reduce(self, NULL);
}

static PyObject *dict_rebuild(PyObject *cls, PyObject *off) {
    return gf_handle_rebuild((PyTypeObject *)cls, off, GF_OBJ_DICT);
}

static PyObject *dict_get_lock(PyObject *self, void *Py_UNUSED(c)) {
    return gf_clock_new(gf_cst(self), self, 0);
}

static PyObject *dict_get_off(PyObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(OFF(self));
}

static PyObject *dict_check(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_state *st = gf_cst(self);
    int64_t n;
    GF_BLOCKING(n, gf_dict_check(st->arena, OFF(self)));
    if (n < 0) return n == GF_EINTR ? NULL : gf_raise(st, (int)n, "SharedDict check");
    return PyLong_FromLongLong(n);
}

static PyObject *dict_fromkeys(PyObject *cls, PyObject *args) {
    PyObject *it, *val = Py_None;
    if (!PyArg_UnpackTuple(args, "fromkeys", 1, 2, &it, &val)) return NULL;
    PyObject *d = PyObject_CallNoArgs(cls);
    if (!d) return NULL;
    PyObject *iter = PyObject_GetIter(it);
    if (!iter) goto fail;
    PyObject *k;
    gf_state *st = gf_state_of(d);
    while ((k = PyIter_Next(iter))) {
        int r = dict_set_item(st, d, k, val);
        Py_DECREF(k);
        if (r < 0) break;
    }
    Py_DECREF(iter);
    if (PyErr_Occurred()) goto fail;
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

static PyMethodDef dict_methods[] = {
    {"keys", dict_keys, METH_NOARGS, "A list of the keys (a consistent snapshot)."},
    {"values", dict_values, METH_NOARGS, "A list of the values (a consistent snapshot)."},
    {"items", dict_items, METH_NOARGS, "A list of (key, value) pairs (a consistent snapshot)."},
    {"get", (PyCFunction)(void (*)(void))dict_get, METH_FASTCALL, "get(key, default=None)"},
    {"setdefault", (PyCFunction)(void (*)(void))dict_setdefault, METH_FASTCALL,
     "setdefault(key, default=None): atomic insert-if-absent; returns the stored value."},
    {"pop", (PyCFunction)(void (*)(void))dict_pop, METH_FASTCALL, "pop(key[, default])"},
    {"popitem", dict_popitem, METH_NOARGS, "Remove and return some (key, value) pair."},
    {"clear", dict_clear, METH_NOARGS, "Remove everything."},
    {"copy", dict_copy, METH_NOARGS, "A plain dict with the current contents."},
    {"update", (PyCFunction)(void (*)(void))dict_update, METH_VARARGS | METH_KEYWORDS,
     "update([other], **kw)"},
    {"update_item", (PyCFunction)(void (*)(void))dict_update_item, METH_VARARGS | METH_KEYWORDS,
     "update_item(key, fn, default=<missing>): atomically d[key] = fn(d[key]) (fn(default) "
     "when absent) and return the new value. fn runs with no lock held and may run more than "
     "once (when another process changed the value meanwhile): keep it free of side effects."},
    {"fromkeys", dict_fromkeys, METH_VARARGS | METH_CLASS, "fromkeys(iterable, value=None)"},
    {"_check", dict_check, METH_NOARGS, "Check the shared structure; returns its length."},
    {"__reduce__", dict_reduce, METH_NOARGS, NULL},
    {"_rebuild", dict_rebuild, METH_O | METH_CLASS, "Rebuild a handle from a pickled offset."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef dict_getset[] = {
    {"lock", dict_get_lock, NULL, "The dict's recursive lock: `with d.lock:` groups operations.",
     NULL},
    {"_offset", dict_get_off, NULL, "Offset of the shared object in the arena.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot dict_slots[] = {
    {Py_tp_new, dict_new},
    {Py_tp_init, dict_init},
    {Py_tp_dealloc, dict_dealloc},
    {Py_tp_methods, dict_methods},
    {Py_tp_getset, dict_getset},
    {Py_tp_iter, dict_iter},
    {Py_tp_richcompare, dict_richcompare},
    {Py_tp_repr, dict_repr},
    {Py_tp_hash, PyObject_HashNotImplemented},
    {Py_mp_length, dict_length},
    {Py_mp_subscript, dict_subscript},
    {Py_mp_ass_subscript, dict_ass_subscript},
    {Py_sq_contains, dict_contains},
    {Py_tp_doc,
     "SharedDict([mapping or iterable], **kw): a dict in shared memory, seen and changed by "
     "every process of the tree. Keys: None, bool, int, float, str, bytes and tuples / "
     "frozensets of these compare as in Python (1 == 1.0 == True); other hashable keys are "
     "equal when their pickles are equal. Values are pickled (copied in and out)."},
    {0, NULL},
};

static PyType_Spec dict_spec = {
    .name = "gilfree._core.SharedDict",
    .basicsize = sizeof(gf_dict_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_MAPPING,
    .slots = dict_slots,
};

/* Create the SharedDict and ContainerLock types. Result 0 or -1. */
int gf_dict_type_init(PyObject *m, gf_state *st) {
    if (!clock_type) {
        clock_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &clock_spec, NULL);
        if (!clock_type) return -1;
    }
    st->Dict_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &dict_spec, NULL);
    if (!st->Dict_type) return -1;
    if (PyModule_AddType(m, clock_type) < 0) return -1;
    return PyModule_AddType(m, st->Dict_type);
}
