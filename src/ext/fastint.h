/*
 * fastint.h -- making and refilling Python ints on the pool's per-item paths (a map chunk's
 * results decoded in the parent, range items made in the worker), where the generic calls
 * (PyLong_FromLongLong, a range iterator's next) are most of the cost.
 *
 * On CPython 3.11 with 30-bit digits (GF_FASTINT) an int of one or two digits is allocated
 * and filled here (the layout of Include/cpython/longintrepr.h: PyObject_VAR_HEAD, ob_size =
 * sign x digit count, then the digits), and an int that nobody else holds (reference count 1)
 * is given a new value in place when it has room for it. Every other version, or a value
 * outside those cases, takes the public API (PyLong_FromLongLong; no reuse). Small ints
 * (-5..256) always come from the interpreter's cache.
 */
#ifndef GF_FASTINT_H
#define GF_FASTINT_H

#include "ext.h"

#include <stdint.h>

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && PyLong_SHIFT == 30 && \
    !defined(Py_LIMITED_API) && !defined(Py_GIL_DISABLED)
#define GF_FASTINT 1
#define GF__DMASK ((uint64_t)((1u << 30) - 1))

/* Digits (1 or 2) needed for |v|, or 0 when v is not for the fast path (small or > 2^60). */
static inline int gf__int_ndigits(int64_t v, uint64_t *mag) {
    if (v >= -5 && v <= 256) return 0;
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    *mag = m;
    return m < ((uint64_t)1 << 30) ? 1 : m < ((uint64_t)1 << 60) ? 2 : 0;
}

static inline void gf__int_fill(PyLongObject *o, int64_t v, uint64_t m, int nd) {
    o->ob_digit[0] = (digit)(m & GF__DMASK);
    if (nd == 2) o->ob_digit[1] = (digit)(m >> 30);
    Py_SET_SIZE(o, v < 0 ? -nd : nd);
}
#endif

/* A new int of value v. New reference, or NULL with MemoryError. */
static inline PyObject *gf__int_new(int64_t v) {
#ifdef GF_FASTINT
    uint64_t m;
    int nd = gf__int_ndigits(v, &m);
    if (nd) {
        PyLongObject *o =
            PyObject_Malloc(offsetof(PyLongObject, ob_digit) + (size_t)nd * sizeof(digit));
        if (!o) return PyErr_NoMemory();
        PyObject_InitVar((PyVarObject *)o, &PyLong_Type, nd);
        gf__int_fill(o, v, m, nd);
        return (PyObject *)o;
    }
#endif
    return PyLong_FromLongLong((long long)v);
}

/* Give *slot (an exact int held only by the caller, or NULL) the value v: in place when it
 * can, else a new int replaces it (the old one released). Result 0, or -1 with MemoryError
 * (*slot is then NULL). */
static inline int gf__int_set(PyObject **slot, int64_t v) {
#ifdef GF_FASTINT
    PyObject *o = *slot;
    uint64_t m;
    int nd;
    if (o && Py_REFCNT(o) == 1 && Py_IS_TYPE(o, &PyLong_Type) && (nd = gf__int_ndigits(v, &m)) &&
        nd <= (Py_SIZE(o) < 0 ? -Py_SIZE(o) : Py_SIZE(o))) {
        gf__int_fill((PyLongObject *)o, v, m, nd);
        return 0;
    }
#endif
    Py_XSETREF(*slot, gf__int_new(v));
    return *slot ? 0 : -1;
}

#endif /* GF_FASTINT_H */
