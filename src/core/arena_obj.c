/*
 * arena_obj.c -- reference-counted shared objects (gf_obj): creation, incref / decref with the
 * per-type destructors, and the type check of an offset received from another process.
 */
#include "arena_internal.h"

/* ---------------------------------------------------------------- objects */

/* The gf_obj at `off` if it is a live object block, else NULL. */
static gf_obj *gf__obj(const gf_arena *a, gf_off off) {
    const gf__block *b = gf__live_block(a, off);
    if (!b || !(b->flags & GF__BLK_OBJ)) return NULL;
    return (gf_obj *)(a->base + off);
}

/* Allocate an object of `size` bytes (>= sizeof(gf_obj)) with refs = 1 and type `type`; the
 * rest of the payload is uninitialised. Result 0 and *out. Fails: GF_EINVAL (type, size 0),
 * GF_ENOSPC. */
int gf_obj_new(gf_arena *a, uint32_t type, size_t size, gf_off *out) {
    if (type == 0 || type >= GF_OBJ__MAX || size == 0) return GF_EINVAL;
    if (size < sizeof(gf_obj)) size = sizeof(gf_obj);
    gf_off off;
    int err = gf__alloc(a, size, GF__BLK_OBJ, &off);
    if (err) return err;
    gf_obj *o = (gf_obj *)(a->base + off);
    o->type = type;
    /* relaxed: the object is published to others later, by whatever sends its offset. */
    atomic_store_explicit(GF_A32(&o->refs), 1, memory_order_relaxed);
    *out = off;
    return 0;
}

/* Add a reference. Result 0. Fails: GF_EINVAL (not a live object, or its count is 0),
 * GF_EOVERFLOW (count saturated). */
int gf_obj_incref(gf_arena *a, gf_off off) {
    gf_obj *o = gf__obj(a, off);
    if (!o) return GF_EINVAL;
    /* relaxed: the caller already holds a reference, which orders everything that matters
     * (the same argument as std::shared_ptr). The CAS refuses to resurrect a dead object. */
    uint32_t r = atomic_load_explicit(GF_A32(&o->refs), memory_order_relaxed);
    do {
        if (r == 0) return GF_EINVAL;
        if (r == UINT32_MAX) return GF_EOVERFLOW;
    } while (!atomic_compare_exchange_weak_explicit(GF_A32(&o->refs), &r, r + 1,
                                                    memory_order_relaxed, memory_order_relaxed));
    return 0;
}

/* Destructors of the types that own other blocks; defined (later) by their modules. */
static void gf__obj_destroy(gf_arena *a, gf_off off, uint32_t type) {
    void (*fn)(gf_arena *, gf_off) = NULL;
    switch (type) {
    case GF_OBJ_RING: fn = gf__ring_destroy; break;
    case GF_OBJ_DICT: fn = gf__dict_destroy; break;
    case GF_OBJ_LIST: fn = gf__list_destroy; break;
    case GF_OBJ_POOL: fn = gf__pool_destroy; break;
    default: break;
    }
    if (fn) fn(a, off);
}

/* Drop a reference; at zero run the type's destructor and free the block. Result: the
 * remaining count (0 = freed). Fails: GF_EINVAL (not a live object, or count already 0). */
int gf_obj_decref(gf_arena *a, gf_off off) {
    gf_obj *o = gf__obj(a, off);
    if (!o) return GF_EINVAL;
    uint32_t r = atomic_load_explicit(GF_A32(&o->refs), memory_order_relaxed);
    do {
        if (r == 0) return GF_EINVAL;
        /* release: this process's writes to the object happen before the count drops, so the
         * process that frees it (acquire fence below) sees them. */
    } while (!atomic_compare_exchange_weak_explicit(GF_A32(&o->refs), &r, r - 1,
                                                    memory_order_release, memory_order_relaxed));
    if (r - 1 > 0) return (int)(r - 1 > INT32_MAX ? INT32_MAX : r - 1);
    atomic_thread_fence(memory_order_acquire);
    gf__obj_destroy(a, off, o->type);
    gf_free(a, off);
    return 0;
}

/* Check that `off` names a live object of `type` (any 64-bit input). Result 0. Fails:
 * GF_EBADMSG. */
int gf_obj_check(const gf_arena *a, gf_off off, uint32_t type) {
    gf_obj *o = gf__obj(a, off);
    if (!o || o->type != type ||
        atomic_load_explicit(GF_A32(&o->refs), memory_order_relaxed) == 0)
        return GF_EBADMSG;
    return 0;
}
