/*
 * dict.c -- gilfree._core.SharedDict: a mapping in the arena (gf_dict), usable from every
 * process of the tree at once. Keys are encoded canonically (key.c), values through the
 * transport (value.c); the `.lock` object is clock.c's; container.h declares what list.c
 * shares.
 *
 * No shared lock is held while Python code runs: values are copied out, then decoded.
 */
#include "container.h"

#include <string.h>

/* ------------------------------------------------------------------ SharedDict */

typedef struct {
    GF_HANDLE_HEAD;
} gf_dict_obj;

#define OFF(self) (((gf_handle *)(self))->off)
#define GETBUF 512

static int dict_check_live(PyObject *self) {
    if (!OFF(self)) {
        PyErr_SetString(PyExc_ValueError, "SharedDict handle is not initialised");
        return -1;
    }
    return 0;
}

/* d[key] = value. Result 0, -1 with an exception. */
static int dict_set_item(gf_state *st, PyObject *self, PyObject *key, PyObject *val) {
    char kfast[GF_FAST_MAX + 16], vfast[GF_FAST_MAX + sizeof(gf_frame_hdr)];
    size_t kl = fast_key(key, kfast), vl;
    int rc;
    if (kl && (vl = fast_val(val, vfast)) != 0) {
        rc = gf_dict_try_set(st->arena, OFF(self), kfast, kl, vfast, vl);
        if (rc == GF_EAGAIN)
            GF_BLOCKING(rc, gf_dict_set(st->arena, OFF(self), kfast, kl, vfast, vl));
        if (rc < 0) return rc == GF_EINTR ? -1 : gf_raise_int(st, rc, "SharedDict: cannot store");
        return 0;
    }
    gf_kbuf k;
    if (gf_key_encode(st, key, &k) < 0) return -1;
    gf_venc v;
    if (gf_val_encode(st, val, &v) < 0) {
        gf_key_free(&k);
        return -1;
    }
    rc = gf_dict_try_set(st->arena, OFF(self), k.p, k.len, v.data, v.len);
    if (rc == GF_EAGAIN)
        GF_BLOCKING(rc, gf_dict_set(st->arena, OFF(self), k.p, k.len, v.data, v.len));
    gf_val_done(st, &v, rc >= 0);
    gf_key_free(&k);
    if (rc < 0) return rc == GF_EINTR ? -1 : gf_raise_int(st, rc, "SharedDict: cannot store");
    return 0;
}

/* d[key]. Result: new reference; NULL with KeyError (when `missing` is NULL) or another
 * exception; or a new reference to `missing` when the key is absent. */
static PyObject *dict_get_item(gf_state *st, PyObject *self, PyObject *key, PyObject *missing) {
    char kfast[GF_FAST_MAX + 16];
    size_t kl = fast_key(key, kfast);
    gf_kbuf k;
    if (kl) {
        k.p = kfast;
        k.len = kl;
    } else if (gf_key_encode(st, key, &k) < 0) {
        return NULL;
    }
    char tmp[GETBUF];
    gf_buf out = {0};
    int rc = gf_dict_try_get(st->arena, OFF(self), k.p, k.len, tmp, sizeof tmp, &out);
    if (rc == GF_EAGAIN)
        GF_BLOCKING(rc, gf_dict_get(st->arena, OFF(self), k.p, k.len, tmp, sizeof tmp, &out));
    if (!kl) gf_key_free(&k);
    if (rc == GF_ENOENT) {
        if (missing) return Py_NewRef(missing);
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    if (rc < 0) return rc == GF_EINTR ? NULL : gf_raise(st, rc, "SharedDict");
    PyObject *r = fast_decode(out.data, out.len);
    if (!r) r = gf_val_decode(st, out.data, out.len);
    gf_buf_release(&out);
    return r;
}

static PyObject *dict_subscript(PyObject *self, PyObject *key) {
    return dict_get_item(gf_cst(self), self, key, NULL);
}

static int dict_delete_key(gf_state *st, PyObject *self, PyObject *key) {
    gf_kbuf k;
    if (gf_key_encode(st, key, &k) < 0) return -1;
    int rc;
    GF_BLOCKING(rc, gf_dict_delete(st->arena, OFF(self), k.p, k.len));
    gf_key_free(&k);
    if (rc == GF_ENOENT) {
        PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    }
    if (rc < 0) return rc == GF_EINTR ? -1 : gf_raise_int(st, rc, "SharedDict");
    return 0;
}

static int dict_ass_subscript(PyObject *self, PyObject *key, PyObject *val) {
    gf_state *st = gf_cst(self);
    if (val == NULL) return dict_delete_key(st, self, key);
    return dict_set_item(st, self, key, val);
}

static Py_ssize_t dict_length(PyObject *self) {
    gf_state *st = gf_cst(self);
    int64_t n;
    GF_BLOCKING(n, gf_dict_len(st->arena, OFF(self)));
    if (n < 0) return n == GF_EINTR ? -1 : gf_raise_int(st, (int)n, "SharedDict");
    return (Py_ssize_t)n;
}

static int dict_contains(PyObject *self, PyObject *key) {
    gf_state *st = gf_cst(self);
    char kfast[GF_FAST_MAX + 16];
    size_t kl = fast_key(key, kfast);
    gf_kbuf k;
    if (kl) {
        k.p = kfast;
        k.len = kl;
    } else if (gf_key_encode(st, key, &k) < 0) {
        return -1; /* unhashable: TypeError, as for a dict */
    }
    int rc = gf_dict_try_contains(st->arena, OFF(self), k.p, k.len);
    if (rc == GF_EAGAIN) GF_BLOCKING(rc, gf_dict_contains(st->arena, OFF(self), k.p, k.len));
    if (!kl) gf_key_free(&k);
    if (rc < 0) return rc == GF_EINTR ? -1 : gf_raise_int(st, rc, "SharedDict");
    return rc;
}

/* A snapshot as a list of keys / values / (key, value) tuples (what: 1, 2, 3). */
static PyObject *dict_snapshot_list(PyObject *self, unsigned what) {
    gf_state *st = gf_cst(self);
    gf_snap s = {0};
    int rc;
    GF_BLOCKING(rc, gf_dict_snapshot(st->arena, OFF(self), what, &s));
    if (rc < 0) return rc == GF_EINTR ? NULL : gf_raise(st, rc, "SharedDict snapshot");
    PyObject *lst = PyList_New((Py_ssize_t)s.count);
    if (!lst) goto done;
    size_t pos = 0;
    gf_snap_item it;
    Py_ssize_t i = 0;
    while (i < (Py_ssize_t)s.count && gf_snap_next(&s, &pos, &it)) {
        PyObject *k = NULL, *v = NULL, *o;
        if (what & GF_SNAP_KEYS) {
            k = gf_key_decode(st, it.key, it.klen);
            if (!k) goto fail;
        }
        if (what & GF_SNAP_VALUES) {
            v = gf_val_decode(st, it.val, it.vlen);
            if (!v) {
                Py_XDECREF(k);
                goto fail;
            }
        }
        if (k && v) {
            o = PyTuple_Pack(2, k, v);
            Py_DECREF(k);
            Py_DECREF(v);
            if (!o) goto fail;
        } else {
            o = k ? k : v;
        }
        PyList_SET_ITEM(lst, i, o);
        i++;
    }
    if (i != (Py_ssize_t)s.count) {
        PyErr_SetString(st->ProtocolError, "SharedDict snapshot: count mismatch");
        goto fail;
    }
done:
    gf_snap_free(&s);
    return lst;
fail:
    Py_CLEAR(lst);
    goto done;
}

static PyObject *dict_keys(PyObject *self, PyObject *Py_UNUSED(a)) {
    return dict_snapshot_list(self, GF_SNAP_KEYS);
}
static PyObject *dict_values(PyObject *self, PyObject *Py_UNUSED(a)) {
    return dict_snapshot_list(self, GF_SNAP_VALUES);
}
static PyObject *dict_items(PyObject *self, PyObject *Py_UNUSED(a)) {
    return dict_snapshot_list(self, GF_SNAP_KEYS | GF_SNAP_VALUES);
}

static PyObject *dict_iter(PyObject *self) {
    PyObject *lst = dict_snapshot_list(self, GF_SNAP_KEYS);
    if (!lst) return NULL;
    PyObject *it = PyObject_GetIter(lst);
    Py_DECREF(lst);
    return it;
}

/* copy(): a plain dict. */
static PyObject *dict_copy(PyObject *self, PyObject *Py_UNUSED(a)) {
    PyObject *items = dict_snapshot_list(self, GF_SNAP_KEYS | GF_SNAP_VALUES);
    if (!items) return NULL;
    PyObject *d = PyDict_New();
    if (d) {
        Py_ssize_t n = PyList_GET_SIZE(items);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *t = PyList_GET_ITEM(items, i);
            if (PyDict_SetItem(d, PyTuple_GET_ITEM(t, 0), PyTuple_GET_ITEM(t, 1)) < 0) {
                Py_CLEAR(d);
                break;
            }
        }
    }
    Py_DECREF(items);
    return d;
}

static PyObject *dict_get(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!_PyArg_CheckPositional("get", nargs, 1, 2)) return NULL;
    return dict_get_item(gf_cst(self), self, args[0], nargs > 1 ? args[1] : Py_None);
}

static PyObject *dict_setdefault(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!_PyArg_CheckPositional("setdefault", nargs, 1, 2)) return NULL;
    gf_state *st = gf_cst(self);
    PyObject *dflt = nargs > 1 ? args[1] : Py_None;
    gf_kbuf k;
    if (gf_key_encode(st, args[0], &k) < 0) return NULL;
    gf_venc v;
    if (gf_val_encode(st, dflt, &v) < 0) {
        gf_key_free(&k);
        return NULL;
    }
    char tmp[GETBUF];
    gf_buf out = {0};
    int rc;
    GF_BLOCKING(rc, gf_dict_setdefault(st->arena, OFF(self), k.p, k.len, v.data, v.len, tmp,
                                       sizeof tmp, &out));
    gf_val_done(st, &v, rc == 1);
    gf_key_free(&k);
    if (rc < 0) return rc == GF_EINTR ? NULL : gf_raise(st, rc, "SharedDict.setdefault");
    if (rc == 1) {
        gf_buf_release(&out);
        return Py_NewRef(dflt);
    }
    PyObject *r = gf_val_decode(st, out.data, out.len);
    gf_buf_release(&out);
    return r;
}

static PyObject *dict_pop(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!_PyArg_CheckPositional("pop", nargs, 1, 2)) return NULL;
    gf_state *st = gf_cst(self);
    gf_kbuf k;
    if (gf_key_encode(st, args[0], &k) < 0) return NULL;
    char tmp[GETBUF];
    gf_buf out = {0};
    int rc;
    GF_BLOCKING(rc, gf_dict_pop(st->arena, OFF(self), k.p, k.len, tmp, sizeof tmp, &out));
    gf_key_free(&k);
    if (rc == GF_ENOENT) {
        if (nargs > 1) return Py_NewRef(args[1]);
        PyErr_SetObject(PyExc_KeyError, args[0]);
        return NULL;
    }
    if (rc < 0) return rc == GF_EINTR ? NULL : gf_raise(st, rc, "SharedDict.pop");
    PyObject *r = gf_val_decode(st, out.data, out.len);
    gf_buf_release(&out);
    return r;
}

static PyObject *dict_popitem(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_state *st = gf_cst(self);
    gf_buf kb = {0}, vb = {0};
    int rc;
    GF_BLOCKING(rc, gf_dict_popitem(st->arena, OFF(self), &kb, &vb));
    if (rc == GF_ENOENT) {
        PyErr_SetString(PyExc_KeyError, "popitem(): dictionary is empty");
        return NULL;
    }
    if (rc < 0) return rc == GF_EINTR ? NULL : gf_raise(st, rc, "SharedDict.popitem");
    PyObject *k = gf_key_decode(st, kb.data, kb.len);
    PyObject *v = k ? gf_val_decode(st, vb.data, vb.len) : NULL;
    gf_buf_release(&kb);
    gf_buf_release(&vb);
    PyObject *r = v ? PyTuple_Pack(2, k, v) : NULL;
    Py_XDECREF(k);
    Py_XDECREF(v);
    return r;
}

static PyObject *dict_clear(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_state *st = gf_cst(self);
    int rc;
    GF_BLOCKING(rc, gf_dict_clear(st->arena, OFF(self)));
    if (rc < 0) return rc == GF_EINTR ? NULL : gf_raise(st, rc, "SharedDict.clear");
    Py_RETURN_NONE;
}

/* Merge `src` (mapping with keys(), or iterable of pairs) into self. Result 0 or -1. */
static int dict_merge(gf_state *st, PyObject *self, PyObject *src) {
    PyObject *items;
    if (PyDict_Check(src)) {
        items = PyDict_Items(src);
    } else if (PyObject_HasAttrString(src, "keys")) {
        PyObject *keys = PyObject_CallMethod(src, "keys", NULL);
        if (!keys) return -1;
        PyObject *it = PyObject_GetIter(keys);
        Py_DECREF(keys);
        if (!it) return -1;
        PyObject *k;
        while ((k = PyIter_Next(it))) {
            PyObject *v = PyObject_GetItem(src, k);
            int r = v ? dict_set_item(st, self, k, v) : -1;
            Py_XDECREF(v);
            Py_DECREF(k);
            if (r < 0) {
                Py_DECREF(it);
                return -1;
            }
        }
        Py_DECREF(it);
        return PyErr_Occurred() ? -1 : 0;
    } else {
        items = PySequence_List(src);
    }
    if (!items) return -1;
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast(PyList_GET_ITEM(items, i),
                                         "cannot convert dictionary update sequence element");
        if (!pair) goto fail;
        if (PySequence_Fast_GET_SIZE(pair) != 2) {
            PyErr_Format(PyExc_ValueError,
                         "dictionary update sequence element #%zd has length %zd; 2 is required",
                         i, PySequence_Fast_GET_SIZE(pair));
            Py_DECREF(pair);
            goto fail;
        }
        int r = dict_set_item(st, self, PySequence_Fast_GET_ITEM(pair, 0),
                              PySequence_Fast_GET_ITEM(pair, 1));
        Py_DECREF(pair);
        if (r < 0) goto fail;
    }
    Py_DECREF(items);
    return 0;
fail:
    Py_DECREF(items);
    return -1;
}

static int dict_update_common(PyObject *self, PyObject *args, PyObject *kw, const char *name) {
    gf_state *st = gf_cst(self);
    PyObject *src = NULL;
    if (!PyArg_UnpackTuple(args, name, 0, 1, &src)) return -1;
    if (src && dict_merge(st, self, src) < 0) return -1;
    if (kw && PyDict_GET_SIZE(kw) && dict_merge(st, self, kw) < 0) return -1;
    return 0;
}

static PyObject *dict_update(PyObject *self, PyObject *args, PyObject *kw) {
    if (dict_update_common(self, args, kw, "update") < 0) return NULL;
    Py_RETURN_NONE;
}

/* update_item(key, fn, default=<missing>): atomically d[key] = fn(d[key]) (fn(default) when
 * absent; KeyError when absent without a default). fn runs with no lock held; if another
 * process changed the value meanwhile, fn runs again on the new value. Returns the stored
 * value. */
static PyObject *dict_update_item(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"key", "fn", "default", NULL};
    PyObject *key, *fn, *dflt = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:update_item", kwlist, &key, &fn, &dflt))
        return NULL;
    gf_state *st = gf_cst(self);
    gf_kbuf k;
    if (gf_key_encode(st, key, &k) < 0) return NULL;
    PyObject *res = NULL;
    for (;;) {
        char tmp[GETBUF];
        gf_buf out = {0};
        int rc;
        GF_BLOCKING(rc, gf_dict_get(st->arena, OFF(self), k.p, k.len, tmp, sizeof tmp, &out));
        PyObject *old;
        int absent = 0;
        if (rc == GF_ENOENT) {
            if (!dflt) {
                PyErr_SetObject(PyExc_KeyError, key);
                break;
            }
            absent = 1;
            old = Py_NewRef(dflt);
        } else if (rc < 0) {
            if (rc != GF_EINTR) gf_raise(st, rc, "SharedDict.update_item");
            break;
        } else {
            old = gf_val_decode(st, out.data, out.len);
            if (!old) {
                gf_buf_release(&out);
                break;
            }
        }
        PyObject *nv = PyObject_CallOneArg(fn, old);
        Py_DECREF(old);
        if (!nv) {
            gf_buf_release(&out);
            break;
        }
        gf_venc v;
        if (gf_val_encode(st, nv, &v) < 0) {
            Py_DECREF(nv);
            gf_buf_release(&out);
            break;
        }
        GF_BLOCKING(rc, gf_dict_cas(st->arena, OFF(self), k.p, k.len, absent ? NULL : out.data,
                                    absent ? 0 : out.len, v.data, v.len));
        gf_val_done(st, &v, rc == 1);
        gf_buf_release(&out);
        if (rc == 1) {
            res = nv;
            break;
        }
        Py_DECREF(nv);
        if (rc < 0) {
            if (rc != GF_EINTR) gf_raise(st, rc, "SharedDict.update_item");
            break;
        }
        /* rc == 0: someone else changed it; run fn again on the new value. */
    }
    gf_key_free(&k);
    return res;
}

static PyObject *dict_richcompare(PyObject *self, PyObject *other, int op) {
    if (op != Py_EQ && op != Py_NE) Py_RETURN_NOTIMPLEMENTED;
    PyObject *mine = dict_copy(self, NULL);
    if (!mine) return NULL;
    PyObject *theirs;
    if (PyDict_Check(other)) {
        theirs = Py_NewRef(other);
    } else if (PyObject_TypeCheck(other, Py_TYPE(self)) ||
               (PyObject_HasAttrString(other, "keys") && PyObject_HasAttrString(other, "items") &&
                PyMapping_Check(other))) {
        theirs = PyObject_CallFunctionObjArgs((PyObject *)&PyDict_Type, other, NULL);
        if (!theirs) {
            Py_DECREF(mine);
            return NULL;
        }
    } else {
        Py_DECREF(mine);
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *r = PyObject_RichCompare(mine, theirs, op);
    Py_DECREF(mine);
    Py_DECREF(theirs);
    return r;
}

static PyObject *dict_repr(PyObject *self) {
    PyObject *d = dict_copy(self, NULL);
    if (!d) return NULL;
    PyObject *r = PyObject_Repr(d);
    Py_DECREF(d);
    return r;
}

static int dict_create(gf_arena *a, gf_off *out) { return gf_dict_create(a, 0, out); }

static PyObject *dict_new(PyTypeObject *tp, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kw)) {
    return gf_handle_new_object(tp, dict_create, GF_OBJ_DICT, "SharedDict: cannot create");
}

static int dict_init(PyObject *self, PyObject *args, PyObject *kw) {
    if (dict_check_live(self) < 0) return -1;
    return dict_update_common(self, args, kw, "SharedDict");
}

static void dict_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    gf_handle_release(gf_state_for_dealloc(self, dict_dealloc), (gf_handle *)self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *dict_reduce(PyObject *self, PyObject *Py_UNUSED(a)) {
    return gf_handle_reduce(self, NULL);
}

static PyObject *dict_rebuild(PyObject *cls, PyObject *off) {
    return gf_handle_rebuild((PyTypeObject *)cls, off, GF_OBJ_DICT);
}

static PyObject *dict_get_lock(PyObject *self, void *Py_UNUSED(c)) {
    return gf_clock_new(gf_cst(self), self, 0);
}

static PyObject *dict_get_off(PyObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(OFF(self));
}

static PyObject *dict_check(PyObject *self, PyObject *Py_UNUSED(a)) {
    gf_state *st = gf_cst(self);
    int64_t n;
    GF_BLOCKING(n, gf_dict_check(st->arena, OFF(self)));
    if (n < 0) return n == GF_EINTR ? NULL : gf_raise(st, (int)n, "SharedDict check");
    return PyLong_FromLongLong(n);
}

static PyObject *dict_fromkeys(PyObject *cls, PyObject *args) {
    PyObject *it, *val = Py_None;
    if (!PyArg_UnpackTuple(args, "fromkeys", 1, 2, &it, &val)) return NULL;
    PyObject *d = PyObject_CallNoArgs(cls);
    if (!d) return NULL;
    PyObject *iter = PyObject_GetIter(it);
    if (!iter) goto fail;
    PyObject *k;
    gf_state *st = gf_state_of(d);
    while ((k = PyIter_Next(iter))) {
        int r = dict_set_item(st, d, k, val);
        Py_DECREF(k);
        if (r < 0) break;
    }
    Py_DECREF(iter);
    if (PyErr_Occurred()) goto fail;
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

static PyMethodDef dict_methods[] = {
    {"keys", dict_keys, METH_NOARGS, "A list of the keys (a consistent snapshot)."},
    {"values", dict_values, METH_NOARGS, "A list of the values (a consistent snapshot)."},
    {"items", dict_items, METH_NOARGS, "A list of (key, value) pairs (a consistent snapshot)."},
    {"get", (PyCFunction)(void (*)(void))dict_get, METH_FASTCALL, "get(key, default=None)"},
    {"setdefault", (PyCFunction)(void (*)(void))dict_setdefault, METH_FASTCALL,
     "setdefault(key, default=None): atomic insert-if-absent; returns the stored value."},
    {"pop", (PyCFunction)(void (*)(void))dict_pop, METH_FASTCALL, "pop(key[, default])"},
    {"popitem", dict_popitem, METH_NOARGS, "Remove and return some (key, value) pair."},
    {"clear", dict_clear, METH_NOARGS, "Remove everything."},
    {"copy", dict_copy, METH_NOARGS, "A plain dict with the current contents."},
    {"update", (PyCFunction)(void (*)(void))dict_update, METH_VARARGS | METH_KEYWORDS,
     "update([other], **kw)"},
    {"update_item", (PyCFunction)(void (*)(void))dict_update_item, METH_VARARGS | METH_KEYWORDS,
     "update_item(key, fn, default=<missing>): atomically d[key] = fn(d[key]) (fn(default) "
     "when absent) and return the new value. fn runs with no lock held and may run more than "
     "once (when another process changed the value meanwhile): keep it free of side effects."},
    {"fromkeys", dict_fromkeys, METH_VARARGS | METH_CLASS, "fromkeys(iterable, value=None)"},
    {"_check", dict_check, METH_NOARGS, "Check the shared structure; returns its length."},
    {"__reduce__", dict_reduce, METH_NOARGS, NULL},
    {"_rebuild", dict_rebuild, METH_O | METH_CLASS, "Rebuild a handle from a pickled offset."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef dict_getset[] = {
    {"lock", dict_get_lock, NULL, "The dict's recursive lock: `with d.lock:` groups operations.",
     NULL},
    {"_offset", dict_get_off, NULL, "Offset of the shared object in the arena.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot dict_slots[] = {
    {Py_tp_new, dict_new},
    {Py_tp_init, dict_init},
    {Py_tp_dealloc, dict_dealloc},
    {Py_tp_methods, dict_methods},
    {Py_tp_getset, dict_getset},
    {Py_tp_iter, dict_iter},
    {Py_tp_richcompare, dict_richcompare},
    {Py_tp_repr, dict_repr},
    {Py_tp_hash, PyObject_HashNotImplemented},
    {Py_mp_length, dict_length},
    {Py_mp_subscript, dict_subscript},
    {Py_mp_ass_subscript, dict_ass_subscript},
    {Py_sq_contains, dict_contains},
    {Py_tp_doc,
     "SharedDict([mapping or iterable], **kw): a dict in shared memory, seen and changed by "
     "every process of the tree. Keys: None, bool, int, float, str, bytes and tuples / "
     "frozensets of these compare as in Python (1 == 1.0 == True); other hashable keys are "
     "equal when their pickles are equal. Values are pickled (copied in and out)."},
    {0, NULL},
};

static PyType_Spec dict_spec = {
    .name = "gilfree._core.SharedDict",
    .basicsize = sizeof(gf_dict_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_MAPPING,
    .slots = dict_slots,
};

/* Create the SharedDict type (after ContainerLock: clock.c). Result 0 or -1. */
int gf__dict_register(PyObject *m, gf_state *st) {
    st->Dict_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &dict_spec, NULL);
    if (!st->Dict_type) return -1;
    return PyModule_AddType(m, st->Dict_type);
}
