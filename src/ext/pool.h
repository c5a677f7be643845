/*
 * pool.h -- gilfree._core.Pool as shared by its files: pool.c (the type, its life cycle and the
 * serve() thread that forks workers), pool_submit.c (submit and results: a task's payload out,
 * its result back), pool_worker.c (the worker process's C loop). The packed-list codec is in
 * packed.c (packed.h).
 *
 * Task payload: task_hdr, the pickled function (cached by its bytes in the worker), then a
 * transport frame of the argument object. kind CALL: obj = (args, kwargs|None);
 * MAP: obj = list of items -> [fn(x)]; STARMAP: obj = list of tuples -> [fn(*x)].
 * task_hdr._r[0] = 1: the argument is a packed list (packed.h), not a frame.
 * A MAP / STARMAP result is a packed list (bytes) when every result qualifies, else a list.
 * Result payload: OK -> frame of the result; ERROR -> frame of bytes made by errfn(exc, where)
 * in the worker (a pickled (exception, traceback text); pool.py unpickles it).
 * Status 5 (DECODE) is ours: the parent could not decode the result; value = the exception.
 */
#ifndef GF_EXT_POOL_H
#define GF_EXT_POOL_H

#include "transport.h"

#include <pthread.h>
#include <unistd.h>

enum { K_CALL = 0, K_MAP = 1, K_STARMAP = 2, K_BATCH = 3 };
#define ST_DECODE 5

typedef struct task_hdr {
    uint8_t kind;
    uint8_t _r[3];
    uint32_t fnlen;
} task_hdr;

typedef struct {
    PyObject_HEAD
    gf_pool *pool;
    uint32_t nworkers;
    uint64_t maxtasks;
    PyObject *initializer; /* or None */
    PyObject *initargs;
    PyObject *errfn;
    /* fork delegation to the serve() thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t req_mu; /* one requester at a time */
    int serving, stop, pending, done, req_rc;
    uint32_t req_index;
    gf_off req_shoff; /* gf_pool_shared of the requesting pool (self->pool is unset during create) */
    gf_proc req_out;
    pid_t owner_pid;
    /* The references and out-of-band blocks of the tasks that carry some (shared handles,
     * arrays >= GF_OOB_MIN): {task id: gf_enc_keep's object}, released once at the task's
     * final outcome (results(), or destroy for the tasks whose outcome nobody collected).
     * Ids are chosen here (next_id) so that an entry exists before its task can finish. */
    PyObject *task_refs;
    uint64_t next_id;
} pool_obj;

#define SELF(o) ((pool_obj *)(o))

/* pool_worker.c: in the child after fork (GIL held): become worker `index`, serve, _exit.
 * Never returns. */
void gf__pool_child_main(gf_state *st, pool_obj *self, gf_off shoff, uint32_t index)
    __attribute__((noreturn));
/* pool_worker.c: flush sys.stdout and sys.stderr (errors cleared). */
void gf__pool_flush_std(void);
/* ValueError("Pool not running") unless the pool runs in this process. Result 0 or -1. */
static inline int gf__pool_check(pool_obj *self) {
    if (!self->pool || self->owner_pid != getpid()) {
        PyErr_SetString(PyExc_ValueError, "Pool not running");
        return -1;
    }
    return 0;
}
/* pool_submit.c: Pool.submit(kind, fn, obj, timeout=0, retries=0, block=True) -> id / None. */
PyObject *gf__pool_submit(PyObject *op, PyObject *args, PyObject *kw);
/* pool_submit.c: Pool.results(max=256, timeout=None, into=None) -> list / [] / None. With
 * `into` ({id: (sink, start)}), a map chunk's packed result whose sink has a list `_gf_into` is
 * decoded straight into it and its value is the item count (an int). */
PyObject *gf__pool_results(PyObject *op, PyObject *args, PyObject *kw);
/* pool_submit.c: release the kept references of every task left in self->task_refs (the pool
 * destroyed: no outcome will come). Only in the process that owns the pool. */
void gf__pool_release_all_refs(gf_state *st, pool_obj *self);
/* pool_submit.c: Pool.wake(): the thread waiting in results() returns [] now. */
PyObject *gf__pool_wake(PyObject *op, PyObject *a);

#endif /* GF_EXT_POOL_H */
