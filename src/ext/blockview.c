/*
 * blockview.c -- _core.BlockView: exports an arena block as a writable buffer (zero-copy
 * out-of-band pickle buffers); frees the block when the object (and so every memoryview of
 * it) goes away.
 *
 * A forked child inherits BlockView objects but not the block: only the process that received
 * the block frees it. The block (this holder of it: a pool task's BlockView has a holder of its
 * own, gf_decode_shared) is recorded in that process's reference ledger (gf_ref_hold) from
 * here to the free, so the survivors free it if the process dies.
 */
#include "transport.h"

#include <unistd.h>

typedef struct {
    PyObject_HEAD
    gf_off block;
    Py_ssize_t len;
    pid_t owner; /* the process that owns the block */
    int held;    /* recorded in its reference ledger (gf_ref_hold) */
} BlockView;

/* See transport.h. */
PyObject *gf_blockview_new(gf_state *st, gf_off block, size_t len) {
    BlockView *v = PyObject_New(BlockView, st->BlockView_type);
    if (!v) {
        gf_free(st->arena, block);
        return NULL;
    }
    v->block = block;
    v->len = (Py_ssize_t)len;
    v->owner = getpid();
    v->held = gf_ref_hold(st->arena, block);
    return (PyObject *)v;
}

static void bv_dealloc(BlockView *self) {
    PyTypeObject *tp = Py_TYPE(self);
    gf_state *st = gf_state_of((PyObject *)self);
    if (st && self->block && self->owner == getpid())
        (self->held ? gf_free_held : gf_free)(st->arena, self->block);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static int bv_getbuffer(BlockView *self, Py_buffer *view, int flags) {
    gf_state *st = gf_state_of((PyObject *)self);
    if (!st) return -1;
    return PyBuffer_FillInfo(view, (PyObject *)self, gf_ptr(st->arena, self->block), self->len,
                             0, flags);
}

static PyObject *bv_repr(BlockView *self) {
    return PyUnicode_FromFormat("<gilfree BlockView offset=%llu len=%zd>",
                                (unsigned long long)self->block, self->len);
}

static Py_ssize_t bv_len(BlockView *self) { return self->len; }

static PyObject *bv_reduce(PyObject *self, PyObject *Py_UNUSED(a)) {
    /* Pickled by value (a copy), like a bytearray would be. */
    PyObject *mv = PyMemoryView_FromObject(self);
    if (!mv) return NULL;
    PyObject *ba = PyByteArray_FromObject(mv);
    Py_DECREF(mv);
    if (!ba) return NULL;
    PyObject *r = Py_BuildValue("(O(O))", (PyObject *)&PyByteArray_Type, ba);
    Py_DECREF(ba);
    return r;
}

static PyMethodDef bv_methods[] = {
    {"__reduce__", bv_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot bv_slots[] = {
    {Py_tp_dealloc, bv_dealloc},
    {Py_tp_repr, bv_repr},
    {Py_bf_getbuffer, bv_getbuffer},
    {Py_sq_length, bv_len},
    {Py_tp_methods, bv_methods},
    {Py_tp_doc, "A shared-memory block received from another process, exposed as a buffer.\n"
                "The block is freed when this object and every view of it are gone."},
    {0, NULL},
};

static PyType_Spec bv_spec = {
    .name = "gilfree._core.BlockView",
    .basicsize = sizeof(BlockView),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = bv_slots,
};

/* Create the BlockView type. Result 0 or -1. */
int gf__blockview_register(PyObject *m, gf_state *st) {
    st->BlockView_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &bv_spec, NULL);
    if (!st->BlockView_type) return -1;
    return PyModule_AddObjectRef(m, "BlockView", (PyObject *)st->BlockView_type);
}
