/*
 * proc.c -- gilfree._core.Proc and _core.fork(): the fork/pidfd half of gilfree.Process
 * (gilfree/process.py builds a multiprocessing Popen on it).
 *
 *   fork(child_main, die_with_parent=False) -> Proc   (in the parent)
 *       In the child: runs child_main() (which runs BaseProcess._bootstrap), flushes
 *       sys.stdout/sys.stderr, drops this process's shared-object references and _exit()s with
 *       the int it returned (an exception: printed, exit code 1; SystemExit: its code).
 *   Proc.wait(timeout=None) -> exit code, or None on timeout   (GIL released, Ctrl-C works)
 *   Proc.poll() -> exit code or None;  Proc.signal(sig);  Proc.close()
 *   Proc.pid, Proc.sentinel (the pidfd: readable once the child exited), Proc.exitcode
 * Exit codes are Python's: the exit status, or -signal.
 */
#include "ext.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

typedef struct {
    PyObject_HEAD
    gf_proc p;
    int closed;
} gf_proc_obj;

#define SELF_P(self) ((gf_proc_obj *)(self))

/* The exit code (new reference), or None if not reaped. */
static PyObject *proc_code(gf_proc_obj *self) {
    int code;
    if (gf_proc_exitcode(&self->p, &code) < 0) Py_RETURN_NONE;
    return PyLong_FromLong(code);
}

/* A wait without a deadline: sleep in waitid(P_PIDFD, WEXITED) itself, which wakes ~35 us
 * sooner after the child's exit than poll() + waitid (gf_proc_wait's way, needed for
 * deadlines) on our VM -- that difference is all of Process.join()'s overhead over the
 * standard library's waitpid. (A candidate for gf_proc_wait's GF_FOREVER case.) Result as
 * gf_proc_wait; runs without the GIL. */
static int proc_wait_forever(gf_proc *p) {
    if (p->reaped) return 0;
    if (p->pidfd < 0) return gf_proc_wait(p, GF_FOREVER);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED) < 0) {
        if (errno == EINTR) return GF_EINTR;
        if (errno == EINVAL) return gf_proc_wait(p, GF_FOREVER); /* kernel < 5.4 */
        return gf_from_errno(errno);
    }
    /* The wait(2) status, as gf_proc_wait builds it. */
    if (si.si_code == CLD_EXITED) p->status = (si.si_status & 0xff) << 8;
    else if (si.si_code == CLD_DUMPED) p->status = (si.si_status & 0x7f) | 0x80;
    else p->status = si.si_status & 0x7f;
    p->reaped = 1;
    return 0;
}

static PyObject *proc_wait_deadline(PyObject *self, int64_t deadline) {
    gf_proc_obj *o = SELF_P(self);
    if (o->p.reaped) return proc_code(o);
    if (o->closed) {
        PyErr_SetString(PyExc_ValueError, "process handle is closed");
        return NULL;
    }
    int rc;
    if (deadline == 0)
        rc = gf_proc_wait(&o->p, 0);
    else if (deadline == GF_FOREVER)
        GF_BLOCKING(rc, proc_wait_forever(&o->p));
    else
        GF_BLOCKING_SLICED(rc, deadline, dl, gf_proc_wait(&o->p, dl));
    if (rc == 0) {
        gf_reclaim_dead(gf_state_of(self)); /* what the child held, if it died holding it */
        return proc_code(o);
    }
    if (rc == GF_ETIMEDOUT) Py_RETURN_NONE;
    if (rc == GF_ECHILD) {
        /* Reaped elsewhere (another thread, a SIGCHLD handler): the standard library answers
         * None here too. */
        if (o->p.reaped) return proc_code(o);
        Py_RETURN_NONE;
    }
    return gf_raise(gf_state_of(self), rc, "wait");
}

static PyObject *proc_wait(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:wait", kwlist, &timeout)) return NULL;
    int64_t deadline;
    if (gf_deadline_arg(timeout, 1, &deadline) < 0) return NULL;
    return proc_wait_deadline(self, deadline);
}

static PyObject *proc_poll(PyObject *self, PyObject *Py_UNUSED(a)) {
    return proc_wait_deadline(self, 0);
}

static PyObject *proc_signal(PyObject *self, PyObject *arg) {
    long sig = PyLong_AsLong(arg);
    if (sig == -1 && PyErr_Occurred()) return NULL;
    if (sig < 0 || sig > 64) {
        PyErr_Format(PyExc_ValueError, "invalid signal number %ld", sig);
        return NULL;
    }
    gf_proc_obj *o = SELF_P(self);
    if (o->p.reaped) Py_RETURN_NONE; /* the standard library ignores a signal to a dead child */
    int rc = gf_proc_signal(&o->p, (int)sig);
    if (rc == 0 || rc == GF_ESRCH) Py_RETURN_NONE;
    return gf_raise(gf_state_of(self), rc, "signal");
}

static PyObject *proc_close(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_proc_obj *o = SELF_P(self);
    gf_proc_close(&o->p);
    o->closed = 1;
    Py_RETURN_NONE;
}

static void proc_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    gf_proc_close(&SELF_P(self)->p);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *proc_get_pid(PyObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromLong(SELF_P(self)->p.pid);
}
static PyObject *proc_get_sentinel(PyObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromLong(SELF_P(self)->p.pidfd);
}
static PyObject *proc_get_exitcode(PyObject *self, void *Py_UNUSED(c)) {
    return proc_code(SELF_P(self));
}

static PyMethodDef proc_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))proc_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(timeout=None) -> exit code, or None if still running at the timeout."},
    {"poll", proc_poll, METH_NOARGS, "Exit code if the child has exited (reaps it), else None."},
    {"signal", proc_signal, METH_O, "Send a signal through the pidfd."},
    {"close", proc_close, METH_NOARGS, "Close the pidfd."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef proc_getset[] = {
    {"pid", proc_get_pid, NULL, "Process id.", NULL},
    {"sentinel", proc_get_sentinel, NULL, "The pidfd: readable once the child has exited.", NULL},
    {"exitcode", proc_get_exitcode, NULL, "Exit code once reaped, else None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot proc_slots[] = {
    {Py_tp_dealloc, proc_dealloc},
    {Py_tp_methods, proc_methods},
    {Py_tp_getset, proc_getset},
    {Py_tp_doc, "A forked child process tracked by a pidfd (made by _core.fork)."},
    {0, NULL},
};

static PyType_Spec proc_spec = {
    .name = "gilfree._core.Proc",
    .basicsize = sizeof(gf_proc_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = proc_slots,
};

/* A Python int as an exit status (wraps like the OS does). */
static int as_int(PyObject *v) {
    long c = PyLong_AsLong(v);
    if (c == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 1;
    }
    return (int)(c & 0xff);
}

/* Flush sys.stdout and sys.stderr, ignoring errors. */
static void flush_std(void) {
    const char *names[] = {"stdout", "stderr"};
    for (int i = 0; i < 2; i++) {
        PyObject *f = PySys_GetObject(names[i]); /* borrowed */
        if (f && f != Py_None) {
            PyObject *r = PyObject_CallMethod(f, "flush", NULL);
            if (r) Py_DECREF(r);
            else PyErr_Clear();
        }
    }
}

/* The exit code of a child whose main raised (exception set): SystemExit's code, else the
 * traceback is printed and the code is 1. */
static int child_exit_code_from_exception(void) {
    if (PyErr_ExceptionMatches(PyExc_SystemExit)) {
        PyObject *et, *exc, *tb;
        PyErr_Fetch(&et, &exc, &tb);
        PyErr_NormalizeException(&et, &exc, &tb);
        Py_XDECREF(et);
        Py_XDECREF(tb);
        if (!exc) return 1;
        PyObject *code = PyObject_GetAttrString(exc, "code");
        int c = 1;
        if (!code) PyErr_Clear();
        else if (code == Py_None) c = 0;
        else if (PyLong_Check(code)) c = as_int(code);
        else {
            PyObject_Print(code, stderr, Py_PRINT_RAW);
            fputc('\n', stderr);
            c = 1;
        }
        if (PyErr_Occurred()) PyErr_Clear();
        Py_XDECREF(code);
        Py_DECREF(exc);
        return c;
    }
    PyErr_Print();
    return 1;
}

static PyObject *mod_fork(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"child_main", "die_with_parent", NULL};
    PyObject *child_main;
    int die = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p:fork", kwlist, &child_main, &die))
        return NULL;
    if (!PyCallable_Check(child_main)) {
        PyErr_SetString(PyExc_TypeError, "fork: child_main must be callable");
        return NULL;
    }
    gf_state *st = PyModule_GetState(m);
    gf_proc_obj *o = PyObject_New(gf_proc_obj, st->Proc_type);
    if (!o) return NULL;
    o->p.pid = 0;
    o->p.pidfd = -1;
    o->p.reaped = 0;
    o->p.status = 0;
    o->closed = 0;
    pid_t parent = getpid();
    int r = gf_fork(st, &o->p, die ? GF_PROC_DIE_WITH_PARENT : 0);
    if (r == 0) return (PyObject *)o;
    if (r < 0 && getpid() == parent) { /* the fork failed */
        Py_DECREF(o);
        return NULL;
    }
    /* The child (r == 1; or r < 0 after fork, in the child: attaching failed). */
    int code;
    if (r < 0) {
        code = child_exit_code_from_exception();
    } else {
        PyObject *res = PyObject_CallNoArgs(child_main);
        if (!res) {
            code = child_exit_code_from_exception();
        } else {
            code = PyLong_Check(res) ? as_int(res) : (res == Py_None ? 0 : 1);
            if (PyErr_Occurred()) {
                PyErr_Clear();
                code = 1;
            }
            Py_DECREF(res);
        }
    }
    flush_std();
    gf_release_before_exit(st);
    _exit(code & 0xff);
}

static PyMethodDef proc_functions[] = {
    {"fork", (PyCFunction)(void (*)(void))mod_fork, METH_VARARGS | METH_KEYWORDS,
     "fork(child_main, die_with_parent=False) -> Proc. In the child, runs child_main() and "
     "_exit()s with its result; never returns there."},
    {NULL, NULL, 0, NULL},
};

/* Create the Proc type and add fork(). Result 0 or -1. */
int gf__proc_register(PyObject *m, gf_state *st) {
    st->Proc_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &proc_spec, NULL);
    if (!st->Proc_type) return -1;
    if (PyModule_AddType(m, st->Proc_type) < 0) return -1;
    return PyModule_AddFunctions(m, proc_functions);
}
