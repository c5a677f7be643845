/*
 * errors.c -- the one place that turns core error codes into Python exceptions, and the
 * argument helpers shared by every type (timeouts).
 */
#include "ext.h"

#include <math.h>

/* Raise the Python exception for `err` (see ext.h for the mapping). Result: NULL. */
PyObject *gf_raise(gf_state *st, int err, const char *what) {
    if (err == GF_EINTR && PyErr_Occurred()) return NULL; /* the signal handler's exception */
    if (!what) what = "gilfree";
    PyObject *exc;
    switch (err) {
    case GF_EINVAL:
    case GF_EMSGSIZE:
    case GF_EOVERFLOW: exc = PyExc_ValueError; break;
    case GF_ENOMEM:
    case GF_ENOSPC: exc = PyExc_MemoryError; break;
    case GF_ETIMEDOUT: exc = PyExc_TimeoutError; break;
    case GF_EPIPE: exc = PyExc_BrokenPipeError; break;
    case GF_EOWNERDEAD: exc = st ? st->OwnerDeadError : PyExc_RuntimeError; break;
    case GF_EBADMSG: exc = st ? st->ProtocolError : PyExc_RuntimeError; break;
    case GF_EPERM: exc = PyExc_PermissionError; break;
    case GF_ESRCH: exc = PyExc_ProcessLookupError; break;
    case GF_ECHILD: exc = PyExc_ChildProcessError; break;
    case GF_EAGAIN: exc = PyExc_BlockingIOError; break;
    case GF_ENOSYS: exc = PyExc_NotImplementedError; break;
    case GF_ECANCELED: {
        PyObject *mod = PyImport_ImportModule("concurrent.futures");
        if (!mod) return NULL;
        PyObject *cls = PyObject_GetAttrString(mod, "CancelledError");
        Py_DECREF(mod);
        if (!cls) return NULL;
        PyErr_Format(cls, "%s: %s", what, gf_strerror(err));
        Py_DECREF(cls);
        return NULL;
    }
    default:
        if (err < 0 && err > -4096) {
            PyObject *args = Py_BuildValue("(is)", -err, gf_strerror(err));
            if (args) {
                PyErr_SetObject(PyExc_OSError, args);
                Py_DECREF(args);
            }
            return NULL;
        }
        exc = PyExc_SystemError;
    }
    PyErr_Format(exc, "%s: %s", what, gf_strerror(err));
    return NULL;
}

/* As gf_raise, for int-returning slots. Result: -1. */
int gf_raise_int(gf_state *st, int err, const char *what) {
    gf_raise(st, err, what);
    return -1;
}

/* (block, timeout) -> absolute deadline. Result 0, or -1 with ValueError/TypeError set. */
int gf_deadline_arg(PyObject *timeout, int block, int64_t *deadline) {
    if (!block) {
        *deadline = 0;
        return 0;
    }
    if (timeout == NULL || timeout == Py_None) {
        *deadline = GF_FOREVER;
        return 0;
    }
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "'timeout' must be a number or None, not %.100s",
                         Py_TYPE(timeout)->tp_name);
        }
        return -1;
    }
    if (isnan(t) || t < 0) {
        PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
        return -1;
    }
    if (t > 9.2e9) { /* beyond int64 nanoseconds: effectively forever */
        *deadline = GF_FOREVER;
        return 0;
    }
    *deadline = gf_deadline_after((int64_t)(t * 1e9));
    return 0;
}

/* Create the exception types and add them to the module. Result 0 or -1. */
int gf__errors_register(PyObject *m, gf_state *st) {
    st->OwnerDeadError = PyErr_NewExceptionWithDoc(
        "gilfree.OwnerDeadError",
        "A process died while holding this lock. The lock now belongs to the caller and has\n"
        "been released again; the data it protected may be half-updated.",
        PyExc_RuntimeError, NULL);
    if (!st->OwnerDeadError || PyModule_AddObjectRef(m, "OwnerDeadError", st->OwnerDeadError) < 0)
        return -1;
    st->ProtocolError = PyErr_NewExceptionWithDoc(
        "gilfree.ProtocolError",
        "A message from another process was malformed (corrupt shared memory or a bug).",
        PyExc_RuntimeError, NULL);
    if (!st->ProtocolError || PyModule_AddObjectRef(m, "ProtocolError", st->ProtocolError) < 0)
        return -1;
    return 0;
}
