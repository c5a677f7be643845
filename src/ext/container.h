/*
 * container.h -- helpers shared by the SharedDict (dict.c) and SharedList (list.c) types:
 * value storage through the transport's encoder, canonical keys, the `.lock` object.
 */
#ifndef GF_CONTAINER_H
#define GF_CONTAINER_H

#include "transport.h"

/* A value encoded for storage in a shared container: one flat byte string
 *   [gf_frame_hdr][body][nbufs x gf_frame_buf (block = 0)][buffer bytes ...]
 * i.e. a transport frame whose out-of-band buffers follow it inline (a container entry must
 * own all its bytes: the core frees entries without calling back into Python). */
typedef struct gf_venc {
    gf_enc e;          /* the transport's encoding (keeps handle references until done) */
    char *data;        /* the flat bytes (small or heap) */
    size_t len;
    char *heap;
    char small[256];
} gf_venc;

/* Encode `obj` for storage. Result 0, or -1 with an exception set (unpicklable: the pickling
 * error; MemoryError). Always call gf_val_done afterwards when it succeeded. */
int gf_val_encode(gf_state *st, PyObject *obj, gf_venc *v);
/* Release an encoding; `stored` 0 gives back the references taken for a receiver. */
void gf_val_done(gf_state *st, gf_venc *v, int stored);
/* Decode a stored value. Result: new reference, or NULL with an exception set. */
PyObject *gf_val_decode(gf_state *st, const void *data, size_t len);

/* Canonical key bytes (equal keys -> equal bytes in every process). */
typedef struct gf_kbuf {
    char *p;
    size_t len, cap;
    char small[192];
} gf_kbuf;
/* Encode `key`. Result 0 or -1 with an exception set (TypeError: unhashable). Free with
 * gf_key_free. */
int gf_key_encode(gf_state *st, PyObject *key, gf_kbuf *b);
void gf_key_free(gf_kbuf *b);
/* Decode canonical key bytes. New reference or NULL (ProtocolError on malformed bytes). */
PyObject *gf_key_decode(gf_state *st, const void *p, size_t n);

/* `.lock` of a container: kind 0 = dict, 1 = list. New reference or NULL. */
PyObject *gf_clock_new(gf_state *st, PyObject *owner, int kind);

/* The module state from a dealloc: walks tp_base (not the MRO, which interpreter shutdown may
 * already have cleared on a Python subclass) up to the type whose tp_dealloc is `dealloc`. */
static inline gf_state *gf_state_for_dealloc(PyObject *self, destructor dealloc) {
    PyTypeObject *tp = Py_TYPE(self);
    while (tp && tp->tp_dealloc != dealloc) tp = tp->tp_base;
    if (!tp || !(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) return NULL;
    PyObject *m = PyType_GetModule(tp);
    if (!m) {
        PyErr_Clear();
        return NULL;
    }
    return (gf_state *)PyModule_GetState(m);
}

int gf_dict_type_init(PyObject *m, gf_state *st);
int gf_list_type_init(PyObject *m, gf_state *st);

#endif /* GF_CONTAINER_H */
