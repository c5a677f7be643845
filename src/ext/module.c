/*
 * module.c -- gilfree._core: multi-phase init, module state, the arena of this process tree,
 * and fork handling.
 */
#include "ext.h"

#include <stdlib.h>
#include <unistd.h>

/* ------------------------------------------------------------------ arena */

/* Attach to the arena named by GILFREE_ARENA_FD (a spawned child of a gilfree process) or
 * create one (GILFREE_ARENA_SIZE bytes, default 64 GiB sparse). A stale or foreign fd in the
 * environment is ignored. Result 0, or -1 with an exception set. */
static int arena_open(gf_state *st) {
    const char *fds = getenv("GILFREE_ARENA_FD");
    if (fds && *fds) {
        char *end;
        long fd = strtol(fds, &end, 10);
        if (*end == '\0' && fd >= 0 && fd < 1 << 30 && gf_arena_attach((int)fd, &st->arena) == 0) {
            close((int)fd); /* attach dup'ed it */
            unsetenv("GILFREE_ARENA_FD");
            st->arena_pid = getpid();
            return 0;
        }
    }
    size_t reserve = 0;
    const char *sz = getenv("GILFREE_ARENA_SIZE");
    if (sz && *sz) reserve = (size_t)strtoull(sz, NULL, 10);
    int rc = gf_arena_create(reserve, &st->arena);
    if (rc < 0) {
        gf_raise(st, rc, "gilfree: cannot create the shared-memory arena");
        return -1;
    }
    st->arena_pid = getpid();
    return 0;
}

/* See ext.h. */
int gf_ensure_attached(gf_state *st) {
    if (__builtin_expect(st->arena_pid == getpid(), 1)) return 0;
    int rc = gf_arena_after_fork_child(st->arena);
    if (rc < 0) return gf_raise_int(st, rc, "gilfree: cannot attach this process to the arena");
    st->arena_pid = getpid();
    return 0;
}

/* See ext.h. */
int gf_fork(gf_state *st, gf_proc *p, uint32_t flags) {
    PyOS_BeforeFork();
    int rc = gf_proc_fork(p, flags);
    int saved = errno;
    if (rc == 1) {
        PyOS_AfterFork_Child(); /* runs os.register_at_fork hooks: ours re-attaches */
        if (gf_ensure_attached(st) < 0) return -1;
        return 1;
    }
    PyOS_AfterFork_Parent();
    if (rc < 0) {
        errno = saved;
        return gf_raise_int(st, rc, "gilfree: fork failed");
    }
    return 0;
}

/* See ext.h. */
void gf_release_before_exit(gf_state *st) {
    gf_handles_release_at_exit(st);
    gf_rings_release_all(st);
    if (st->arena) gf_arena_flush(st->arena);
}

/* ------------------------------------------------------------------ module functions */

static PyObject *mod_after_fork_child(PyObject *m, PyObject *Py_UNUSED(args)) {
    if (gf_ensure_attached((gf_state *)PyModule_GetState(m)) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *mod_arena_fd(PyObject *m, PyObject *Py_UNUSED(args)) {
    gf_state *st = PyModule_GetState(m);
    return PyLong_FromLong(gf_arena_fd(st->arena));
}

static PyObject *mod_arena_stats(PyObject *m, PyObject *Py_UNUSED(args)) {
    gf_state *st = PyModule_GetState(m);
    gf_arena_stats s;
    int rc = gf_arena_stats_get(st->arena, &s);
    if (rc < 0) return gf_raise(st, rc, "arena_stats");
    return Py_BuildValue("{sKsKsKsKsI}", "reserved", (unsigned long long)s.reserved, "top",
                         (unsigned long long)s.top, "in_use", (unsigned long long)s.in_use,
                         "live_blocks", (unsigned long long)s.live_blocks, "live_procs",
                         (unsigned)s.live_procs);
}

static PyObject *mod_strerror(PyObject *Py_UNUSED(m), PyObject *arg) {
    long code = PyLong_AsLong(arg);
    if (code == -1 && PyErr_Occurred()) return NULL;
    return PyUnicode_FromFormat("%s: %s", gf_err_name((int)code), gf_strerror((int)code));
}

static PyMethodDef mod_methods[] = {
    {"_after_fork_child", mod_after_fork_child, METH_NOARGS,
     "Give this (forked) process its own slot in the arena. Called by the at-fork hook."},
    {"arena_fd", mod_arena_fd, METH_NOARGS,
     "The memfd of this process tree's shared-memory arena (to pass to a spawned child)."},
    {"arena_stats", mod_arena_stats, METH_NOARGS,
     "Statistics of the shared-memory arena: reserved, top, in_use, live_blocks, live_procs."},
    {"strerror", mod_strerror, METH_O, "Describe a core error code: 'NAME: message'."},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------ init */

static int (*const type_inits[])(PyObject *, gf_state *) = {GF_EXT_INITS gf_sockconn_init, NULL};

/* See ext.h. */
int gf_register_at_fork(PyObject *m, const char *before, const char *parent, const char *child) {
    const char *keys[3] = {"before", "after_in_parent", "after_in_child"};
    const char *names[3] = {before, parent, child};
    PyObject *kw = PyDict_New();
    if (!kw) return -1;
    for (int i = 0; i < 3; i++) {
        if (!names[i]) continue;
        PyObject *fn = PyObject_GetAttrString(m, names[i]);
        int rc = fn ? PyDict_SetItemString(kw, keys[i], fn) : -1;
        Py_XDECREF(fn);
        if (rc < 0) {
            Py_DECREF(kw);
            return -1;
        }
    }
    PyObject *os = PyImport_ImportModule("os");
    PyObject *reg = os ? PyObject_GetAttrString(os, "register_at_fork") : NULL;
    PyObject *empty = PyTuple_New(0);
    PyObject *r = (reg && empty) ? PyObject_Call(reg, empty, kw) : NULL;
    Py_XDECREF(os);
    Py_XDECREF(reg);
    Py_XDECREF(empty);
    Py_DECREF(kw);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

static int mod_exec(PyObject *m) {
    gf_state *st = PyModule_GetState(m);
    if (arena_open(st) < 0) return -1;
    /* CPython runs signal handlers from the eval loop: a signal that lands while a core call
     * spins (just before it sleeps) gives no EINTR. Waking every 100 ms bounds how long
     * Ctrl-C can go unnoticed; GF_BLOCKING then runs the handlers and retries. */
    gf_set_interrupt_slice(100000000);
    for (size_t i = 0; type_inits[i]; i++)
        if (type_inits[i](m, st) < 0) return -1;
    /* Every fork done through Python (os.fork, multiprocessing, ours) gives the child its own
     * arena slot. */
    if (gf_register_at_fork(m, NULL, NULL, "_after_fork_child") < 0) return -1;
    if (PyModule_AddIntConstant(m, "FOREVER_NS", (long long)GF_FOREVER) < 0) return -1;
    if (PyModule_AddStringConstant(m, "__version__", "0.1.0") < 0) return -1;
    return 0;
}

static int mod_traverse(PyObject *m, visitproc visit, void *arg) {
    gf_state *st = PyModule_GetState(m);
    if (!st) return 0;
    Py_VISIT(st->OwnerDeadError);
    Py_VISIT(st->ProtocolError);
    Py_VISIT(st->pickle_dumps);
    Py_VISIT(st->pickle_loads);
    Py_VISIT(st->PickleBuffer);
    Py_VISIT(st->SharedHandle_type);
    Py_VISIT(st->Queue_type);
    Py_VISIT(st->Mutex_type);
    Py_VISIT(st->Semaphore_type);
    Py_VISIT(st->Event_type);
    Py_VISIT(st->Condition_type);
    Py_VISIT(st->Barrier_type);
    Py_VISIT(st->SharedBuffer_type);
    Py_VISIT(st->BlockView_type);
    Py_VISIT(st->Dict_type);
    Py_VISIT(st->List_type);
    Py_VISIT(st->Pool_type);
    Py_VISIT(st->Proc_type);
    return 0;
}

static int mod_clear(PyObject *m) {
    gf_state *st = PyModule_GetState(m);
    if (!st) return 0;
    Py_CLEAR(st->OwnerDeadError);
    Py_CLEAR(st->ProtocolError);
    Py_CLEAR(st->pickle_dumps);
    Py_CLEAR(st->pickle_loads);
    Py_CLEAR(st->PickleBuffer);
    Py_CLEAR(st->SharedHandle_type);
    Py_CLEAR(st->Queue_type);
    Py_CLEAR(st->Mutex_type);
    Py_CLEAR(st->Semaphore_type);
    Py_CLEAR(st->Event_type);
    Py_CLEAR(st->Condition_type);
    Py_CLEAR(st->Barrier_type);
    Py_CLEAR(st->SharedBuffer_type);
    Py_CLEAR(st->BlockView_type);
    Py_CLEAR(st->Dict_type);
    Py_CLEAR(st->List_type);
    Py_CLEAR(st->Pool_type);
    Py_CLEAR(st->Proc_type);
    return 0;
}

/* The arena is not detached at module free: shared objects may still be referenced by
 * handles that outlive the module during interpreter shutdown, and the kernel unmaps it at
 * exit anyway. */
static void mod_free(void *m) { mod_clear((PyObject *)m); }

static PyModuleDef_Slot mod_slots[] = {
    {Py_mod_exec, mod_exec},
    {0, NULL},
};

PyModuleDef gf_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "gilfree._core",
    .m_doc = "The C engine of gilfree: shared-memory arena, locks, rings, pools.",
    .m_size = sizeof(gf_state),
    .m_methods = mod_methods,
    .m_slots = mod_slots,
    .m_traverse = mod_traverse,
    .m_clear = mod_clear,
    .m_free = mod_free,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&gf_module_def); }
