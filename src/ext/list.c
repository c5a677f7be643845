/*
 * list.c -- gilfree._core.SharedList: a list in the arena (gf_list), usable from every process
 * of the tree at once. Items are stored through the transport's encoder (container.h) and
 * copied out on every read.
 *
 * Single operations (l[i], l[i] = x, append, extend, insert, pop, del, slices with step 1)
 * are atomic in the core. Operations made of several steps (remove, reverse, sort, extended
 * slices, *=) run under the list's recursive lock (`l.lock`), which other threads and
 * processes also wait for; they may run Python code (==, sort keys) while holding it.
 * index / count / `in` compare with Python's == over a consistent snapshot.
 */
#include "container.h"

#include <string.h>

typedef struct {
    GF_HANDLE_HEAD;
} gf_list_obj;

#define OFF(self) (((gf_handle *)(self))->off)
#define GETBUF 512

/* An error from the core (NULL); GF_EINTR leaves the signal handler's exception. */
static PyObject *lerr(gf_state *st, int64_t rc, const char *what) {
    if (rc == GF_EINTR) return NULL;
    return gf_raise(st, (int)rc, what);
}

static int list_lock(gf_state *st, PyObject *self) {
    int rc;
    GF_BLOCKING(rc, gf_list_lock(st->arena, OFF(self), GF_FOREVER));
    if (rc == 0 || rc == GF_EOWNERDEAD) return 0;
    lerr(st, rc, "SharedList lock");
    return -1;
}

static void list_unlock(gf_state *st, PyObject *self) {
    gf_list_unlock(st->arena, OFF(self));
}

/* Items [start, stop) as a Python list (stop GF_LIST_END: to the end). */
static PyObject *list_slice_list(gf_state *st, PyObject *self, int64_t start, int64_t stop) {
    gf_snap s = {0};
    int rc;
    GF_BLOCKING(rc, gf_list_slice(st->arena, OFF(self), start, stop, &s));
    if (rc < 0) return lerr(st, rc, "SharedList");
    PyObject *lst = PyList_New((Py_ssize_t)s.count);
    if (!lst) goto done;
    size_t pos = 0;
    gf_snap_item it;
    Py_ssize_t i = 0;
    while (i < (Py_ssize_t)s.count && gf_snap_next(&s, &pos, &it)) {
        PyObject *v = gf_val_decode(st, it.val, it.vlen);
        if (!v) {
            Py_CLEAR(lst);
            goto done;
        }
        PyList_SET_ITEM(lst, i, v);
        i++;
    }
    if (i != (Py_ssize_t)s.count) {
        Py_CLEAR(lst);
        PyErr_SetString(st->ProtocolError, "SharedList snapshot: count mismatch");
    }
done:
    gf_snap_free(&s);
    return lst;
}

/* Encode every item of `seq` (a list or tuple). Result 0 and *out (n entries; iovecs point
 * into the encodings), or -1. Free with encs_done. */
typedef struct {
    gf_venc *v;
    struct iovec *iov;
    Py_ssize_t n;
} gf_encs;

static void encs_done(gf_state *st, gf_encs *e, int stored) {
    for (Py_ssize_t i = 0; i < e->n; i++) gf_val_done(st, &e->v[i], stored);
    PyMem_Free(e->v);
    PyMem_Free(e->iov);
    e->v = NULL;
    e->iov = NULL;
    e->n = 0;
}

static int encs_make(gf_state *st, PyObject *seq, gf_encs *e) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    e->n = 0;
    e->v = PyMem_Calloc((size_t)n + 1, sizeof *e->v);
    e->iov = PyMem_Calloc((size_t)n + 1, sizeof *e->iov);
    if (!e->v || !e->iov) {
        PyMem_Free(e->v);
        PyMem_Free(e->iov);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (gf_val_encode(st, items[i], &e->v[i]) < 0) {
            encs_done(st, e, 0);
            return -1;
        }
        e->n = i + 1;
    }
    /* Fix the pointers now that no more entries move (small buffers live in the entries). */
    for (Py_ssize_t i = 0; i < n; i++) {
        e->iov[i].iov_base = e->v[i].data;
        e->iov[i].iov_len = e->v[i].len;
    }
    return 0;
}

/* l[start:stop] = seq (step 1). Result 0 or -1. */
static int list_splice(gf_state *st, PyObject *self, int64_t start, int64_t stop, PyObject *src) {
    PyObject *seq = src ? PySequence_Fast(src, "can only assign an iterable") : NULL;
    if (src && !seq) return -1;
    gf_encs e = {0};
    if (seq && encs_make(st, seq, &e) < 0) {
        Py_DECREF(seq);
        return -1;
    }
    int rc;
    GF_BLOCKING(rc, gf_list_splice(st->arena, OFF(self), start, stop, e.iov, (size_t)e.n));
    encs_done(st, &e, rc == 0);
    Py_XDECREF(seq);
    if (rc < 0) {
        lerr(st, rc, "SharedList: cannot store");
        return -1;
    }
    return 0;
}

static Py_ssize_t list_length(PyObject *self) {
    gf_state *st = gf_cst(self);
    int64_t n = gf_list_len(st->arena, OFF(self));
    if (n < 0) {
        lerr(st, n, "SharedList");
        return -1;
    }
    return (Py_ssize_t)n;
}

static PyObject *list_item(gf_state *st, PyObject *self, int64_t i) {
    char tmp[GETBUF];
    gf_buf out = {0};
    int rc;
    GF_BLOCKING(rc, gf_list_get(st->arena, OFF(self), i, tmp, sizeof tmp, &out));
    if (rc == GF_ENOENT) {
        PyErr_SetString(PyExc_IndexError, "list index out of range");
        return NULL;
    }
    if (rc < 0) return lerr(st, rc, "SharedList");
    PyObject *r = fast_decode(out.data, out.len);
    if (!r) r = gf_val_decode(st, out.data, out.len);
    gf_buf_release(&out);
    return r;
}

static int index_arg(PyObject *idx, int64_t *out) {
    Py_ssize_t i = PyNumber_AsSsize_t(idx, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred()) return -1;
    *out = (int64_t)i;
    return 0;
}

static PyObject *list_subscript(PyObject *self, PyObject *key) {
    gf_state *st = gf_cst(self);
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) return NULL;
        if (step == 1) {
            int64_t e = stop >= PY_SSIZE_T_MAX ? GF_LIST_END : (int64_t)stop;
            return list_slice_list(st, self, (int64_t)start, e);
        }
        PyObject *all = list_slice_list(st, self, 0, GF_LIST_END);
        if (!all) return NULL;
        PyObject *r = PyObject_GetItem(all, key);
        Py_DECREF(all);
        return r;
    }
    if (!PyIndex_Check(key)) {
        PyErr_Format(PyExc_TypeError, "list indices must be integers or slices, not %.200s",
                     Py_TYPE(key)->tp_name);
        return NULL;
    }
    int64_t i;
    if (index_arg(key, &i) < 0) return NULL;
    return list_item(st, self, i);
}

/* Under the lock: new = f(snapshot) computed by Python, then replace everything. */
static int list_rewrite(gf_state *st, PyObject *self, PyObject *(*fn)(PyObject *, void *),
                        void *ctx) {
    if (list_lock(st, self) < 0) return -1;
    int r = -1;
    PyObject *all = list_slice_list(st, self, 0, GF_LIST_END);
    if (all) {
        PyObject *nl = fn(all, ctx);
        if (nl) {
            r = list_splice(st, self, 0, GF_LIST_END, nl);
            Py_DECREF(nl);
        }
        Py_DECREF(all);
    }
    list_unlock(st, self);
    return r;
}

typedef struct {
    PyObject *key;
    PyObject *val;
} setslice_ctx;

static PyObject *setslice_fn(PyObject *all, void *c) {
    setslice_ctx *x = c;
    if (PyObject_SetItem(all, x->key, x->val) < 0) return NULL;
    return Py_NewRef(all);
}

static PyObject *delslice_fn(PyObject *all, void *c) {
    setslice_ctx *x = c;
    if (PyObject_DelItem(all, x->key) < 0) return NULL;
    return Py_NewRef(all);
}

static int list_ass_subscript(PyObject *self, PyObject *key, PyObject *val) {
    gf_state *st = gf_cst(self);
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) return -1;
        if (step == 1) {
            int64_t e = stop >= PY_SSIZE_T_MAX ? GF_LIST_END : (int64_t)stop;
            /* like list: l[a:b] = it takes a snapshot of `it` first (may be l itself) */
            PyObject *src = NULL;
            if (val) {
                src = PyObject_TypeCheck(val, Py_TYPE(self))
                          ? list_slice_list(st, self, 0, GF_LIST_END)
                          : PySequence_List(val);
                if (!src) return -1;
            }
            int r = list_splice(st, self, (int64_t)start, e, src);
            Py_XDECREF(src);
            return r;
        }
        setslice_ctx x = {key, NULL};
        if (val) {
            x.val = PySequence_List(val);
            if (!x.val) return -1;
        }
        int r = list_rewrite(st, self, val ? setslice_fn : delslice_fn, &x);
        Py_XDECREF(x.val);
        return r;
    }
    if (!PyIndex_Check(key)) {
        PyErr_Format(PyExc_TypeError, "list indices must be integers or slices, not %.200s",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    int64_t i;
    if (index_arg(key, &i) < 0) return -1;
    int rc;
    if (!val) {
        GF_BLOCKING(rc, gf_list_delete(st->arena, OFF(self), i));
        if (rc == GF_ENOENT) {
            PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
            return -1;
        }
        if (rc < 0) return lerr(st, rc, "SharedList"), -1;
        return 0;
    }
    gf_venc v;
    if (gf_val_encode(st, val, &v) < 0) return -1;
    GF_BLOCKING(rc, gf_list_set(st->arena, OFF(self), i, v.data, v.len));
    gf_val_done(st, &v, rc == 0);
    if (rc == GF_ENOENT) {
        PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
        return -1;
    }
    if (rc < 0) return lerr(st, rc, "SharedList: cannot store"), -1;
    return 0;
}

static PyObject *list_append(PyObject *self, PyObject *obj) {
    gf_state *st = gf_cst(self);
    char vfast[GF_FAST_MAX + sizeof(gf_frame_hdr)];
    size_t vl = fast_val(obj, vfast);
    int rc;
    if (vl) { /* a scalar: encoded on the stack, nothing to give back */
        GF_BLOCKING(rc, gf_list_append(st->arena, OFF(self), vfast, vl));
        if (rc < 0) return lerr(st, rc, "SharedList.append");
        Py_RETURN_NONE;
    }
    gf_venc v;
    if (gf_val_encode(st, obj, &v) < 0) return NULL;
    GF_BLOCKING(rc, gf_list_append(st->arena, OFF(self), v.data, v.len));
    gf_val_done(st, &v, rc == 0);
    if (rc < 0) return lerr(st, rc, "SharedList.append");
    Py_RETURN_NONE;
}

static PyObject *list_extend(PyObject *self, PyObject *it) {
    gf_state *st = gf_cst(self);
    PyObject *src = PyObject_TypeCheck(it, Py_TYPE(self))
                        ? list_slice_list(st, self == it ? self : it, 0, GF_LIST_END)
                        : PySequence_List(it);
    if (!src) return NULL;
    int r = list_splice(st, self, GF_LIST_END, GF_LIST_END, src);
    Py_DECREF(src);
    if (r < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *list_insert(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!_PyArg_CheckPositional("insert", nargs, 2, 2)) return NULL;
    gf_state *st = gf_cst(self);
    Py_ssize_t i = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
    if (i == -1 && PyErr_Occurred()) return NULL;
    gf_venc v;
    if (gf_val_encode(st, args[1], &v) < 0) return NULL;
    int rc;
    GF_BLOCKING(rc, gf_list_insert(st->arena, OFF(self), (int64_t)i, v.data, v.len));
    gf_val_done(st, &v, rc == 0);
    if (rc < 0) return lerr(st, rc, "SharedList.insert");
    Py_RETURN_NONE;
}

static PyObject *list_pop(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!_PyArg_CheckPositional("pop", nargs, 0, 1)) return NULL;
    gf_state *st = gf_cst(self);
    Py_ssize_t i = -1;
    if (nargs) {
        i = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
        if (i == -1 && PyErr_Occurred()) return NULL;
    }
    char tmp[GETBUF];
    gf_buf out = {0};
    int rc;
    GF_BLOCKING(rc, gf_list_pop(st->arena, OFF(self), (int64_t)i, tmp, sizeof tmp, &out));
    if (rc == GF_ENOENT) {
        PyErr_SetString(PyExc_IndexError, "pop from empty list or index out of range");
        return NULL;
    }
    if (rc < 0) return lerr(st, rc, "SharedList.pop");
    PyObject *r = gf_val_decode(st, out.data, out.len);
    gf_buf_release(&out);
    return r;
}

/* Index of the first item == x in all[start:stop], -1 if none (-2 on error). */
static Py_ssize_t find_in(PyObject *all, PyObject *x, Py_ssize_t start, Py_ssize_t stop) {
    Py_ssize_t n = PyList_GET_SIZE(all);
    if (start < 0) start = start + n < 0 ? 0 : start + n;
    if (stop < 0) stop = stop + n < 0 ? 0 : stop + n;
    if (stop > n) stop = n;
    for (Py_ssize_t i = start; i < stop && i < PyList_GET_SIZE(all); i++) {
        int r = PyObject_RichCompareBool(PyList_GET_ITEM(all, i), x, Py_EQ);
        if (r < 0) return -2;
        if (r) return i;
    }
    return -1;
}

static PyObject *list_remove(PyObject *self, PyObject *x) {
    gf_state *st = gf_cst(self);
    if (list_lock(st, self) < 0) return NULL;
    PyObject *res = NULL;
    PyObject *all = list_slice_list(st, self, 0, GF_LIST_END);
    if (all) {
        Py_ssize_t i = find_in(all, x, 0, PY_SSIZE_T_MAX);
        if (i == -1) {
            PyErr_SetString(PyExc_ValueError, "list.remove(x): x not in list");
        } else if (i >= 0) {
            int rc;
            GF_BLOCKING(rc, gf_list_delete(st->arena, OFF(self), (int64_t)i));
            if (rc < 0)
                lerr(st, rc, "SharedList.remove");
            else
                res = Py_NewRef(Py_None);
        }
        Py_DECREF(all);
    }
    list_unlock(st, self);
    return res;
}

static PyObject *list_index(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!_PyArg_CheckPositional("index", nargs, 1, 3)) return NULL;
    Py_ssize_t start = 0, stop = PY_SSIZE_T_MAX;
    if (nargs > 1 && !_PyEval_SliceIndexNotNone(args[1], &start)) return NULL;
    if (nargs > 2 && !_PyEval_SliceIndexNotNone(args[2], &stop)) return NULL;
    PyObject *all = list_slice_list(gf_state_of(self), self, 0, GF_LIST_END);
    if (!all) return NULL;
    Py_ssize_t i = find_in(all, args[0], start, stop);
    Py_DECREF(all);
    if (i == -2) return NULL;
    if (i == -1) {
        PyErr_SetString(PyExc_ValueError, "list.index(x): x not in list");
        return NULL;
    }
    return PyLong_FromSsize_t(i);
}

static PyObject *list_count(PyObject *self, PyObject *x) {
    PyObject *all = list_slice_list(gf_state_of(self), self, 0, GF_LIST_END);
    if (!all) return NULL;
    Py_ssize_t c = 0, n = PyList_GET_SIZE(all);
    for (Py_ssize_t i = 0; i < n; i++) {
        int r = PyObject_RichCompareBool(PyList_GET_ITEM(all, i), x, Py_EQ);
        if (r < 0) {
            Py_DECREF(all);
            return NULL;
        }
        c += r;
    }
    Py_DECREF(all);
    return PyLong_FromSsize_t(c);
}

static int list_contains(PyObject *self, PyObject *x) {
    PyObject *all = list_slice_list(gf_state_of(self), self, 0, GF_LIST_END);
    if (!all) return -1;
    Py_ssize_t i = find_in(all, x, 0, PY_SSIZE_T_MAX);
    Py_DECREF(all);
    return i == -2 ? -1 : i >= 0;
}

static PyObject *list_clear(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_state *st = gf_cst(self);
    int rc;
    GF_BLOCKING(rc, gf_list_clear(st->arena, OFF(self)));
    if (rc < 0) return lerr(st, rc, "SharedList.clear");
    Py_RETURN_NONE;
}

static PyObject *reverse_fn(PyObject *all, void *Py_UNUSED(c)) {
    if (PyList_Reverse(all) < 0) return NULL;
    return Py_NewRef(all);
}

static PyObject *list_reverse(PyObject *self, PyObject *Py_UNUSED(a)) {
    if (list_rewrite(gf_state_of(self), self, reverse_fn, NULL) < 0) return NULL;
    Py_RETURN_NONE;
}

typedef struct {
    PyObject *args, *kw;
} sort_ctx;

static PyObject *sort_fn(PyObject *all, void *c) {
    sort_ctx *x = c;
    PyObject *m = PyObject_GetAttrString(all, "sort");
    if (!m) return NULL;
    PyObject *r = PyObject_Call(m, x->args, x->kw);
    Py_DECREF(m);
    if (!r) return NULL;
    Py_DECREF(r);
    return Py_NewRef(all);
}

static PyObject *list_sort(PyObject *self, PyObject *args, PyObject *kw) {
    sort_ctx x = {args, kw};
    if (list_rewrite(gf_state_of(self), self, sort_fn, &x) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *imul_fn(PyObject *all, void *c) {
    return PySequence_InPlaceRepeat(all, *(Py_ssize_t *)c);
}

static PyObject *list_inplace_repeat(PyObject *self, Py_ssize_t n) {
    if (list_rewrite(gf_state_of(self), self, imul_fn, &n) < 0) return NULL;
    return Py_NewRef(self);
}

static PyObject *list_inplace_concat(PyObject *self, PyObject *other) {
    PyObject *r = list_extend(self, other);
    if (!r) return NULL;
    Py_DECREF(r);
    return Py_NewRef(self);
}

static PyObject *list_copy(PyObject *self, PyObject *Py_UNUSED(a)) {
    return list_slice_list(gf_state_of(self), self, 0, GF_LIST_END);
}

static PyObject *list_concat(PyObject *self, PyObject *other) {
    PyObject *all = list_copy(self, NULL);
    if (!all) return NULL;
    PyObject *o = PyObject_TypeCheck(other, Py_TYPE(self)) ? list_copy(other, NULL)
                                                           : Py_NewRef(other);
    PyObject *r = o ? PyNumber_Add(all, o) : NULL;
    Py_XDECREF(o);
    Py_DECREF(all);
    return r;
}

static PyObject *list_repeat(PyObject *self, Py_ssize_t n) {
    PyObject *all = list_copy(self, NULL);
    if (!all) return NULL;
    PyObject *r = PySequence_Repeat(all, n);
    Py_DECREF(all);
    return r;
}

static PyObject *list_iter(PyObject *self) {
    PyObject *all = list_copy(self, NULL);
    if (!all) return NULL;
    PyObject *it = PyObject_GetIter(all);
    Py_DECREF(all);
    return it;
}

static PyObject *list_reversed(PyObject *self, PyObject *Py_UNUSED(a)) {
    PyObject *all = list_copy(self, NULL);
    if (!all || PyList_Reverse(all) < 0) {
        Py_XDECREF(all);
        return NULL;
    }
    PyObject *it = PyObject_GetIter(all);
    Py_DECREF(all);
    return it;
}

static PyObject *list_richcompare(PyObject *self, PyObject *other, int op) {
    PyObject *o;
    if (PyList_Check(other))
        o = Py_NewRef(other);
    else if (PyObject_TypeCheck(other, Py_TYPE(self)))
        o = list_copy(other, NULL);
    else
        Py_RETURN_NOTIMPLEMENTED;
    if (!o) return NULL;
    PyObject *mine = list_copy(self, NULL);
    PyObject *r = mine ? PyObject_RichCompare(mine, o, op) : NULL;
    Py_XDECREF(mine);
    Py_DECREF(o);
    return r;
}

static PyObject *list_repr(PyObject *self) {
    PyObject *all = list_copy(self, NULL);
    if (!all) return NULL;
    PyObject *r = PyObject_Repr(all);
    Py_DECREF(all);
    return r;
}

static int list_create(gf_arena *a, gf_off *out) { return gf_list_create(a, 0, out); }

static PyObject *list_new(PyTypeObject *tp, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kw)) {
    return gf_handle_new_object(tp, list_create, GF_OBJ_LIST, "SharedList: cannot create");
}

static int list_init(PyObject *self, PyObject *args, PyObject *kw) {
    PyObject *it = NULL;
    if (kw && PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "SharedList() takes no keyword arguments");
        return -1;
    }
    if (!PyArg_UnpackTuple(args, "SharedList", 0, 1, &it)) return -1;
    if (!OFF(self)) {
        PyErr_SetString(PyExc_ValueError, "SharedList handle is not initialised");
        return -1;
    }
    if (!it) return 0;
    PyObject *r = list_extend(self, it);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

static void list_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    gf_handle_release(gf_state_for_dealloc(self, list_dealloc), (gf_handle *)self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *list_reduce(PyObject *self, PyObject *Py_UNUSED(a)) {
    return gf_handle_reduce(self, NULL);
}

static PyObject *list_rebuild(PyObject *cls, PyObject *off) {
    return gf_handle_rebuild((PyTypeObject *)cls, off, GF_OBJ_LIST);
}

static PyObject *list_get_lock(PyObject *self, void *Py_UNUSED(c)) {
    return gf_clock_new(gf_state_of(self), self, 1);
}

static PyObject *list_get_off(PyObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(OFF(self));
}

static PyObject *list_check(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_state *st = gf_cst(self);
    int64_t n;
    GF_BLOCKING(n, gf_list_check(st->arena, OFF(self)));
    if (n < 0) return lerr(st, n, "SharedList check");
    return PyLong_FromLongLong(n);
}

static PyMethodDef list_methods[] = {
    {"append", list_append, METH_O, "append(x)"},
    {"extend", list_extend, METH_O, "extend(iterable) (atomic: all items appear at once)"},
    {"insert", (PyCFunction)(void (*)(void))list_insert, METH_FASTCALL, "insert(i, x)"},
    {"pop", (PyCFunction)(void (*)(void))list_pop, METH_FASTCALL, "pop(i=-1)"},
    {"remove", list_remove, METH_O, "remove(x): remove the first item == x"},
    {"index", (PyCFunction)(void (*)(void))list_index, METH_FASTCALL,
     "index(x[, start[, stop]])"},
    {"count", list_count, METH_O, "count(x)"},
    {"clear", list_clear, METH_NOARGS, "Remove every item."},
    {"reverse", list_reverse, METH_NOARGS, "Reverse in place (under the list's lock)."},
    {"sort", (PyCFunction)(void (*)(void))list_sort, METH_VARARGS | METH_KEYWORDS,
     "sort(*, key=None, reverse=False) in place (under the list's lock)."},
    {"copy", list_copy, METH_NOARGS, "A plain list with the current items."},
    {"__reversed__", list_reversed, METH_NOARGS, NULL},
    {"_check", list_check, METH_NOARGS, "Check the shared structure; returns its length."},
    {"__reduce__", list_reduce, METH_NOARGS, NULL},
    {"_rebuild", list_rebuild, METH_O | METH_CLASS, "Rebuild a handle from a pickled offset."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef list_getset[] = {
    {"lock", list_get_lock, NULL, "The list's recursive lock: `with l.lock:` groups operations.",
     NULL},
    {"_offset", list_get_off, NULL, "Offset of the shared object in the arena.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot list_slots[] = {
    {Py_tp_new, list_new},
    {Py_tp_init, list_init},
    {Py_tp_dealloc, list_dealloc},
    {Py_tp_methods, list_methods},
    {Py_tp_getset, list_getset},
    {Py_tp_iter, list_iter},
    {Py_tp_richcompare, list_richcompare},
    {Py_tp_repr, list_repr},
    {Py_tp_hash, PyObject_HashNotImplemented},
    {Py_mp_length, list_length},
    {Py_mp_subscript, list_subscript},
    {Py_mp_ass_subscript, list_ass_subscript},
    {Py_sq_length, list_length},
    {Py_sq_contains, list_contains},
    {Py_sq_concat, list_concat},
    {Py_sq_repeat, list_repeat},
    {Py_sq_inplace_concat, list_inplace_concat},
    {Py_sq_inplace_repeat, list_inplace_repeat},
    {Py_tp_doc,
     "SharedList([iterable]): a list in shared memory, seen and changed by every process of "
     "the tree. Items are pickled (copied in and out)."},
    {0, NULL},
};

static PyType_Spec list_spec = {
    .name = "gilfree._core.SharedList",
    .basicsize = sizeof(gf_list_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_SEQUENCE,
    .slots = list_slots,
};

/* Create the SharedList type. Result 0 or -1. */
int gf__list_register(PyObject *m, gf_state *st) {
    st->List_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &list_spec, NULL);
    if (!st->List_type) return -1;
    return PyModule_AddType(m, st->List_type);
}
