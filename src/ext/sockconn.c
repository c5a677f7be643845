/*
 * sockconn.c -- gilfree._core.SocketConnection: multiprocessing's Connection API over a socket
 * (or any stream fd), in the standard library's wire format (sock.c), so that either end may
 * be Python's own multiprocessing.connection.
 *
 *   SocketConnection(handle, readable=True, writable=True)   owns the fd from then on
 *   send(obj), recv(), send_bytes(buf, offset=0, size=None), recv_bytes(maxlength=None),
 *   recv_bytes_into(buf, offset=0), poll(timeout=0.0), fileno(), close(), closed, readable,
 *   writable, max_message_size (payloads announced longer are refused before any allocation)
 *
 * Every blocking call releases the GIL; waits wake for signals (Ctrl-C) and at every interrupt
 * slice (GF_EINTR: the handlers run, then the call continues with the same deadline). On a
 * socket each call first tries without releasing the GIL (the core never blocks there).
 * Threads: one receiver and one sender at a time (a lock per direction, replaced in a forked
 * child); close() from another thread wakes them within a slice ("handle is closed") and the
 * fd is closed by the last call that still uses it, so its number cannot be reused under them.
 * A recv interrupted by an exception keeps what it read and the next recv continues the same
 * message; a send interrupted in the middle of a message leaves the stream unusable for sending
 * (the peer has half a message): later sends raise OSError.
 * Objects are pickled with pickle.dumps (the C pickler, default protocol), falling back to
 * multiprocessing's ForkingPickler for objects plain pickle refuses (as transport.c does).
 */
#include "ext.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pythread.h"

typedef struct {
    PyObject_HEAD
    int fd;             /* -1 once closed */
    int zombie;         /* fd closed by close() while calls still use it: the last one closes */
    int busy;           /* calls running with the GIL released */
    char readable, writable, is_sock, tx_broken;
    gf_sock_rx rx;      /* keeps the state of a message whose recv was interrupted */
    PyObject *partial;  /* that message's payload so far (rx.got bytes are valid), or NULL */
    PyThread_type_lock rlock, wlock;
    pid_t lock_pid;     /* the process the locks belong to */
} sc_obj;

#define SC(o) ((sc_obj *)(o))
#define SC_CLOSED (-100000) /* not a core code: another thread closed the connection */
#define SC_SLICE_US 100000   /* how often a thread waiting for a direction lock checks signals */
#define SC_GIL_HELD_MAX 65536 /* larger transfers never run with the GIL held */

/* ------------------------------------------------------------------ locks and state */

/* Fresh direction locks for this process (after a fork the parent's threads may hold the
 * inherited ones forever). Result 0, or -1 with MemoryError. */
static int sc_own_locks(sc_obj *self) {
    if (self->lock_pid == getpid() && self->rlock) return 0;
    if (self->rlock) PyThread_free_lock(self->rlock);
    if (self->wlock) PyThread_free_lock(self->wlock);
    self->rlock = PyThread_allocate_lock();
    self->wlock = PyThread_allocate_lock();
    if (!self->rlock || !self->wlock) {
        PyErr_NoMemory();
        return -1;
    }
    if (self->lock_pid && self->zombie >= 0) close(self->zombie); /* its users were not forked */
    self->zombie = -1;
    self->busy = 0;
    self->lock_pid = getpid();
    return 0;
}

/* Take a direction lock, waiting with the GIL released (signals checked every slice).
 * Result 0, or -1 with an exception set. */
static int sc_lock(sc_obj *self, int rd) {
    if (sc_own_locks(self) < 0) return -1;
    PyThread_type_lock lk = rd ? self->rlock : self->wlock;
    if (PyThread_acquire_lock(lk, NOWAIT_LOCK)) return 0;
    for (;;) {
        PyLockStatus r;
        Py_BEGIN_ALLOW_THREADS r = PyThread_acquire_lock_timed(lk, SC_SLICE_US, 0);
        Py_END_ALLOW_THREADS if (r == PY_LOCK_ACQUIRED) return 0;
        if (PyErr_CheckSignals() < 0) return -1;
    }
}

static void sc_unlock(sc_obj *self, int rd) { PyThread_release_lock(rd ? self->rlock : self->wlock); }

/* Close the fd now, or when the last call still using it returns (another thread's call in
 * this process). */
static void sc_close_fd(sc_obj *self) {
    if (self->fd < 0) return;
    if (self->busy && self->lock_pid == getpid()) self->zombie = self->fd;
    else close(self->fd);
    self->fd = -1;
}

/* A call that ran with the GIL released is done; close a deferred fd if it was the last. */
static void sc_leave(sc_obj *self) {
    if (--self->busy == 0 && self->zombie >= 0) {
        close(self->zombie);
        self->zombie = -1;
    }
}

enum { SC_OPEN, SC_READ, SC_WRITE };

/* The standard library's checks: open, and readable (SC_READ) or writable (SC_WRITE).
 * Result 0, or -1 with OSError set. */
static int sc_check(sc_obj *self, int need) {
    const char *msg = NULL;
    if (self->fd < 0) msg = "handle is closed";
    else if (need == SC_READ && !self->readable) msg = "connection is write-only";
    else if (need == SC_WRITE && !self->writable) msg = "connection is read-only";
    if (msg) PyErr_SetString(PyExc_OSError, msg);
    return msg ? -1 : 0;
}

/* ------------------------------------------------------------------ running core calls */

enum { SC_HDR, SC_BODY, SC_SEND, SC_POLL };

typedef struct {
    sc_obj *self;
    int op;
    void *buf;        /* SC_BODY: the payload buffer */
    size_t cap;       /* SC_BODY: its size */
    gf_sock_tx *tx;   /* SC_SEND */
    int64_t deadline;
} sc_call;

/* One core call for c (any GIL state); `wait_first`: the fd was just found not ready, so a
 * send waits for room before trying again (saves a system call; a reader waits by itself:
 * it spins, then sleeps in one recv, see sock.c). Result: the core's. */
static int sc_step(sc_call *c, int fd, int64_t deadline, int wait_first) {
    if (wait_first && c->op == SC_SEND) {
        int w = gf_sock_wait(fd, c->op == SC_SEND ? POLLOUT : POLLIN, deadline);
        if (w < 0) return w;
    }
    switch (c->op) {
    case SC_HDR: return gf_sock_rx_header(&c->self->rx, fd, deadline);
    case SC_BODY: return gf_sock_rx_body(&c->self->rx, fd, c->buf, c->cap, deadline);
    case SC_SEND: return gf_sock_tx_send(c->tx, fd, deadline);
    default: return gf_sock_wait(fd, POLLIN, deadline);
    }
}

/* Whether c may first run with the GIL held: on a socket (the core never blocks there),
 * for a small transfer. */
static int sc_gil_held_ok(const sc_call *c) {
    if (!c->self->is_sock) return 0;
    if (c->op == SC_SEND) return c->tx->hlen + c->tx->len - c->tx->done <= SC_GIL_HELD_MAX;
    if (c->op == SC_BODY) return c->cap - (size_t)c->self->rx.got <= SC_GIL_HELD_MAX;
    return 1;
}

/* Run c to completion: first with the GIL held and deadline 0 where that cannot block, then
 * with the GIL released until c->deadline, running the signal handlers at every GF_EINTR (a
 * signal or the interrupt slice) and stopping when another thread closed the connection.
 * Result: the core's result (GF_EINTR: a handler raised, exception set), or SC_CLOSED. */
static int sc_run(sc_call *c) {
    sc_obj *self = c->self;
    int fd = self->fd, rc = GF_ETIMEDOUT, tried = 0;
    if (sc_gil_held_ok(c)) {
        rc = sc_step(c, fd, 0, 0);
        if (rc == GF_EINTR && PyErr_CheckSignals() < 0) return GF_EINTR;
        if (rc != GF_ETIMEDOUT && rc != GF_EINTR) return rc;
        if (c->deadline == 0) return GF_ETIMEDOUT;
        tried = rc == GF_ETIMEDOUT;
    }
    self->busy++;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS rc = sc_step(c, fd, c->deadline, tried);
        Py_END_ALLOW_THREADS if (rc != GF_EINTR) break;
        if (PyErr_CheckSignals() < 0) break;
        if (self->fd < 0) {
            rc = SC_CLOSED;
            break;
        }
    }
    sc_leave(self);
    return rc;
}

/* The stdlib's reaction to a message it will not read (too long, malformed): the stream is
 * out of step, so reading stops (a write-only-from-now connection, or closed if it cannot
 * write either). Raises OSError(msg). Result: NULL. */
static PyObject *sc_bad_length(sc_obj *self, PyObject *msg) {
    if (self->writable) self->readable = 0;
    else sc_close_fd(self);
    if (msg) {
        PyErr_SetObject(PyExc_OSError, msg);
        Py_DECREF(msg);
    }
    return NULL;
}

/* The exception for a failed receive. Result: NULL. */
static PyObject *sc_recv_error(sc_obj *self, int rc) {
    switch (rc) {
    case GF_EINTR: return NULL; /* the signal handler's exception */
    case SC_CLOSED: PyErr_SetString(PyExc_OSError, "handle is closed"); return NULL;
    case GF_ETIMEDOUT: PyErr_SetString(PyExc_TimeoutError, "recv timed out"); return NULL;
    case GF_EPIPE:
        if (!gf_sock_rx_pending(&self->rx)) {
            PyErr_SetNone(PyExc_EOFError);
            return NULL;
        }
        {
            PyObject *m = PyType_GetModuleByDef(Py_TYPE(self), &gf_module_def);
            PyObject *cls = m ? PyObject_GetAttrString(m, "MessageTruncatedError") : NULL;
            if (cls) PyErr_SetString(cls, "got end of file during message");
            Py_XDECREF(cls);
            return NULL;
        }
    case GF_EMSGSIZE:
        return sc_bad_length(self, PyUnicode_FromFormat(
            "bad message length: a message of %llu bytes exceeds max_message_size (%llu)",
            (unsigned long long)self->rx.len, (unsigned long long)self->rx.max));
    case GF_EBADMSG:
        return sc_bad_length(self, PyUnicode_FromString("bad message length (malformed header)"));
    default: return gf_raise(gf_state_of((PyObject *)self), rc, "recv");
    }
}

/* ------------------------------------------------------------------ receiving */

/* Read the header of the next message (or find the one an interrupted recv left). Result 0,
 * or -1 with an exception set. */
static int sc_header(sc_obj *self, int64_t deadline) {
    if (self->rx.hlen && self->rx.got < self->rx.len) return 0; /* resuming */
    sc_call c = {.self = self, .op = SC_HDR, .deadline = deadline};
    int rc = sc_run(&c);
    if (rc != 0) {
        sc_recv_error(self, rc);
        return -1;
    }
    return 0;
}

/* Make self->partial hold room for the next payload bytes (allocated as bytes arrive, see
 * gf_sock_rx_next_cap). Result 0, or -1 with MemoryError (then reading stops: the bytes read
 * so far are lost). */
static int sc_grow(sc_obj *self) {
    size_t cap = self->partial ? (size_t)PyBytes_GET_SIZE(self->partial) : 0;
    if (self->partial && (self->rx.got < cap || self->rx.got >= self->rx.len)) return 0;
    size_t want = gf_sock_rx_next_cap(&self->rx, cap);
    if (want > (size_t)PY_SSIZE_T_MAX) {
        PyErr_NoMemory();
    } else if (!self->partial) {
        self->partial = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)want);
    } else if (_PyBytes_Resize(&self->partial, (Py_ssize_t)want) == 0) {
        return 0;
    }
    if (self->partial) return 0;
    sc_bad_length(self, NULL);
    return -1;
}

/* Read the rest of the current message's payload into self->partial. Result: the payload (a
 * new reference, taken from self->partial), or NULL with an exception set (what was read is
 * kept for the next call). */
static PyObject *sc_body(sc_obj *self, int64_t deadline) {
    for (;;) {
        if (sc_grow(self) < 0) return NULL;
        if (self->rx.got >= self->rx.len) break;
        sc_call c = {.self = self, .op = SC_BODY, .buf = PyBytes_AS_STRING(self->partial),
                     .cap = (size_t)PyBytes_GET_SIZE(self->partial), .deadline = deadline};
        int rc = sc_run(&c);
        if (rc != 0) return sc_recv_error(self, rc);
    }
    PyObject *res = self->partial;
    self->partial = NULL;
    return res;
}

/* One whole message's payload (maxlen < 0: no per-call limit). New reference or NULL. */
static PyObject *sc_recv_payload(sc_obj *self, Py_ssize_t maxlen, int64_t deadline) {
    if (sc_check(self, SC_READ) < 0 || sc_lock(self, 1) < 0) return NULL;
    PyObject *res = NULL;
    if (sc_header(self, deadline) == 0) {
        if (maxlen >= 0 && self->rx.len > (uint64_t)maxlen && !self->partial)
            sc_bad_length(self, PyUnicode_FromString("bad message length"));
        else
            res = sc_body(self, deadline);
    }
    sc_unlock(self, 1);
    return res;
}

/* maxlength (None or int >= 0) -> *out (-1: none). Result 0 or -1 (ValueError). */
static int sc_maxlength(PyObject *arg, Py_ssize_t *out) {
    *out = -1;
    if (!arg || arg == Py_None) return 0;
    Py_ssize_t v = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 0) {
        PyErr_SetString(PyExc_ValueError, "negative maxlength");
        return -1;
    }
    *out = v;
    return 0;
}

/* recv_bytes(maxlength=None) -> the next message's bytes. Fails: EOFError, OSError. */
static PyObject *sc_recv_bytes(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"maxlength", NULL};
    PyObject *ml = Py_None;
    Py_ssize_t maxlen;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:recv_bytes", kwlist, &ml)) return NULL;
    if (sc_maxlength(ml, &maxlen) < 0) return NULL;
    return sc_recv_payload(SC(self), maxlen, GF_FOREVER);
}

/* _recv_bytes_timed(maxlength=None, timeout=None): recv_bytes with a deadline (TimeoutError;
 * the message stays pending). For the authentication handshake. */
static PyObject *sc_recv_bytes_timed(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"maxlength", "timeout", NULL};
    PyObject *ml = Py_None, *timeout = Py_None;
    Py_ssize_t maxlen;
    int64_t deadline;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:_recv_bytes_timed", kwlist, &ml, &timeout))
        return NULL;
    if (sc_maxlength(ml, &maxlen) < 0 || gf_deadline_arg(timeout, 1, &deadline) < 0) return NULL;
    return sc_recv_payload(SC(self), maxlen, deadline);
}

/* recv() -> the next message unpickled. Fails: as recv_bytes, and pickle's errors. */
static PyObject *sc_recv(PyObject *self, PyObject *Py_UNUSED(a)) {
    PyObject *payload = sc_recv_payload(SC(self), -1, GF_FOREVER);
    if (!payload) return NULL;
    gf_state *st = gf_state_of(self);
    PyObject *obj = st ? PyObject_CallOneArg(st->pickle_loads, payload) : NULL;
    Py_DECREF(payload);
    return obj;
}

/* BufferTooShort(payload), multiprocessing's class (steals payload). Result: NULL. */
static PyObject *sc_too_short(PyObject *payload) {
    PyObject *mod = PyImport_ImportModule("multiprocessing");
    PyObject *cls = mod ? PyObject_GetAttrString(mod, "BufferTooShort") : NULL;
    Py_XDECREF(mod);
    if (cls) PyErr_SetObject(cls, payload);
    Py_XDECREF(cls);
    Py_DECREF(payload);
    return NULL;
}

/* Read the payload straight into dst (room for all of it). On failure the bytes read so far
 * move to self->partial so that the next recv continues the message. Result 0 or -1. */
static int sc_body_into(sc_obj *self, char *dst, int64_t deadline) {
    size_t len = (size_t)self->rx.len;
    sc_call c = {.self = self, .op = SC_BODY, .buf = dst, .cap = len, .deadline = deadline};
    int rc = len ? sc_run(&c) : 0;
    if (rc == 0) return 0;
    size_t got = (size_t)self->rx.got;
    self->partial = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (!self->partial) {
        sc_bad_length(self, NULL);
        return -1;
    }
    memcpy(PyBytes_AS_STRING(self->partial), dst, got);
    sc_recv_error(self, rc);
    return -1;
}

/* recv_bytes_into(buf, offset=0) -> size of the message written at byte `offset` of buf. */
static PyObject *sc_recv_bytes_into(PyObject *op, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"buf", "offset", NULL};
    sc_obj *self = SC(op);
    Py_buffer v;
    Py_ssize_t offset = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "w*|n:recv_bytes_into", kwlist, &v, &offset))
        return NULL;
    PyObject *res = NULL, *payload = NULL;
    if (offset < 0 || offset > v.len) {
        PyErr_SetString(PyExc_ValueError, offset < 0 ? "negative offset" : "offset too large");
        goto out;
    }
    if (sc_check(self, SC_READ) < 0 || sc_lock(self, 1) < 0) goto out;
    if (sc_header(self, GF_FOREVER) < 0) goto unlock;
    uint64_t len = self->rx.len;
    if (len > (uint64_t)(v.len - offset) || self->partial) {
        payload = sc_body(self, GF_FOREVER);
        if (!payload) goto unlock;
        if (len > (uint64_t)(v.len - offset)) {
            sc_too_short(payload);
            goto unlock;
        }
        memcpy((char *)v.buf + offset, PyBytes_AS_STRING(payload), (size_t)len);
        Py_DECREF(payload);
    } else if (sc_body_into(self, (char *)v.buf + offset, GF_FOREVER) < 0) {
        goto unlock;
    }
    res = PyLong_FromUnsignedLongLong(len);
unlock:
    sc_unlock(self, 1);
out:
    PyBuffer_Release(&v);
    return res;
}

/* ------------------------------------------------------------------ sending */

/* Send n bytes at p as one message. Result: None, or NULL with an exception set. */
static PyObject *sc_send_raw(sc_obj *self, const void *p, Py_ssize_t n) {
    if (sc_check(self, SC_WRITE) < 0 || sc_lock(self, 0) < 0) return NULL;
    gf_sock_tx tx;
    int rc = self->tx_broken ? GF_EBADMSG : gf_sock_tx_init(&tx, p, (uint64_t)n);
    if (rc == 0) {
        sc_call c = {.self = self, .op = SC_SEND, .tx = &tx, .deadline = GF_FOREVER};
        rc = sc_run(&c);
        if (rc != 0 && tx.done > 0 && tx.done < tx.hlen + tx.len) self->tx_broken = 1;
    }
    sc_unlock(self, 0);
    switch (rc) {
    case 0: Py_RETURN_NONE;
    case GF_EINTR: return NULL; /* the signal handler's exception */
    case GF_EBADMSG:
        PyErr_SetString(PyExc_OSError, "a send was interrupted in the middle of a message: the "
                                       "stream is out of step, this connection cannot send");
        return NULL;
    case SC_CLOSED: PyErr_SetString(PyExc_OSError, "handle is closed"); return NULL;
    case GF_EPIPE:
        errno = EPIPE; /* the standard library's BrokenPipeError(32, 'Broken pipe') */
        return PyErr_SetFromErrno(PyExc_OSError);
    default: return gf_raise(gf_state_of((PyObject *)self), rc, "send");
    }
}

/* send_bytes(buf, offset=0, size=None), with the standard library's argument checks. */
static PyObject *sc_send_bytes(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"buf", "offset", "size", NULL};
    Py_buffer v;
    Py_ssize_t offset = 0, size;
    PyObject *sizeobj = Py_None, *res = NULL;
    const char *err = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|nO:send_bytes", kwlist, &v, &offset, &sizeobj))
        return NULL;
    if (sizeobj == Py_None) {
        size = v.len - offset;
    } else {
        size = PyNumber_AsSsize_t(sizeobj, PyExc_OverflowError);
        if (size == -1 && PyErr_Occurred()) goto out;
    }
    if (offset < 0) err = "offset is negative";
    else if (v.len < offset) err = "buffer length < offset";
    else if (size < 0) err = "size is negative";
    else if (offset + size > v.len) err = "buffer length < offset + size";
    if (err) PyErr_SetString(PyExc_ValueError, err);
    else res = sc_send_raw(SC(self), (const char *)v.buf + offset, size);
out:
    PyBuffer_Release(&v);
    return res;
}

/* pickle.dumps(obj), or ForkingPickler's for objects plain pickle refuses. New ref or NULL. */
static PyObject *sc_dumps(gf_state *st, PyObject *obj) {
    PyObject *data = PyObject_CallOneArg(st->pickle_dumps, obj);
    if (data || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
        PyErr_ExceptionMatches(PyExc_MemoryError) || PyErr_ExceptionMatches(PyExc_RecursionError))
        return data;
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *red = PyImport_ImportModule("multiprocessing.reduction");
    PyObject *fp = red ? PyObject_GetAttrString(red, "ForkingPickler") : NULL;
    PyObject *view = fp ? PyObject_CallMethod(fp, "dumps", "O", obj) : NULL;
    Py_XDECREF(red);
    Py_XDECREF(fp);
    if (!view) { /* report what plain pickle said */
        PyErr_Clear();
        PyErr_Restore(et, ev, tb);
        return NULL;
    }
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
    data = PyBytes_FromObject(view);
    Py_DECREF(view);
    return data;
}

/* send(obj): pickle obj and send it as one message. Fails: pickling errors, OSError. */
static PyObject *sc_send(PyObject *self, PyObject *obj) {
    if (sc_check(SC(self), SC_WRITE) < 0) return NULL;
    gf_state *st = gf_state_of(self);
    PyObject *data = st ? sc_dumps(st, obj) : NULL;
    if (!data) return NULL;
    PyObject *res = sc_send_raw(SC(self), PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
    Py_DECREF(data);
    return res;
}

/* ------------------------------------------------------------------ the rest of the API */

/* poll(timeout=0.0) -> True if data (or end of file) is waiting. None waits forever; a
 * negative timeout does not wait. */
static PyObject *sc_poll(PyObject *op, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:poll", kwlist, &timeout)) return NULL;
    sc_obj *self = SC(op);
    if (sc_check(self, SC_READ) < 0) return NULL;
    int64_t deadline = 0;
    if (timeout == Py_None) {
        deadline = GF_FOREVER;
    } else if (timeout) {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred()) return NULL;
        if (t > 0 && gf_deadline_arg(timeout, 1, &deadline) < 0) return NULL;
    }
    sc_call c = {.self = self, .op = SC_POLL, .deadline = deadline};
    int rc = sc_run(&c);
    if (rc > 0) Py_RETURN_TRUE;
    if (rc == GF_ETIMEDOUT) Py_RETURN_FALSE;
    return sc_recv_error(self, rc);
}

/* fileno() -> the fd. Fails: OSError once closed. */
static PyObject *sc_fileno(PyObject *self, PyObject *Py_UNUSED(a)) {
    if (sc_check(SC(self), SC_OPEN) < 0) return NULL;
    return PyLong_FromLong(SC(self)->fd);
}

/* close(): idempotent; never fails. */
static PyObject *sc_close(PyObject *op, PyObject *Py_UNUSED(a)) {
    sc_close_fd(SC(op)); /* self->partial stays until dealloc: a reader may be filling it */
    Py_RETURN_NONE;
}

/* SocketConnection(handle, readable=True, writable=True): takes ownership of the fd.
 * Fails: ValueError (negative handle, neither readable nor writable), MemoryError. */
static PyObject *sc_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"handle", "readable", "writable", NULL};
    PyObject *h;
    int rd = 1, wr = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|pp:SocketConnection", kwlist, &h, &rd, &wr))
        return NULL;
    long fd = PyLong_AsLong(h);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    if (fd < 0 || fd > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "invalid handle");
        return NULL;
    }
    if (!rd && !wr) {
        PyErr_SetString(PyExc_ValueError, "at least one of `readable` and `writable` must be True");
        return NULL;
    }
    sc_obj *self = (sc_obj *)tp->tp_alloc(tp, 0);
    if (!self) return NULL;
    self->fd = (int)fd;
    self->zombie = -1;
    self->readable = (char)rd;
    self->writable = (char)wr;
    struct stat sb;
    self->is_sock = fstat((int)fd, &sb) == 0 && S_ISSOCK(sb.st_mode);
    gf_sock_rx_init(&self->rx, 0);
    if (sc_own_locks(self) < 0) {
        self->fd = -1; /* the caller keeps its fd */
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* GC: the type and the partial payload. */
static int sc_traverse(PyObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(SC(self)->partial);
    return 0;
}

/* Close the fd (if still open) and free the locks. */
static void sc_dealloc(PyObject *op) {
    sc_obj *self = SC(op);
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (self->fd >= 0) close(self->fd);
    Py_CLEAR(self->partial);
    if (self->rlock) PyThread_free_lock(self->rlock);
    if (self->wlock) PyThread_free_lock(self->wlock);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* Properties: closed, readable, writable, max_message_size (the setter refuses 0). */
static PyObject *sc_get_closed(PyObject *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(SC(self)->fd < 0);
}
static PyObject *sc_get_readable(PyObject *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(SC(self)->readable);
}
static PyObject *sc_get_writable(PyObject *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(SC(self)->writable);
}
static PyObject *sc_get_max(PyObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(SC(self)->rx.max);
}
static int sc_set_max(PyObject *self, PyObject *v, void *Py_UNUSED(c)) {
    unsigned long long m = v ? PyLong_AsUnsignedLongLong(v) : 0;
    if (!v || (m == (unsigned long long)-1 && PyErr_Occurred()) || m == 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "max_message_size must be a positive int");
        return -1;
    }
    SC(self)->rx.max = m > (unsigned long long)INT64_MAX ? (uint64_t)INT64_MAX : m;
    return 0;
}

static PyMethodDef sc_methods[] = {
    {"send", sc_send, METH_O, "Send a picklable object (pickle, default protocol)."},
    {"recv", sc_recv, METH_NOARGS, "Receive an object sent with send() (EOFError at the end)."},
    {"send_bytes", (PyCFunction)(void (*)(void))sc_send_bytes, METH_VARARGS | METH_KEYWORDS,
     "send_bytes(buf, offset=0, size=None): send bytes of a bytes-like object as one message."},
    {"recv_bytes", (PyCFunction)(void (*)(void))sc_recv_bytes, METH_VARARGS | METH_KEYWORDS,
     "recv_bytes(maxlength=None) -> bytes of one message (OSError if longer than maxlength)."},
    {"_recv_bytes_timed", (PyCFunction)(void (*)(void))sc_recv_bytes_timed,
     METH_VARARGS | METH_KEYWORDS,
     "_recv_bytes_timed(maxlength=None, timeout=None): recv_bytes with a timeout."},
    {"recv_bytes_into", (PyCFunction)(void (*)(void))sc_recv_bytes_into,
     METH_VARARGS | METH_KEYWORDS,
     "recv_bytes_into(buf, offset=0) -> size: receive a message into a writable buffer "
     "(BufferTooShort, holding the message, if it does not fit)."},
    {"poll", (PyCFunction)(void (*)(void))sc_poll, METH_VARARGS | METH_KEYWORDS,
     "poll(timeout=0.0) -> whether there is data to read (None: wait forever)."},
    {"fileno", sc_fileno, METH_NOARGS, "The file descriptor (OSError once closed)."},
    {"close", sc_close, METH_NOARGS, "Close the connection (idempotent)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sc_getset[] = {
    {"closed", sc_get_closed, NULL, "True once close() was called.", NULL},
    {"readable", sc_get_readable, NULL, "True if the connection can receive.", NULL},
    {"writable", sc_get_writable, NULL, "True if the connection can send.", NULL},
    {"max_message_size", sc_get_max, sc_set_max,
     "Longest payload accepted (bytes); a longer announced message raises OSError before "
     "anything is allocated.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot sc_slots[] = {
    {Py_tp_new, sc_new},
    {Py_tp_dealloc, sc_dealloc},
    {Py_tp_traverse, sc_traverse},
    {Py_tp_methods, sc_methods},
    {Py_tp_getset, sc_getset},
    {Py_tp_doc, "SocketConnection(handle, readable=True, writable=True): multiprocessing's "
                "Connection over a socket (or stream) fd, in the standard library's format."},
    {0, NULL},
};

static PyType_Spec sc_spec = {
    .name = "gilfree._core.SocketConnection",
    .basicsize = sizeof(sc_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = sc_slots,
};

/* Create the SocketConnection type and MessageTruncatedError. Result 0 or -1. */
int gf__sockconn_register(PyObject *m, gf_state *st) {
    (void)st;
    PyObject *tp = PyType_FromModuleAndSpec(m, &sc_spec, NULL);
    if (!tp || PyModule_AddType(m, (PyTypeObject *)tp) < 0) {
        Py_XDECREF(tp);
        return -1;
    }
    Py_DECREF(tp);
    PyObject *bases = PyTuple_Pack(2, PyExc_OSError, PyExc_EOFError);
    PyObject *exc = bases ? PyErr_NewExceptionWithDoc(
                                "gilfree.MessageTruncatedError",
                                "The peer closed the connection in the middle of a message "
                                "(an OSError, as the standard library raises, and an EOFError).",
                                bases, NULL)
                          : NULL;
    Py_XDECREF(bases);
    int rc = exc ? PyModule_AddObjectRef(m, "MessageTruncatedError", exc) : -1;
    Py_XDECREF(exc);
    return rc;
}
