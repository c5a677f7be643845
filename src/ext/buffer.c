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

/* Create the SharedBuffer type. Result 0 or -1. */
int gf_buffer_init(PyObject *m, gf_state *st) {
    st->SharedBuffer_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &buf_spec, NULL);
    if (!st->SharedBuffer_type) return -1;
    return PyModule_AddType(m, st->SharedBuffer_type);
}
