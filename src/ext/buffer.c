/*
 * buffer.c -- gilfree._core.SharedBuffer: a zero-initialised block of shared memory in the
 * arena that exposes the (writable) buffer protocol. The storage of Value, Array, RawValue and
 * RawArray (gilfree/sharedctypes.py: ctypes `from_buffer` on it).
 *
 * Layout: [gf_obj | size | padding to 64 bytes][data ...] so that the data is 64-byte aligned
 * like the block (any ctypes type, including long double and SIMD-friendly arrays).
 */
#include "ext.h"

#include <string.h>

#define GF_LIKELY_EXT(x) __builtin_expect(!!(x), 1)
#define GF_UNLIKELY_EXT(x) __builtin_expect(!!(x), 0)

#define GF_BUF_DATA 64

typedef struct {
    gf_obj obj;
    uint64_t size;
} gf_buf_shared;

typedef struct {
    GF_HANDLE_HEAD;
    Py_ssize_t size;
} gf_buffer_obj;

#define SELF_B(self) ((gf_buffer_obj *)(self))
#define DATA_OF(self) ((char *)((gf_handle *)(self))->ptr + GF_BUF_DATA)

static int buf_getbuffer(PyObject *self, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, self, DATA_OF(self), SELF_B(self)->size, 0, flags);
}

static Py_ssize_t buf_len(PyObject *self) { return SELF_B(self)->size; }

static PyObject *buf_reduce(PyObject *self, PyObject *Py_UNUSED(a)) {
    return gf_handle_reduce(self, NULL);
}

static PyObject *buf_rebuild(PyObject *cls, PyObject *off) {
    PyObject *self = gf_handle_rebuild((PyTypeObject *)cls, off, GF_OBJ_BUFFER);
    if (!self) return NULL;
    gf_state *st = gf_state_of(self);
    uint64_t size = ((gf_buf_shared *)((gf_handle *)self)->ptr)->size;
    gf_off o = ((gf_handle *)self)->off;
    if (size > (uint64_t)PY_SSIZE_T_MAX - GF_BUF_DATA ||
        gf_arena_check_block(st->arena, o, GF_BUF_DATA + size) < 0) {
        PyErr_SetString(st->ProtocolError, "SharedBuffer: corrupt size in shared memory");
        Py_DECREF(self);
        return NULL;
    }
    SELF_B(self)->size = (Py_ssize_t)size;
    return self;
}

static PyObject *buf_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"size", NULL};
    Py_ssize_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n:SharedBuffer", kwlist, &size)) return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "SharedBuffer size must be >= 0");
        return NULL;
    }
    if (size > PY_SSIZE_T_MAX - GF_BUF_DATA) return PyErr_NoMemory();
    gf_state *st = gf_state_of_type(tp);
    if (!st) return NULL;
    PyObject *self = tp->tp_alloc(tp, 0);
    if (!self) return NULL;
    if (gf_handle_create(st, (gf_handle *)self, GF_OBJ_BUFFER, GF_BUF_DATA + (size_t)size) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    ((gf_buf_shared *)((gf_handle *)self)->ptr)->size = (uint64_t)size;
    memset(DATA_OF(self), 0, (size_t)size);
    SELF_B(self)->size = size;
    return self;
}

static void buf_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    gf_handle_release(gf_state_of(self), (gf_handle *)self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *buf_get_size(PyObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromSsize_t(SELF_B(self)->size);
}
static PyObject *buf_get_off(PyObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(((gf_handle *)self)->off);
}

static PyMethodDef buf_methods[] = {
    {"__reduce__", buf_reduce, METH_NOARGS, NULL},
    {"_rebuild", buf_rebuild, METH_O | METH_CLASS, "Rebuild a handle from a pickled offset."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef buf_getset[] = {
    {"size", buf_get_size, NULL, "Size in bytes.", NULL},
    {"_offset", buf_get_off, NULL, "Offset of the shared object in the arena.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot buf_slots[] = {
    {Py_tp_new, buf_new},
    {Py_tp_dealloc, buf_dealloc},
    {Py_tp_methods, buf_methods},
    {Py_tp_getset, buf_getset},
    {Py_bf_getbuffer, buf_getbuffer},
    {Py_sq_length, buf_len},
    {Py_tp_doc, "SharedBuffer(size): zeroed shared memory exposing the buffer protocol."},
    {0, NULL},
};

static PyType_Spec buf_spec = {
    .name = "gilfree._core.SharedBuffer",
    .basicsize = sizeof(gf_buffer_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = buf_slots,
};

/* ================================================================== synchronized wrappers
 *
 * gilfree._core.SyncBase, SyncValue(SyncBase), SyncArray(SyncBase): the C core of
 * gilfree.sharedctypes' Synchronized, SynchronizedArray, SynchronizedString and Structure
 * wrappers (which subclass these *and* the standard library's classes, so `isinstance(v,
 * multiprocessing.sharedctypes.Synchronized)` holds while the hot slots are ours).
 *
 * Semantics are the standard library's: every `.value` get/set and every item access takes the
 * wrapper's lock for its duration. What makes it fast:
 *   - the value is read/written straight from the shared memory for the plain numeric ctypes
 *     types (`kind`, chosen by the Python layer and checked against the buffer size here);
 *     other types (structures, c_wchar, byte-swapped or subclassed types, c_char_p, slices)
 *     go through the ctypes object under the same lock;
 *   - when the lock is a gilfree Mutex the lock is taken in C (gf_mutex_obj_acquire: one CAS
 *     when free); when it is a *recursive* Mutex already held by the calling thread (the
 *     `with v.get_lock(): v.value += 1` idiom) an access takes nothing at all: acquiring and
 *     releasing a recursive lock one holds again is a no-op, so skipping it is exact;
 *   - any other lock object (threading.Lock, a standard library lock, ...) is used through its
 *     acquire/release methods like the standard library does.
 */

typedef struct {
    PyObject_HEAD
    PyObject *obj;      /* the ctypes object */
    PyObject *lock;     /* its lock */
    PyObject *acq;      /* lock.acquire (bound) */
    PyObject *rel;      /* lock.release (bound) */
    gf_state *st;
    gf_mutex *m;        /* lock is a gilfree Mutex: its shared mutex, else NULL */
    char *data;         /* obj's memory (valid while obj lives) when kind != 0 */
    Py_ssize_t n;       /* number of elements of that memory (1 for a value) */
    Py_ssize_t isize;   /* element size */
    int kind;           /* element typecode decoded here ('i', 'd', ...), 0: ctypes does it */
    int recursive;      /* m is recursive (RLock) */
    PyObject *keep;     /* (lock.__enter__, lock.__exit__) of a gilfree Mutex, held so that
                         * `with v.get_lock():` reuses them instead of allocating (mutex.c) */
} gf_sync_obj;

#define SELF_S(self) ((gf_sync_obj *)(self))

/* Size of a C-decoded element typecode; 0 for a typecode left to ctypes. */
static Py_ssize_t kind_size(int k) {
    switch (k) {
    case 'b': case 'B': case 'c': case '?': return 1;
    case 'h': case 'H': return sizeof(short);
    case 'i': case 'I': return sizeof(int);
    case 'l': case 'L': return sizeof(long);
    case 'q': case 'Q': return sizeof(long long);
    case 'f': return sizeof(float);
    case 'd': return sizeof(double);
    default: return 0;
    }
}

#define GF_LOAD(T, p) ({ T gf__v_; memcpy(&gf__v_, (p), sizeof gf__v_); gf__v_; })

/* The Python value of the element of kind k at p (what ctypes' `.value` returns).
 * Result: new reference, or NULL (MemoryError). */
static PyObject *kind_get(int k, const char *p) {
    switch (k) {
    case 'b': return PyLong_FromLong(*(const signed char *)p);
    case 'B': return PyLong_FromLong(*(const unsigned char *)p);
    case 'c': return PyBytes_FromStringAndSize(p, 1);
    case '?': return PyBool_FromLong(*(const unsigned char *)p != 0);
    case 'h': return PyLong_FromLong(GF_LOAD(short, p));
    case 'H': return PyLong_FromLong(GF_LOAD(unsigned short, p));
    case 'i': return PyLong_FromLong(GF_LOAD(int, p));
    case 'I': return PyLong_FromUnsignedLong(GF_LOAD(unsigned int, p));
    case 'l': return PyLong_FromLong(GF_LOAD(long, p));
    case 'L': return PyLong_FromUnsignedLong(GF_LOAD(unsigned long, p));
    case 'q': return PyLong_FromLongLong(GF_LOAD(long long, p));
    case 'Q': return PyLong_FromUnsignedLongLong(GF_LOAD(unsigned long long, p));
    case 'f': return PyFloat_FromDouble(GF_LOAD(float, p));
    case 'd': return PyFloat_FromDouble(GF_LOAD(double, p));
    default: Py_UNREACHABLE();
    }
}

/* Store v into the element of kind k at p the way ctypes would. Only the conversions that are
 * exactly ctypes' are done here: ints (exact int: masked to the width, as ctypes does), floats
 * (exact float or int: PyFloat_AsDouble, as ctypes does), bools (exact bool or int: truth).
 * Result 0 stored, 1 not handled here (the caller lets ctypes do it), -1 exception set. */
static int kind_set(int k, char *p, PyObject *v) {
    switch (k) {
    case 'b': case 'B': case 'h': case 'H': case 'i': case 'I': case 'l': case 'L': case 'q':
    case 'Q': {
        if (!PyLong_CheckExact(v)) return 1;
        unsigned long long x = PyLong_AsUnsignedLongLongMask(v);
        if (x == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        switch (kind_size(k)) {
        case 1: { uint8_t t = (uint8_t)x; memcpy(p, &t, 1); break; }
        case 2: { uint16_t t = (uint16_t)x; memcpy(p, &t, 2); break; }
        case 4: { uint32_t t = (uint32_t)x; memcpy(p, &t, 4); break; }
        default: { uint64_t t = (uint64_t)x; memcpy(p, &t, 8); break; }
        }
        return 0;
    }
    case 'f': case 'd': {
        if (!PyFloat_CheckExact(v) && !PyLong_CheckExact(v)) return 1;
        double d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) return -1;
        if (k == 'f') {
            float f = (float)d;
            memcpy(p, &f, sizeof f);
        } else {
            memcpy(p, &d, sizeof d);
        }
        return 0;
    }
    case '?': {
        if (!PyBool_Check(v) && !PyLong_CheckExact(v)) return 1;
        *(unsigned char *)p = (unsigned char)(PyObject_IsTrue(v) == 1);
        return 0;
    }
    default: return 1;
    }
}

/* Take the wrapper's lock for one access. Result: 1 taken (hand it to sync_done), 0 nothing
 * taken (a recursive gilfree lock the calling thread already holds), -1 exception set
 * (OwnerDeadError, KeyboardInterrupt, or whatever a foreign lock's acquire raised). */
static inline int sync_lock(gf_sync_obj *s) {
    if (GF_LIKELY_EXT(s->m != NULL)) {
        if (s->recursive && gf_mutex_is_mine(s->st->arena, s->m)) return 0;
        return gf_mutex_obj_acquire(s->st, s->lock, GF_FOREVER) < 0 ? -1 : 1;
    }
    PyObject *r = PyObject_CallNoArgs(s->acq);
    if (!r) return -1;
    Py_DECREF(r);
    return 1;
}

/* Release a lock that sync_lock took (taken == 1), like a `finally:` would: an exception
 * already set stays set (it becomes the __context__ of one the release raises).
 * Result 0, or -1 with an exception set (the pending one, or the release's). */
static int sync_unlock(gf_sync_obj *s, int taken) {
    if (taken <= 0) return PyErr_Occurred() ? -1 : 0;
    if (GF_LIKELY_EXT(s->m != NULL) && !PyErr_Occurred())
        return gf_mutex_obj_release(s->st, s->lock);
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    int rc;
    if (s->m) {
        rc = gf_mutex_obj_release(s->st, s->lock);
    } else {
        PyObject *r = PyObject_CallNoArgs(s->rel);
        rc = r ? 0 : -1;
        Py_XDECREF(r);
    }
    if (!et) return rc;
    if (rc == 0) {
        PyErr_Restore(et, ev, tb);
        return -1;
    }
    /* Both failed: the release's exception wins, with the access's as its context. */
    PyObject *et2, *ev2, *tb2;
    PyErr_Fetch(&et2, &ev2, &tb2);
    PyErr_NormalizeException(&et, &ev, &tb);
    PyErr_NormalizeException(&et2, &ev2, &tb2);
    if (tb) PyException_SetTraceback(ev, tb);
    PyException_SetContext(ev2, ev); /* steals ev */
    Py_XDECREF(et);
    Py_XDECREF(tb);
    PyErr_Restore(et2, ev2, tb2);
    return -1;
}

/* sync_unlock for accessors returning an object: result r, or NULL (r dropped) on failure. */
static inline PyObject *sync_done(gf_sync_obj *s, int taken, PyObject *r) {
    if (GF_LIKELY_EXT(r != NULL) && taken == 0) return r;
    if (sync_unlock(s, taken) < 0) {
        Py_XDECREF(r);
        return NULL;
    }
    return r;
}

static PyObject *sync_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"obj", "lock", "kind", NULL};
    PyObject *obj, *lock, *kindobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:SyncBase", kwlist, &obj, &lock, &kindobj))
        return NULL;
    gf_state *st = gf_state_of_type(tp);
    if (!st) return NULL;
    int kind = 0;
    if (kindobj != Py_None) {
        Py_ssize_t klen;
        const char *k = PyUnicode_Check(kindobj) ? PyUnicode_AsUTF8AndSize(kindobj, &klen) : NULL;
        if (!k || klen != 1 || !kind_size(k[0])) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "SyncBase: unsupported kind %R", kindobj);
            return NULL;
        }
        kind = k[0];
    }
    PyObject *acq = PyObject_GetAttrString(lock, "acquire");
    PyObject *rel = acq ? PyObject_GetAttrString(lock, "release") : NULL;
    if (!rel) {
        Py_XDECREF(acq);
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_AttributeError, "%R has no method 'acquire' or 'release'", lock);
        }
        return NULL;
    }
    char *data = NULL;
    Py_ssize_t n = 1, isize = 0;
    if (kind) {
        /* The memory of a ctypes object: its buffer (the pointer stays valid while obj lives;
         * ctypes never moves an object's memory). */
        Py_buffer view;
        if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) goto fail;
        isize = kind_size(kind);
        data = view.buf;
        n = view.len / isize;
        int ok = view.len == n * isize;
        PyBuffer_Release(&view);
        if (ok) {
            /* An array: its length must be the element count; a simple value: one element.
             * (n comes from the buffer size, so the memory accessed is in bounds anyway.) */
            Py_ssize_t len = PySequence_Check(obj) ? PyObject_Size(obj) : 1;
            if (len < 0) goto fail;
            ok = len == n;
        }
        if (!ok) {
            PyErr_Format(PyExc_ValueError, "SyncBase: %R does not hold kind %R", obj, kindobj);
            goto fail;
        }
    }
    gf_sync_obj *self = (gf_sync_obj *)tp->tp_alloc(tp, 0);
    if (!self) goto fail;
    self->obj = Py_NewRef(obj);
    self->lock = Py_NewRef(lock);
    self->acq = acq;
    self->rel = rel;
    self->st = st;
    self->data = data;
    self->n = n;
    self->isize = isize;
    self->kind = kind;
    if (PyObject_TypeCheck(lock, st->Mutex_type)) {
        self->m = GF_MUTEX_OF(lock);
        self->recursive = (self->m->flags & GF_MUTEX_RECURSIVE) != 0;
        PyObject *en = PyObject_GetAttrString(lock, "__enter__");
        PyObject *ex = en ? PyObject_GetAttrString(lock, "__exit__") : NULL;
        self->keep = ex ? PyTuple_Pack(2, en, ex) : NULL;
        Py_XDECREF(en);
        Py_XDECREF(ex);
        if (!self->keep) {
            Py_DECREF(self);
            return NULL;
        }
    }
    return (PyObject *)self;
fail:
    Py_DECREF(acq);
    Py_DECREF(rel);
    return NULL;
}

static int sync_traverse(PyObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(SELF_S(self)->obj);
    Py_VISIT(SELF_S(self)->lock);
    Py_VISIT(SELF_S(self)->acq);
    Py_VISIT(SELF_S(self)->rel);
    Py_VISIT(SELF_S(self)->keep);
    return 0;
}

/* Drops the references but keeps the fast-path fields consistent: without obj there is no
 * memory, without lock no mutex (a cleared wrapper raises on access). */
static int sync_clear(PyObject *self) {
    gf_sync_obj *s = SELF_S(self);
    s->kind = 0;
    s->data = NULL;
    s->m = NULL;
    Py_CLEAR(s->obj);
    Py_CLEAR(s->lock);
    Py_CLEAR(s->acq);
    Py_CLEAR(s->rel);
    Py_CLEAR(s->keep);
    return 0;
}

static void sync_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    sync_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* A wrapper cleared by the garbage collector (only reachable from a finalizer). Result -1. */
static int sync_cleared(void) {
    PyErr_SetString(PyExc_ValueError, "synchronized wrapper has been cleared");
    return -1;
}
#define SYNC_CHECK(s, fail)                                                                    \
    do {                                                                                       \
        if (GF_UNLIKELY_EXT(!(s)->obj || !(s)->acq)) {                                         \
            sync_cleared();                                                                    \
            return fail;                                                                       \
        }                                                                                      \
    } while (0)

static PyObject *sync_get_lock(PyObject *self, PyObject *Py_UNUSED(a)) {
    SYNC_CHECK(SELF_S(self), NULL);
    return Py_NewRef(SELF_S(self)->lock);
}

static PyObject *sync_get_obj(PyObject *self, PyObject *Py_UNUSED(a)) {
    SYNC_CHECK(SELF_S(self), NULL);
    return Py_NewRef(SELF_S(self)->obj);
}

static PyObject *sync_acquire(PyObject *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames) {
    SYNC_CHECK(SELF_S(self), NULL);
    return PyObject_Vectorcall(SELF_S(self)->acq, args, nargsf, kwnames);
}

static PyObject *sync_release(PyObject *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames) {
    SYNC_CHECK(SELF_S(self), NULL);
    return PyObject_Vectorcall(SELF_S(self)->rel, args, nargsf, kwnames);
}

static PyObject *sync_enter(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_sync_obj *s = SELF_S(self);
    SYNC_CHECK(s, NULL);
    if (s->m) {
        if (gf_mutex_obj_acquire(s->st, s->lock, GF_FOREVER) < 0) return NULL;
        Py_RETURN_TRUE;
    }
    return PyObject_CallMethod(s->lock, "__enter__", NULL);
}

static PyObject *sync_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    gf_sync_obj *s = SELF_S(self);
    SYNC_CHECK(s, NULL);
    if (s->m) {
        if (gf_mutex_obj_release(s->st, s->lock) < 0) return NULL;
        Py_RETURN_NONE;
    }
    PyObject *fn = PyObject_GetAttrString(s->lock, "__exit__");
    if (!fn) return NULL;
    PyObject *r = PyObject_Vectorcall(fn, args, (size_t)nargs, NULL);
    Py_DECREF(fn);
    return r;
}

static PyObject *sync_repr(PyObject *self) {
    gf_sync_obj *s = SELF_S(self);
    SYNC_CHECK(s, NULL);
    return PyUnicode_FromFormat("<%s wrapper for %S>", _PyType_Name(Py_TYPE(self)), s->obj);
}

static PyObject *sync_get_obj_attr(PyObject *self, void *Py_UNUSED(c)) {
    return sync_get_obj(self, NULL);
}
static PyObject *sync_get_lock_attr(PyObject *self, void *Py_UNUSED(c)) {
    return sync_get_lock(self, NULL);
}
static PyObject *sync_get_kind(PyObject *self, void *Py_UNUSED(c)) {
    int k = SELF_S(self)->kind;
    if (!k) Py_RETURN_NONE;
    char c = (char)k;
    return PyUnicode_FromStringAndSize(&c, 1);
}

static PyMethodDef sync_methods[] = {
    {"get_lock", sync_get_lock, METH_NOARGS, "The lock of the wrapper."},
    {"get_obj", sync_get_obj, METH_NOARGS, "The wrapped ctypes object."},
    {"acquire", (PyCFunction)(void (*)(void))sync_acquire, METH_FASTCALL | METH_KEYWORDS,
     "get_lock().acquire(*args, **kwargs)"},
    {"release", (PyCFunction)(void (*)(void))sync_release, METH_FASTCALL | METH_KEYWORDS,
     "get_lock().release(*args, **kwargs)"},
    {"__enter__", sync_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))sync_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sync_getset[] = {
    {"_obj", sync_get_obj_attr, NULL, "The wrapped ctypes object.", NULL},
    {"_lock", sync_get_lock_attr, NULL, "The lock.", NULL},
    {"_kind", sync_get_kind, NULL, "Element typecode decoded in C, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot sync_slots[] = {
    {Py_tp_new, sync_new},
    {Py_tp_dealloc, sync_dealloc},
    {Py_tp_traverse, sync_traverse},
    {Py_tp_clear, sync_clear},
    {Py_tp_methods, sync_methods},
    {Py_tp_getset, sync_getset},
    {Py_tp_repr, sync_repr},
    {Py_tp_doc, "SyncBase(obj, lock, kind=None): the C core of sharedctypes' synchronized "
                "wrappers (get_lock, get_obj, acquire, release, with)."},
    {0, NULL},
};

static PyType_Spec sync_spec = {
    .name = "gilfree._core.SyncBase",
    .basicsize = sizeof(gf_sync_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = sync_slots,
};

/* ---------------------------------------------------------------- SyncValue: .value */

static PyObject *sv_get_value(PyObject *self, void *Py_UNUSED(c)) {
    gf_sync_obj *s = SELF_S(self);
    SYNC_CHECK(s, NULL);
    int taken = sync_lock(s);
    if (taken < 0) return NULL;
    PyObject *r = s->kind ? kind_get(s->kind, s->data) : PyObject_GetAttrString(s->obj, "value");
    return sync_done(s, taken, r);
}

static int sv_set_value(PyObject *self, PyObject *v, void *Py_UNUSED(c)) {
    gf_sync_obj *s = SELF_S(self);
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "can't delete attribute");
        return -1;
    }
    SYNC_CHECK(s, -1);
    int taken = sync_lock(s);
    if (taken < 0) return -1;
    int rc = s->kind ? kind_set(s->kind, s->data, v) : 1;
    if (rc == 1) rc = PyObject_SetAttrString(s->obj, "value", v);
    if (GF_LIKELY_EXT(rc == 0 && taken == 0)) return 0;
    return sync_unlock(s, taken);
}

static PyGetSetDef sv_getset[] = {
    {"value", sv_get_value, sv_set_value, "The value (read and written under the lock).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot sv_slots[] = {
    {Py_tp_traverse, sync_traverse},
    {Py_tp_clear, sync_clear},
    {Py_tp_getset, sv_getset},
    {Py_tp_doc, "SyncValue(obj, lock, kind=None): synchronized access to obj.value."},
    {0, NULL},
};

static PyType_Spec sv_spec = {
    .name = "gilfree._core.SyncValue",
    .basicsize = sizeof(gf_sync_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = sv_slots,
};

/* ---------------------------------------------------------------- SyncArray: len, [i] */

static Py_ssize_t sa_length(PyObject *self) {
    gf_sync_obj *s = SELF_S(self);
    SYNC_CHECK(s, -1);
    return s->kind ? s->n : PyObject_Size(s->obj);
}

/* The element index of an int key when the fast path applies (kind set, in range), else -1. */
static inline Py_ssize_t sa_fast_index(gf_sync_obj *s, PyObject *key) {
    if (!s->kind || !PyLong_CheckExact(key)) return -1;
    Py_ssize_t i = PyLong_AsSsize_t(key);
    if (i == -1 && PyErr_Occurred()) {
        PyErr_Clear(); /* out of Py_ssize_t range: ctypes raises its own error */
        return -1;
    }
    if (i < 0) i += s->n;
    return i >= 0 && i < s->n ? i : -1;
}

static PyObject *sa_subscript(PyObject *self, PyObject *key) {
    gf_sync_obj *s = SELF_S(self);
    SYNC_CHECK(s, NULL);
    Py_ssize_t i = sa_fast_index(s, key);
    int taken = sync_lock(s);
    if (taken < 0) return NULL;
    PyObject *r = i >= 0 ? kind_get(s->kind, s->data + i * s->isize) : PyObject_GetItem(s->obj, key);
    return sync_done(s, taken, r);
}

static PyObject *sa_item(PyObject *self, Py_ssize_t i) {
    gf_sync_obj *s = SELF_S(self);
    SYNC_CHECK(s, NULL);
    int taken = sync_lock(s);
    if (taken < 0) return NULL;
    PyObject *r = s->kind && i >= 0 && i < s->n ? kind_get(s->kind, s->data + i * s->isize)
                                                : PySequence_GetItem(s->obj, i);
    return sync_done(s, taken, r);
}

static int sa_ass_subscript(PyObject *self, PyObject *key, PyObject *v) {
    gf_sync_obj *s = SELF_S(self);
    SYNC_CHECK(s, -1);
    Py_ssize_t i = v ? sa_fast_index(s, key) : -1;
    int taken = sync_lock(s);
    if (taken < 0) return -1;
    int rc = i >= 0 ? kind_set(s->kind, s->data + i * s->isize, v) : 1;
    if (rc == 1) rc = v ? PyObject_SetItem(s->obj, key, v) : PyObject_DelItem(s->obj, key);
    if (GF_LIKELY_EXT(rc == 0 && taken == 0)) return 0;
    return sync_unlock(s, taken);
}

static PyType_Slot sa_slots[] = {
    {Py_tp_traverse, sync_traverse},
    {Py_tp_clear, sync_clear},
    {Py_mp_length, sa_length},
    {Py_mp_subscript, sa_subscript},
    {Py_mp_ass_subscript, sa_ass_subscript},
    {Py_sq_length, sa_length},
    {Py_sq_item, sa_item},
    {Py_tp_doc, "SyncArray(obj, lock, kind=None): synchronized len/indexing/slicing of obj."},
    {0, NULL},
};

static PyType_Spec sa_spec = {
    .name = "gilfree._core.SyncArray",
    .basicsize = sizeof(gf_sync_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = sa_slots,
};

/* Create one type of this file (with base `base`, or none) and add it to the module.
 * Result: borrowed reference (the module holds one), or NULL. */
static PyTypeObject *add_type(PyObject *m, PyType_Spec *spec, PyObject *base) {
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(m, spec, base);
    if (!tp) return NULL;
    int rc = PyModule_AddType(m, tp);
    Py_DECREF(tp);
    return rc < 0 ? NULL : tp;
}

/* Create the SharedBuffer type and the synchronized wrapper types (SyncBase, SyncValue,
 * SyncArray: only the module refers to those). Result 0 or -1. */
int gf__buffer_register(PyObject *m, gf_state *st) {
    st->SharedBuffer_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &buf_spec, NULL);
    if (!st->SharedBuffer_type) return -1;
    if (PyModule_AddType(m, st->SharedBuffer_type) < 0) return -1;
    PyTypeObject *base = add_type(m, &sync_spec, NULL);
    if (!base) return -1;
    if (!add_type(m, &sv_spec, (PyObject *)base)) return -1;
    if (!add_type(m, &sa_spec, (PyObject *)base)) return -1;
    return 0;
}
