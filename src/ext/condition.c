/*
 * condition.c -- gilfree._core.Condition: a gf_cond in a shared object plus the Mutex handle
 * it is used with (a Lock or an RLock). multiprocessing.Condition's API: acquire/release and
 * the context manager (of the lock), wait(timeout=None) -> bool, notify(n=1), notify_all();
 * wait_for is in gilfree/synchronize.py.
 *
 * wait() releases the lock fully (all levels of an RLock), sleeps with the GIL released, and
 * re-acquires it at its old depth, also after a timeout or Ctrl-C. If the lock's holder died
 * meanwhile the lock is re-acquired and OwnerDeadError raised *with the lock held* (wait() is
 * called inside `with cond:`, whose exit releases it).
 */
#include "ext.h"

typedef struct {
    gf_obj obj;
    gf_cond c;
} gf_cond_shared;

typedef struct {
    GF_HANDLE_HEAD;
    PyObject *lock; /* a Mutex handle */
} gf_cond_obj;

#define SELF_C(self) (&((gf_cond_shared *)((gf_handle *)(self))->ptr)->c)
#define LOCK_OF(self) (((gf_cond_obj *)(self))->lock)

static int check_lock(gf_state *st, PyObject *lock) {
    if (!PyObject_TypeCheck(lock, st->Mutex_type)) {
        PyErr_Format(PyExc_TypeError,
                     "Condition needs a gilfree Lock or RLock, not %.100s", Py_TYPE(lock)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *cond_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    int64_t deadline = GF_FOREVER;
    if ((nargs || kwnames) && gf_parse_block_timeout(args, nargs, kwnames, "acquire", &deadline) < 0)
        return NULL;
    int r = gf_mutex_obj_acquire(GF_HST(self), LOCK_OF(self), deadline);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *cond_release(PyObject *self, PyObject *Py_UNUSED(a)) {
    if (gf_mutex_obj_release(GF_HST(self), LOCK_OF(self)) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *cond_enter(PyObject *self, PyObject *Py_UNUSED(a)) {
    int r = gf_mutex_obj_acquire(GF_HST(self), LOCK_OF(self), GF_FOREVER);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *cond_exit(PyObject *self, PyObject *const *Py_UNUSED(args),
                           Py_ssize_t Py_UNUSED(n)) {
    return cond_release(self, NULL);
}

/* wait(timeout=None) -> True if notified, False on timeout. */
static PyObject *cond_wait(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:wait", kwlist, &timeout)) return NULL;
    gf_state *st = GF_HST(self);
    gf_mutex *m = GF_MUTEX_OF(LOCK_OF(self));
    if (!gf_mutex_is_mine(st->arena, m)) {
        PyErr_SetString(PyExc_AssertionError, "must acquire() condition before using wait()");
        return NULL;
    }
    int64_t deadline;
    if (gf_deadline_arg(timeout, 1, &deadline) < 0) return NULL;
    int rc;
    GF_BLOCKING(rc, gf_cond_wait(st->arena, SELF_C(self), m, deadline));
    if (rc == 0) Py_RETURN_TRUE;
    if (rc == GF_ETIMEDOUT) Py_RETURN_FALSE;
    if (rc == GF_EOWNERDEAD) {
        PyErr_Format(st->OwnerDeadError,
                     "the lock of Condition at shared offset %llu: a process died while holding "
                     "it; it is held again by the caller (the data it protects may be "
                     "half-updated)",
                     (unsigned long long)((gf_handle *)self)->off);
        return NULL;
    }
    if (rc == GF_EPERM) {
        PyErr_SetString(PyExc_AssertionError, "must acquire() condition before using wait()");
        return NULL;
    }
    return gf_raise(st, rc, "wait");
}

static PyObject *cond_notify(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"n", NULL};
    Py_ssize_t n = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|n:notify", kwlist, &n)) return NULL;
    gf_state *st = GF_HST(self);
    if (!gf_mutex_is_mine(st->arena, GF_MUTEX_OF(LOCK_OF(self)))) {
        PyErr_SetString(PyExc_AssertionError, "lock is not owned");
        return NULL;
    }
    if (n > 0) gf_cond_notify(SELF_C(self), n >= (Py_ssize_t)UINT32_MAX ? UINT32_MAX : (uint32_t)n);
    Py_RETURN_NONE;
}

static PyObject *cond_notify_all(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_state *st = GF_HST(self);
    if (!gf_mutex_is_mine(st->arena, GF_MUTEX_OF(LOCK_OF(self)))) {
        PyErr_SetString(PyExc_AssertionError, "lock is not owned");
        return NULL;
    }
    gf_cond_notify(SELF_C(self), UINT32_MAX);
    Py_RETURN_NONE;
}

/* Sleepers right now (a snapshot). */
static PyObject *cond_n_waiting(PyObject *self, PyObject *Py_UNUSED(a)) {
    return PyLong_FromUnsignedLong(__atomic_load_n(&SELF_C(self)->waiters, __ATOMIC_RELAXED));
}

static PyObject *cond_reduce(PyObject *self, PyObject *Py_UNUSED(a)) {
    PyObject *extra = PyTuple_Pack(1, LOCK_OF(self));
    if (!extra) return NULL;
    PyObject *r = gf_handle_reduce(self, extra);
    Py_DECREF(extra);
    return r;
}

/* _rebuild(off, lock) */
static PyObject *cond_rebuild(PyObject *cls, PyObject *args) {
    PyObject *off, *lock;
    if (!PyArg_ParseTuple(args, "OO:_rebuild", &off, &lock)) return NULL;
    gf_state *st = gf_state_of_type((PyTypeObject *)cls);
    if (!st || check_lock(st, lock) < 0) return NULL;
    PyObject *self = gf_handle_rebuild((PyTypeObject *)cls, off, GF_OBJ_COND);
    if (!self) return NULL;
    LOCK_OF(self) = Py_NewRef(lock);
    return self;
}

static PyObject *cond_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"lock", NULL};
    PyObject *lock;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:Condition", kwlist, &lock)) return NULL;
    gf_state *st = gf_state_of_type(tp);
    if (!st || check_lock(st, lock) < 0) return NULL;
    PyObject *self = tp->tp_alloc(tp, 0);
    if (!self) return NULL;
    if (gf_handle_create(st, (gf_handle *)self, GF_OBJ_COND, sizeof(gf_cond_shared)) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    gf_cond_init(SELF_C(self));
    LOCK_OF(self) = Py_NewRef(lock);
    return self;
}

static void cond_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    gf_handle_release(GF_HST(self), (gf_handle *)self);
    Py_CLEAR(LOCK_OF(self));
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *cond_get_lock(PyObject *self, void *Py_UNUSED(c)) {
    return Py_NewRef(LOCK_OF(self));
}
static PyObject *cond_get_off(PyObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(((gf_handle *)self)->off);
}

static PyMethodDef cond_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))cond_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None) -> bool: acquire the underlying lock."},
    {"release", cond_release, METH_NOARGS, "Release the underlying lock."},
    {"__enter__", cond_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))cond_exit, METH_FASTCALL, NULL},
    {"wait", (PyCFunction)(void (*)(void))cond_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(timeout=None) -> bool: release the lock, wait for a notify, re-acquire."},
    {"notify", (PyCFunction)(void (*)(void))cond_notify, METH_VARARGS | METH_KEYWORDS,
     "notify(n=1): wake up to n waiters."},
    {"notify_all", cond_notify_all, METH_NOARGS, "Wake every waiter."},
    {"_n_waiting", cond_n_waiting, METH_NOARGS, NULL},
    {"__reduce__", cond_reduce, METH_NOARGS, NULL},
    {"_rebuild", cond_rebuild, METH_VARARGS | METH_CLASS, "Rebuild from (offset, lock)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef cond_getset[] = {
    {"_lock", cond_get_lock, NULL, "The underlying Lock or RLock.", NULL},
    {"_offset", cond_get_off, NULL, "Offset of the shared object in the arena.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot cond_slots[] = {
    {Py_tp_new, cond_new},
    {Py_tp_dealloc, cond_dealloc},
    {Py_tp_methods, cond_methods},
    {Py_tp_getset, cond_getset},
    {Py_tp_doc, "Condition(lock): a process-shared condition variable over a gilfree Mutex."},
    {0, NULL},
};

static PyType_Spec cond_spec = {
    .name = "gilfree._core.Condition",
    .basicsize = sizeof(gf_cond_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = cond_slots,
};

/* Create the Condition type. Result 0 or -1. */
int gf__condition_register(PyObject *m, gf_state *st) {
    st->Condition_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &cond_spec, NULL);
    if (!st->Condition_type) return -1;
    return PyModule_AddType(m, st->Condition_type);
}
