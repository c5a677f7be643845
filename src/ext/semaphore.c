/*
 * semaphore.c -- gilfree._core.Semaphore: the core of Semaphore and BoundedSemaphore
 * (gilfree/synchronize.py). A gf_sem in a shared object, with multiprocessing's SemLock API:
 * acquire(block=True, timeout=None) -> bool, release(), get_value(), context manager.
 */
#include "ext.h"

typedef struct {
    gf_obj obj;
    gf_sem s;
} gf_sem_shared;

typedef struct {
    GF_HANDLE_HEAD;
} gf_sem_obj;

#define SELF_S(self) (&((gf_sem_shared *)((gf_handle *)(self))->ptr)->s)

/* SEM_VALUE_MAX on Linux (the standard library's limit). */
#define GF_SEM_VALUE_MAX 2147483647L

/* Decrement. Result 1 acquired, 0 timed out, -1 exception (Ctrl-C, ...). */
static int sem_acquire_deadline(gf_state *st, PyObject *self, int64_t deadline) {
    gf_sem *s = SELF_S(self);
    int rc = gf_sem_wait(s, 0); /* with the GIL: an available unit costs one CAS */
    if (rc == GF_ETIMEDOUT && deadline != 0)
        GF_BLOCKING_SLICED(rc, deadline, dl, gf_sem_wait(s, dl));
    if (rc == 0) return 1;
    if (rc == GF_ETIMEDOUT) return 0;
    return gf_raise_int(st, rc, "acquire");
}

static PyObject *sem_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames) {
    int64_t deadline = GF_FOREVER;
    if ((nargs || kwnames) && gf_parse_block_timeout(args, nargs, kwnames, "acquire", &deadline) < 0)
        return NULL;
    int r = sem_acquire_deadline(GF_HST(self), self, deadline);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *sem_release(PyObject *self, PyObject *Py_UNUSED(a)) {
    int rc = gf_sem_post(SELF_S(self));
    if (rc == GF_EOVERFLOW) {
        PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
        return NULL;
    }
    if (rc < 0) return gf_raise(GF_HST(self), rc, "release");
    Py_RETURN_NONE;
}

static PyObject *sem_enter(PyObject *self, PyObject *Py_UNUSED(a)) {
    int r = sem_acquire_deadline(GF_HST(self), self, GF_FOREVER);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *sem_exit(PyObject *self, PyObject *const *Py_UNUSED(args),
                          Py_ssize_t Py_UNUSED(n)) {
    return sem_release(self, NULL);
}

static PyObject *sem_get_value(PyObject *self, PyObject *Py_UNUSED(a)) {
    return PyLong_FromUnsignedLong(gf_sem_value(SELF_S(self)));
}

static PyObject *sem_is_zero(PyObject *self, PyObject *Py_UNUSED(a)) {
    return PyBool_FromLong(gf_sem_value(SELF_S(self)) == 0);
}

static PyObject *sem_noop(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(a)) { Py_RETURN_NONE; }

static PyObject *sem_reduce(PyObject *self, PyObject *Py_UNUSED(a)) {
    return gf_handle_reduce(self, NULL);
}

static PyObject *sem_rebuild(PyObject *cls, PyObject *off) {
    return gf_handle_rebuild((PyTypeObject *)cls, off, GF_OBJ_SEM);
}

static PyObject *sem_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"value", "maxvalue", NULL};
    long value = 1, maxvalue = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|ll:Semaphore", kwlist, &value, &maxvalue))
        return NULL;
    if (value < 0) {
        PyErr_SetString(PyExc_ValueError, "semaphore initial value must be >= 0");
        return NULL;
    }
    if (value > GF_SEM_VALUE_MAX || maxvalue < 0 || maxvalue > GF_SEM_VALUE_MAX) {
        PyErr_Format(PyExc_ValueError, "semaphore value must be <= %ld", GF_SEM_VALUE_MAX);
        return NULL;
    }
    if (maxvalue && value > maxvalue) {
        PyErr_SetString(PyExc_ValueError, "semaphore initial value must be <= maxvalue");
        return NULL;
    }
    gf_state *st = gf_state_of_type(tp);
    if (!st) return NULL;
    PyObject *self = tp->tp_alloc(tp, 0);
    if (!self) return NULL;
    if (gf_handle_create(st, (gf_handle *)self, GF_OBJ_SEM, sizeof(gf_sem_shared)) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    gf_sem_init(SELF_S(self), (uint32_t)value, (uint32_t)maxvalue);
    return self;
}

static void sem_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    gf_handle_release(GF_HST(self), (gf_handle *)self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* maxvalue as multiprocessing reports it (SEM_VALUE_MAX when unbounded). */
static PyObject *sem_get_maxvalue(PyObject *self, void *Py_UNUSED(c)) {
    uint32_t mv = SELF_S(self)->maxvalue;
    return PyLong_FromLong(mv ? (long)mv : GF_SEM_VALUE_MAX);
}
static PyObject *sem_get_self(PyObject *self, void *Py_UNUSED(c)) { return Py_NewRef(self); }
static PyObject *sem_get_off(PyObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(((gf_handle *)self)->off);
}

static PyMethodDef sem_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))sem_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None) -> bool"},
    {"release", sem_release, METH_NOARGS, "Increment the semaphore."},
    {"__enter__", sem_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))sem_exit, METH_FASTCALL, NULL},
    {"get_value", sem_get_value, METH_NOARGS, "The current value."},
    {"_get_value", sem_get_value, METH_NOARGS, NULL},
    {"_is_zero", sem_is_zero, METH_NOARGS, NULL},
    {"_after_fork", sem_noop, METH_NOARGS, NULL},
    {"__reduce__", sem_reduce, METH_NOARGS, NULL},
    {"_rebuild", sem_rebuild, METH_O | METH_CLASS, "Rebuild a handle from a pickled offset."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sem_getset[] = {
    {"maxvalue", sem_get_maxvalue, NULL, "The bound (SEM_VALUE_MAX if unbounded).", NULL},
    {"_semlock", sem_get_self, NULL, "Compatibility with multiprocessing.synchronize.", NULL},
    {"_offset", sem_get_off, NULL, "Offset of the shared object in the arena.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot sem_slots[] = {
    {Py_tp_new, sem_new},
    {Py_tp_dealloc, sem_dealloc},
    {Py_tp_methods, sem_methods},
    {Py_tp_getset, sem_getset},
    {Py_tp_doc, "Semaphore(value=1, maxvalue=0): a process-shared counting semaphore "
                "(maxvalue 0 = unbounded)."},
    {0, NULL},
};

static PyType_Spec sem_spec = {
    .name = "gilfree._core.Semaphore",
    .basicsize = sizeof(gf_sem_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = sem_slots,
};

/* Create the Semaphore type. Result 0 or -1. */
int gf__semaphore_register(PyObject *m, gf_state *st) {
    st->Semaphore_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &sem_spec, NULL);
    if (!st->Semaphore_type) return -1;
    if (PyModule_AddIntConstant(m, "SEM_VALUE_MAX", GF_SEM_VALUE_MAX) < 0) return -1;
    return PyModule_AddType(m, st->Semaphore_type);
}
