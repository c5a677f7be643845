/*
 * clock.c -- gilfree._core.ContainerLock: the `.lock` of a SharedDict / SharedList, the
 * container's recursive lock (`with d.lock:` groups operations; other threads' and processes'
 * operations on the container wait).
 */
#include "container.h"

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

/* Create the ContainerLock type (once per process: clock_type is process-wide). Result 0 or
 * -1. */
int gf__clock_register(PyObject *m, gf_state *Py_UNUSED(st)) {
    if (!clock_type) {
        clock_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &clock_spec, NULL);
        if (!clock_type) return -1;
    }
    return PyModule_AddType(m, clock_type);
}
