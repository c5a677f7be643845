/*
 * module.c -- gilfree._core itself: the module definition (multi-phase init), its state's
 * creation (the arena, through state.c) and GC, its module-level functions, and the one list
 * of every type file's registration. The direction is one way: module.c calls the types'
 * gf__X_register functions and state.c; no type calls into module.c (they use the state
 * services of state.c and the helpers in ext.h).
 */
#include "ext.h"

#include "../core/internal.h"

#include <dlfcn.h>

/* ------------------------------------------------------------------ module functions */

/* 1 if a sanitizer runtime is loaded in this process (its allocator, unlike glibc's malloc,
 * takes no locks around fork(): a process forked while another thread of ours is still in its
 * C exit path can inherit a held allocator lock and block in its first malloc). Never fails. */
static int gf__fork_unsafe_malloc(void) {
    static const char *const runtimes[] = {"__asan_init", "__tsan_init", "__msan_init"};
    for (size_t i = 0; i < sizeof runtimes / sizeof runtimes[0]; i++)
        if (dlsym(RTLD_DEFAULT, runtimes[i])) return 1;
    return 0;
}

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
    gf_reclaim_dead(st); /* the figures are those of the living processes */
    gf_arena_stats s;
    int rc = gf_arena_stats_get(st->arena, &s);
    if (rc < 0) return gf_raise(st, rc, "arena_stats");
    return Py_BuildValue(
        "{sKsKsKsKsIsKsKsKsKsKsKsKsKsK}", "reserved", (unsigned long long)s.reserved, "top",
        (unsigned long long)s.top, "in_use", (unsigned long long)s.in_use, "live_blocks",
        (unsigned long long)s.live_blocks, "live_procs", (unsigned)s.live_procs, "backing",
        (unsigned long long)s.backing, "free", (unsigned long long)s.free, "warm",
        (unsigned long long)s.warm, "punched", (unsigned long long)s.punched,
        "reclaimed_blocks", (unsigned long long)s.reclaimed_blocks, "reclaimed_bytes",
        (unsigned long long)s.reclaimed_bytes, "heals", (unsigned long long)s.heals,
        "refs_reclaimed", (unsigned long long)s.refs_reclaimed, "refs_unrecorded",
        (unsigned long long)s.refs_unrecorded);
}

static PyObject *mod_arena_reclaim(PyObject *m, PyObject *Py_UNUSED(args)) {
    gf_state *st = PyModule_GetState(m);
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = gf_arena_reclaim(st->arena, GF_ARENA_RECLAIM_DEAD);
    Py_END_ALLOW_THREADS
    if (rc < 0) return gf_raise(st, rc, "arena_reclaim");
    return PyLong_FromLong(rc);
}

static PyObject *mod_arena_trim(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"all", NULL};
    int all = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p:arena_trim", kwlist, &all)) return NULL;
    gf_state *st = PyModule_GetState(m);
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = gf_arena_trim(st->arena, all);
    Py_END_ALLOW_THREADS
    if (rc < 0) return gf_raise(st, rc, "arena_trim");
    Py_RETURN_NONE;
}

/* _arena_blocks(min_size=0): see the method table. */
static PyObject *mod_arena_blocks(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"min_size", NULL};
    unsigned long long min = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|K:_arena_blocks", kwlist, &min)) return NULL;
    gf_state *st = PyModule_GetState(m);
    gf__live_blk *v = NULL;
    int n = 0;
    for (size_t cap = 256;; cap = (size_t)n + 64) { /* blocks come and go meanwhile */
        gf__live_blk *nv = PyMem_Realloc(v, cap * sizeof *v);
        if (!nv) {
            PyMem_Free(v);
            return PyErr_NoMemory();
        }
        v = nv;
        Py_BEGIN_ALLOW_THREADS n = gf__arena_live_list(st->arena, min, v, cap);
        Py_END_ALLOW_THREADS
        if (n < 0 || (size_t)n <= cap) break;
    }
    PyObject *res = n < 0 ? gf_raise(st, n, "_arena_blocks") : PyList_New(n);
    for (int i = 0; res && i < n; i++) {
        PyObject *t = Py_BuildValue(
            "(KKIIOKO)", (unsigned long long)v[i].off, (unsigned long long)v[i].usable,
            v[i].slot, v[i].gen,
            gf__ident_alive(st->arena, v[i].owner) ? Py_True : Py_False,
            (unsigned long long)v[i].shares, v[i].obj ? Py_True : Py_False);
        if (!t) Py_CLEAR(res);
        else PyList_SET_ITEM(res, i, t);
    }
    PyMem_Free(v);
    return res;
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
     "Statistics of the shared-memory arena: reserved, top, in_use, live_blocks, live_procs;\n"
     "backing (bytes the memfd really holds), free (bytes in free big blocks), warm (of those,\n"
     "freed recently and possibly still backed), punched (bytes handed back to the kernel),\n"
     "reclaimed_blocks / reclaimed_bytes (released for dead processes), heals,\n"
     "refs_reclaimed (references dead processes held, dropped for them), refs_unrecorded\n"
     "(references the ledgers had no room for). What dead processes held is reclaimed first."},
    {"arena_reclaim", mod_arena_reclaim, METH_NOARGS,
     "Release what every dead process held in the arena (blocks it allocated and had not\n"
     "handed on, its thread caches' blocks, its references on shared objects and blocks).\n"
     "Returns the number of blocks and references released. A pool does this itself when\n"
     "a worker ends; so do Process.join, a lock acquire that finds its holder dead and\n"
     "arena_stats()."},
    {"arena_trim", (PyCFunction)(void (*)(void))mod_arena_trim, METH_VARARGS | METH_KEYWORDS,
     "arena_trim(all=True)\n--\n\nReturn free arena memory to the kernel: with all=True the\n"
     "pages of every free block over 4 KiB, else only those past the warm delay\n"
     "(GILFREE_ARENA_WARM_MS) or over the warm budget (GILFREE_ARENA_WARM_MB)."},
    {"_arena_blocks", (PyCFunction)(void (*)(void))mod_arena_blocks,
     METH_VARARGS | METH_KEYWORDS,
     "_arena_blocks(min_size=0)\n--\n\nDebugging and tests: the arena's live blocks of at least\n"
     "min_size payload bytes, in address order, as tuples (offset, size, owner slot, owner\n"
     "generation, owner alive, extra holders, is a shared object)."},
    {"strerror", mod_strerror, METH_O, "Describe a core error code: 'NAME: message'."},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------ init */

/* Every type file's registration, in order (a later one may use an earlier one's types or
 * module functions: the Ring type before connections, handles before the types built on
 * them). Each creates its heap types, stores them in the state and adds them to the module. */
static int (*const registrations[])(PyObject *, gf_state *) = {
    gf__errors_register,
    gf__handle_register,
    gf__mutex_register,
    gf__semaphore_register,
    gf__event_register,
    gf__condition_register,
    gf__buffer_register,
    gf__proc_register,
    gf__transport_register,
    gf__blockview_register,
    gf__npalloc_register,
    gf__ring_register,
    gf__conn_register,
    gf__pool_register,
    gf__clock_register,
    gf__dict_register,
    gf__list_register,
    gf__sockconn_register,
    NULL,
};

static int mod_exec(PyObject *m) {
    gf_state *st = PyModule_GetState(m);
    if (gf_state_open_arena(st) < 0) return -1;
    /* CPython runs signal handlers from the eval loop: a signal that lands while a core call
     * spins (just before it sleeps) gives no EINTR. Waking every 100 ms bounds how long
     * Ctrl-C can go unnoticed; GF_BLOCKING then runs the handlers and retries. */
    gf_set_interrupt_slice(100000000);
    for (size_t i = 0; registrations[i]; i++)
        if (registrations[i](m, st) < 0) return -1;
    /* Every fork done through Python (os.fork, multiprocessing, ours) gives the child its own
     * arena slot. */
    if (gf_register_at_fork(m, NULL, NULL, "_after_fork_child") < 0) return -1;
    if (PyModule_AddIntConstant(m, "FOREVER_NS", (long long)GF_FOREVER) < 0) return -1;
    if (PyModule_AddStringConstant(m, "__version__", "0.1.0") < 0) return -1;
    if (PyModule_AddIntConstant(m, "_fork_unsafe_malloc", gf__fork_unsafe_malloc()) < 0)
        return -1;
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
    Py_VISIT(st->DictIter_type);
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
    Py_CLEAR(st->DictIter_type);
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
