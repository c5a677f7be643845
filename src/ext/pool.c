/*
 * pool.c -- gilfree._core.Pool: the process side of gilfree.Pool / ProcessPoolExecutor over
 * the core scheduler (src/core/pool*.c). gilfree/pool.py builds the stdlib API on it. This
 * file owns the type, its life cycle and the serve() thread that forks the workers; submit and
 * results are in pool_submit.c, the worker's loop in pool_worker.c, the packed-list codec in
 * packed.c.
 *
 *   Pool(nworkers, maxtasksperchild, initializer, initargs, errfn)
 *   serve()      run by one long-lived Python thread: the only thread that forks workers
 *                (PR_SET_PDEATHSIG is tied to the forking *thread*); returns at stop().
 *   start()      gf_pool_create (waits for serve() to be running).
 *   submit(kind, fnbytes, obj, timeout=0.0, retries=0, block=True) -> id, or None when every
 *                mailbox is full and block is false. Pickling errors raise here (nothing
 *                is queued).
 *   results(max=256, timeout=None) -> [(id, status, worker, value, elapsed_ns)], [] on
 *                timeout, None once the pool is closed and drained. elapsed_ns: the worker's
 *                time on the task (0 when it did not run).
 *   unpack(b) -> list; unpack_into(lst, start, b) -> count; count(b)  (static: a packed
 *                map chunk); new_list(n) (static: n empty slots, for MapResult)
 *   cancel(id) -> 0 queued, 1 running (worker killed), None unknown/finished.
 *   close(), terminate(), join(timeout) -> bool, stop(), stats(), pids()
 *
 * Payloads: see pool.h. A task's argument references and out-of-band blocks are the task's
 * until its final outcome (self->task_refs, pool_submit.c); a worker takes its own.
 *
 * Worker process: SIGINT ignored (the parent decides), initializer(*initargs) first, then the
 * C loop of pool_worker.c, then _exit (no atexit handlers of the parent run).
 */
#include "pool.h"
#include "packed.h"

#include "../core/internal.h"

#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ spawning */

/* The pool's spawn callback (any thread, GIL released by our callers): hand the fork to the
 * serve() thread and wait. Result 0, or GF_EAGAIN when serve() is not running / fork fails. */
static int spawn_cb(void *ctx, gf_pool *pool, uint32_t index, gf_proc *out) {
    pool_obj *self = ctx;
    pthread_mutex_lock(&self->req_mu);
    pthread_mutex_lock(&self->mu);
    int rc = GF_EAGAIN;
    if (self->serving && !self->stop) {
        self->req_index = index;
        self->req_shoff = gf_pool_shared(pool);
        self->pending = 1;
        self->done = 0;
        pthread_cond_broadcast(&self->cv);
        while (!self->done && self->serving) pthread_cond_wait(&self->cv, &self->mu);
        if (self->done) {
            rc = self->req_rc;
            if (rc == 0) *out = self->req_out;
        }
        self->pending = 0;
    }
    pthread_mutex_unlock(&self->mu);
    pthread_mutex_unlock(&self->req_mu);
    return rc;
}

static PyObject *pool_serve(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    gf_state *st = gf_state_of(op);
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&self->mu);
    self->serving = 1;
    pthread_cond_broadcast(&self->cv);
    while (!self->stop) {
        if (!self->pending || self->done) {
            pthread_cond_wait(&self->cv, &self->mu);
            continue;
        }
        uint32_t index = self->req_index;
        gf_off shoff = self->req_shoff;
        pthread_mutex_unlock(&self->mu);
        gf_proc pr;
        memset(&pr, 0, sizeof pr);
        int rc;
        Py_BLOCK_THREADS;
        /* else the child inherits (and later writes) the parent's buffered output */
        gf__pool_flush_std();
        pid_t me = getpid();
        int r = gf_fork(st, &pr, GF_PROC_DIE_WITH_PARENT);
        if (r == 1) gf__pool_child_main(st, self, shoff, index);
        if (r < 0 && getpid() != me) _exit(70);
        if (r < 0) {
            PyErr_Clear();
            rc = GF_EAGAIN;
        } else {
            rc = 0;
        }
        Py_UNBLOCK_THREADS;
        pthread_mutex_lock(&self->mu);
        self->req_out = pr;
        self->req_rc = rc;
        self->done = 1;
        pthread_cond_broadcast(&self->cv);
    }
    self->serving = 0;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static PyObject *pool_stop(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&self->mu);
    self->stop = 1;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ parent side */

static PyObject *pool_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"nworkers", "maxtasksperchild", "initializer", "initargs", "errfn",
                             NULL};
    unsigned int n = 0;
    unsigned long long maxtasks = 0;
    PyObject *init = Py_None, *initargs = NULL, *errfn;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "IKOOO:Pool", kwlist, &n, &maxtasks, &init,
                                     &initargs, &errfn))
        return NULL;
    PyObject *ia = PySequence_Tuple(initargs);
    if (!ia) return NULL;
    pool_obj *self = (pool_obj *)tp->tp_alloc(tp, 0);
    if (!self) {
        Py_DECREF(ia);
        return NULL;
    }
    self->nworkers = n;
    self->maxtasks = maxtasks;
    Py_INCREF(init);
    self->initializer = init;
    self->initargs = ia;
    Py_INCREF(errfn);
    self->errfn = errfn;
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    pthread_mutex_init(&self->req_mu, NULL);
    self->owner_pid = getpid();
    self->next_id = 1; /* 0 asks the core to choose */
    return (PyObject *)self;
}

static PyObject *pool_start(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    gf_state *st = gf_state_of(op);
    if (self->pool) {
        PyErr_SetString(PyExc_RuntimeError, "pool already started");
        return NULL;
    }
    if (gf_ensure_attached(st) < 0) return NULL;
    gf_pool_options o;
    memset(&o, 0, sizeof o);
    o.nworkers = self->nworkers;
    o.max_workers = self->nworkers;
    o.maxtasksperchild = self->maxtasks;
    o.spawn = spawn_cb;
    o.spawn_ctx = self;
    /* no o.drop: a task's out-of-band blocks are in self->task_refs until its outcome */
    o.mailbox_bytes = 1 << 20;
    o.result_bytes = 4 << 20;
    int rc;
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&self->mu);
    while (!self->serving && !self->stop) pthread_cond_wait(&self->cv, &self->mu);
    pthread_mutex_unlock(&self->mu);
    rc = gf_pool_create(st->arena, &o, &self->pool);
    Py_END_ALLOW_THREADS if (rc < 0) {
        self->pool = NULL;
        return gf_raise(st, rc, "Pool: cannot start the workers");
    }
    Py_RETURN_NONE;
}

/* Shared body of cancel/cancel_queued: 0 (it was queued: cancelled, yields CANCELLED),
 * 1 (running: killed by cancel, left to finish by cancel_queued), None (finished or unknown). */
static PyObject *cancel_with(PyObject *op, PyObject *arg, int (*fn)(gf_pool *, uint64_t),
                             const char *what) {
    pool_obj *self = SELF(op);
    if (gf__pool_check(self) < 0) return NULL;
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (id == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = fn(self->pool, id);
    Py_END_ALLOW_THREADS if (rc == GF_ESRCH) Py_RETURN_NONE;
    if (rc < 0) return gf_raise(gf_state_of(op), rc, what);
    return PyLong_FromLong(rc);
}

static PyObject *pool_cancel(PyObject *op, PyObject *arg) {
    return cancel_with(op, arg, gf_pool_cancel, "Pool.cancel");
}

/* ProcessPoolExecutor.shutdown(cancel_futures=True): never kills a worker. */
static PyObject *pool_cancel_queued(PyObject *op, PyObject *arg) {
    return cancel_with(op, arg, gf_pool_cancel_queued, "Pool.cancel_queued");
}

static PyObject *pool_close(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    if (self->pool && self->owner_pid == getpid()) {
        Py_BEGIN_ALLOW_THREADS gf_pool_close(self->pool);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyObject *pool_terminate(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    if (self->pool && self->owner_pid == getpid()) {
        Py_BEGIN_ALLOW_THREADS gf_pool_terminate(self->pool);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyObject *pool_join(PyObject *op, PyObject *args) {
    pool_obj *self = SELF(op);
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTuple(args, "|O:join", &timeout)) return NULL;
    if (!self->pool || self->owner_pid != getpid()) Py_RETURN_TRUE;
    int64_t deadline;
    if (gf_deadline_arg(timeout, 1, &deadline) < 0) return NULL;
    int rc;
    GF_BLOCKING(rc, gf_pool_join(self->pool, deadline));
    if (rc == 0) Py_RETURN_TRUE;
    if (rc == GF_ETIMEDOUT) Py_RETURN_FALSE;
    return gf_raise(gf_state_of(op), rc, "Pool.join");
}

static PyObject *pool_stats(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    if (gf__pool_check(self) < 0) return NULL;
    gf_pool_stats s;
    gf_pool_stats_get(self->pool, &s);
    return Py_BuildValue("{sIsKsKsK}", "live_workers", s.live_workers, "outstanding",
                         (unsigned long long)s.outstanding, "spawned",
                         (unsigned long long)s.spawned, "deaths", (unsigned long long)s.deaths);
}

/* unpack(b) -> list: a packed map chunk result. */
static PyObject *pool_unpack(PyObject *Py_UNUSED(cls), PyObject *arg) {
    Py_buffer v;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *r = gf__pk_list(v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
    return r;
}

/* new_list(n) -> a list of n empty (NULL) slots, for gilfree.pool.MapResult only: its pages
 * come from calloc (untouched until filled, so a map of a million items does not start with
 * 8 MB of page faults and stores). It must be filled completely before anyone else sees it;
 * deallocation and GC traversal accept the empty slots. */
static PyObject *pool_new_list(PyObject *Py_UNUSED(cls), PyObject *arg) {
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "new_list: negative size");
        return NULL;
    }
    return PyList_New(n);
}

/* count(b) -> the number of items in a packed map chunk. */
static PyObject *pool_count(PyObject *Py_UNUSED(cls), PyObject *arg) {
    Py_buffer v;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t n = gf__pk_count(v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

/* unpack_into(lst, start, b) -> count: decode a packed map chunk into lst[start:start+n]. */
static PyObject *pool_unpack_into(PyObject *Py_UNUSED(cls), PyObject *args) {
    PyObject *lst;
    Py_ssize_t start;
    Py_buffer v;
    if (!PyArg_ParseTuple(args, "O!ny*:unpack_into", &PyList_Type, &lst, &start, &v))
        return NULL;
    Py_ssize_t n = gf__pk_fill(v.buf, (size_t)v.len, lst, start);
    PyBuffer_Release(&v);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

static PyObject *pool_pids(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    if (gf__pool_check(self) < 0) return NULL;
    PyObject *l = PyList_New(0);
    for (uint32_t i = 0; l && i < self->nworkers; i++) {
        pid_t pid = gf_pool_worker_pid(self->pool, i);
        PyObject *v = PyLong_FromLong(pid);
        if (!v || PyList_Append(l, v) < 0) Py_CLEAR(l);
        Py_XDECREF(v);
    }
    return l;
}

static PyObject *pool_destroy(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    if (self->pool && self->owner_pid == getpid()) {
        gf_pool *p = self->pool;
        self->pool = NULL;
        Py_BEGIN_ALLOW_THREADS gf_pool_destroy(p);
        Py_END_ALLOW_THREADS
        gf__pool_release_all_refs(gf_state_of(op), self); /* the workers are gone */
    }
    Py_RETURN_NONE;
}

static int pool_traverse(PyObject *op, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(SELF(op)->initializer);
    Py_VISIT(SELF(op)->initargs);
    Py_VISIT(SELF(op)->errfn);
    return 0;
}

static int pool_clear(PyObject *op) {
    Py_CLEAR(SELF(op)->initializer);
    Py_CLEAR(SELF(op)->initargs);
    Py_CLEAR(SELF(op)->errfn);
    return 0;
}

static void pool_dealloc(PyObject *op) {
    PyTypeObject *tp = Py_TYPE(op);
    pool_obj *self = SELF(op);
    PyObject_GC_UnTrack(op);
    if (self->pool && self->owner_pid == getpid()) {
        /* serve() must be gone (it holds a reference); destroy kills and reaps the rest */
        gf_pool_destroy(self->pool);
        gf__pool_release_all_refs(gf_state_of(op), self);
    }
    self->pool = NULL;
    Py_CLEAR(self->task_refs); /* a forked child's copy: the parent's to release */
    pool_clear(op);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->req_mu);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef pool_methods[] = {
    {"serve", pool_serve, METH_NOARGS, "Fork workers on request until stop() (one thread)."},
    {"stop", pool_stop, METH_NOARGS, "Make serve() return."},
    {"start", pool_start, METH_NOARGS, "Create the pool and its workers."},
    {"submit", (PyCFunction)(void (*)(void))gf__pool_submit, METH_VARARGS | METH_KEYWORDS,
     "submit(kind, fn, obj, timeout=0, retries=0, block=True) -> id or None"},
    {"results", (PyCFunction)(void (*)(void))gf__pool_results, METH_VARARGS | METH_KEYWORDS,
     "results(max=256, timeout=None, into=None) -> [(id, status, worker, value, elapsed)] / [] /"
     " None; into={id: (sink, start)}: packed map chunks decoded into sink._gf_into"},
    {"wake", gf__pool_wake, METH_NOARGS,
     "wake(): the thread waiting in results() returns [] now (it hands over collecting)"},
    {"cancel", pool_cancel, METH_O, "cancel(id) -> 0 queued, 1 running, None unknown"},
    {"cancel_queued", pool_cancel_queued, METH_O,
     "cancel_queued(id) -> 0 queued (cancelled), 1 running (left alone), None unknown"},
    {"close", pool_close, METH_NOARGS, "No more submits."},
    {"terminate", pool_terminate, METH_NOARGS, "Kill the workers."},
    {"join", pool_join, METH_VARARGS, "join(timeout=None) -> bool"},
    {"destroy", pool_destroy, METH_NOARGS, "Kill, reap and free everything."},
    {"stats", pool_stats, METH_NOARGS, "live_workers, outstanding, spawned, deaths"},
    {"pids", pool_pids, METH_NOARGS, "Worker pids (0 = none)."},
    {"count", pool_count, METH_O | METH_STATIC, "count(b) -> items in a packed map chunk"},
    {"new_list", pool_new_list, METH_O | METH_STATIC,
     "new_list(n) -> list of n empty slots (internal: MapResult fills every one)"},
    {"unpack", pool_unpack, METH_O | METH_STATIC, "unpack(b) -> list (a packed map chunk)"},
    {"unpack_into", pool_unpack_into, METH_VARARGS | METH_STATIC,
     "unpack_into(lst, start, b) -> count"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot pool_slots[] = {
    {Py_tp_new, pool_new},
    {Py_tp_dealloc, pool_dealloc},
    {Py_tp_traverse, pool_traverse},
    {Py_tp_clear, pool_clear},
    {Py_tp_methods, pool_methods},
    {Py_tp_doc, "The C worker pool under gilfree.Pool (see gilfree/pool.py)."},
    {0, NULL},
};

static PyType_Spec pool_spec = {
    .name = "gilfree._core.Pool",
    .basicsize = sizeof(pool_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = pool_slots,
};

/* Create the Pool type. Result 0 or -1. */
int gf__pool_register(PyObject *m, gf_state *st) {
    st->Pool_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pool_spec, NULL);
    if (!st->Pool_type) return -1;
    if (PyModule_AddType(m, st->Pool_type) < 0) return -1;
    if (PyModule_AddIntConstant(m, "POOL_DECODE", ST_DECODE) < 0) return -1;
    return 0;
}
