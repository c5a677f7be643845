/*
 * arena_stats.c -- the arena's statistics (gf_arena_stats_get: header, per-thread cells and
 * per-slot counters summed) and the allocator's consistency walk (gf__arena_verify, tests).
 */
#include "arena_internal.h"

#include <string.h>

/* Fill *st. Result 0. Never fails. */
int gf_arena_stats_get(gf_arena *a, gf_arena_stats *st) {
    gf__arena_hdr *h = a->h;
    memset(st, 0, sizeof *st);
    st->reserved = h->reserve;
    st->top = gf__top(a) - h->data_start;
    /* relaxed: statistics only. The per-slot counters are wrapping deltas: their sum with
     * the header's is exact. */
    st->in_use = atomic_load_explicit(GF_A64(&h->in_use), memory_order_relaxed);
    st->live_blocks = atomic_load_explicit(GF_A64(&h->live_blocks), memory_order_relaxed);
    uint32_t hwm = atomic_load_explicit(GF_A32(&h->slots_hwm), memory_order_acquire);
    for (uint32_t i = 0; i < GF__NCELLS; i++) {
        st->in_use += atomic_load_explicit(GF_A64(&h->cells[i].in_use), memory_order_relaxed);
        st->live_blocks +=
            atomic_load_explicit(GF_A64(&h->cells[i].live_blocks), memory_order_relaxed);
    }
    for (uint32_t i = 0; i < hwm; i++) {
        st->in_use += atomic_load_explicit(GF_A64(&h->slots[i].in_use), memory_order_relaxed);
        st->live_blocks +=
            atomic_load_explicit(GF_A64(&h->slots[i].live_blocks), memory_order_relaxed);
    }
    for (uint32_t i = 0; i < hwm; i++) {
        uint32_t gen = atomic_load_explicit(GF_A32(&h->slots[i].gen), memory_order_acquire);
        if (gen && gf__ident_alive(a, gen << GF__SLOT_BITS | i)) st->live_procs++;
    }
    return 0;
}

/* Consistency walk (tests, debugging): every block between data_start and top has a valid
 * header, every free list holds only FREE blocks of its class, without cycles. Result: the
 * number of live blocks. Fails: GF_EBADMSG. */
int gf__arena_verify(gf_arena *a) {
    gf__arena_hdr *h = a->h;
    int err = 0;
    uint64_t live = 0, nfree = 0, listed = 0;
    gf__robust_lock(&h->alloc_lock);
    uint64_t top = h->top;
    if (top < h->data_start || top > h->reserve) err = GF_EBADMSG;
    for (uint64_t p = h->data_start; !err && p < top;) {
        gf__block *b = (gf__block *)(a->base + p);
        if ((b->magic != GF__BLK_LIVE && b->magic != GF__BLK_FREE) || b->cls >= GF__NCLASS ||
            b->usable != gf__class_size(b->cls) || b->self != p + GF__HDR_SIZE ||
            b->usable > top - p - GF__HDR_SIZE) {
            err = GF_EBADMSG;
            break;
        }
        if (b->magic == GF__BLK_LIVE) live++;
        else nfree++;
        p += GF__HDR_SIZE + b->usable;
    }
    for (uint32_t c = 0; !err && c < GF__NCLASS; c++) {
        for (uint64_t off = h->heads[c]; off; off = gf__blk(a, off)->next) {
            if (!gf__off_plausible(a, off, top) || ++listed > nfree) {
                err = GF_EBADMSG; /* out of range, or a cycle */
                break;
            }
            gf__block *b = gf__blk(a, off);
            if (b->magic != GF__BLK_FREE || b->cls != c || b->self != off) {
                err = GF_EBADMSG;
                break;
            }
        }
    }
    pthread_mutex_unlock(&h->alloc_lock);
    if (err) return err;
    return live > INT32_MAX ? INT32_MAX : (int)live;
}
