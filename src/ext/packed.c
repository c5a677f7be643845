/*
 * packed.c -- the packed-list codec (see packed.h): encoding a map chunk's all-int64 /
 * all-str / all-bytes items or results into one bytes object (or iovecs gathered from the
 * objects), and decoding it -- checking every length and code unit, since the bytes come from
 * another process.
 *
 * A map chunk's items (parent -> worker) and results (worker -> parent) travel without pickle
 * when they are all exact ints that fit int64, all exact str, or all exact bytes:
 *   pk_hdr {magic "GFPL", type, count}, then
 *   INT64: count x int64;
 *   STR:   count x uint32 meta (nchars << 2 | kind code: 0 ASCII, 1 UCS1, 2 UCS2, 3 UCS4),
 *          padding to 8, then each string's PEP 393 code units (no transcoding: lone
 *          surrogates round-trip exactly), each aligned to its unit size;
 *   BYTES: count x uint32 length, then the bytes.
 * Decoding bounds-checks every length against the message.
 */
#include "packed.h"
#include "fastint.h"

#include <string.h>

#define PK_MAGIC 0x4c504647u
enum { PK_INT64 = 1, PK_STR = 2, PK_BYTES = 3 };
typedef struct pk_hdr {
    uint32_t magic;
    uint8_t type;
    uint8_t _r[3];
    uint64_t count;
} pk_hdr;
#define PK_MAXCHARS (((Py_ssize_t)1 << 30) - 1)

static inline size_t pk_align(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }

/* INT64: every item an exact int that fits int64. Result: new bytes (header left for the
 * caller), or NULL (an exception only on memory failure). */
static PyObject *pk_pack_int64(PyObject *const *items, Py_ssize_t n, pk_hdr *h) {
    h->type = PK_INT64;
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof *h + n * 8);
    if (!b) return NULL;
    char *out = PyBytes_AS_STRING(b) + sizeof *h;
    for (Py_ssize_t i = 0; i < n; i++) {
        int overflow = 0;
        if (Py_TYPE(items[i]) != &PyLong_Type) goto no;
        long long v = PyLong_AsLongLongAndOverflow(items[i], &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            goto no;
        }
        int64_t v64 = (int64_t)v;
        memcpy(out + i * 8, &v64, 8);
    }
    return b;
no:
    Py_DECREF(b);
    return NULL;
}

/* STR: every item an exact str (PEP 393 code units copied as they are). Result as for
 * pk_pack_int64. */
static PyObject *pk_pack_str(PyObject *const *items, Py_ssize_t n, pk_hdr *h) {
    h->type = PK_STR;
    size_t data = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = items[i];
        if (Py_TYPE(x) != &PyUnicode_Type || PyUnicode_READY(x) < 0) {
            PyErr_Clear();
            return NULL;
        }
        Py_ssize_t len = PyUnicode_GET_LENGTH(x);
        if (len > PK_MAXCHARS) return NULL;
        size_t k = PyUnicode_KIND(x);
        data = pk_align(data, k) + (size_t)len * k;
    }
    size_t tab = pk_align(sizeof *h + 4 * (size_t)n, 8);
    if (data > (size_t)PY_SSIZE_T_MAX - tab) return NULL;
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(tab + data));
    if (!b) return NULL;
    char *base = PyBytes_AS_STRING(b);
    memset(base + sizeof *h + 4 * (size_t)n, 0, tab - sizeof *h - 4 * (size_t)n);
    uint32_t *meta = (uint32_t *)(base + sizeof *h);
    char *d = base + tab;
    size_t off = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = items[i];
        Py_ssize_t len = PyUnicode_GET_LENGTH(x);
        size_t k = PyUnicode_KIND(x);
        uint32_t kc = k == 1 ? (PyUnicode_IS_ASCII(x) ? 0 : 1) : k == 2 ? 2 : 3;
        size_t a = pk_align(off, k);
        if (a != off) memset(d + off, 0, a - off);
        meta[i] = ((uint32_t)len << 2) | kc;
        memcpy(d + a, PyUnicode_DATA(x), (size_t)len * k);
        off = a + (size_t)len * k;
    }
    return b;
}

/* BYTES: every item an exact bytes. Result as for pk_pack_int64. */
static PyObject *pk_pack_bytes(PyObject *const *items, Py_ssize_t n, pk_hdr *h) {
    h->type = PK_BYTES;
    size_t data = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (Py_TYPE(items[i]) != &PyBytes_Type) return NULL;
        Py_ssize_t len = PyBytes_GET_SIZE(items[i]);
        if ((uint64_t)len > UINT32_MAX) return NULL;
        data += (size_t)len;
    }
    size_t tab = sizeof *h + 4 * (size_t)n;
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(tab + data));
    if (!b) return NULL;
    char *base = PyBytes_AS_STRING(b);
    uint32_t *lens = (uint32_t *)(base + sizeof *h);
    char *d = base + tab;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len = PyBytes_GET_SIZE(items[i]);
        lens[i] = (uint32_t)len;
        memcpy(d, PyBytes_AS_STRING(items[i]), (size_t)len);
        d += len;
    }
    return b;
}

/* See packed.h. */
PyObject *gf__pk_pack(PyObject *const *items, Py_ssize_t n) {
    if (n < 1) return NULL;
    PyTypeObject *tp = Py_TYPE(items[0]);
    pk_hdr h = {PK_MAGIC, 0, {0, 0, 0}, (uint64_t)n};
    PyObject *b;
    if (tp == &PyLong_Type)
        b = pk_pack_int64(items, n, &h);
    else if (tp == &PyUnicode_Type)
        b = pk_pack_str(items, n, &h);
    else if (tp == &PyBytes_Type)
        b = pk_pack_bytes(items, n, &h);
    else
        return NULL;
    if (b) memcpy(PyBytes_AS_STRING(b), &h, sizeof h);
    return b;
}

/* See packed.h. */
PyObject *gf__pk_ints(const int64_t *v, Py_ssize_t n) {
    pk_hdr h = {PK_MAGIC, PK_INT64, {0, 0, 0}, (uint64_t)n};
    PyObject *res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof h + n * 8);
    if (res) {
        memcpy(PyBytes_AS_STRING(res), &h, sizeof h);
        if (n) memcpy(PyBytes_AS_STRING(res) + sizeof h, v, (size_t)n * 8);
    }
    return res;
}

static const char pk_zeros[8];

/* The packed list of items[0..n) (all exact str or all exact bytes) described as iovecs that
 * point into the objects (no copy here: gf_pool_submit gathers them once). *headp: malloc'd
 * header + table (free it), *iovp: malloc'd iovecs (free it), [0] = the header. The objects
 * must stay alive (and unchanged: str and bytes are immutable) until the iovecs are used.
 * Result: the iovec count; 0 when the items do not qualify; -1 with an exception. */
int gf__pk_gather(PyObject *const *items, Py_ssize_t n, char **headp,
                  struct iovec **iovp) {
    if (n < 1 || n > (1 << 24)) return 0;
    PyTypeObject *tp = Py_TYPE(items[0]);
    int str = tp == &PyUnicode_Type;
    if (!str && tp != &PyBytes_Type) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (Py_TYPE(items[i]) != tp) return 0;
        if (str ? (PyUnicode_READY(items[i]) < 0 ||
                   PyUnicode_GET_LENGTH(items[i]) > PK_MAXCHARS)
                : (uint64_t)PyBytes_GET_SIZE(items[i]) > UINT32_MAX) {
            PyErr_Clear();
            return 0;
        }
    }
    size_t tab = str ? pk_align(sizeof(pk_hdr) + 4 * (size_t)n, 8) : sizeof(pk_hdr) + 4 * (size_t)n;
    char *head = calloc(1, tab);
    struct iovec *iov = malloc(sizeof *iov * (1 + 2 * (size_t)n));
    if (!head || !iov) {
        free(head);
        free(iov);
        PyErr_NoMemory();
        return -1;
    }
    pk_hdr h = {PK_MAGIC, str ? PK_STR : PK_BYTES, {0, 0, 0}, (uint64_t)n};
    memcpy(head, &h, sizeof h);
    uint32_t *meta = (uint32_t *)(head + sizeof h);
    int c = 1;
    size_t off = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = items[i];
        size_t len, k = 1;
        const void *data;
        if (str) {
            len = (size_t)PyUnicode_GET_LENGTH(x);
            k = PyUnicode_KIND(x);
            uint32_t kc = k == 1 ? (PyUnicode_IS_ASCII(x) ? 0 : 1) : k == 2 ? 2 : 3;
            meta[i] = ((uint32_t)len << 2) | kc;
            data = PyUnicode_DATA(x);
            size_t a = pk_align(off, k);
            if (a != off) {
                iov[c].iov_base = (void *)pk_zeros;
                iov[c++].iov_len = a - off;
                off = a;
            }
        } else {
            len = (size_t)PyBytes_GET_SIZE(x);
            meta[i] = (uint32_t)len;
            data = PyBytes_AS_STRING(x);
        }
        if (len) {
            iov[c].iov_base = (void *)data;
            iov[c++].iov_len = len * k;
            off += len * k;
        }
    }
    iov[0].iov_base = head;
    iov[0].iov_len = tab;
    *headp = head;
    *iovp = iov;
    return c;
}

/* The item count of a packed list, or -1 with an exception (malformed header). */
Py_ssize_t gf__pk_count(const char *p, size_t len) {
    pk_hdr h;
    if (len < sizeof h) goto bad;
    memcpy(&h, p, sizeof h);
    if (h.magic != PK_MAGIC || h.count > (uint64_t)(len - sizeof h)) goto bad;
    if (h.type == PK_INT64 && h.count * 8 == len - sizeof h) return (Py_ssize_t)h.count;
    if ((h.type == PK_STR || h.type == PK_BYTES) && h.count * 4 <= len - sizeof h)
        return (Py_ssize_t)h.count;
bad:
    PyErr_SetString(PyExc_RuntimeError, "gilfree pool: malformed packed list");
    return -1;
}

/* A str from n code units of kind code kc (unaligned). The units come from another process:
 * they are checked, and the result is canonical (PEP 393) whatever they are. Result: new
 * reference, or NULL with an exception (RuntimeError: a unit beyond U+10FFFF, or non-ASCII
 * bytes in an ASCII string). */
static PyObject *pk_str(const char *src, size_t n, size_t kc) {
    if (kc == 0) { /* ASCII: copy, then check that no byte has its high bit set */
        PyObject *o = PyUnicode_New((Py_ssize_t)n, 127);
        if (!o) return NULL;
        unsigned char *dst = PyUnicode_1BYTE_DATA(o);
        memcpy(dst, src, n);
        uint64_t acc = 0;
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, dst + i, 8);
            acc |= w;
        }
        for (; i < n; i++) acc |= dst[i];
        if (acc & UINT64_C(0x8080808080808080)) {
            Py_DECREF(o);
            goto bad;
        }
        return o;
    }
    if (kc == 1) return PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, src, (Py_ssize_t)n);
    /* UCS2 / UCS4: copy into an aligned buffer of that kind, check, canonicalise if needed */
    Py_UCS4 widest = kc == 2 ? 0xffff : 0x10ffff;
    PyObject *o = PyUnicode_New((Py_ssize_t)n, widest);
    if (!o) return NULL;
    void *dst = PyUnicode_DATA(o);
    memcpy(dst, src, n * (kc == 2 ? 2 : 4));
    Py_UCS4 mx = 0;
    if (kc == 2) {
        const Py_UCS2 *u = dst;
        for (size_t i = 0; i < n; i++) mx = u[i] > mx ? u[i] : mx;
    } else {
        const Py_UCS4 *u = dst;
        for (size_t i = 0; i < n; i++) mx = u[i] > mx ? u[i] : mx;
        if (mx > 0x10ffff) {
            Py_DECREF(o);
            goto bad;
        }
    }
    if (mx >= (kc == 2 ? 0x100u : 0x10000u)) return o; /* canonical already */
    PyObject *c = PyUnicode_FromKindAndData(kc == 2 ? PyUnicode_2BYTE_KIND : PyUnicode_4BYTE_KIND,
                                            dst, (Py_ssize_t)n);
    Py_DECREF(o);
    return c;
bad:
    PyErr_SetString(PyExc_RuntimeError, "gilfree pool: malformed str in a packed list");
    return NULL;
}

/* Decode the packed list p[0..len) into dst[start:start+count] (replacing what is there).
 * Result: the count, or -1 with an exception (malformed; dst may be partly filled). */
Py_ssize_t gf__pk_fill(const char *p, size_t len, PyObject *dst, Py_ssize_t start) {
    Py_ssize_t n = gf__pk_count(p, len);
    if (n < 0) return -1;
    if (start < 0 || start > PyList_GET_SIZE(dst) || n > PyList_GET_SIZE(dst) - start) {
        PyErr_SetString(PyExc_IndexError, "gilfree pool: packed list does not fit");
        return -1;
    }
    PyObject **slot = ((PyListObject *)dst)->ob_item + start;
    uint8_t type = (uint8_t)p[4];
    const char *body = p + sizeof(pk_hdr);
    size_t blen = len - sizeof(pk_hdr);
    if (type == PK_INT64) {
        Py_ssize_t i = 0;
        for (; i < n; i++) {
            int64_t v;
            memcpy(&v, body + i * 8, 8);
            PyObject *o = gf__int_new(v);
            if (!o) break;
            Py_XSETREF(slot[i], o);
        }
        return i == n ? n : -1;
    }
    size_t tab = type == PK_STR ? pk_align(sizeof(pk_hdr) + 4 * (size_t)n, 8) - sizeof(pk_hdr)
                                : 4 * (size_t)n;
    if (tab > blen) goto bad;
    const char *d = body + tab;
    size_t avail = blen - tab, off = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t m;
        memcpy(&m, body + 4 * i, 4);
        PyObject *o;
        if (type == PK_STR) {
            size_t nch = m >> 2, kc = m & 3, k = kc <= 1 ? 1 : kc == 2 ? 2 : 4;
            size_t a = pk_align(off, k);
            if (a > avail || nch * k > avail - a) goto bad;
            o = pk_str(d + a, nch, kc);
            if (!o) return -1;
            off = a + nch * k;
        } else {
            if (m > avail - off) goto bad;
            o = PyBytes_FromStringAndSize(d + off, (Py_ssize_t)m);
            if (!o) return -1;
            off += m;
        }
        Py_XSETREF(slot[i], o);
    }
    return n;
bad:
    PyErr_SetString(PyExc_RuntimeError, "gilfree pool: malformed packed list");
    return -1;
}

/* A new list decoded from a packed list, or NULL with an exception. */
PyObject *gf__pk_list(const char *p, size_t len) {
    Py_ssize_t n = gf__pk_count(p, len);
    if (n < 0) return NULL;
    PyObject *l = PyList_New(n); /* NULL slots until filled; never exposed unfilled */
    if (!l) return NULL;
    if (gf__pk_fill(p, len, l, 0) < 0) {
        Py_DECREF(l);
        return NULL;
    }
    return l;
}

