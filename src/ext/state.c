/*
 * state.c -- the services of the module state that every type file may use (declared in
 * ext.h): the arena of this process tree (opened at module init, re-attached after a fork),
 * forking for Process / Pool workers, os.register_at_fork hooks, and what a forked child must
 * release before _exit(). It depends on errors.c and the core only: module.c and the types
 * call into it, it calls into neither (types add their exit-release step through
 * gf_on_release_before_exit).
 */
#include "ext.h"
#include "npalloc.h"

#include <stdlib.h>
#include <unistd.h>

/* ------------------------------------------------------------------ arena */

/* See ext.h. Attach to the arena named by GILFREE_ARENA_FD (a spawned child of a gilfree
 * process) or create one (GILFREE_ARENA_SIZE bytes, default 64 GiB sparse). A stale or foreign
 * fd in the environment is ignored. Result 0, or -1 with an exception set. */
int gf_state_open_arena(gf_state *st) {
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

__thread int gf_adopt_own_refs; /* see ext.h */

/* See ext.h. */
void gf_reclaim_dead(gf_state *st) {
    if (!st->arena || st->arena_pid != getpid()) return;
    Py_BEGIN_ALLOW_THREADS(void) gf_arena_reclaim(st->arena, GF_ARENA_RECLAIM_DEAD);
    Py_END_ALLOW_THREADS
}

/* ------------------------------------------------------------------ fork */

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
    gf_arena_fork_disarm(); /* a fork that failed before fork() was called left it armed */
    if (rc < 0) {
        errno = saved;
        return gf_raise_int(st, rc, "gilfree: fork failed");
    }
    return 0;
}

/* gf_arena_fork_arm's child callback: this process is attached now (a Python after-fork hook
 * finds it so), and what the before-fork hooks took for it is recorded. */
static void gf__fork_child_record(gf_arena *a, void *arg) {
    gf_state *st = arg;
    if (st->arena != a) return;
    st->arena_pid = getpid();
    gf__handles_fork_record(st);
    gf__rings_fork_record(st);
    gf_npalloc_fork_record();
}

/* See ext.h. Never fails (unarmed, the Python after-fork hooks record, as before). */
void gf_fork_arm(gf_state *st) {
    if (st->arena && st->arena_pid == getpid())
        (void)gf_arena_fork_arm(st->arena, gf__fork_child_record, st);
}

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

/* ------------------------------------------------------------------ before _exit() */

/* See ext.h. Result 0, or -1 with RuntimeError (too many steps: a programming error). */
int gf_on_release_before_exit(gf_state *st, void (*fn)(gf_state *st)) {
    if (st->nexit_release >= GF_EXIT_RELEASE_MAX) {
        PyErr_SetString(PyExc_RuntimeError, "gilfree: too many exit-release steps");
        return -1;
    }
    st->exit_release[st->nexit_release++] = fn;
    return 0;
}

/* See ext.h. */
void gf_release_before_exit(gf_state *st) {
    for (int i = 0; i < st->nexit_release; i++) st->exit_release[i](st);
    if (st->arena) gf_arena_flush(st->arena);
}
