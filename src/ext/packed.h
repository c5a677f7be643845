/*
 * packed.h -- the packed-list codec (packed.c): a map chunk's items (parent -> worker) and
 * results (worker -> parent) travel without pickle when they are all exact ints that fit
 * int64, all exact str, or all exact bytes. Used by pool_submit.c (items), pool_worker.c
 * (items in, results out) and pool.c (the static unpack / count helpers).
 */
#ifndef GF_PACKED_H
#define GF_PACKED_H

#include "ext.h"

/* Pack items[0..n). Result: new bytes; NULL without an exception when the items do not
 * qualify; NULL with an exception on memory failure. */
PyObject *gf__pk_pack(PyObject *const *items, Py_ssize_t n);
/* A packed INT64 list of v[0..n). Result: new bytes, or NULL with MemoryError. */
PyObject *gf__pk_ints(const int64_t *v, Py_ssize_t n);
/* The packed list of items[0..n) (all exact str or all exact bytes) described as iovecs that
 * point into the objects (no copy). *headp: malloc'd header + table, *iovp: malloc'd iovecs
 * ([0] = the header): free both. The objects must stay alive until the iovecs are used.
 * Result: the iovec count; 0 when the items do not qualify; -1 with an exception. */
int gf__pk_gather(PyObject *const *items, Py_ssize_t n, char **headp, struct iovec **iovp);
/* The item count of a packed list, or -1 with an exception (malformed header). */
Py_ssize_t gf__pk_count(const char *p, size_t len);
/* Decode the packed list p[0..len) into dst[start:start+count] (replacing what is there).
 * Result: the count, or -1 with an exception (malformed; dst may be partly filled). */
Py_ssize_t gf__pk_fill(const char *p, size_t len, PyObject *dst, Py_ssize_t start);
/* A new list decoded from a packed list, or NULL with an exception. */
PyObject *gf__pk_list(const char *p, size_t len);

#endif /* GF_PACKED_H */
