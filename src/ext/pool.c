/*
 * pool.c -- gilfree._core.Pool: the process side of gilfree.Pool / ProcessPoolExecutor over
 * the core scheduler (src/core/pool.c). gilfree/pool.py builds the stdlib API on it.
 *
 *   Pool(nworkers, maxtasksperchild, initializer, initargs, errfn)
 *   serve()      run by one long-lived Python thread: the only thread that forks workers
 *                (PR_SET_PDEATHSIG is tied to the forking *thread*); returns at stop().
 *   start()      gf_pool_create (waits for serve() to be running).
 *   submit(kind, fnbytes, obj, timeout=0.0, retries=0, block=True) -> id, or None when every
 *                mailbox is full and block is false. Pickling errors raise here (nothing
 *                is queued).
 *   results(max=256, timeout=None) -> [(id, status, worker, value, elapsed_ns)], [] on
 *                timeout, None once the pool is closed and drained. elapsed_ns: the worker's
 *                time on the task (0 when it did not run).
 *   unpack(b) -> list; unpack_into(lst, start, b) -> count; count(b)  (static: a packed
 *                map chunk); new_list(n) (static: n empty slots, for MapResult)
 *   cancel(id) -> 0 queued, 1 running (worker killed), None unknown/finished.
 *   close(), terminate(), join(timeout) -> bool, stop(), stats(), pids()
 *
 * Task payload: task_hdr, the pickled function (cached by its bytes in the worker), then a
 * transport frame of the argument object. kind CALL: obj = (args, kwargs|None);
 * MAP: obj = list of items -> [fn(x)]; STARMAP: obj = list of tuples -> [fn(*x)].
 * task_hdr._r[0] = 1: the argument is a packed list (see "packed lists"), not a frame.
 * A MAP / STARMAP result is a packed list (bytes) when every result qualifies, else a list.
 * Result payload: OK -> frame of the result; ERROR -> frame of bytes made by errfn(exc, where)
 * in the worker (a pickled (exception, traceback text); pool.py unpickles it).
 * Status 5 (DECODE) is ours: the parent could not decode the result; value = the exception.
 *
 * Worker process: SIGINT ignored (the parent decides), initializer(*initargs) first, then the
 * C loop below, then _exit (no atexit handlers of the parent run).
 */
#include "transport.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

enum { K_CALL = 0, K_MAP = 1, K_STARMAP = 2, K_BATCH = 3 };
#define ST_DECODE 5

typedef struct task_hdr {
    uint8_t kind;
    uint8_t _r[3];
    uint32_t fnlen;
} task_hdr;

typedef struct {
    PyObject_HEAD
    gf_pool *pool;
    uint32_t nworkers;
    uint64_t maxtasks;
    PyObject *initializer; /* or None */
    PyObject *initargs;
    PyObject *errfn;
    /* fork delegation to the serve() thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t req_mu; /* one requester at a time */
    int serving, stop, pending, done, req_rc;
    uint32_t req_index;
    gf_off req_shoff; /* gf_pool_shared of the requesting pool (self->pool is unset during create) */
    gf_proc req_out;
    pid_t owner_pid;
} pool_obj;

#define SELF(o) ((pool_obj *)(o))

/* ------------------------------------------------------------------ worker side */

/* Error payload for the current exception: errfn(exc, where) -> bytes, encoded.
 * Result 0 with e filled and *keep = the bytes (the frame points into them: release after
 * the put), or -1 (could not even report: the task is lost). */
static int worker_error(gf_state *st, pool_obj *self, const char *where, gf_enc *e,
                        PyObject **keep) {
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyErr_NormalizeException(&et, &ev, &tb);
    if (tb && ev) PyException_SetTraceback(ev, tb);
    PyObject *r = PyObject_CallFunction(self->errfn, "Os", ev ? ev : Py_None, where);
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
    if (!r) {
        PyErr_Print();
        return -1;
    }
    int rc = gf_encode(st, r, 0, e);
    if (rc < 0) {
        Py_DECREF(r);
        PyErr_Print();
        return -1;
    }
    *keep = r;
    return 0;
}

/* The function pickled as `key` (cached per worker). New reference or NULL. */
static PyObject *lookup_fn(gf_state *st, PyObject *cache, PyObject *key) {
    PyObject *fn = PyDict_GetItemWithError(cache, key); /* borrowed */
    if (fn) {
        Py_INCREF(fn);
        return fn;
    }
    if (PyErr_Occurred()) return NULL;
    fn = PyObject_CallOneArg(st->pickle_loads, key);
    if (!fn) return NULL;
    if (PyDict_GET_SIZE(cache) > 256) PyDict_Clear(cache);
    if (PyDict_SetItem(cache, key, fn) < 0) PyErr_Clear();
    return fn;
}

/* errfn(current exception, where) -> bytes (new reference) or NULL (printed). */
static PyObject *error_bytes(pool_obj *self, const char *where) {
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyErr_NormalizeException(&et, &ev, &tb);
    if (tb && ev) PyException_SetTraceback(ev, tb);
    PyObject *r = PyObject_CallFunction(self->errfn, "Os", ev ? ev : Py_None, where);
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
    if (!r) PyErr_Print();
    return r;
}

/* K_BATCH: obj = [(fnbytes, args, kwargs|None), ...] -> ([result|None, ...], {i: errbytes}).
 * Each call fails alone. NULL with an exception only when the batch itself is malformed. */
static PyObject *run_batch(gf_state *st, PyObject *cache, pool_obj *self, PyObject *obj) {
    if (!PyList_Check(obj)) {
        PyErr_SetString(PyExc_RuntimeError, "gilfree pool: bad batch task");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(obj);
    PyObject *out = PyList_New(n), *errs = PyDict_New();
    if (!out || !errs) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PyList_GET_ITEM(obj, i), *r = NULL;
        if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 3) {
            PyErr_SetString(PyExc_RuntimeError, "gilfree pool: bad batch item");
        } else {
            PyObject *fn = lookup_fn(st, cache, PyTuple_GET_ITEM(it, 0));
            if (fn) {
                PyObject *a = PyTuple_GET_ITEM(it, 1), *kw = PyTuple_GET_ITEM(it, 2);
                PyObject *at = PyTuple_Check(a) ? (Py_INCREF(a), a) : PySequence_Tuple(a);
                if (at) {
                    r = PyObject_Call(fn, at, kw == Py_None ? NULL : kw);
                    Py_DECREF(at);
                }
                Py_DECREF(fn);
            }
        }
        if (!r) {
            PyObject *eb = error_bytes(self, "call");
            if (!eb) goto fail;
            PyObject *k = PyLong_FromSsize_t(i);
            int rc = k ? PyDict_SetItem(errs, k, eb) : -1;
            Py_XDECREF(k);
            Py_DECREF(eb);
            if (rc < 0) goto fail;
            Py_INCREF(Py_None);
            r = Py_None;
        }
        PyList_SET_ITEM(out, i, r);
    }
    return Py_BuildValue("(NN)", out, errs);
fail:
    Py_XDECREF(out);
    Py_XDECREF(errs);
    return NULL;
}

/* A batch result did not pickle: replace each result that does not pickle alone by its
 * error. Result 0 or -1. */
static int batch_sanitize(gf_state *st, pool_obj *self, PyObject *res) {
    PyObject *out = PyTuple_GET_ITEM(res, 0), *errs = PyTuple_GET_ITEM(res, 1);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(out); i++) {
        PyObject *b = PyObject_CallOneArg(st->pickle_dumps, PyList_GET_ITEM(out, i));
        if (b) {
            Py_DECREF(b);
            continue;
        }
        PyObject *eb = error_bytes(self, "result");
        if (!eb) return -1;
        PyObject *k = PyLong_FromSsize_t(i);
        int rc = k ? PyDict_SetItem(errs, k, eb) : -1;
        Py_XDECREF(k);
        Py_DECREF(eb);
        if (rc < 0) return -1;
        Py_INCREF(Py_None);
        PyList_SetItem(out, i, Py_None);
    }
    return 0;
}

/* ------------------------------------------------------------------ packed lists
 *
 * A map chunk's items (parent -> worker) and results (worker -> parent) travel without pickle
 * when they are all exact ints that fit int64, all exact str, or all exact bytes:
 *   pk_hdr {magic "GFPL", type, count}, then
 *   INT64: count x int64;
 *   STR:   count x uint32 meta (nchars << 2 | kind code: 0 ASCII, 1 UCS1, 2 UCS2, 3 UCS4),
 *          padding to 8, then each string's PEP 393 code units (no transcoding: lone
 *          surrogates round-trip exactly), each aligned to its unit size;
 *   BYTES: count x uint32 length, then the bytes.
 * Decoding bounds-checks every length against the message. */
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

/* Pack items[0..n). Result: new bytes; NULL without an exception when the items do not
 * qualify; NULL with an exception on memory failure. */
static PyObject *pack_items(PyObject *const *items, Py_ssize_t n) {
    if (n < 1) return NULL;
    PyTypeObject *tp = Py_TYPE(items[0]);
    pk_hdr h = {PK_MAGIC, 0, {0, 0, 0}, (uint64_t)n};
    PyObject *b;
    if (tp == &PyLong_Type) {
        h.type = PK_INT64;
        b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof h + n * 8);
        if (!b) return NULL;
        char *out = PyBytes_AS_STRING(b) + sizeof h;
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
    } else if (tp == &PyUnicode_Type) {
        h.type = PK_STR;
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
        size_t tab = pk_align(sizeof h + 4 * (size_t)n, 8);
        if (data > (size_t)PY_SSIZE_T_MAX - tab) return NULL;
        b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(tab + data));
        if (!b) return NULL;
        char *base = PyBytes_AS_STRING(b);
        memset(base + sizeof h + 4 * (size_t)n, 0, tab - sizeof h - 4 * (size_t)n);
        uint32_t *meta = (uint32_t *)(base + sizeof h);
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
    } else if (tp == &PyBytes_Type) {
        h.type = PK_BYTES;
        size_t data = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (Py_TYPE(items[i]) != &PyBytes_Type) return NULL;
            Py_ssize_t len = PyBytes_GET_SIZE(items[i]);
            if ((uint64_t)len > UINT32_MAX) return NULL;
            data += (size_t)len;
        }
        size_t tab = sizeof h + 4 * (size_t)n;
        b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(tab + data));
        if (!b) return NULL;
        char *base = PyBytes_AS_STRING(b);
        uint32_t *lens = (uint32_t *)(base + sizeof h);
        char *d = base + tab;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t len = PyBytes_GET_SIZE(items[i]);
            lens[i] = (uint32_t)len;
            memcpy(d, PyBytes_AS_STRING(items[i]), (size_t)len);
            d += len;
        }
    } else {
        return NULL;
    }
    memcpy(PyBytes_AS_STRING(b), &h, sizeof h);
    return b;
no:
    Py_DECREF(b);
    return NULL;
}

static const char pk_zeros[8];

/* The packed list of items[0..n) (all exact str or all exact bytes) described as iovecs that
 * point into the objects (no copy here: gf_pool_submit gathers them once). *headp: malloc'd
 * header + table (free it), *iovp: malloc'd iovecs (free it), [0] = the header. The objects
 * must stay alive (and unchanged: str and bytes are immutable) until the iovecs are used.
 * Result: the iovec count; 0 when the items do not qualify; -1 with an exception. */
static int pack_gather(PyObject *const *items, Py_ssize_t n, char **headp,
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
static Py_ssize_t pk_count(const char *p, size_t len) {
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
static Py_ssize_t pk_fill(const char *p, size_t len, PyObject *dst, Py_ssize_t start) {
    Py_ssize_t n = pk_count(p, len);
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
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, body + i * 8, 8);
            PyObject *o = PyLong_FromLongLong(v);
            if (!o) return -1;
            Py_XSETREF(slot[i], o);
        }
        return n;
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
static PyObject *pk_list(const char *p, size_t len) {
    Py_ssize_t n = pk_count(p, len);
    if (n < 0) return NULL;
    PyObject *l = PyList_New(n); /* NULL slots until filled; never exposed unfilled */
    if (!l) return NULL;
    if (pk_fill(p, len, l, 0) < 0) {
        Py_DECREF(l);
        return NULL;
    }
    return l;
}

/* K_MAP / K_STARMAP: fn over the chunk. All-int64 results are packed as they come (each int
 * is freed at once); otherwise a list, packed at the end when it qualifies (str, bytes).
 * Result: new bytes (packed) or list, or NULL with an exception. */
static PyObject *run_map(PyObject *fn, PyObject *obj, int star) {
    PyObject *seq = NULL, *it = NULL, *lst = NULL, *res = NULL;
    PyObject *const *arr = NULL;
    Py_ssize_t n = -1;
    if (PyList_CheckExact(obj) || PyTuple_CheckExact(obj)) {
        seq = obj;
        Py_INCREF(seq);
        n = PySequence_Fast_GET_SIZE(seq);
        arr = PySequence_Fast_ITEMS(seq);
    } else {
        it = PyObject_GetIter(obj);
        if (!it) return NULL;
    }
    Py_ssize_t cap = n >= 0 ? n : PyObject_LengthHint(obj, 64);
    if (cap < 0) goto out;
    if (cap < 16) cap = 16;
    pk_hdr h = {PK_MAGIC, PK_INT64, {0, 0, 0}, 0};
    int64_t *ints = PyMem_Malloc((size_t)cap * 8);
    if (!ints) {
        PyErr_NoMemory();
        goto out;
    }
    Py_ssize_t k = 0; /* results so far */
    for (Py_ssize_t i = 0;; i++) {
        PyObject *x;
        if (arr) {
            if (i >= n) break;
            x = arr[i];
            Py_INCREF(x);
        } else {
            x = PyIter_Next(it);
            if (!x) {
                if (PyErr_Occurred()) goto fail;
                break;
            }
        }
        PyObject *r;
        if (!star) {
            r = PyObject_CallOneArg(fn, x);
        } else {
            PyObject *at = PySequence_Tuple(x);
            r = at ? PyObject_Call(fn, at, NULL) : NULL;
            Py_XDECREF(at);
        }
        Py_DECREF(x);
        if (!r) goto fail;
        if (!lst) {
            if (Py_TYPE(r) == &PyLong_Type) {
                int overflow = 0;
                long long v = PyLong_AsLongLongAndOverflow(r, &overflow);
                if (!overflow && !(v == -1 && PyErr_Occurred())) {
                    if (k == cap) {
                        int64_t *ni = PyMem_Realloc(ints, (size_t)cap * 16);
                        if (!ni) {
                            Py_DECREF(r);
                            PyErr_NoMemory();
                            goto fail;
                        }
                        ints = ni;
                        cap *= 2;
                    }
                    ints[k++] = (int64_t)v;
                    Py_DECREF(r);
                    continue;
                }
                PyErr_Clear();
            }
            /* not an int64: switch to a list of objects */
            lst = PyList_New(k);
            if (!lst) {
                Py_DECREF(r);
                goto fail;
            }
            for (Py_ssize_t j = 0; j < k; j++) {
                PyObject *o = PyLong_FromLongLong(ints[j]);
                if (!o) {
                    Py_DECREF(r);
                    goto fail;
                }
                PyList_SET_ITEM(lst, j, o);
            }
        }
        int rc = PyList_Append(lst, r);
        Py_DECREF(r);
        if (rc < 0) goto fail;
    }
    if (!lst) {
        h.count = (uint64_t)k;
        res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof h + k * 8);
        if (res) {
            memcpy(PyBytes_AS_STRING(res), &h, sizeof h);
            if (k) memcpy(PyBytes_AS_STRING(res) + sizeof h, ints, (size_t)k * 8);
        }
    } else {
        res = pack_items(((PyListObject *)lst)->ob_item, PyList_GET_SIZE(lst));
        if (!res) {
            if (PyErr_Occurred()) PyErr_Clear();
            res = lst;
            lst = NULL;
        }
    }
fail:
    PyMem_Free(ints);
    Py_XDECREF(lst);
out:
    Py_XDECREF(seq);
    Py_XDECREF(it);
    return res;
}

/* Run one task; returns the result object (new ref) or NULL with an exception set
 * (*where says what failed). */
static PyObject *run_task(gf_state *st, pool_obj *self, PyObject *cache, const gf_task *t,
                          const char **where, int *kind) {
    *where = "call";
    if (t->len < sizeof(task_hdr)) {
        *where = "decode";
        PyErr_SetString(PyExc_RuntimeError, "gilfree pool: short task");
        return NULL;
    }
    task_hdr h;
    memcpy(&h, t->data, sizeof h);
    *kind = h.kind;
    if (h.fnlen > t->len - sizeof h) {
        *where = "decode";
        PyErr_SetString(PyExc_RuntimeError, "gilfree pool: malformed task");
        return NULL;
    }
    const char *fnp = (const char *)t->data + sizeof h;
    PyObject *fn = Py_None;
    Py_INCREF(fn);
    if (h.kind != K_BATCH) {
        Py_DECREF(fn);
        PyObject *key = PyBytes_FromStringAndSize(fnp, h.fnlen);
        if (!key) return NULL;
        fn = lookup_fn(st, cache, key);
        Py_DECREF(key);
        if (!fn) {
            *where = "decode";
            return NULL;
        }
    }
    PyObject *obj;
    if (h._r[0] == 1) { /* a packed list of items (no frame) */
        obj = pk_list(fnp + h.fnlen, t->len - sizeof h - h.fnlen);
    } else {
        gf_msg m = {fnp + h.fnlen, t->len - sizeof h - h.fnlen, 0};
        obj = gf_decode(st, &m, 0);
    }
    if (!obj) {
        *where = "decode";
        Py_DECREF(fn);
        return NULL;
    }
    PyObject *res = NULL;
    if (h.kind == K_CALL) {
        if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 2) {
            *where = "decode";
            PyErr_SetString(PyExc_RuntimeError, "gilfree pool: bad call task");
        } else {
            PyObject *a = PyTuple_GET_ITEM(obj, 0), *kw = PyTuple_GET_ITEM(obj, 1);
            PyObject *at = PyTuple_Check(a) ? (Py_INCREF(a), a) : PySequence_Tuple(a);
            if (at) {
                res = PyObject_Call(fn, at, kw == Py_None ? NULL : kw);
                Py_DECREF(at);
            }
        }
    } else if (h.kind == K_BATCH) {
        res = run_batch(st, cache, self, obj);
    } else {
        /* a range chunk is iterated here, in the worker (the parent sent a slice) */
        res = run_map(fn, obj, h.kind == K_STARMAP);
    }
    Py_DECREF(obj);
    Py_DECREF(fn);
    return res;
}

/* The worker's main loop (in the child). Result: the exit code. */
static int worker_loop(gf_state *st, pool_obj *self, gf_worker *w) {
    PyObject *cache = PyDict_New();
    if (!cache) return 1;
    int code = 0;
    for (;;) {
        gf_task t;
        int rc;
        GF_BLOCKING(rc, gf_worker_next(w, &t, GF_FOREVER));
        if (rc == GF_EPIPE) break;
        if (rc < 0) {
            if (PyErr_Occurred()) PyErr_Clear();
            code = 1;
            break;
        }
        const char *where;
        int kind = -1;
        PyObject *res = run_task(st, self, cache, &t, &where, &kind);
        gf_enc e;
        int status = GF_TASK_OK, ok;
        if (res) {
            ok = gf_encode(st, res, 0, &e) == 0;
            if (!ok && kind == K_BATCH) { /* isolate the unpicklable results, try again */
                PyErr_Clear();
                ok = batch_sanitize(st, self, res) == 0 && gf_encode(st, res, 0, &e) == 0;
            }
            if (!ok) {
                Py_CLEAR(res);
                status = GF_TASK_ERROR;
                ok = worker_error(st, self, "result", &e, &res) == 0;
            }
        } else {
            status = GF_TASK_ERROR;
            ok = worker_error(st, self, where, &e, &res) == 0;
        }
        /* res stays alive until the put: the frame's body may point into it (bytes) */
        if (!ok) {
            /* nothing sendable: report an empty error payload */
            e.iovcnt = 0;
            GF_BLOCKING(rc, gf_worker_result(w, &t, GF_TASK_ERROR, NULL, 0));
        } else {
            GF_BLOCKING(rc, gf_worker_result(w, &t, status, e.iov, e.iovcnt));
            gf_enc_done(st, &e, rc == 0);
        }
        Py_XDECREF(res);
        if (rc == GF_EPIPE) break;
        if (rc < 0) {
            if (PyErr_Occurred()) PyErr_Clear();
            code = 1;
            break;
        }
    }
    Py_DECREF(cache);
    return code;
}

static void flush_std(void) {
    const char *names[] = {"stdout", "stderr"};
    for (int i = 0; i < 2; i++) {
        PyObject *f = PySys_GetObject(names[i]);
        if (f && f != Py_None) {
            PyObject *r = PyObject_CallMethod(f, "flush", NULL);
            if (r) Py_DECREF(r);
            else PyErr_Clear();
        }
    }
}

/* In the child after fork (GIL held): become worker `index`, serve, _exit. Never returns. */
static void child_main(gf_state *st, pool_obj *self, gf_off shoff, uint32_t index) {
    signal(SIGINT, SIG_IGN);
    int code = 0;
    gf_worker *w = NULL;
    if (gf_worker_attach(st->arena, shoff, index, &w) < 0) _exit(71);
    if (self->initializer != Py_None) {
        PyObject *r = PyObject_Call(self->initializer, self->initargs, NULL);
        if (!r) {
            PyErr_Print();
            code = 1;
        } else {
            Py_DECREF(r);
        }
    }
    if (code == 0) code = worker_loop(st, self, w);
    gf_worker_detach(w);
    flush_std();
    gf_release_before_exit(st);
    _exit(code);
}

/* ------------------------------------------------------------------ spawning */

/* The pool's spawn callback (any thread, GIL released by our callers): hand the fork to the
 * serve() thread and wait. Result 0, or GF_EAGAIN when serve() is not running / fork fails. */
static int spawn_cb(void *ctx, gf_pool *pool, uint32_t index, gf_proc *out) {
    pool_obj *self = ctx;
    pthread_mutex_lock(&self->req_mu);
    pthread_mutex_lock(&self->mu);
    int rc = GF_EAGAIN;
    if (self->serving && !self->stop) {
        self->req_index = index;
        self->req_shoff = gf_pool_shared(pool);
        self->pending = 1;
        self->done = 0;
        pthread_cond_broadcast(&self->cv);
        while (!self->done && self->serving) pthread_cond_wait(&self->cv, &self->mu);
        if (self->done) {
            rc = self->req_rc;
            if (rc == 0) *out = self->req_out;
        }
        self->pending = 0;
    }
    pthread_mutex_unlock(&self->mu);
    pthread_mutex_unlock(&self->req_mu);
    return rc;
}

static PyObject *pool_serve(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    gf_state *st = gf_state_of(op);
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&self->mu);
    self->serving = 1;
    pthread_cond_broadcast(&self->cv);
    while (!self->stop) {
        if (!self->pending || self->done) {
            pthread_cond_wait(&self->cv, &self->mu);
            continue;
        }
        uint32_t index = self->req_index;
        gf_off shoff = self->req_shoff;
        pthread_mutex_unlock(&self->mu);
        gf_proc pr;
        memset(&pr, 0, sizeof pr);
        int rc;
        Py_BLOCK_THREADS;
        flush_std(); /* else the child inherits (and later writes) the parent's buffered output */
        pid_t me = getpid();
        int r = gf_fork(st, &pr, GF_PROC_DIE_WITH_PARENT);
        if (r == 1) child_main(st, self, shoff, index);
        if (r < 0 && getpid() != me) _exit(70);
        if (r < 0) {
            PyErr_Clear();
            rc = GF_EAGAIN;
        } else {
            rc = 0;
        }
        Py_UNBLOCK_THREADS;
        pthread_mutex_lock(&self->mu);
        self->req_out = pr;
        self->req_rc = rc;
        self->done = 1;
        pthread_cond_broadcast(&self->cv);
    }
    self->serving = 0;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static PyObject *pool_stop(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&self->mu);
    self->stop = 1;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ parent side */

static PyObject *pool_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"nworkers", "maxtasksperchild", "initializer", "initargs", "errfn",
                             NULL};
    unsigned int n = 0;
    unsigned long long maxtasks = 0;
    PyObject *init = Py_None, *initargs = NULL, *errfn;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "IKOOO:Pool", kwlist, &n, &maxtasks, &init,
                                     &initargs, &errfn))
        return NULL;
    PyObject *ia = PySequence_Tuple(initargs);
    if (!ia) return NULL;
    pool_obj *self = (pool_obj *)tp->tp_alloc(tp, 0);
    if (!self) {
        Py_DECREF(ia);
        return NULL;
    }
    self->nworkers = n;
    self->maxtasks = maxtasks;
    Py_INCREF(init);
    self->initializer = init;
    self->initargs = ia;
    Py_INCREF(errfn);
    self->errfn = errfn;
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    pthread_mutex_init(&self->req_mu, NULL);
    self->owner_pid = getpid();
    return (PyObject *)self;
}

static PyObject *pool_start(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    gf_state *st = gf_state_of(op);
    if (self->pool) {
        PyErr_SetString(PyExc_RuntimeError, "pool already started");
        return NULL;
    }
    if (gf_ensure_attached(st) < 0) return NULL;
    gf_pool_options o;
    memset(&o, 0, sizeof o);
    o.nworkers = self->nworkers;
    o.max_workers = self->nworkers;
    o.maxtasksperchild = self->maxtasks;
    o.spawn = spawn_cb;
    o.spawn_ctx = self;
    o.mailbox_bytes = 1 << 20;
    o.result_bytes = 4 << 20;
    int rc;
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&self->mu);
    while (!self->serving && !self->stop) pthread_cond_wait(&self->cv, &self->mu);
    pthread_mutex_unlock(&self->mu);
    rc = gf_pool_create(st->arena, &o, &self->pool);
    Py_END_ALLOW_THREADS if (rc < 0) {
        self->pool = NULL;
        return gf_raise(st, rc, "Pool: cannot start the workers");
    }
    Py_RETURN_NONE;
}

static int check(pool_obj *self) {
    if (!self->pool || self->owner_pid != getpid()) {
        PyErr_SetString(PyExc_ValueError, "Pool not running");
        return -1;
    }
    return 0;
}

static PyObject *pool_submit(PyObject *op, PyObject *args, PyObject *kw) {
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
    if (check(self) < 0) {
        PyBuffer_Release(&fnb);
        return NULL;
    }
    gf_state *st = gf_state_of(op);
    gf_enc e;
    task_hdr h = {(uint8_t)kind, {0, 0, 0}, (uint32_t)fnb.len};
    /* a map chunk of all-str / all-bytes / all-int64 items travels packed (no pickle); str
     * and bytes are gathered straight from the objects (a tuple snapshot keeps them alive
     * while the GIL is released) */
    PyObject *packed = NULL, *snap = NULL;
    struct iovec *giov = NULL, iov_small[6], *iov = iov_small;
    char *ghead = NULL;
    int gcnt = 0;
    if (kind == K_MAP && PyList_CheckExact(obj) && PyList_GET_SIZE(obj) > 0) {
        PyTypeObject *t0 = Py_TYPE(PyList_GET_ITEM(obj, 0));
        if (t0 == &PyUnicode_Type || t0 == &PyBytes_Type) {
            snap = PyList_AsTuple(obj);
            if (!snap) {
                PyBuffer_Release(&fnb);
                return NULL;
            }
            gcnt = pack_gather(((PyTupleObject *)snap)->ob_item, PyTuple_GET_SIZE(snap), &ghead,
                               &giov);
            if (gcnt <= 0) Py_CLEAR(snap);
        } else {
            packed = pack_items(((PyListObject *)obj)->ob_item, PyList_GET_SIZE(obj));
        }
        if (gcnt < 0 || (!packed && PyErr_Occurred())) {
            PyBuffer_Release(&fnb);
            return NULL;
        }
    }
    if (gcnt > 0) {
        iov = malloc(sizeof *iov * ((size_t)gcnt + 2));
        if (!iov) {
            free(giov);
            free(ghead);
            Py_DECREF(snap);
            PyBuffer_Release(&fnb);
            return PyErr_NoMemory();
        }
        memcpy(iov + 2, giov, sizeof *iov * (size_t)gcnt);
        free(giov);
        h._r[0] = 1;
        e.iovcnt = 0;
    } else if (packed) {
        h._r[0] = 1;
        e.iovcnt = 1;
        e.iov[0].iov_base = PyBytes_AS_STRING(packed);
        e.iov[0].iov_len = (size_t)PyBytes_GET_SIZE(packed);
    } else if (gf_encode(st, obj, 0, &e) < 0) {
        PyBuffer_Release(&fnb);
        return NULL;
    }
    iov[0].iov_base = &h;
    iov[0].iov_len = sizeof h;
    iov[1].iov_base = fnb.buf;
    iov[1].iov_len = (size_t)fnb.len;
    for (int i = 0; i < e.iovcnt; i++) iov[2 + i] = e.iov[i];
    int niov = 2 + (gcnt > 0 ? gcnt : e.iovcnt);
    uint64_t id = 0;
    int64_t tns = timeout > 0 ? (int64_t)(timeout * 1e9) : 0;
    int rc;
    if (!block) {
        Py_BEGIN_ALLOW_THREADS rc = gf_pool_submit(self->pool, iov, niov, tns, retries, &id, 0);
        Py_END_ALLOW_THREADS
    } else {
        GF_BLOCKING(rc, gf_pool_submit(self->pool, iov, niov, tns, retries, &id, GF_FOREVER));
    }
    if (gcnt > 0) {
        free(iov);
        free(ghead);
        Py_DECREF(snap);
    } else if (packed) {
        Py_DECREF(packed);
    } else {
        gf_enc_done(st, &e, rc == 0);
    }
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

static PyObject *pool_results(PyObject *op, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"max", "timeout", NULL};
    pool_obj *self = SELF(op);
    unsigned int max = NRES;
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|IO:results", kwlist, &max, &timeout))
        return NULL;
    if (check(self) < 0) return NULL;
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
        if ((status == GF_TASK_OK || status == GF_TASK_ERROR) && res[i].len) {
            gf_msg m = {res[i].data, res[i].len, 0};
            v = gf_decode(st, &m, 0);
            if (!v) {
                PyObject *et, *ev, *tb;
                PyErr_Fetch(&et, &ev, &tb);
                PyErr_NormalizeException(&et, &ev, &tb);
                if (tb && ev) PyException_SetTraceback(ev, tb);
                Py_XDECREF(et);
                Py_XDECREF(tb);
                v = ev ? ev : (Py_INCREF(Py_None), Py_None);
                status = ST_DECODE;
            }
        } else {
            Py_INCREF(Py_None);
            v = Py_None;
        }
        PyObject *t = Py_BuildValue("(KiiNK)", (unsigned long long)res[i].id, status,
                                    res[i].worker, v, (unsigned long long)res[i].elapsed_ns);
        if (!t) {
            Py_DECREF(lst);
            return NULL;
        }
        PyList_SET_ITEM(lst, i, t);
    }
    return lst;
}

/* Shared body of cancel/cancel_queued: 0 (it was queued: cancelled, yields CANCELLED),
 * 1 (running: killed by cancel, left to finish by cancel_queued), None (finished or unknown). */
static PyObject *cancel_with(PyObject *op, PyObject *arg, int (*fn)(gf_pool *, uint64_t),
                             const char *what) {
    pool_obj *self = SELF(op);
    if (check(self) < 0) return NULL;
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (id == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = fn(self->pool, id);
    Py_END_ALLOW_THREADS if (rc == GF_ESRCH) Py_RETURN_NONE;
    if (rc < 0) return gf_raise(gf_state_of(op), rc, what);
    return PyLong_FromLong(rc);
}

static PyObject *pool_cancel(PyObject *op, PyObject *arg) {
    return cancel_with(op, arg, gf_pool_cancel, "Pool.cancel");
}

/* ProcessPoolExecutor.shutdown(cancel_futures=True): never kills a worker. */
static PyObject *pool_cancel_queued(PyObject *op, PyObject *arg) {
    return cancel_with(op, arg, gf_pool_cancel_queued, "Pool.cancel_queued");
}

static PyObject *pool_close(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    if (self->pool && self->owner_pid == getpid()) {
        Py_BEGIN_ALLOW_THREADS gf_pool_close(self->pool);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyObject *pool_terminate(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    if (self->pool && self->owner_pid == getpid()) {
        Py_BEGIN_ALLOW_THREADS gf_pool_terminate(self->pool);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyObject *pool_join(PyObject *op, PyObject *args) {
    pool_obj *self = SELF(op);
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTuple(args, "|O:join", &timeout)) return NULL;
    if (!self->pool || self->owner_pid != getpid()) Py_RETURN_TRUE;
    int64_t deadline;
    if (gf_deadline_arg(timeout, 1, &deadline) < 0) return NULL;
    int rc;
    GF_BLOCKING(rc, gf_pool_join(self->pool, deadline));
    if (rc == 0) Py_RETURN_TRUE;
    if (rc == GF_ETIMEDOUT) Py_RETURN_FALSE;
    return gf_raise(gf_state_of(op), rc, "Pool.join");
}

static PyObject *pool_stats(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    if (check(self) < 0) return NULL;
    gf_pool_stats s;
    gf_pool_stats_get(self->pool, &s);
    return Py_BuildValue("{sIsKsKsK}", "live_workers", s.live_workers, "outstanding",
                         (unsigned long long)s.outstanding, "spawned",
                         (unsigned long long)s.spawned, "deaths", (unsigned long long)s.deaths);
}

/* unpack(b) -> list: a packed map chunk result. */
static PyObject *pool_unpack(PyObject *Py_UNUSED(cls), PyObject *arg) {
    Py_buffer v;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *r = pk_list(v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
    return r;
}

/* new_list(n) -> a list of n empty (NULL) slots, for gilfree.pool.MapResult only: its pages
 * come from calloc (untouched until filled, so a map of a million items does not start with
 * 8 MB of page faults and stores). It must be filled completely before anyone else sees it;
 * deallocation and GC traversal accept the empty slots. */
static PyObject *pool_new_list(PyObject *Py_UNUSED(cls), PyObject *arg) {
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "new_list: negative size");
        return NULL;
    }
    return PyList_New(n);
}

/* count(b) -> the number of items in a packed map chunk. */
static PyObject *pool_count(PyObject *Py_UNUSED(cls), PyObject *arg) {
    Py_buffer v;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t n = pk_count(v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

/* unpack_into(lst, start, b) -> count: decode a packed map chunk into lst[start:start+n]. */
static PyObject *pool_unpack_into(PyObject *Py_UNUSED(cls), PyObject *args) {
    PyObject *lst;
    Py_ssize_t start;
    Py_buffer v;
    if (!PyArg_ParseTuple(args, "O!ny*:unpack_into", &PyList_Type, &lst, &start, &v))
        return NULL;
    Py_ssize_t n = pk_fill(v.buf, (size_t)v.len, lst, start);
    PyBuffer_Release(&v);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

static PyObject *pool_pids(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    if (check(self) < 0) return NULL;
    PyObject *l = PyList_New(0);
    for (uint32_t i = 0; l && i < self->nworkers; i++) {
        pid_t pid = gf_pool_worker_pid(self->pool, i);
        PyObject *v = PyLong_FromLong(pid);
        if (!v || PyList_Append(l, v) < 0) Py_CLEAR(l);
        Py_XDECREF(v);
    }
    return l;
}

static PyObject *pool_destroy(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    if (self->pool && self->owner_pid == getpid()) {
        gf_pool *p = self->pool;
        self->pool = NULL;
        Py_BEGIN_ALLOW_THREADS gf_pool_destroy(p);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static int pool_traverse(PyObject *op, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(SELF(op)->initializer);
    Py_VISIT(SELF(op)->initargs);
    Py_VISIT(SELF(op)->errfn);
    return 0;
}

static int pool_clear(PyObject *op) {
    Py_CLEAR(SELF(op)->initializer);
    Py_CLEAR(SELF(op)->initargs);
    Py_CLEAR(SELF(op)->errfn);
    return 0;
}

static void pool_dealloc(PyObject *op) {
    PyTypeObject *tp = Py_TYPE(op);
    pool_obj *self = SELF(op);
    PyObject_GC_UnTrack(op);
    if (self->pool && self->owner_pid == getpid()) {
        /* serve() must be gone (it holds a reference); destroy kills and reaps the rest */
        gf_pool_destroy(self->pool);
    }
    self->pool = NULL;
    pool_clear(op);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->req_mu);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef pool_methods[] = {
    {"serve", pool_serve, METH_NOARGS, "Fork workers on request until stop() (one thread)."},
    {"stop", pool_stop, METH_NOARGS, "Make serve() return."},
    {"start", pool_start, METH_NOARGS, "Create the pool and its workers."},
    {"submit", (PyCFunction)(void (*)(void))pool_submit, METH_VARARGS | METH_KEYWORDS,
     "submit(kind, fn, obj, timeout=0, retries=0, block=True) -> id or None"},
    {"results", (PyCFunction)(void (*)(void))pool_results, METH_VARARGS | METH_KEYWORDS,
     "results(max=256, timeout=None) -> [(id, status, worker, value)] / [] / None"},
    {"cancel", pool_cancel, METH_O, "cancel(id) -> 0 queued, 1 running, None unknown"},
    {"cancel_queued", pool_cancel_queued, METH_O,
     "cancel_queued(id) -> 0 queued (cancelled), 1 running (left alone), None unknown"},
    {"close", pool_close, METH_NOARGS, "No more submits."},
    {"terminate", pool_terminate, METH_NOARGS, "Kill the workers."},
    {"join", pool_join, METH_VARARGS, "join(timeout=None) -> bool"},
    {"destroy", pool_destroy, METH_NOARGS, "Kill, reap and free everything."},
    {"stats", pool_stats, METH_NOARGS, "live_workers, outstanding, spawned, deaths"},
    {"pids", pool_pids, METH_NOARGS, "Worker pids (0 = none)."},
    {"count", pool_count, METH_O | METH_STATIC, "count(b) -> items in a packed map chunk"},
    {"new_list", pool_new_list, METH_O | METH_STATIC,
     "new_list(n) -> list of n empty slots (internal: MapResult fills every one)"},
    {"unpack", pool_unpack, METH_O | METH_STATIC, "unpack(b) -> list (a packed map chunk)"},
    {"unpack_into", pool_unpack_into, METH_VARARGS | METH_STATIC,
     "unpack_into(lst, start, b) -> count"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot pool_slots[] = {
    {Py_tp_new, pool_new},
    {Py_tp_dealloc, pool_dealloc},
    {Py_tp_traverse, pool_traverse},
    {Py_tp_clear, pool_clear},
    {Py_tp_methods, pool_methods},
    {Py_tp_doc, "The C worker pool under gilfree.Pool (see gilfree/pool.py)."},
    {0, NULL},
};

static PyType_Spec pool_spec = {
    .name = "gilfree._core.Pool",
    .basicsize = sizeof(pool_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = pool_slots,
};

/* Create the Pool type. Result 0 or -1. */
int gf_pool_init_type(PyObject *m, gf_state *st) {
    st->Pool_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pool_spec, NULL);
    if (!st->Pool_type) return -1;
    if (PyModule_AddType(m, st->Pool_type) < 0) return -1;
    if (PyModule_AddIntConstant(m, "POOL_DECODE", ST_DECODE) < 0) return -1;
    return 0;
}
