/*
 * handle.c -- the common base of Python handles on shared objects (locks, semaphores, events,
 * conditions, shared buffers; any type may use it).
 *
 * Reference counting. A handle owns one reference on its gf_obj, on behalf of the process that
 * created it (`owner`, a pid). Three ways a process gets a handle:
 *   - creation (gf_handle_create): the new object's first reference;
 *   - unpickling (gf_handle_adopt): the sender's __reduce__ took a reference for the receiver
 *     (gf_handle_ref_for_receiver); if the message is never sent the transport's abort hook
 *     drops it again;
 *   - fork: every handle alive in the parent is inherited. A before-fork hook takes one more
 *     reference for each (so the parent may drop its own right after the fork without freeing
 *     the object under the child); the child records them in its own ledger inside fork()
 *     (gf_fork_arm: before any code of the child runs, so only a kill that lands before the
 *     child is first scheduled leaks them), and its after-fork hook makes it their owner.
 * A child that leaves through os._exit never runs its handles' deallocators; Process and pool
 * children call gf_handles_release_all() (Python: _core._release_handles()) just before, so the
 * counts stay exact. Each reference a handle owns is recorded in its process's reference ledger
 * (gf_ref_hold: at creation, adoption, and in a forked child after it has its own slot), so a
 * process that dies without dropping them (SIGKILL, os._exit) has them dropped by the survivors
 * (gf_arena_reclaim). The references taken for a receiver or a child are not recorded: they
 * are in transit, and whoever adopts them records them -- except a pool task's, which stay
 * the task's until its final outcome (recorded in the parent's ledger meanwhile, see
 * pool_submit.c); a worker decoding the task takes its own (gf_adopt_own_refs).
 *
 * The registry (a doubly linked list of this process's live handles) is only touched with the
 * GIL held.
 */
#include "ext.h"

#include <unistd.h>

/* The transport (h4) exposes an abort hook so that a reference taken for a receiver is dropped
 * when the message is never sent. Weak: the handle code works without the transport. */
int gf_transport_on_abort(PyObject *callable, PyObject *args, const gf_off *refs, int nrefs)
    __attribute__((weak));

/* Sentinel of the registry of live handles of this process. */
static gf_handle gf__reg = {.prev = &gf__reg, .next = &gf__reg};

static void gf__reg_add(gf_handle *h) {
    h->next = &gf__reg;
    h->prev = gf__reg.prev;
    gf__reg.prev->next = h;
    gf__reg.prev = h;
}

static void gf__reg_del(gf_handle *h) {
    if (!h->next) return;
    h->prev->next = h->next;
    h->next->prev = h->prev;
    h->next = h->prev = NULL;
}

/* See ext.h. Result 0, or -1 with an exception set (MemoryError when the arena is full). */
int gf_handle_create(gf_state *st, gf_handle *h, uint32_t type, size_t size) {
    if (gf_ensure_attached(st) < 0) return -1;
    gf_off off;
    int rc = gf_obj_new(st->arena, type, size, &off);
    if (rc < 0) return gf_raise_int(st, rc, "cannot allocate a shared object");
    h->off = off;
    h->ptr = gf_ptr(st->arena, off);
    h->st = st;
    h->owner = getpid();
    h->forking = 0;
    gf__reg_add(h);
    gf_ref_hold(st->arena, off);
    return 0;
}

/* gf_handle_adopt; `own`: take a reference of our own (the message keeps the one its sender
 * took: gf_adopt_own_refs). Result 0, or -1 with gilfree.ProtocolError set. */
static int adopt(gf_state *st, gf_handle *h, gf_off off, uint32_t type, int own) {
    if (gf_ensure_attached(st) < 0) return -1;
    int rc = gf_obj_check(st->arena, off, type);
    if (rc == 0 && own) rc = gf_obj_incref_held(st->arena, off); /* recorded after the take */
    if (rc < 0) {
        PyErr_Format(st->ProtocolError,
                     "offset %llu does not name a live shared object of the expected type "
                     "(sent from another process tree, or already freed)",
                     (unsigned long long)off);
        return -1;
    }
    h->off = off;
    h->ptr = gf_ptr(st->arena, off);
    h->st = st;
    h->owner = getpid();
    h->forking = 0;
    gf__reg_add(h);
    if (!own) gf_ref_hold(st->arena, off);
    return 0;
}

/* See ext.h. Result 0, or -1 with gilfree.ProtocolError set (not a live object of `type`). */
int gf_handle_adopt(gf_state *st, gf_handle *h, gf_off off, uint32_t type) {
    return adopt(st, h, off, type, gf_adopt_own_refs);
}

/* See ext.h. Never fails. */
void gf_handle_release(gf_state *st, gf_handle *h) {
    gf__reg_del(h);
    if (h->off && h->owner == getpid() && st && st->arena) gf_obj_decref_held(st->arena, h->off);
    h->owner = 0;
}

/* See ext.h. Result 0, or -1 with an exception set. */
int gf_handle_ref_for_receiver(gf_state *st, gf_handle *h) {
    if (!h->off) {
        PyErr_SetString(PyExc_ValueError, "shared object handle is released");
        return -1;
    }
    int rc = gf_obj_incref(st->arena, h->off);
    if (rc < 0) return gf_raise_int(st, rc, "cannot reference a shared object for pickling");
    if (gf_transport_on_abort) {
        PyObject *m = gf_module_of((PyObject *)h);
        PyObject *fn = m ? PyObject_GetAttrString(m, "_obj_decref") : NULL;
        PyObject *args = fn ? Py_BuildValue("(K)", (unsigned long long)h->off) : NULL;
        int r = args ? gf_transport_on_abort(fn, args, &h->off, 1) : -1;
        Py_XDECREF(fn);
        Py_XDECREF(args);
        if (r < 0) {
            gf_obj_decref(st->arena, h->off);
            return -1;
        }
    }
    return 0;
}

/* See ext.h. Result: a new reference, or NULL with an exception set. */
PyObject *gf_handle_reduce(PyObject *self, PyObject *extra) {
    gf_state *st = gf_state_of(self);
    gf_handle *h = (gf_handle *)self;
    PyObject *rebuild = PyObject_GetAttrString((PyObject *)Py_TYPE(self), "_rebuild");
    if (!rebuild) return NULL;
    Py_ssize_t n = extra ? PyTuple_GET_SIZE(extra) : 0;
    PyObject *args = PyTuple_New(1 + n);
    if (!args) {
        Py_DECREF(rebuild);
        return NULL;
    }
    PyObject *o = PyLong_FromUnsignedLongLong(h->off);
    if (!o) goto fail;
    PyTuple_SET_ITEM(args, 0, o);
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(args, i + 1, Py_NewRef(PyTuple_GET_ITEM(extra, i)));
    /* The instance dict of a Python subclass travels as state. */
    PyObject *state = NULL;
    PyObject **dictp = _PyObject_GetDictPtr(self);
    if (dictp && *dictp && PyDict_GET_SIZE(*dictp) > 0) state = *dictp;
    PyObject *res = state ? PyTuple_Pack(3, rebuild, args, state) : PyTuple_Pack(2, rebuild, args);
    if (!res) goto fail;
    /* Last: the reference for the receiver (after everything that can fail but the hook). */
    if (gf_handle_ref_for_receiver(st, h) < 0) {
        Py_DECREF(res);
        goto fail;
    }
    Py_DECREF(rebuild);
    Py_DECREF(args);
    return res;
fail:
    Py_DECREF(rebuild);
    Py_DECREF(args);
    return NULL;
}

/* See ext.h. Result: a new instance of cls owning the received reference, or NULL. */
PyObject *gf_handle_rebuild(PyTypeObject *cls, PyObject *offarg, uint32_t type) {
    gf_state *st = gf_state_of_type(cls);
    if (!st) return NULL;
    unsigned long long off = PyLong_AsUnsignedLongLong(offarg);
    if (off == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    PyObject *self = cls->tp_alloc(cls, 0);
    if (!self) return NULL;
    if (gf_handle_adopt(st, (gf_handle *)self, (gf_off)off, type) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return self;
}

/* See ext.h. */
PyObject *gf_handle_new_object(PyTypeObject *tp, int (*create)(gf_arena *, gf_off *),
                               uint32_t type, const char *what) {
    gf_state *st = gf_state_of_type(tp);
    if (!st) return NULL;
    PyObject *self = tp->tp_alloc(tp, 0);
    if (!self) return NULL;
    if (gf_ensure_attached(st) < 0) goto fail;
    gf_off off;
    int rc = create(st->arena, &off);
    if (rc < 0) {
        gf_raise(st, rc, what);
        goto fail;
    }
    if (adopt(st, (gf_handle *)self, off, type, 0) < 0) { /* a new object: its reference */
        gf_obj_decref(st->arena, off);
        goto fail;
    }
    return self;
fail:
    Py_DECREF(self);
    return NULL;
}

/* See ext.h. */
void gf_handles_release_all(gf_state *st) {
    pid_t me = getpid();
    for (gf_handle *h = gf__reg.next; h != &gf__reg; h = h->next) {
        if (h->off && h->owner == me && st->arena) gf_obj_decref_held(st->arena, h->off);
        h->owner = 0;
    }
}

/* See ext.h. Reads the handles only: a forked child's pages stay shared (no copy-on-write
 * faults on the way out). */
void gf_handles_release_at_exit(gf_state *st) {
    pid_t me = getpid();
    for (gf_handle *h = gf__reg.next; h != &gf__reg; h = h->next)
        if (h->off && h->owner == me && st->arena) gf_obj_decref_held(st->arena, h->off);
}

/* See ext.h. Result 0 or -1 with TypeError/ValueError set. */
int gf_parse_block_timeout(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                               const char *fname, int64_t *deadline) {
    PyObject *block = NULL, *timeout = NULL;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most 2 arguments (%zd given)", fname, nargs);
        return -1;
    }
    if (nargs >= 1) block = args[0];
    if (nargs >= 2) timeout = args[1];
    if (kwnames) {
        Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nk; i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            PyObject *v = args[nargs + i];
            if (PyUnicode_CompareWithASCIIString(k, "block") == 0 && !block)
                block = v;
            else if (PyUnicode_CompareWithASCIIString(k, "timeout") == 0 && !timeout)
                timeout = v;
            else {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected or repeated keyword "
                             "argument '%U'", fname, k);
                return -1;
            }
        }
    }
    int b = 1;
    if (block) {
        b = PyObject_IsTrue(block);
        if (b < 0) return -1;
    }
    return gf_deadline_arg(timeout, b, deadline);
}

/* ------------------------------------------------------------------ fork hooks */

/* Before fork: one more reference per live handle, for the child; the fork is armed so that
 * the child records them before it runs. */
static PyObject *h_before_fork(PyObject *m, PyObject *Py_UNUSED(a)) {
    gf_state *st = PyModule_GetState(m);
    gf_fork_arm(st);
    pid_t me = getpid();
    for (gf_handle *h = gf__reg.next; h != &gf__reg; h = h->next) {
        h->forking = 0;
        if (h->off && h->owner == me && gf_obj_incref(st->arena, h->off) == 0) h->forking = 1;
    }
    Py_RETURN_NONE;
}

/* After fork, parent: forget the marks (the references now belong to the child; if the fork
 * failed they leak, which is harmless). */
static PyObject *h_after_parent(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a)) {
    for (gf_handle *h = gf__reg.next; h != &gf__reg; h = h->next) h->forking = 0;
    Py_RETURN_NONE;
}

/* See ext.h. In the child, inside fork(). */
void gf__handles_fork_record(gf_state *st) {
    for (gf_handle *h = gf__reg.next; h != &gf__reg; h = h->next)
        if (h->forking == 1) {
            gf_ref_hold(st->arena, h->off);
            h->forking = 2;
        }
}

/* After fork, child: own the references taken before the fork, recorded in the child's own
 * ledger -- inside fork() already (forking == 2), else now (the fork was not armed, or the
 * child could not attach then). */
static PyObject *h_after_child(PyObject *m, PyObject *Py_UNUSED(a)) {
    gf_state *st = PyModule_GetState(m);
    int attached = gf_ensure_attached(st) == 0;
    if (!attached) PyErr_Clear(); /* unrecorded: they leak if this child is killed */
    pid_t me = getpid();
    for (gf_handle *h = gf__reg.next; h != &gf__reg; h = h->next) {
        h->owner = h->forking ? me : 0;
        if (h->forking == 1 && attached) gf_ref_hold(st->arena, h->off);
        h->forking = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *h_release_handles(PyObject *m, PyObject *Py_UNUSED(a)) {
    gf_handles_release_all(PyModule_GetState(m));
    Py_RETURN_NONE;
}

static PyObject *h_obj_decref(PyObject *m, PyObject *arg) {
    gf_state *st = PyModule_GetState(m);
    unsigned long long off = PyLong_AsUnsignedLongLong(arg);
    if (off == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    int rc = gf_obj_decref(st->arena, (gf_off)off);
    if (rc < 0) return gf_raise(st, rc, "_obj_decref");
    return PyLong_FromLong(rc);
}

static PyObject *h_live_handles(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a)) {
    long n = 0;
    for (gf_handle *h = gf__reg.next; h != &gf__reg; h = h->next) n++;
    return PyLong_FromLong(n);
}

static PyMethodDef handle_functions[] = {
    {"_handles_before_fork", h_before_fork, METH_NOARGS, NULL},
    {"_handles_after_fork_parent", h_after_parent, METH_NOARGS, NULL},
    {"_handles_after_fork_child", h_after_child, METH_NOARGS, NULL},
    {"_release_handles", h_release_handles, METH_NOARGS,
     "Drop every shared-object reference this process holds (call just before os._exit)."},
    {"_obj_decref", h_obj_decref, METH_O,
     "Drop one reference on the shared object at an offset (undo of a pickled handle)."},
    {"_live_handles", h_live_handles, METH_NOARGS, "Number of live handles in this process."},
    {NULL, NULL, 0, NULL},
};

/* Add the functions, register the fork hooks and the release before _exit(). Result 0 or
 * -1. */
int gf__handle_register(PyObject *m, gf_state *st) {
    if (PyModule_AddFunctions(m, handle_functions) < 0) return -1;
    if (gf_on_release_before_exit(st, gf_handles_release_at_exit) < 0) return -1;
    return gf_register_at_fork(m, "_handles_before_fork", "_handles_after_fork_parent",
                               "_handles_after_fork_child");
}
