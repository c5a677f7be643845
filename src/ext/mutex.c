/*
 * mutex.c -- gilfree._core.Mutex: the core of Lock and RLock (gilfree/synchronize.py).
 *
 * A gf_mutex in a shared object. Semantics are multiprocessing's SemLock:
 *   acquire(block=True, timeout=None) -> bool     (block false ignores timeout)
 *   release()   Lock: any process may release; an unlocked lock -> ValueError
 *               RLock: only the owning thread; else AssertionError
 * plus owner death: an acquire that takes the lock over from a dead holder releases it again
 * and raises gilfree.OwnerDeadError, so `with lock:` never deadlocks and the program is told.
 */
#include "ext.h"

#include <stddef.h>

typedef struct {
    gf_obj obj;
    gf_mutex m;
} gf_mutex_shared;

#define SELF_M(self) (&((gf_mutex_shared *)((gf_handle *)(self))->ptr)->m)

static const char *const gf__released_too_many = "semaphore or lock released too many times";

/* Raise OwnerDeadError for `self` (whose lock the caller just released). Result -1. */
static int raise_owner_dead(gf_state *st, PyObject *self) {
    gf_handle *h = (gf_handle *)self;
    PyErr_Format(st->OwnerDeadError,
                 "%s at shared offset %llu: a process died while holding it; the lock has been "
                 "released again (the data it protects may be half-updated)",
                 _PyType_Name(Py_TYPE(self)), (unsigned long long)h->off);
    return -1;
}

/* See ext.h. Result 1 acquired, 0 timed out, -1 exception set. */
int gf_mutex_obj_acquire(gf_state *st, PyObject *self, int64_t deadline) {
    gf_mutex *m = SELF_M(self);
    /* First without releasing the GIL: uncontended and re-entrant acquires cost one CAS. */
    int rc = gf_mutex_lock(st->arena, m, 0);
    if (rc == GF_ETIMEDOUT && deadline != 0)
        GF_BLOCKING_SLICED(rc, deadline, dl, gf_mutex_lock(st->arena, m, dl));
    if (rc == 0) return 1;
    if (rc == GF_ETIMEDOUT) return 0;
    if (rc == GF_EOWNERDEAD) {
        gf_mutex_unlock(st->arena, m);
        return raise_owner_dead(st, self);
    }
    if (rc == GF_EAGAIN) {
        PyErr_SetString(PyExc_OverflowError, "maximum recursion depth of the lock exceeded");
        return -1;
    }
    return gf_raise_int(st, rc, "acquire");
}

/* See ext.h. Result 0 or -1 with ValueError (Lock not locked) / AssertionError (RLock not
 * owned by this thread) set. */
int gf_mutex_obj_release(gf_state *st, PyObject *self) {
    int rc = gf_mutex_unlock(st->arena, SELF_M(self));
    if (rc == 0) return 0;
    if (rc == GF_EOVERFLOW) {
        PyErr_SetString(PyExc_ValueError, gf__released_too_many);
        return -1;
    }
    if (rc == GF_EPERM) {
        PyErr_SetString(PyExc_AssertionError,
                        "attempt to release recursive lock not owned by thread");
        return -1;
    }
    return gf_raise_int(st, rc, "release");
}

static PyObject *mutex_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    gf_state *st = GF_HST(self);
    int64_t deadline = GF_FOREVER;
    if ((nargs || kwnames) && gf_parse_block_timeout(args, nargs, kwnames, "acquire", &deadline) < 0)
        return NULL;
    int r = gf_mutex_obj_acquire(st, self, deadline);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *mutex_release(PyObject *self, PyObject *Py_UNUSED(a)) {
    if (gf_mutex_obj_release(GF_HST(self), self) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *mutex_enter(PyObject *self, PyObject *Py_UNUSED(a)) {
    int r = gf_mutex_obj_acquire(GF_HST(self), self, GF_FOREVER);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *mutex_exit(PyObject *self, PyObject *const *Py_UNUSED(args),
                            Py_ssize_t Py_UNUSED(n)) {
    if (gf_mutex_obj_release(GF_HST(self), self) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *mutex_is_mine(PyObject *self, PyObject *Py_UNUSED(a)) {
    return PyBool_FromLong(gf_mutex_is_mine(GF_HST(self)->arena, SELF_M(self)));
}

/* Recursion depth held by the calling thread (0 if it does not hold it); 1 for a plain lock
 * held by this process. */
static PyObject *mutex_count(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_mutex *m = SELF_M(self);
    if (!gf_mutex_is_mine(GF_HST(self)->arena, m)) return PyLong_FromLong(0);
    if (m->flags & GF_MUTEX_RECURSIVE)
        return PyLong_FromUnsignedLong(__atomic_load_n(&m->depth, __ATOMIC_RELAXED));
    return PyLong_FromLong(1);
}

/* 1 if unlocked, 0 if locked (SemLock._get_value). */
static PyObject *mutex_get_value(PyObject *self, PyObject *Py_UNUSED(a)) {
    return PyLong_FromLong(!gf_mutex_is_locked(SELF_M(self)));
}

static PyObject *mutex_is_zero(PyObject *self, PyObject *Py_UNUSED(a)) {
    return PyBool_FromLong(gf_mutex_is_locked(SELF_M(self)));
}

static PyObject *mutex_after_fork(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(a)) {
    Py_RETURN_NONE;
}

static PyObject *mutex_reduce(PyObject *self, PyObject *Py_UNUSED(a)) {
    return gf_handle_reduce(self, NULL);
}

static PyObject *mutex_rebuild(PyObject *cls, PyObject *off) {
    return gf_handle_rebuild((PyTypeObject *)cls, off, GF_OBJ_MUTEX);
}

static PyObject *mutex_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"recursive", NULL};
    int recursive = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p:Mutex", kwlist, &recursive)) return NULL;
    gf_state *st = gf_state_of_type(tp);
    if (!st) return NULL;
    PyObject *self = tp->tp_alloc(tp, 0);
    if (!self) return NULL;
    if (gf_handle_create(st, (gf_handle *)self, GF_OBJ_MUTEX, sizeof(gf_mutex_shared)) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    gf_mutex_init(SELF_M(self), recursive ? GF_MUTEX_RECURSIVE : 0);
    return self;
}

static void mutex_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    gf_handle_release(GF_HST(self), (gf_handle *)self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *mutex_get_recursive(PyObject *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(SELF_M(self)->flags & GF_MUTEX_RECURSIVE);
}
static PyObject *mutex_get_self(PyObject *self, void *Py_UNUSED(c)) { return Py_NewRef(self); }
static PyObject *mutex_get_off(PyObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(((gf_handle *)self)->off);
}
static PyObject *mutex_get_maxvalue(PyObject *Py_UNUSED(self), void *Py_UNUSED(c)) {
    return PyLong_FromLong(1);
}

static PyMethodDef mutex_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))mutex_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None) -> bool"},
    {"release", mutex_release, METH_NOARGS, "Release the lock."},
    {"__enter__", mutex_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))mutex_exit, METH_FASTCALL, NULL},
    {"_is_mine", mutex_is_mine, METH_NOARGS, "Held by this thread (RLock) / process (Lock)."},
    {"_count", mutex_count, METH_NOARGS, "Recursion depth held by the calling thread."},
    {"_get_value", mutex_get_value, METH_NOARGS, "1 if unlocked, else 0."},
    {"_is_zero", mutex_is_zero, METH_NOARGS, "True if locked."},
    {"_after_fork", mutex_after_fork, METH_NOARGS, NULL},
    {"__reduce__", mutex_reduce, METH_NOARGS, NULL},
    {"_rebuild", mutex_rebuild, METH_O | METH_CLASS, "Rebuild a handle from a pickled offset."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef mutex_getset[] = {
    {"recursive", mutex_get_recursive, NULL, "True for an RLock.", NULL},
    {"_semlock", mutex_get_self, NULL, "Compatibility with multiprocessing.synchronize.", NULL},
    {"_offset", mutex_get_off, NULL, "Offset of the shared object in the arena.", NULL},
    {"maxvalue", mutex_get_maxvalue, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot mutex_slots[] = {
    {Py_tp_new, mutex_new},
    {Py_tp_dealloc, mutex_dealloc},
    {Py_tp_methods, mutex_methods},
    {Py_tp_getset, mutex_getset},
    {Py_tp_doc, "Mutex(recursive=False): a process-shared lock that survives its holder's death."},
    {0, NULL},
};

static PyType_Spec mutex_spec = {
    .name = "gilfree._core.Mutex",
    .basicsize = sizeof(gf_mutex_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = mutex_slots,
};

/* Create the Mutex type. Result 0 or -1. */
int gf_mutex_init_type(PyObject *m, gf_state *st) {
    st->Mutex_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &mutex_spec, NULL);
    if (!st->Mutex_type) return -1;
    return PyModule_AddType(m, st->Mutex_type);
}
