/*
 * pool.c -- gilfree._core.Pool: the process side of gilfree.Pool / ProcessPoolExecutor over
 * the core scheduler (src/core/pool.c). gilfree/pool.py builds the stdlib API on it.
 *
 *   Pool(nworkers, maxtasksperchild, initializer, initargs, errfn)
 *   serve()      run by one long-lived Python thread: the only thread that forks workers
 *                (PR_SET_PDEATHSIG is tied to the forking *thread*); returns at stop().
 *   start()      gf_pool_create (waits for serve() to be running).
 *   submit(kind, fnbytes, obj, timeout=0.0, retries=0, block=True) -> id, or None when every
 *                mailbox is full and block is false. Pickling errors raise here (nothing
 *                is queued).
 *   results(max=256, timeout=None) -> [(id, status, worker, value)], [] on timeout,
 *                None once the pool is closed and drained.
 *   cancel(id) -> 0 queued, 1 running (worker killed), None unknown/finished.
 *   close(), terminate(), join(timeout) -> bool, stop(), stats(), pids()
 *
 * Task payload: task_hdr, the pickled function (cached by its bytes in the worker), then a
 * transport frame of the argument object. kind CALL: obj = (args, kwargs|None);
 * MAP: obj = list of items -> [fn(x)]; STARMAP: obj = list of tuples -> [fn(*x)].
 * Result payload: OK -> frame of the result; ERROR -> frame of bytes made by errfn(exc, where)
 * in the worker (a pickled (exception, traceback text); pool.py unpickles it).
 * Status 5 (DECODE) is ours: the parent could not decode the result; value = the exception.
 *
 * Worker process: SIGINT ignored (the parent decides), initializer(*initargs) first, then the
 * C loop below, then _exit (no atexit handlers of the parent run).
 */
#include "transport.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
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
} pool_obj;

#define SELF(o) ((pool_obj *)(o))

/* ------------------------------------------------------------------ worker side */

/* Error payload for the current exception: errfn(exc, where) -> bytes, encoded.
 * Result 0 with e filled, or -1 (could not even report: the task is lost). */
static int worker_error(gf_state *st, pool_obj *self, const char *where, gf_enc *e) {
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyErr_NormalizeException(&et, &ev, &tb);
    if (tb && ev) PyException_SetTraceback(ev, tb);
    PyObject *r = PyObject_CallFunction(self->errfn, "Os", ev ? ev : Py_None, where);
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
    if (!r) {
        PyErr_Print();
        return -1;
    }
    int rc = gf_encode(st, r, 0, e);
    Py_DECREF(r);
    if (rc < 0) {
        PyErr_Print();
        return -1;
    }
    return 0;
}

/* The function pickled as `key` (cached per worker). New reference or NULL. */
static PyObject *lookup_fn(gf_state *st, PyObject *cache, PyObject *key) {
    PyObject *fn = PyDict_GetItemWithError(cache, key); /* borrowed */
    if (fn) {
        Py_INCREF(fn);
        return fn;
    }
    if (PyErr_Occurred()) return NULL;
    fn = PyObject_CallOneArg(st->pickle_loads, key);
    if (!fn) return NULL;
    if (PyDict_GET_SIZE(cache) > 256) PyDict_Clear(cache);
    if (PyDict_SetItem(cache, key, fn) < 0) PyErr_Clear();
    return fn;
}

/* errfn(current exception, where) -> bytes (new reference) or NULL (printed). */
static PyObject *error_bytes(pool_obj *self, const char *where) {
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyErr_NormalizeException(&et, &ev, &tb);
    if (tb && ev) PyException_SetTraceback(ev, tb);
    PyObject *r = PyObject_CallFunction(self->errfn, "Os", ev ? ev : Py_None, where);
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
    if (!r) PyErr_Print();
    return r;
}

/* K_BATCH: obj = [(fnbytes, args, kwargs|None), ...] -> ([result|None, ...], {i: errbytes}).
 * Each call fails alone. NULL with an exception only when the batch itself is malformed. */
static PyObject *run_batch(gf_state *st, PyObject *cache, pool_obj *self, PyObject *obj) {
    if (!PyList_Check(obj)) {
        PyErr_SetString(PyExc_RuntimeError, "gilfree pool: bad batch task");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(obj);
    PyObject *out = PyList_New(n), *errs = PyDict_New();
    if (!out || !errs) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PyList_GET_ITEM(obj, i), *r = NULL;
        if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 3) {
            PyErr_SetString(PyExc_RuntimeError, "gilfree pool: bad batch item");
        } else {
            PyObject *fn = lookup_fn(st, cache, PyTuple_GET_ITEM(it, 0));
            if (fn) {
                PyObject *a = PyTuple_GET_ITEM(it, 1), *kw = PyTuple_GET_ITEM(it, 2);
                PyObject *at = PyTuple_Check(a) ? (Py_INCREF(a), a) : PySequence_Tuple(a);
                if (at) {
                    r = PyObject_Call(fn, at, kw == Py_None ? NULL : kw);
                    Py_DECREF(at);
                }
                Py_DECREF(fn);
            }
        }
        if (!r) {
            PyObject *eb = error_bytes(self, "call");
            if (!eb) goto fail;
            PyObject *k = PyLong_FromSsize_t(i);
            int rc = k ? PyDict_SetItem(errs, k, eb) : -1;
            Py_XDECREF(k);
            Py_DECREF(eb);
            if (rc < 0) goto fail;
            Py_INCREF(Py_None);
            r = Py_None;
        }
        PyList_SET_ITEM(out, i, r);
    }
    return Py_BuildValue("(NN)", out, errs);
fail:
    Py_XDECREF(out);
    Py_XDECREF(errs);
    return NULL;
}

/* A batch result did not pickle: replace each result that does not pickle alone by its
 * error. Result 0 or -1. */
static int batch_sanitize(gf_state *st, pool_obj *self, PyObject *res) {
    PyObject *out = PyTuple_GET_ITEM(res, 0), *errs = PyTuple_GET_ITEM(res, 1);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(out); i++) {
        PyObject *b = PyObject_CallOneArg(st->pickle_dumps, PyList_GET_ITEM(out, i));
        if (b) {
            Py_DECREF(b);
            continue;
        }
        PyObject *eb = error_bytes(self, "result");
        if (!eb) return -1;
        PyObject *k = PyLong_FromSsize_t(i);
        int rc = k ? PyDict_SetItem(errs, k, eb) : -1;
        Py_XDECREF(k);
        Py_DECREF(eb);
        if (rc < 0) return -1;
        Py_INCREF(Py_None);
        PyList_SetItem(out, i, Py_None);
    }
    return 0;
}

/* A map chunk whose results are all exact ints that fit int64 travels as their native
 * int64 bytes (no pickle; the parent does array('q').frombytes(b).tolist()). Result: new
 * bytes, or NULL (no exception) when the list does not qualify. */
static PyObject *pack_ints(PyObject *lst) {
    Py_ssize_t n = PyList_GET_SIZE(lst);
    if (n < 64) return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!PyLong_CheckExact(PyList_GET_ITEM(lst, i))) return NULL;
    PyObject *b = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    if (!b) {
        PyErr_Clear();
        return NULL;
    }
    int64_t *out = (int64_t *)PyBytes_AS_STRING(b);
    for (Py_ssize_t i = 0; i < n; i++) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(PyList_GET_ITEM(lst, i), &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            Py_DECREF(b);
            return NULL;
        }
        out[i] = (int64_t)v;
    }
    return b;
}

/* Run one task; returns the result object (new ref) or NULL with an exception set
 * (*where says what failed). */
static PyObject *run_task(gf_state *st, pool_obj *self, PyObject *cache, const gf_task *t,
                          const char **where, int *kind) {
    *where = "call";
    if (t->len < sizeof(task_hdr)) {
        *where = "decode";
        PyErr_SetString(PyExc_RuntimeError, "gilfree pool: short task");
        return NULL;
    }
    task_hdr h;
    memcpy(&h, t->data, sizeof h);
    *kind = h.kind;
    if (h.fnlen > t->len - sizeof h) {
        *where = "decode";
        PyErr_SetString(PyExc_RuntimeError, "gilfree pool: malformed task");
        return NULL;
    }
    const char *fnp = (const char *)t->data + sizeof h;
    PyObject *fn = Py_None;
    Py_INCREF(fn);
    if (h.kind != K_BATCH) {
        Py_DECREF(fn);
        PyObject *key = PyBytes_FromStringAndSize(fnp, h.fnlen);
        if (!key) return NULL;
        fn = lookup_fn(st, cache, key);
        Py_DECREF(key);
        if (!fn) {
            *where = "decode";
            return NULL;
        }
    }
    gf_msg m = {fnp + h.fnlen, t->len - sizeof h - h.fnlen, 0};
    PyObject *obj = gf_decode(st, &m, 0);
    if (!obj) {
        *where = "decode";
        Py_DECREF(fn);
        return NULL;
    }
    PyObject *res = NULL;
    if (h.kind == K_CALL) {
        if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 2) {
            *where = "decode";
            PyErr_SetString(PyExc_RuntimeError, "gilfree pool: bad call task");
        } else {
            PyObject *a = PyTuple_GET_ITEM(obj, 0), *kw = PyTuple_GET_ITEM(obj, 1);
            PyObject *at = PyTuple_Check(a) ? (Py_INCREF(a), a) : PySequence_Tuple(a);
            if (at) {
                res = PyObject_Call(fn, at, kw == Py_None ? NULL : kw);
                Py_DECREF(at);
            }
        }
    } else if (h.kind == K_BATCH) {
        res = run_batch(st, cache, self, obj);
    } else {
        /* a range chunk is materialised here, in the worker (the parent sent a slice) */
        PyObject *seq = PySequence_Fast(obj, "gilfree pool: bad map task");
        if (seq) {
            Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
            res = PyList_New(n);
            for (Py_ssize_t i = 0; res && i < n; i++) {
                PyObject *x = PySequence_Fast_GET_ITEM(seq, i), *r;
                if (h.kind == K_MAP) {
                    r = PyObject_CallOneArg(fn, x);
                } else {
                    PyObject *at = PySequence_Tuple(x);
                    r = at ? PyObject_Call(fn, at, NULL) : NULL;
                    Py_XDECREF(at);
                }
                if (!r) Py_CLEAR(res);
                else PyList_SET_ITEM(res, i, r);
            }
            Py_DECREF(seq);
            if (res) {
                PyObject *packed = pack_ints(res);
                if (packed) Py_SETREF(res, packed);
            }
        }
    }
    Py_DECREF(obj);
    Py_DECREF(fn);
    return res;
}

/* The worker's main loop (in the child). Result: the exit code. */
static int worker_loop(gf_state *st, pool_obj *self, gf_worker *w) {
    PyObject *cache = PyDict_New();
    if (!cache) return 1;
    int code = 0;
    for (;;) {
        gf_task t;
        int rc;
        GF_BLOCKING(rc, gf_worker_next(w, &t, GF_FOREVER));
        if (rc == GF_EPIPE) break;
        if (rc < 0) {
            if (PyErr_Occurred()) PyErr_Clear();
            code = 1;
            break;
        }
        const char *where;
        int kind = -1;
        PyObject *res = run_task(st, self, cache, &t, &where, &kind);
        gf_enc e;
        int status = GF_TASK_OK, ok;
        if (res) {
            ok = gf_encode(st, res, 0, &e) == 0;
            if (!ok && kind == K_BATCH) { /* isolate the unpicklable results, try again */
                PyErr_Clear();
                ok = batch_sanitize(st, self, res) == 0 && gf_encode(st, res, 0, &e) == 0;
            }
            Py_DECREF(res);
            if (!ok) {
                status = GF_TASK_ERROR;
                ok = worker_error(st, self, "result", &e) == 0;
            }
        } else {
            if (PyErr_ExceptionMatches(PyExc_SystemExit)) {
                /* the stdlib's worker would die; we report it as the task's error */
            }
            status = GF_TASK_ERROR;
            ok = worker_error(st, self, where, &e) == 0;
        }
        if (!ok) {
            /* nothing sendable: report an empty error payload */
            e.iovcnt = 0;
            GF_BLOCKING(rc, gf_worker_result(w, &t, GF_TASK_ERROR, NULL, 0));
        } else {
            GF_BLOCKING(rc, gf_worker_result(w, &t, status, e.iov, e.iovcnt));
            gf_enc_done(st, &e, rc == 0);
        }
        if (rc == GF_EPIPE) break;
        if (rc < 0) {
            if (PyErr_Occurred()) PyErr_Clear();
            code = 1;
            break;
        }
    }
    Py_DECREF(cache);
    return code;
}

static void flush_std(void) {
    const char *names[] = {"stdout", "stderr"};
    for (int i = 0; i < 2; i++) {
        PyObject *f = PySys_GetObject(names[i]);
        if (f && f != Py_None) {
            PyObject *r = PyObject_CallMethod(f, "flush", NULL);
            if (r) Py_DECREF(r);
            else PyErr_Clear();
        }
    }
}

/* In the child after fork (GIL held): become worker `index`, serve, _exit. Never returns. */
static void child_main(gf_state *st, pool_obj *self, gf_off shoff, uint32_t index) {
    signal(SIGINT, SIG_IGN);
    int code = 0;
    gf_worker *w = NULL;
    if (gf_worker_attach(st->arena, shoff, index, &w) < 0) _exit(71);
    if (self->initializer != Py_None) {
        PyObject *r = PyObject_Call(self->initializer, self->initargs, NULL);
        if (!r) {
            PyErr_Print();
            code = 1;
        } else {
            Py_DECREF(r);
        }
    }
    if (code == 0) code = worker_loop(st, self, w);
    gf_worker_detach(w);
    flush_std();
    gf_handles_release_all(st);
    _exit(code);
}

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
        flush_std(); /* else the child inherits (and later writes) the parent's buffered output */
        pid_t me = getpid();
        int r = gf_fork(st, &pr, GF_PROC_DIE_WITH_PARENT);
        if (r == 1) child_main(st, self, shoff, index);
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

static int check(pool_obj *self) {
    if (!self->pool || self->owner_pid != getpid()) {
        PyErr_SetString(PyExc_ValueError, "Pool not running");
        return -1;
    }
    return 0;
}

static PyObject *pool_submit(PyObject *op, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"kind", "fn", "obj", "timeout", "retries", "block", NULL};
    pool_obj *self = SELF(op);
    int kind;
    Py_buffer fnb;
    PyObject *obj;
    double timeout = 0;
    unsigned int retries = 0;
    int block = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iy*O|dIp:submit", kwlist, &kind, &fnb, &obj,
                                     &timeout, &retries, &block))
        return NULL;
    if (check(self) < 0) {
        PyBuffer_Release(&fnb);
        return NULL;
    }
    gf_state *st = gf_state_of(op);
    gf_enc e;
    if (gf_encode(st, obj, 0, &e) < 0) {
        PyBuffer_Release(&fnb);
        return NULL;
    }
    task_hdr h = {(uint8_t)kind, {0, 0, 0}, (uint32_t)fnb.len};
    struct iovec iov[6];
    iov[0].iov_base = &h;
    iov[0].iov_len = sizeof h;
    iov[1].iov_base = fnb.buf;
    iov[1].iov_len = (size_t)fnb.len;
    for (int i = 0; i < e.iovcnt; i++) iov[2 + i] = e.iov[i];
    uint64_t id = 0;
    int64_t tns = timeout > 0 ? (int64_t)(timeout * 1e9) : 0;
    int rc;
    if (!block) {
        Py_BEGIN_ALLOW_THREADS rc = gf_pool_submit(self->pool, iov, 2 + e.iovcnt, tns, retries,
                                                   &id, 0);
        Py_END_ALLOW_THREADS
    } else {
        GF_BLOCKING(rc, gf_pool_submit(self->pool, iov, 2 + e.iovcnt, tns, retries, &id,
                                       GF_FOREVER));
    }
    gf_enc_done(st, &e, rc == 0);
    PyBuffer_Release(&fnb);
    if (rc == 0) return PyLong_FromUnsignedLongLong(id);
    if (rc == GF_ETIMEDOUT && !block) Py_RETURN_NONE;
    if (rc == GF_EPIPE) {
        PyErr_SetString(PyExc_ValueError, "Pool not running");
        return NULL;
    }
    return gf_raise(st, rc, "Pool.submit");
}

#define NRES 256

static PyObject *pool_results(PyObject *op, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"max", "timeout", NULL};
    pool_obj *self = SELF(op);
    unsigned int max = NRES;
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|IO:results", kwlist, &max, &timeout))
        return NULL;
    if (check(self) < 0) return NULL;
    gf_state *st = gf_state_of(op);
    int64_t deadline;
    if (gf_deadline_arg(timeout, 1, &deadline) < 0) return NULL;
    if (max == 0 || max > NRES) max = NRES;
    gf_pool_result res[NRES];
    int rc;
    if (deadline == 0) {
        Py_BEGIN_ALLOW_THREADS rc = gf_pool_next_results(self->pool, res, max, 0);
        Py_END_ALLOW_THREADS
    } else {
        GF_BLOCKING(rc, gf_pool_next_results(self->pool, res, max, deadline));
    }
    if (rc == GF_ETIMEDOUT) return PyList_New(0);
    if (rc == GF_EPIPE) Py_RETURN_NONE;
    if (rc < 0) return gf_raise(st, rc, "Pool.results");
    PyObject *lst = PyList_New(rc);
    if (!lst) return NULL;
    for (int i = 0; i < rc; i++) {
        int status = res[i].status;
        PyObject *v;
        if ((status == GF_TASK_OK || status == GF_TASK_ERROR) && res[i].len) {
            gf_msg m = {res[i].data, res[i].len, 0};
            v = gf_decode(st, &m, 0);
            if (!v) {
                PyObject *et, *ev, *tb;
                PyErr_Fetch(&et, &ev, &tb);
                PyErr_NormalizeException(&et, &ev, &tb);
                if (tb && ev) PyException_SetTraceback(ev, tb);
                Py_XDECREF(et);
                Py_XDECREF(tb);
                v = ev ? ev : (Py_INCREF(Py_None), Py_None);
                status = ST_DECODE;
            }
        } else {
            Py_INCREF(Py_None);
            v = Py_None;
        }
        PyObject *t = Py_BuildValue("(KiiN)", (unsigned long long)res[i].id, status,
                                    res[i].worker, v);
        if (!t) {
            Py_DECREF(lst);
            return NULL;
        }
        PyList_SET_ITEM(lst, i, t);
    }
    return lst;
}

static PyObject *pool_cancel(PyObject *op, PyObject *arg) {
    pool_obj *self = SELF(op);
    if (check(self) < 0) return NULL;
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (id == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = gf_pool_cancel(self->pool, id);
    Py_END_ALLOW_THREADS if (rc == GF_ESRCH) Py_RETURN_NONE;
    if (rc < 0) return gf_raise(gf_state_of(op), rc, "Pool.cancel");
    return PyLong_FromLong(rc);
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
    if (check(self) < 0) return NULL;
    gf_pool_stats s;
    gf_pool_stats_get(self->pool, &s);
    return Py_BuildValue("{sIsKsKsK}", "live_workers", s.live_workers, "outstanding",
                         (unsigned long long)s.outstanding, "spawned",
                         (unsigned long long)s.spawned, "deaths", (unsigned long long)s.deaths);
}

static PyObject *pool_pids(PyObject *op, PyObject *Py_UNUSED(a)) {
    pool_obj *self = SELF(op);
    if (check(self) < 0) return NULL;
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
    }
    self->pool = NULL;
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
    {"submit", (PyCFunction)(void (*)(void))pool_submit, METH_VARARGS | METH_KEYWORDS,
     "submit(kind, fn, obj, timeout=0, retries=0, block=True) -> id or None"},
    {"results", (PyCFunction)(void (*)(void))pool_results, METH_VARARGS | METH_KEYWORDS,
     "results(max=256, timeout=None) -> [(id, status, worker, value)] / [] / None"},
    {"cancel", pool_cancel, METH_O, "cancel(id) -> 0 queued, 1 running, None unknown"},
    {"close", pool_close, METH_NOARGS, "No more submits."},
    {"terminate", pool_terminate, METH_NOARGS, "Kill the workers."},
    {"join", pool_join, METH_VARARGS, "join(timeout=None) -> bool"},
    {"destroy", pool_destroy, METH_NOARGS, "Kill, reap and free everything."},
    {"stats", pool_stats, METH_NOARGS, "live_workers, outstanding, spawned, deaths"},
    {"pids", pool_pids, METH_NOARGS, "Worker pids (0 = none)."},
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
int gf_pool_init_type(PyObject *m, gf_state *st) {
    st->Pool_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pool_spec, NULL);
    if (!st->Pool_type) return -1;
    if (PyModule_AddType(m, st->Pool_type) < 0) return -1;
    if (PyModule_AddIntConstant(m, "POOL_DECODE", ST_DECODE) < 0) return -1;
    return 0;
}
