/*
 * pool_worker.c -- the worker process of gilfree._core.Pool: after the fork it attaches to its
 * worker slot, runs the initializer, then a C loop (gf_worker_next -> decode -> call -> encode
 * -> gf_worker_result) that only calls Python for the user's function, caching functions by
 * their pickled bytes; user errors travel as errfn(exc, where) bytes. SIGINT is ignored (the
 * parent decides); the worker leaves with _exit (no atexit handlers of the parent run).
 */
#include "pool.h"
#include "npalloc.h"
#include "packed.h"
#include "fastint.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ worker side */

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

/* Error payload for the current exception: errfn(exc, where) -> bytes, encoded.
 * Result 0 with e filled and *keep = the bytes (the frame points into them: release after
 * the put), or -1 (could not even report: the task is lost). */
static int worker_error(gf_state *st, pool_obj *self, const char *where, gf_enc *e,
                        PyObject **keep) {
    PyObject *r = error_bytes(self, where);
    if (!r) return -1;
    int rc = gf_encode(st, r, 0, e);
    if (rc < 0) {
        Py_DECREF(r);
        PyErr_Print();
        return -1;
    }
    *keep = r;
    return 0;
}

/* The function pickle `key` is made once by the parent (it caches it) and loaded by every
 * worker, but a shared handle inside it (functools.partial(f, shared_dict), a callable object
 * holding a Lock, ...) took one reference for one receiver: each load adopts one. So a worker
 * that loads such a pickle pickles the function once more and drops the bytes -- each handle's
 * __reduce__ takes a reference, paying for the one its rebuild adopted (as stored values do,
 * see value.c) -- else the workers' exits would free the object under the parent. Only
 * pickles that mention "_rebuild" (every handle reducer does) pay this. Result 0 or -1. */
static int pay_fn_refs(gf_state *st, PyObject *key, PyObject *fn) {
    static const char pat[] = "_rebuild";
    if (!PyBytes_Check(key) ||
        !memmem(PyBytes_AS_STRING(key), (size_t)PyBytes_GET_SIZE(key), pat, sizeof pat - 1))
        return 0;
    PyObject *again = PyObject_CallOneArg(st->pickle_dumps, fn);
    if (!again) return -1;
    Py_DECREF(again);
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
    if (pay_fn_refs(st, key, fn) < 0) {
        Py_DECREF(fn);
        return NULL;
    }
    if (PyDict_GET_SIZE(cache) > 256) PyDict_Clear(cache);
    if (PyDict_SetItem(cache, key, fn) < 0) PyErr_Clear();
    return fn;
}

/* ------------------------------------------------------------------ small-object pools */

/* pymalloc's pool size on 64-bit CPython >= 3.10 (POOL_BITS 14 with the radix tree); with
 * smaller pools the probe below only finds fewer short pools. */
#define PYMALLOC_POOL_BITS 14
#define SETTLE_FREE 8   /* free blocks the front pool must have for the user's loop */
#define SETTLE_ROUNDS 8 /* pools probed at most */
typedef struct settle_t {
    void *held[SETTLE_FREE * SETTLE_ROUNDS];
    int n;
} settle_t;

static int settle_on = -1; /* GILFREE_SETTLE_POOLS=0 turns it off (A/B measurements) */

/* Before a chunk's (or a call's) user code: the worker's own churn -- decoding the task,
 * freeing the previous results -- often leaves the front pool of pymalloc's 32-byte class
 * (ints up to 2**30, floats) with only a block or two free; a user loop that makes one object
 * and frees the previous one per step (`while n > 0: n -= 1`, which holds two at the moment
 * of each allocation) then moves that pool from full to non-full and back at every step (5%
 * of the seeds' countdown, measured). Probe with SETTLE_FREE blocks: all from one pool, the
 * front pool has room, and they go back (in reverse, so the free list is as it was); else
 * the front pool's share of them is held (that pool stays full, out of the way) until
 * settle_release, the rest go back, and the next pool is probed. The standard library's
 * worker is as exposed; its allocation history just lands elsewhere. Never fails (a failed
 * allocation ends the probe). */
static void settle_pools(settle_t *s) {
    s->n = 0;
    if (__builtin_expect(settle_on < 0, 0)) {
        const char *e = getenv("GILFREE_SETTLE_POOLS");
        settle_on = !(e && *e == '0');
    }
    if (!settle_on) return;
    for (int r = 0; r < SETTLE_ROUNDS; r++) {
        void *b[SETTLE_FREE];
        int got = 0, same = 0;
        while (got < SETTLE_FREE && (b[got] = PyObject_Malloc(28))) got++;
        while (same < got && ((uintptr_t)b[same] >> PYMALLOC_POOL_BITS) ==
                                 ((uintptr_t)b[0] >> PYMALLOC_POOL_BITS))
            same++;
        int full = same == SETTLE_FREE; /* the front pool had room: give everything back */
        for (int i = got - 1; i >= (full ? 0 : same); i--) PyObject_Free(b[i]);
        if (full || got < SETTLE_FREE) return;
        for (int i = 0; i < same; i++) s->held[s->n++] = b[i];
    }
}

/* Give back what settle_pools held. Never fails. */
static void settle_release(settle_t *s) {
    while (s->n > 0) PyObject_Free(s->held[--s->n]);
}

/* fn(*args, **kw) with the pools settled for it (apply / submit calls, one by one). */
static PyObject *call_settled(PyObject *fn, PyObject *args, PyObject *kw) {
    settle_t s;
    settle_pools(&s);
    PyObject *r = PyObject_Call(fn, args, kw == Py_None ? NULL : kw);
    settle_release(&s);
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
                    r = call_settled(fn, at, kw);
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

/* The results of a map chunk as they come: int64s packed on the fly while every result is
 * one (each int is freed at once), else a list of objects. */
typedef struct map_acc {
    int64_t *ints;
    Py_ssize_t k, cap; /* ints so far, room */
    PyObject *lst;     /* the list once a result was not an int64 */
} map_acc;

/* Add result r (stolen). Result 0, or -1 with an exception set. */
static int map_acc_add(map_acc *m, PyObject *r) {
    if (!m->lst) {
        if (Py_TYPE(r) == &PyLong_Type) {
            int overflow = 0;
            long long v = PyLong_AsLongLongAndOverflow(r, &overflow);
            if (!overflow && !(v == -1 && PyErr_Occurred())) {
                if (m->k == m->cap) {
                    int64_t *ni = PyMem_Realloc(m->ints, (size_t)m->cap * 16);
                    if (!ni) {
                        Py_DECREF(r);
                        PyErr_NoMemory();
                        return -1;
                    }
                    m->ints = ni;
                    m->cap *= 2;
                }
                m->ints[m->k++] = (int64_t)v;
                Py_DECREF(r);
                return 0;
            }
            PyErr_Clear();
        }
        /* not an int64: switch to a list of objects */
        m->lst = PyList_New(m->k);
        if (!m->lst) {
            Py_DECREF(r);
            return -1;
        }
        for (Py_ssize_t j = 0; j < m->k; j++) {
            PyObject *o = PyLong_FromLongLong(m->ints[j]);
            if (!o) {
                Py_DECREF(r);
                return -1;
            }
            PyList_SET_ITEM(m->lst, j, o);
        }
    }
    int rc = PyList_Append(m->lst, r);
    Py_DECREF(r);
    return rc;
}

/* The chunk's result: packed int64s, else the list packed when it qualifies (str, bytes),
 * else the list itself (taken from m). New reference, or NULL with an exception. */
static PyObject *map_acc_result(map_acc *m) {
    if (!m->lst) return gf__pk_ints(m->ints, m->k);
    PyObject *res = gf__pk_pack(((PyListObject *)m->lst)->ob_item, PyList_GET_SIZE(m->lst));
    if (!res) {
        if (PyErr_Occurred()) PyErr_Clear();
        res = m->lst;
        m->lst = NULL;
    }
    return res;
}

/* fn(x) or, for STARMAP, fn(*x); x is stolen. New reference or NULL with an exception. */
static PyObject *map_call(PyObject *fn, PyObject *x, int star) {
    PyObject *r;
    if (!star) {
        r = PyObject_CallOneArg(fn, x);
    } else {
        PyObject *at = PySequence_Tuple(x);
        r = at ? PyObject_Call(fn, at, NULL) : NULL;
        Py_XDECREF(at);
    }
    Py_DECREF(x);
    return r;
}

/* A range's start, step and length as int64s whose every item fits int64. Result 1, 0 (not
 * a range, or too big: iterate it), or -1 with an exception. */
static int range_bounds(PyObject *obj, int64_t *start, int64_t *step, Py_ssize_t *len) {
    if (!PyRange_Check(obj)) return 0;
    PyObject *a = PyObject_GetAttrString(obj, "start"), *b = PyObject_GetAttrString(obj, "step");
    int ok = -1;
    if (a && b) {
        int o1 = 0, o2 = 0;
        long long s0 = PyLong_AsLongLongAndOverflow(a, &o1), st = PyLong_AsLongLongAndOverflow(b, &o2);
        Py_ssize_t n = (s0 == -1 || st == -1) && PyErr_Occurred() ? -1 : PyObject_Size(obj);
        int64_t last;
        if (n < 0) {
            PyErr_Clear(); /* (length over Py_ssize_t: iterate) */
            ok = 0;
        } else if (o1 || o2 || __builtin_mul_overflow((int64_t)st, (int64_t)(n ? n - 1 : 0), &last) ||
                   __builtin_add_overflow(last, (int64_t)s0, &last)) {
            ok = 0;
        } else {
            *start = s0;
            *step = st;
            *len = n;
            ok = 1;
        }
    }
    Py_XDECREF(a);
    Py_XDECREF(b);
    return ok;
}

/* K_MAP over a range slice, its items made here: an item int the function did not keep
 * (reference count back to 1) is given the next value in place (fastint.h), so a tiny
 * function costs one int allocation per item, not two. Result as run_map. */
static PyObject *run_map_range(PyObject *fn, int64_t start, int64_t step, Py_ssize_t n) {
    map_acc m = {PyMem_Malloc((size_t)(n > 16 ? n : 16) * 8), 0, n > 16 ? n : 16, NULL};
    if (!m.ints) return PyErr_NoMemory();
    PyObject *x = NULL, *res = NULL;
    int64_t v = start;
    settle_t st;
    settle_pools(&st);
    for (Py_ssize_t i = 0; i < n; i++, v += (i < n ? step : 0)) {
        if (gf__int_set(&x, v) < 0) goto fail;
        Py_INCREF(x); /* map_call takes one reference; ours stays for the reuse */
        PyObject *r = map_call(fn, x, 0);
        if (!r || map_acc_add(&m, r) < 0) goto fail;
    }
    res = map_acc_result(&m);
fail:
    settle_release(&st);
    Py_XDECREF(x);
    PyMem_Free(m.ints);
    Py_XDECREF(m.lst);
    return res;
}

/* K_MAP / K_STARMAP: fn over the chunk (a list / tuple, or any iterable such as the range
 * slice the parent sent). Result: new bytes (packed) or list, or NULL with an exception. */
static PyObject *run_map(PyObject *fn, PyObject *obj, int star) {
    int64_t rstart = 0, rstep = 0;
    Py_ssize_t rlen = 0;
    int rb = star ? 0 : range_bounds(obj, &rstart, &rstep, &rlen);
    if (rb < 0) return NULL;
    if (rb) return run_map_range(fn, rstart, rstep, rlen);
    PyObject *seq = NULL, *it = NULL, *res = NULL;
    PyObject *const *arr = NULL;
    Py_ssize_t n = -1;
    if (PyList_CheckExact(obj) || PyTuple_CheckExact(obj)) {
        seq = obj;
        Py_INCREF(seq);
        n = PySequence_Fast_GET_SIZE(seq);
        arr = PySequence_Fast_ITEMS(seq);
    } else {
        it = PyObject_GetIter(obj);
        if (!it) return NULL;
    }
    Py_ssize_t cap = n >= 0 ? n : PyObject_LengthHint(obj, 64);
    if (cap < 0) goto out;
    if (cap < 16) cap = 16;
    map_acc m = {PyMem_Malloc((size_t)cap * 8), 0, cap, NULL};
    if (!m.ints) {
        PyErr_NoMemory();
        goto out;
    }
    settle_t st;
    settle_pools(&st);
    for (Py_ssize_t i = 0;; i++) {
        PyObject *x;
        if (arr) {
            if (i >= n) break;
            x = arr[i];
            Py_INCREF(x);
        } else {
            x = PyIter_Next(it);
            if (!x) {
                if (PyErr_Occurred()) goto fail;
                break;
            }
        }
        PyObject *r = map_call(fn, x, star);
        if (!r || map_acc_add(&m, r) < 0) goto fail;
    }
    res = map_acc_result(&m);
fail:
    settle_release(&st);
    PyMem_Free(m.ints);
    Py_XDECREF(m.lst);
out:
    Py_XDECREF(seq);
    Py_XDECREF(it);
    return res;
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
    PyObject *obj;
    if (h._r[0] == 1) { /* a packed list of items (no frame) */
        obj = gf__pk_list(fnp + h.fnlen, t->len - sizeof h - h.fnlen);
    } else {
        gf_msg m = {fnp + h.fnlen, t->len - sizeof h - h.fnlen, 0, 0};
        /* The task's references stay the message's (the pool may send these bytes again):
         * ours are our own, recorded in our ledger (ext.h, gf_adopt_own_refs). */
        obj = gf_decode_shared(st, &m);
    }
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
                res = call_settled(fn, at, kw);
                Py_DECREF(at);
            }
        }
    } else if (h.kind == K_BATCH) {
        res = run_batch(st, cache, self, obj);
    } else {
        /* a range chunk is iterated here, in the worker (the parent sent a slice) */
        res = run_map(fn, obj, h.kind == K_STARMAP);
    }
    Py_DECREF(obj);
    Py_DECREF(fn);
    return res;
}

/* Publish the task's encoded result or error `e` (whose bytes `*res` keeps alive). One that
 * does not fit in the arena (GF_ENOSPC, GF_EMSGSIZE) is replaced by a MemoryError for the
 * caller (a small message), so that the task fails and the worker lives on -- it used to
 * exit, and the caller saw WorkerLostError. Result: gf_worker_result's. */
static int put_result(gf_state *st, pool_obj *self, gf_worker *w, gf_task *t, int status,
                      gf_enc *e, PyObject **res) {
    int rc;
    GF_BLOCKING(rc, gf_worker_result(w, t, status, e->iov, e->iovcnt));
    gf_enc_done(st, e, rc == 0);
    if (rc != GF_ENOSPC && rc != GF_EMSGSIZE) return rc;
    Py_CLEAR(*res);
    PyErr_Format(PyExc_MemoryError, "the task's %s does not fit in the shared-memory arena: %s",
                 status == GF_TASK_OK ? "result" : "error", gf_strerror(rc));
    if (worker_error(st, self, "result", e, res) < 0) {
        GF_BLOCKING(rc, gf_worker_result(w, t, GF_TASK_ERROR, NULL, 0));
        return rc;
    }
    GF_BLOCKING(rc, gf_worker_result(w, t, GF_TASK_ERROR, e->iov, e->iovcnt));
    gf_enc_done(st, e, rc == 0);
    return rc;
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
        gf_npalloc_poll(st); /* NumPy imported by now: its large arrays in the arena */
        PyObject *res = run_task(st, self, cache, &t, &where, &kind);
        gf_enc e;
        int status = GF_TASK_OK, ok;
        if (res) {
            gf_npalloc_lend(1); /* arrays made here may go by reference (see below) */
            /* _for_put: its buffers are freed by the survivors if this worker dies first */
            ok = gf_encode_for_put(st, res, 0, &e) == 0;
            if (!ok && kind == K_BATCH) { /* isolate the unpicklable results, try again */
                PyErr_Clear();
                ok = batch_sanitize(st, self, res) == 0 &&
                     gf_encode_for_put(st, res, 0, &e) == 0;
            }
            gf_npalloc_lend(0);
            if (!ok) {
                Py_CLEAR(res);
                status = GF_TASK_ERROR;
                ok = worker_error(st, self, "result", &e, &res) == 0;
            } else if (e.nbufs) {
                /* A pickle (its body is e.keep): drop the result now, so that the arrays the
                 * worker does not keep let go of their blocks; the ones it keeps are copied. */
                Py_CLEAR(res);
                if (gf_npalloc_unshare(st, &e) < 0) {
                    gf_enc_done(st, &e, 0);
                    status = GF_TASK_ERROR;
                    ok = worker_error(st, self, "result", &e, &res) == 0;
                }
            }
        } else {
            status = GF_TASK_ERROR;
            ok = worker_error(st, self, where, &e, &res) == 0;
        }
        /* res stays alive until the put: the frame's body may point into it (bytes) */
        if (!ok) {
            /* nothing sendable: report an empty error payload */
            e.iovcnt = 0;
            GF_BLOCKING(rc, gf_worker_result(w, &t, GF_TASK_ERROR, NULL, 0));
        } else {
            rc = put_result(st, self, w, &t, status, &e, &res);
        }
        Py_XDECREF(res);
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

/* See pool.h. */
void gf__pool_flush_std(void) {
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

/* A worker's interrupt slice (the parent's is 100 ms). */
#define GF_WORKER_SLICE_NS 1000000000

/* In the child after fork (GIL held): become worker `index`, serve, _exit. Never returns. */
void gf__pool_child_main(gf_state *st, pool_obj *self, gf_off shoff, uint32_t index) {
    signal(SIGINT, SIG_IGN);
    /* Ctrl-C is the parent's, so an idle worker need not wake ten times a second to look for
     * it: a signal still interrupts every wait (EINTR); the slice only bounds the short race
     * between a handler's check and the sleep, for the worker's own handlers. */
    gf_set_interrupt_slice(GF_WORKER_SLICE_NS);
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
    gf__pool_flush_std();
    gf_release_before_exit(st);
    _exit(code);
}

