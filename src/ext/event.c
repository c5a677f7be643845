/*
 * event.c -- gilfree._core.Event: a gf_event in a shared object, with threading.Event's API
 * (is_set, set, clear, wait(timeout=None) -> bool).
 */
#include "ext.h"

typedef struct {
    gf_obj obj;
    gf_event e;
} gf_event_shared;

typedef struct {
    GF_HANDLE_HEAD;
} gf_event_obj;

#define SELF_E(self) (&((gf_event_shared *)((gf_handle *)(self))->ptr)->e)

static PyObject *ev_is_set(PyObject *self, PyObject *Py_UNUSED(a)) {
    return PyBool_FromLong(gf_event_is_set(SELF_E(self)));
}

static PyObject *ev_set(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_event_set(SELF_E(self));
    Py_RETURN_NONE;
}

static PyObject *ev_clear(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_event_clear(SELF_E(self));
    Py_RETURN_NONE;
}

/* wait(timeout=None) -> True if set (or set while waiting), False on timeout. */
static PyObject *ev_wait(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:wait", kwlist, &timeout)) return NULL;
    gf_event *e = SELF_E(self);
    if (gf_event_is_set(e)) Py_RETURN_TRUE;
    int64_t deadline;
    if (gf_deadline_arg(timeout, 1, &deadline) < 0) return NULL;
    int rc;
    GF_BLOCKING_SLICED(rc, deadline, dl, gf_event_wait(e, dl));
    if (rc == 0) Py_RETURN_TRUE;
    if (rc == GF_ETIMEDOUT) Py_RETURN_FALSE;
    return gf_raise(GF_HST(self), rc, "wait");
}

static PyObject *ev_reduce(PyObject *self, PyObject *Py_UNUSED(a)) {
    return gf_handle_reduce(self, NULL);
}

static PyObject *ev_rebuild(PyObject *cls, PyObject *off) {
    return gf_handle_rebuild((PyTypeObject *)cls, off, GF_OBJ_EVENT);
}

static PyObject *ev_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    if (!_PyArg_NoPositional("Event", args) || !_PyArg_NoKeywords("Event", kw)) return NULL;
    gf_state *st = gf_state_of_type(tp);
    if (!st) return NULL;
    PyObject *self = tp->tp_alloc(tp, 0);
    if (!self) return NULL;
    if (gf_handle_create(st, (gf_handle *)self, GF_OBJ_EVENT, sizeof(gf_event_shared)) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    gf_event_init(SELF_E(self));
    return self;
}

static void ev_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    gf_handle_release(GF_HST(self), (gf_handle *)self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *ev_get_off(PyObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(((gf_handle *)self)->off);
}

static PyMethodDef ev_methods[] = {
    {"is_set", ev_is_set, METH_NOARGS, "True if the flag is set."},
    {"set", ev_set, METH_NOARGS, "Set the flag and wake every waiter."},
    {"clear", ev_clear, METH_NOARGS, "Clear the flag."},
    {"wait", (PyCFunction)(void (*)(void))ev_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(timeout=None) -> bool: block until the flag is set."},
    {"__reduce__", ev_reduce, METH_NOARGS, NULL},
    {"_rebuild", ev_rebuild, METH_O | METH_CLASS, "Rebuild a handle from a pickled offset."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ev_getset[] = {
    {"_offset", ev_get_off, NULL, "Offset of the shared object in the arena.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot ev_slots[] = {
    {Py_tp_new, ev_new},
    {Py_tp_dealloc, ev_dealloc},
    {Py_tp_methods, ev_methods},
    {Py_tp_getset, ev_getset},
    {Py_tp_doc, "Event(): a process-shared event flag."},
    {0, NULL},
};

static PyType_Spec ev_spec = {
    .name = "gilfree._core.Event",
    .basicsize = sizeof(gf_event_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = ev_slots,
};

/* Create the Event type. Result 0 or -1. */
int gf__event_register(PyObject *m, gf_state *st) {
    st->Event_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &ev_spec, NULL);
    if (!st->Event_type) return -1;
    return PyModule_AddType(m, st->Event_type);
}
