/*
 * ext.h -- shared declarations of the CPython extension gilfree._core: the module state and its
 * services (state.c), errors (errors.c), blocking-call macros, shared handles (handle.c), and
 * each type file's registration function.
 *
 * Direction (no circles): module.c -> type files -> shared helpers (handle.c, transport.c,
 * blockview.c, value/key/clock for containers) -> state.c, errors.c -> the core. module.c
 * calls every `int gf__<type>_register(PyObject *module, gf_state *st)` (which creates the
 * file's heap types with PyType_FromModuleAndSpec, stores them in the state and adds them to
 * the module); no type file calls into module.c: what they need of the module is here
 * (gf_state_of, gf_module_of) or in state.c.
 *
 * Shared handles: handle.c is a common base for handles on shared gf_obj objects (refcount,
 * fork, pickling with a reference for the receiver, undo through gf_transport_on_abort). See
 * "shared handles" below.
 */
#ifndef GF_EXT_H
#define GF_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "gilfree.h"

/* ------------------------------------------------------------------ module state */

typedef struct gf_state {
    gf_arena *arena;       /* this process's handle to the process tree's arena */
    pid_t arena_pid;       /* getpid() when the arena slot was taken (fork detection) */

    /* exceptions (module attributes too) */
    PyObject *OwnerDeadError;   /* RuntimeError: a lock holder died; the lock is now yours */
    PyObject *ProtocolError;    /* RuntimeError: a malformed message from another process */

    /* cached callables for the transport (set by transport.c) */
    PyObject *pickle_dumps;
    PyObject *pickle_loads;
    PyObject *PickleBuffer;

    /* heap types, one per src/ext file (each init fills its own) */
    PyTypeObject *SharedHandle_type;
    PyTypeObject *Queue_type;
    PyTypeObject *Mutex_type;
    PyTypeObject *Semaphore_type;
    PyTypeObject *Event_type;
    PyTypeObject *Condition_type;
    PyTypeObject *Barrier_type;
    PyTypeObject *SharedBuffer_type;
    PyTypeObject *BlockView_type;
    PyTypeObject *Dict_type;
    PyTypeObject *DictIter_type;
    PyTypeObject *List_type;
    PyTypeObject *Pool_type;
    PyTypeObject *Proc_type;

    /* What a forked child must release before _exit() (gf_release_before_exit): one step per
     * type file that holds shared references, added at registration (handles, rings). */
#define GF_EXIT_RELEASE_MAX 8
    void (*exit_release[GF_EXIT_RELEASE_MAX])(struct gf_state *st);
    int nexit_release;
} gf_state;

/* The module definition (module.c). Type files use it only through gf_state_of* and
 * gf_module_of below. */
extern PyModuleDef gf_module_def;

/* The module state for an instance of one of our types (or a Python subclass of one).
 * Never fails for our instances. */
static inline gf_state *gf_state_of(PyObject *self) {
    PyObject *m = PyType_GetModuleByDef(Py_TYPE(self), &gf_module_def);
    return m ? (gf_state *)PyModule_GetState(m) : NULL;
}
static inline gf_state *gf_state_of_type(PyTypeObject *tp) {
    PyObject *m = PyType_GetModuleByDef(tp, &gf_module_def);
    return m ? (gf_state *)PyModule_GetState(m) : NULL;
}
/* The module object (borrowed) for an instance of one of our types, or NULL with an
 * exception set. */
static inline PyObject *gf_module_of(PyObject *self) {
    return PyType_GetModuleByDef(Py_TYPE(self), &gf_module_def);
}

/* ------------------------------------------------------------------ errors (errors.c) */

/* Raise the Python exception for core error `err`, with a message "<what>: <gf_strerror>".
 * The mapping (the only one in the extension):
 *   EINVAL, EMSGSIZE, EOVERFLOW -> ValueError     ENOMEM, ENOSPC -> MemoryError
 *   ETIMEDOUT -> TimeoutError                      EPIPE -> BrokenPipeError
 *   EOWNERDEAD -> gilfree.OwnerDeadError           EBADMSG -> gilfree.ProtocolError
 *   EPERM -> PermissionError  ESRCH -> ProcessLookupError  ECHILD -> ChildProcessError
 *   EAGAIN -> BlockingIOError  ECANCELED -> concurrent.futures.CancelledError
 *   ENOSYS -> NotImplementedError  others -> OSError(errno)
 * GF_EINTR: an exception from the signal handler is already set; returns NULL leaving it.
 * Types may override the exception for a code where the standard library raises something
 * specific (queue.Empty, ...): they check the code before calling this.
 * Result: always NULL (for `return gf_raise(...)`). */
PyObject *gf_raise(gf_state *st, int err, const char *what);
/* Same, returning -1 (for int-returning slots). */
int gf_raise_int(gf_state *st, int err, const char *what);

/* ------------------------------------------------------------------ blocking calls */

/* Run `expr` (a core call returning int) with the GIL released; when it returns GF_EINTR, run
 * the signal handlers (PyErr_CheckSignals) and retry with the same deadline -- unless a handler
 * raised (Ctrl-C -> KeyboardInterrupt), in which case rc stays GF_EINTR with the exception set.
 * Use an absolute deadline so that the retries do not extend the timeout. */
/* A wait that timed out also runs the handlers (rc becomes GF_EINTR if one raised): callers
 * that wait in slices (a timeout per slice) would otherwise never see a signal that landed
 * while the core was spinning, before it slept. */
#define GF_BLOCKING(rc, expr)                                                                  \
    do {                                                                                       \
        for (;;) {                                                                             \
            Py_BEGIN_ALLOW_THREADS(rc) = (expr);                                               \
            Py_END_ALLOW_THREADS if ((rc) == GF_ETIMEDOUT) {                                   \
                if (PyErr_CheckSignals() < 0) (rc) = GF_EINTR;                                 \
                break;                                                                         \
            }                                                                                  \
            if ((rc) != GF_EINTR) break;                                                       \
            if (PyErr_CheckSignals() < 0) break;                                               \
        }                                                                                      \
    } while (0)

/* Turn (block, timeout) as the standard library takes them into a deadline.
 * timeout None -> GF_FOREVER; a number (float or int, seconds) -> now + timeout;
 * block false -> 0 (never block) whatever the timeout.
 * Fails (returns -1, ValueError set): negative timeout ("'timeout' must be a non-negative
 * number"), NaN; TypeError for a non-number. */
int gf_deadline_arg(PyObject *timeout, int block, int64_t *deadline);

/* ------------------------------------------------------------------ state services (state.c) */

/* Module init (module.c): attach to the arena named by GILFREE_ARENA_FD or create one.
 * Result 0, or -1 with an exception set. */
int gf_state_open_arena(gf_state *st);

/* Make sure this process has its own slot in the arena (after a fork that did not go through
 * our at-fork hook). Cheap: compares getpid(). Result 0, or -1 with an exception set. */
int gf_ensure_attached(gf_state *st);

/* Release what every dead process held in the arena (gf_arena_reclaim(GF_ARENA_RECLAIM_DEAD),
 * the GIL released): called where a death is noticed without a pool -- a child reaped, a
 * lock acquire that finds its holder dead, arena_stats(). Cheap when nobody died (one trylock
 * per attached process). Never fails. */
void gf_reclaim_dead(gf_state *st);

/* Set (per thread, state.c) while a pool worker decodes a task (gf_decode_shared): the task
 * message keeps the references and out-of-band block holders its encode took -- the parent
 * drops them at the task's final outcome, and may send the same bytes again to another worker
 * after a death (retries=) -- so what is rebuilt from it takes references of its own: a
 * handle or queue one more reference (gf_obj_incref_held), a BlockView one more holder
 * (gf_block_share), each recorded in this process's reference ledger. A worker that dies then
 * has exactly its own dropped by the survivors; the message's stay valid for a re-run. */
extern __thread int gf_adopt_own_refs;

/* Fork for Process / Pool workers: PyOS_BeforeFork, gf_proc_fork, PyOS_AfterFork_* and the
 * arena slot of the child. Result: 0 in the parent (p filled), 1 in the child; -1 with an
 * exception set. */
int gf_fork(gf_state *st, gf_proc *p, uint32_t flags);

/* os.register_at_fork with the module functions named `before`, `parent` (after_in_parent)
 * and `child` (after_in_child); NULL = none. Result 0, or -1 with an exception set. */
int gf_register_at_fork(PyObject *m, const char *before, const char *parent, const char *child);

/* Add a step to gf_release_before_exit (at registration; steps run in the order added).
 * Result 0, or -1 with an exception set. */
int gf_on_release_before_exit(gf_state *st, void (*fn)(gf_state *st));
/* Everything a forked child must do before _exit(): run the exit-release steps (drop its
 * shared-object references: handles, rings) and give its thread's cached arena blocks back.
 * Without it a worker that exits leaks what it held until the arena dies. */
void gf_release_before_exit(gf_state *st);

/* ------------------------------------------------------------------ shared handles (h5-sync)
 * handle.c: a common base for Python handles on shared gf_obj objects. Embed GF_HANDLE_HEAD as
 * the first member of your object struct (after nothing: it includes PyObject_HEAD); call
 * gf_handle_create (new object) or gf_handle_rebuild (in a METH_CLASS `_rebuild(off, ...)`);
 * gf_handle_release in tp_dealloc; return gf_handle_reduce(self, extra_args) from __reduce__
 * (pickle -> (type(self)._rebuild, (off, *extra)), a reference taken for the receiver and
 * dropped again through gf_transport_on_abort if the message is not sent, or when a pool
 * task carrying it reaches its final outcome). Fork is handled:
 * a before-fork hook takes a reference per live handle for the child. */
typedef struct gf_handle {
    PyObject_HEAD
    gf_off off;                     /* the shared object; this handle holds one reference */
    void *ptr;                      /* gf_ptr(arena, off) in this process */
    gf_state *st;                   /* the module state (cached: hot paths skip the lookup) */
    pid_t owner;                    /* pid that owns the reference (0: none, do not decref) */
    int forking;                    /* a reference was taken for a child being forked (1);
                                     * the child recorded it inside fork() (2) */
    struct gf_handle *prev, *next;  /* this process's registry of live handles */
} gf_handle;
#define GF_HANDLE_HEAD gf_handle h
/* The module state of a live handle (cached in it). */
#define GF_HST(self) (((gf_handle *)(self))->st)

/* New shared object (refs = 1, owned by h) of `size` bytes (>= sizeof(gf_obj)); the caller
 * initialises the payload. Result 0, or -1 with an exception set. */
int gf_handle_create(gf_state *st, gf_handle *h, uint32_t type, size_t size);
/* Own a reference that a sender took for us (under gf_adopt_own_refs: take one of our own
 * instead, the message keeps its); checks off names a live object of `type`.
 * Result 0, or -1 with gilfree.ProtocolError set. */
int gf_handle_adopt(gf_state *st, gf_handle *h, gf_off off, uint32_t type);
/* Drop h's reference (tp_dealloc). Safe on a zeroed handle. */
void gf_handle_release(gf_state *st, gf_handle *h);
/* Take a reference for a receiver (pickling). Result 0, or -1 with an exception set. */
int gf_handle_ref_for_receiver(gf_state *st, gf_handle *h);
/* __reduce__: (type(self)._rebuild, (off, *extra)[, instance dict]). extra may be NULL. */
PyObject *gf_handle_reduce(PyObject *self, PyObject *extra);
/* For `_rebuild` classmethods: a new instance of cls (tp_alloc, so zeroed) owning the
 * received reference to `offarg` (a Python int). Result: new reference or NULL. */
PyObject *gf_handle_rebuild(PyTypeObject *cls, PyObject *offarg, uint32_t type);
/* Drop every reference held by this process's handles (a forked child about to _exit). */
/* tp_new for a handle type over a fresh shared object: allocate the instance, create the
 * object with `create` (which returns a core code), adopt it (gf_obj `type`). Result: the new
 * object, or NULL with an exception set ("<what>: <core error>"). */
PyObject *gf_handle_new_object(PyTypeObject *tp, int (*create)(gf_arena *, gf_off *),
                               uint32_t type, const char *what);
void gf_handles_release_all(gf_state *st);
/* Same, for a process about to _exit() right away (does not mark the handles released). */
void gf_handles_release_at_exit(gf_state *st);
/* Parse multiprocessing's (block=True, timeout=None) from a METH_FASTCALL|METH_KEYWORDS call
 * into a deadline (gf_deadline_arg). Result 0 or -1 with an exception set. */
int gf_parse_block_timeout(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                           const char *fname, int64_t *deadline);

/* GF_BLOCKING with the sleep cut into slices of GF_SIGNAL_SLICE_NS: between slices the GIL is
 * taken back and PyErr_CheckSignals() runs. This closes the window in which a Ctrl-C that
 * arrives after the last check but before the futex sleep (or is taken by another thread)
 * would go unnoticed until the wait ends. `dl` is the name of the slice deadline variable that
 * `expr` must use. Only for waits that re-check their condition on every call (lock,
 * semaphore, event, process): not for condition waits (a slice boundary could lose a notify). */
#define GF_SIGNAL_SLICE_NS 100000000 /* 100 ms */
#define GF_BLOCKING_SLICED(rc, deadline, dl, expr)                                             \
    do {                                                                                       \
        for (;;) {                                                                             \
            int64_t dl = (deadline);                                                           \
            int64_t gf__now_ = gf_now_ns();                                                    \
            if (dl - gf__now_ > GF_SIGNAL_SLICE_NS) dl = gf__now_ + GF_SIGNAL_SLICE_NS;         \
            Py_BEGIN_ALLOW_THREADS(rc) = (expr);                                               \
            Py_END_ALLOW_THREADS if ((rc) == GF_ETIMEDOUT && dl != (deadline)) {               \
                if (PyErr_CheckSignals() < 0) {                                                \
                    (rc) = GF_EINTR;                                                           \
                    break;                                                                     \
                }                                                                              \
                continue;                                                                      \
            }                                                                                  \
            if ((rc) != GF_EINTR) break;                                                       \
            if (PyErr_CheckSignals() < 0) break;                                               \
        }                                                                                      \
    } while (0)

/* Lock/RLock core type (mutex.c): used by condition.c. */
typedef struct gf_mutex_obj {
    GF_HANDLE_HEAD;
} gf_mutex_obj;
#define GF_MUTEX_OF(o) ((gf_mutex *)((char *)((gf_handle *)(o))->ptr + sizeof(gf_obj)))
/* Acquire with the GIL released (tries without releasing it first). On GF_EOWNERDEAD releases
 * the lock again and raises OwnerDeadError. Result 1 acquired, 0 timed out, -1 exception. */
int gf_mutex_obj_acquire(gf_state *st, PyObject *self, int64_t deadline);
/* Release with the standard library's errors. Result 0 or -1. */
int gf_mutex_obj_release(gf_state *st, PyObject *self);

/* ------------------------------------------------------------------ type registration
 * Called by module.c only, in the order of its list. Each: result 0, or -1 with an exception
 * set. */
int gf__errors_register(PyObject *m, gf_state *st);     /* errors.c: exception types */
int gf__handle_register(PyObject *m, gf_state *st);     /* handle.c: fork hooks, helpers */
/* In a forked child, inside fork() (gf_fork_child_record): record in the child's ledger the
 * references the before-fork hooks took for it, handles (handle.c) and queue/pipe handles
 * (ring_handle.c: with their pipe-end holder counts). No Python API, no malloc. */
void gf__handles_fork_record(gf_state *st);
void gf__rings_fork_record(gf_state *st);
/* Arm the calling thread's next fork (gf_arena_fork_arm): the child attaches and runs the two
 * functions above inside fork(), before any of its code. From a before-fork hook. */
void gf_fork_arm(gf_state *st);
int gf__mutex_register(PyObject *m, gf_state *st);      /* mutex.c: Mutex (Lock, RLock) */
int gf__semaphore_register(PyObject *m, gf_state *st);  /* semaphore.c */
int gf__event_register(PyObject *m, gf_state *st);      /* event.c */
int gf__condition_register(PyObject *m, gf_state *st);  /* condition.c: Condition */
int gf__buffer_register(PyObject *m, gf_state *st);     /* buffer.c: SharedBuffer, Sync* */
int gf__proc_register(PyObject *m, gf_state *st);       /* proc.c: Proc */
int gf__transport_register(PyObject *m, gf_state *st);  /* transport.c: pickle callables */
int gf__blockview_register(PyObject *m, gf_state *st);  /* blockview.c: BlockView */
int gf__ring_register(PyObject *m, gf_state *st);       /* queue.c: Ring (queues) */
int gf__conn_register(PyObject *m, gf_state *st);       /* connection.c: _pipe */
int gf__pool_register(PyObject *m, gf_state *st);       /* pool.c: Pool */
int gf__clock_register(PyObject *m, gf_state *st);      /* clock.c: ContainerLock */
int gf__npalloc_register(PyObject *m, gf_state *st);    /* npalloc.c: NumPy arena handler */
int gf__dict_register(PyObject *m, gf_state *st);       /* dict.c: SharedDict */
int gf__list_register(PyObject *m, gf_state *st);       /* list.c: SharedList */
int gf__sockconn_register(PyObject *m, gf_state *st);   /* sockconn.c: SocketConnection */

#endif /* GF_EXT_H */
