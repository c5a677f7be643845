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
#include <time.h>
#include <structmember.h>

typedef struct {
    gf_obj obj;
    gf_mutex m;
} gf_mutex_shared;

#define SELF_M(self) (&((gf_mutex_shared *)((gf_handle *)(self))->ptr)->m)

/* The Python object: a handle plus this lock's bound __enter__ / __exit__ callables, if any
 * are alive (borrowed: each one clears its slot when it dies; see "with" below). */
typedef struct {
    gf_mutex_obj base;
    PyObject *bound[2]; /* [0] __enter__, [1] __exit__ */
} gf_mutex_full;

#define SELF_F(self) ((gf_mutex_full *)(self))

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

/* Contention policy of Python-level locks. The core mutex spins (~30 us) then sleeps on the
 * futex, announcing itself so that the holder's release wakes it. For a lock that Python code
 * takes in a loop from two processes (`with v.get_lock(): v.value += 1`) both are costly on
 * our 2-vCPU VM: a spinner grabs the lock in every short gap between the holder's release and
 * re-acquire, so the lock and the data it guards change CPU on every iteration (~3 cache-line
 * transfers each); an announced sleeper makes the holder pay a futex wake system call every
 * time it goes back to sleep. So a contended Python acquire first *naps*: it sleeps
 * GF_MUTEX_NAP_NS without announcing itself and retries, up to GF_MUTEX_NAPS times, and only
 * then takes the core's spin-then-sleep path. Meanwhile the holder runs at full speed without
 * system calls; the lock changes hands about once per nap. The price: a waiter notices a
 * release up to one nap late (a nap is ~20 us plus the kernel's timer slack, ~50 us: about a
 * futex wake's cost on this VM). */
#define GF_MUTEX_NAP_NS 20000
#define GF_MUTEX_NAPS 8

/* The nap phase (GIL released by the caller): try to take `m` after each of up to
 * GF_MUTEX_NAPS unannounced naps, never sleeping past `deadline`. Result: 0 / GF_EOWNERDEAD
 * (acquired, as gf_mutex_lock), GF_ETIMEDOUT (not acquired: go on with the blocking path),
 * or another gf_mutex_lock failure. */
static int mutex_nap_phase(gf_arena *a, gf_mutex *m, int64_t deadline) {
    for (int k = 0; k < GF_MUTEX_NAPS; k++) {
        int64_t nap = GF_MUTEX_NAP_NS;
        if (deadline != GF_FOREVER) {
            int64_t left = deadline - gf_now_ns();
            if (left <= 0) break;
            if (left < nap) nap = left;
        }
        struct timespec ts = {0, (long)nap};
        nanosleep(&ts, NULL); /* EINTR: just retry sooner; signals are checked by the caller */
        int rc = gf_mutex_lock(a, m, 0);
        if (rc != GF_ETIMEDOUT) return rc;
    }
    return GF_ETIMEDOUT;
}

/* See ext.h. Result 1 acquired, 0 timed out, -1 exception set. */
int gf_mutex_obj_acquire(gf_state *st, PyObject *self, int64_t deadline) {
    gf_mutex *m = SELF_M(self);
    /* First without releasing the GIL: uncontended and re-entrant acquires cost one CAS. */
    int rc = gf_mutex_lock(st->arena, m, 0);
    if (rc == GF_ETIMEDOUT && deadline != 0) {
        Py_BEGIN_ALLOW_THREADS
        rc = mutex_nap_phase(st->arena, m, deadline);
        Py_END_ALLOW_THREADS
        if (rc == GF_ETIMEDOUT && PyErr_CheckSignals() < 0) return -1;
    }
    if (rc == GF_ETIMEDOUT && deadline != 0)
        GF_BLOCKING_SLICED(rc, deadline, dl, gf_mutex_lock(st->arena, m, dl));
    if (rc == 0) return 1;
    if (rc == GF_ETIMEDOUT) return 0;
    if (rc == GF_EOWNERDEAD) {
        gf_mutex_unlock(st->arena, m);
        gf_reclaim_dead(st); /* the holder's references, blocks and caches */
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

/* ------------------------------------------------------------------ with
 *
 * `with lock:` looks __enter__ and __exit__ up on the type and binds them to the lock. With
 * ordinary methods that allocates two bound-method objects (garbage-collected ones) per
 * statement, about a third of the cost of `with v.get_lock(): v.value += 1`. Here the type's
 * __enter__ / __exit__ are descriptors (MutexMethod) whose binding returns the lock's own
 * bound callable (MutexBound) when one is alive, and makes one otherwise. A MutexBound holds
 * a strong reference to its lock; the lock only a borrowed pointer back (no cycle), cleared
 * when the MutexBound dies. Whoever wants `with lock:` to allocate nothing keeps the two bound
 * callables alive (the synchronized Value/Array wrappers do: buffer.c).
 */

typedef struct {
    PyObject_HEAD
    PyObject *lock;            /* strong */
    int which;                 /* 0 __enter__, 1 __exit__ */
    vectorcallfunc vectorcall;
} gf_mutex_bound;

typedef struct {
    PyObject_HEAD
    int which;
    vectorcallfunc vectorcall;
} gf_mutex_method;

/* __enter__ / __exit__ of `self` (checked to be a Mutex by the callers). */
static PyObject *mutex_do_with(PyObject *self, int which) {
    gf_state *st = GF_HST(self);
    if (which == 0) {
        int r = gf_mutex_obj_acquire(st, self, GF_FOREVER);
        if (r < 0) return NULL;
        return PyBool_FromLong(r);
    }
    if (gf_mutex_obj_release(st, self) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *bound_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames) {
    gf_mutex_bound *b = (gf_mutex_bound *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames && PyTuple_GET_SIZE(kwnames)) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments",
                     b->which ? "__exit__" : "__enter__");
        return NULL;
    }
    (void)args;
    if (b->which == 0 && nargs != 0) {
        PyErr_Format(PyExc_TypeError, "__enter__() takes no arguments (%zd given)", nargs);
        return NULL;
    }
    return mutex_do_with(b->lock, b->which);
}

static void bound_dealloc(PyObject *self) {
    gf_mutex_bound *b = (gf_mutex_bound *)self;
    PyTypeObject *tp = Py_TYPE(self);
    gf_mutex_full *lk = SELF_F(b->lock);
    if (lk->bound[b->which] == self) lk->bound[b->which] = NULL;
    Py_DECREF(b->lock);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *bound_repr(PyObject *self) {
    gf_mutex_bound *b = (gf_mutex_bound *)self;
    return PyUnicode_FromFormat("<built-in method %s of %s object at %p>",
                                b->which ? "__exit__" : "__enter__",
                                _PyType_Name(Py_TYPE(b->lock)), b->lock);
}

static PyObject *bound_get_self(PyObject *self, void *Py_UNUSED(c)) {
    return Py_NewRef(((gf_mutex_bound *)self)->lock);
}
static PyObject *bound_get_name(PyObject *self, void *Py_UNUSED(c)) {
    return PyUnicode_FromString(((gf_mutex_bound *)self)->which ? "__exit__" : "__enter__");
}

static PyGetSetDef bound_getset[] = {
    {"__self__", bound_get_self, NULL, NULL, NULL},
    {"__name__", bound_get_name, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef bound_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(gf_mutex_bound, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot bound_slots[] = {
    {Py_tp_dealloc, bound_dealloc},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_repr, bound_repr},
    {Py_tp_getset, bound_getset},
    {Py_tp_members, bound_members},
    {0, NULL},
};

static PyType_Spec bound_spec = {
    .name = "gilfree._core.MutexBound",
    .basicsize = sizeof(gf_mutex_bound),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = bound_slots,
};

/* One per process (the module is only ever initialised once per process): the types of the
 * bound callables and of the locks. */
static PyTypeObject *gf__bound_type;
static PyTypeObject *gf__mutex_type;

/* Binding: the lock's live bound callable, or a new one. */
static PyObject *method_descr_get(PyObject *descr, PyObject *obj, PyObject *Py_UNUSED(type)) {
    int which = ((gf_mutex_method *)descr)->which;
    if (!obj) return Py_NewRef(descr);
    if (!PyObject_TypeCheck(obj, gf__mutex_type)) {
        PyErr_Format(PyExc_TypeError, "descriptor '%s' needs a gilfree._core.Mutex, not '%s'",
                     which ? "__exit__" : "__enter__", _PyType_Name(Py_TYPE(obj)));
        return NULL;
    }
    gf_mutex_full *lk = SELF_F(obj);
    if (lk->bound[which]) return Py_NewRef(lk->bound[which]);
    gf_mutex_bound *b = PyObject_New(gf_mutex_bound, gf__bound_type);
    if (!b) return NULL; /* (PyObject_New took the reference to the heap type) */
    b->lock = Py_NewRef(obj);
    b->which = which;
    b->vectorcall = bound_vectorcall;
    lk->bound[which] = (PyObject *)b;
    return (PyObject *)b;
}

/* Unbound call: Mutex.__enter__(lock) / Mutex.__exit__(lock, *exc_info). */
static PyObject *method_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames) {
    int which = ((gf_mutex_method *)callable)->which;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1) {
        PyErr_Format(PyExc_TypeError, "unbound %s() needs an argument",
                     which ? "__exit__" : "__enter__");
        return NULL;
    }
    PyObject *b = method_descr_get(callable, args[0], NULL);
    if (!b) return NULL;
    PyObject *r = PyObject_Vectorcall(b, args + 1, (size_t)(nargs - 1), kwnames);
    Py_DECREF(b);
    return r;
}

static PyObject *method_repr(PyObject *self) {
    return PyUnicode_FromFormat("<method '%s' of 'gilfree._core.Mutex' objects>",
                                ((gf_mutex_method *)self)->which ? "__exit__" : "__enter__");
}

static void method_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMemberDef method_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(gf_mutex_method, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot method_slots[] = {
    {Py_tp_dealloc, method_dealloc},
    {Py_tp_descr_get, method_descr_get},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_repr, method_repr},
    {Py_tp_members, method_members},
    {0, NULL},
};

static PyType_Spec method_spec = {
    .name = "gilfree._core.MutexMethod",
    .basicsize = sizeof(gf_mutex_method),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = method_slots,
};

/* Put __enter__ and __exit__ descriptors in the Mutex type's dict. Result 0 or -1. */
static int mutex_add_with(PyObject *m, PyTypeObject *mutex_type) {
    PyObject *btype = PyType_FromModuleAndSpec(m, &bound_spec, NULL);
    if (!btype) return -1;
    Py_XSETREF(gf__bound_type, (PyTypeObject *)btype); /* kept for the process's lifetime */
    Py_XSETREF(gf__mutex_type, (PyTypeObject *)Py_NewRef(mutex_type));
    PyTypeObject *mtype = (PyTypeObject *)PyType_FromModuleAndSpec(m, &method_spec, NULL);
    if (!mtype) return -1;
    static const char *const names[2] = {"__enter__", "__exit__"};
    int rc = 0;
    for (int which = 0; which < 2 && rc == 0; which++) {
        gf_mutex_method *d = PyObject_New(gf_mutex_method, mtype);
        if (!d) {
            rc = -1;
            break;
        }
        d->which = which;
        d->vectorcall = method_vectorcall;
        rc = PyDict_SetItemString(mutex_type->tp_dict, names[which], (PyObject *)d);
        Py_DECREF(d);
    }
    Py_DECREF(mtype);
    PyType_Modified(mutex_type);
    return rc;
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
    {"maxvalue", mutex_get_maxvalue, NULL,
     "1: a lock is a semaphore with maximum value 1 (as SemLock.maxvalue).", NULL},
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
    .basicsize = sizeof(gf_mutex_full),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = mutex_slots,
};

/* Create the Mutex type. Result 0 or -1. */
int gf__mutex_register(PyObject *m, gf_state *st) {
    st->Mutex_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &mutex_spec, NULL);
    if (!st->Mutex_type) return -1;
    if (mutex_add_with(m, st->Mutex_type) < 0) return -1;
    return PyModule_AddType(m, st->Mutex_type);
}
