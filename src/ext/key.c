/*
 * key.c -- canonical key encoding of the shared containers (SharedDict; see container.h): keys
 * that are equal in Python get equal bytes in every process (the core compares bytes):
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
 */
#include "container.h"

#include <math.h>
#include <string.h>

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
