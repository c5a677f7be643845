/*
 * arena_stats.c -- the arena's statistics (gf_arena_stats_get: header, per-thread cells and
 * per-slot counters summed) and the allocator's consistency walk (gf__arena_verify, tests).
 */
#include "arena_internal.h"

#include <string.h>
#include <sys/stat.h>

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
    struct stat sb;
    if (fstat(a->fd, &sb) == 0) st->backing = (uint64_t)sb.st_blocks * 512u;
    st->free = atomic_load_explicit(GF_A64(&h->big_free), memory_order_relaxed);
    st->warm = atomic_load_explicit(GF_A64(&h->big_warm), memory_order_relaxed);
    st->punched = atomic_load_explicit(GF_A64(&h->punched), memory_order_relaxed);
    st->reclaimed_blocks = atomic_load_explicit(GF_A64(&h->reclaimed_blocks), memory_order_relaxed);
    st->reclaimed_bytes = atomic_load_explicit(GF_A64(&h->reclaimed_bytes), memory_order_relaxed);
    st->heals = atomic_load_explicit(GF_A64(&h->heals), memory_order_relaxed);
    st->refs_reclaimed = atomic_load_explicit(GF_A64(&h->refs_reclaimed), memory_order_relaxed);
    st->refs_unrecorded =
        atomic_load_explicit(GF_A64(&h->refs_unrecorded), memory_order_relaxed);
    return 0;
}

/* The address-order walk: every block between data_start and top has a valid header
 * (LIVE: a class and its exact size; FREE: a small class and its size, or a free big block
 * of any size) whose `aprev` names the block below it, and `last` the highest. Counts the
 * live blocks, the free small blocks, the free big blocks and their bytes. Fails:
 * GF_EBADMSG. */
static int gf__verify_walk(gf_arena *a, uint64_t *live, uint64_t *nfree, uint64_t *nbig,
                           uint64_t *bigbytes) {
    gf__arena_hdr *h = a->h;
    uint64_t top = h->top, prev = 0;
    if (top < h->data_start || top > h->reserve) return GF_EBADMSG;
    for (uint64_t p = h->data_start; p < top;) {
        gf__block *b = (gf__block *)(a->base + p);
        int big_free = b->magic == GF__BLK_FREE && b->cls == GF__CLS_BIG;
        if ((b->magic != GF__BLK_LIVE && b->magic != GF__BLK_FREE) ||
            b->self != p + GF__HDR_SIZE || b->usable > top - p - GF__HDR_SIZE ||
            b->aprev != prev)
            return GF_EBADMSG;
        if (big_free) {
            if ((b->usable & 63) || !(b->flags & GF__BLK_BIN)) return GF_EBADMSG;
            ++*nbig;
            *bigbytes += b->usable;
        } else {
            if (b->cls >= GF__NCLASS || b->usable != gf__class_size(b->cls)) return GF_EBADMSG;
            if (b->magic == GF__BLK_FREE && b->cls >= GF__BIG_CLASS) return GF_EBADMSG;
            if (b->magic == GF__BLK_LIVE && !(b->flags & GF__BLK_SYS)) ++*live;
            else ++*nfree;
        }
        prev = b->self;
        p += GF__HDR_SIZE + b->usable;
    }
    return prev == h->last ? 0 : GF_EBADMSG;
}

/* The bins: doubly linked, each block in the bin of its size, no cycles, no two free big
 * blocks adjacent, counters exact. Fails: GF_EBADMSG. */
static int gf__verify_bins(gf_arena *a, uint64_t nbig, uint64_t bigbytes) {
    gf__arena_hdr *h = a->h;
    uint64_t top = h->top, listed = 0, bytes = 0, warm = 0;
    for (uint32_t k = 0; k < GF__NCLASS; k++) {
        uint64_t prev = 0;
        if (h->bins[k] && !(h->bmap[k >> 6] >> (k & 63) & 1)) return GF_EBADMSG;
        for (uint64_t off = h->bins[k]; off; prev = off, off = gf__blk(a, off)->next) {
            if (!gf__off_plausible(a, off, top) || ++listed > nbig) return GF_EBADMSG;
            gf__block *b = gf__blk(a, off);
            if (b->magic != GF__BLK_FREE || b->cls != GF__CLS_BIG || b->self != off ||
                b->shares != prev || gf__bin_of(b->usable) != k)
                return GF_EBADMSG;
            uint64_t nh = off + b->usable;
            if (nh < top) {
                gf__block *n = (gf__block *)(a->base + nh);
                if (n->magic == GF__BLK_FREE && n->cls == GF__CLS_BIG) return GF_EBADMSG;
            }
            bytes += b->usable;
            if (b->flags & GF__BLK_WARM) warm += b->usable;
        }
    }
    if (listed != nbig || bytes != bigbytes || bytes != h->big_free || warm != h->big_warm)
        return GF_EBADMSG;
    return 0;
}

/* Consistency walk (tests, debugging): every block between data_start and top has a valid
 * header, every small free list holds only FREE blocks of its class, without cycles, the big
 * blocks' bins hold exactly the free big blocks (see gf__verify_bins). Result: the number of
 * live blocks. Fails: GF_EBADMSG. */
int gf__arena_verify(gf_arena *a) {
    gf__arena_hdr *h = a->h;
    uint64_t live = 0, nfree = 0, nbig = 0, bigbytes = 0, listed = 0;
    gf__alloc_lock(a);
    uint64_t top = h->top;
    int err = gf__verify_walk(a, &live, &nfree, &nbig, &bigbytes);
    for (uint32_t c = 0; !err && c < GF__NCLASS; c++) {
        if (c >= GF__BIG_CLASS && h->heads[c]) err = GF_EBADMSG;
        for (uint64_t off = h->heads[c]; !err && off; off = gf__blk(a, off)->next) {
            if (!gf__off_plausible(a, off, top) || ++listed > nfree) {
                err = GF_EBADMSG; /* out of range, or a cycle */
                break;
            }
            gf__block *b = gf__blk(a, off);
            if (b->magic != GF__BLK_FREE || b->cls != c || b->self != off) err = GF_EBADMSG;
        }
    }
    if (!err) err = gf__verify_bins(a, nbig, bigbytes);
    pthread_mutex_unlock(&h->alloc_lock);
    if (err) return err;
    return live > INT32_MAX ? INT32_MAX : (int)live;
}

/* Debugging and tests: the live blocks of at least `min` payload bytes, in address order, up to
 * `cap` of them into out[] (offset, payload bytes, allocating process's ident, extra holders),
 * walked under the allocator lock. Result: how many there are (may exceed cap). Fails:
 * GF_EINVAL, GF_EBADMSG (a header that does not hold up: the walk stops). */
int gf__arena_live_list(gf_arena *a, uint64_t min, gf__live_blk *out, size_t cap) {
    if (!a || (cap && !out)) return GF_EINVAL;
    gf__arena_hdr *h = a->h;
    size_t n = 0;
    int err = 0;
    gf__alloc_lock(a);
    uint64_t top = h->top;
    for (uint64_t p = h->data_start; p < top;) {
        gf__block *b = (gf__block *)(a->base + p);
        if (b->self != p + GF__HDR_SIZE || b->usable > top - p - GF__HDR_SIZE) {
            err = GF_EBADMSG;
            break;
        }
        /* relaxed: a cached small block changes state without the lock (a snapshot) */
        uint32_t magic = atomic_load_explicit(GF_A32(&b->magic), memory_order_relaxed);
        if (magic == GF__BLK_LIVE && !(b->flags & GF__BLK_SYS) && b->usable >= min) {
            if (n < cap) {
                out[n].off = b->self;
                out[n].usable = b->usable;
                out[n].owner = b->owner;
                out[n].slot = b->owner & ((1u << GF__SLOT_BITS) - 1);
                out[n].gen = b->owner >> GF__SLOT_BITS;
                out[n].obj = (b->flags & GF__BLK_OBJ) != 0;
                out[n].shares = atomic_load_explicit(GF_A64(&b->shares), memory_order_relaxed);
            }
            n++;
        }
        p += GF__HDR_SIZE + b->usable;
    }
    pthread_mutex_unlock(&h->alloc_lock);
    if (err) return err;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}
