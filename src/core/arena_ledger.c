/*
 * arena_ledger.c -- the reference ledger: which references each process holds on shared
 * objects (gf_obj counts) and on plain blocks (gf_block_share holders), recorded in its
 * process slot so that the survivors drop them when it dies (gf_arena_reclaim, an attach that
 * re-takes the slot, the pool's supervision).
 *
 * Safety rule: a ledger never records more references than its process holds. A process
 * records a reference after taking it (gf_obj_incref_held: incref, then record) and forgets
 * it before dropping it (gf_obj_decref_held: forget, then decref), so a kill between the two
 * steps leaks one reference, never drops one twice. Every update is one CAS on one word
 * (see gf__ltab in arena_internal.h): a kill leaves each word old or new. Only the owner's
 * threads write a slot's ledger while it lives; the reclaimer, holding the dead slot's life
 * lock, empties it word by word (exchange to 0, then drop): a reclaimer killed half-way
 * leaves the rest for the next one.
 *
 * Full: an offset that finds no room within 8 (inline) or 16 words of its hash in any table (the
 * inline one of 32, then up to GILFREE_ARENA_LEDGER_TABLES chained ones, default 4: about
 * 43,000 entries in all) is not recorded: gf_ref_hold returns 0, refs_unrecorded counts it, and that
 * reference leaks if its holder dies without dropping it (as every reference did before).
 */
#include "arena_internal.h"

#include <string.h>

static inline uint64_t gf__lhash(uint64_t key) {
    return (key * 0x9E3779B97F4A7C15ull) >> 17;
}

/* Add one to key's count in table e (mask + 1 entries), probing up to `probe` words. Result
 * 1, or 0 (no room). */
static int gf__lt_add(uint64_t *e, uint64_t mask, uint64_t key, uint64_t probe) {
    uint64_t i = gf__lhash(key) & mask;
    for (uint64_t n = 0; n < probe && n <= mask; n++, i = (i + 1) & mask) {
        /* relaxed: the words are only this process's bookkeeping; a reclaimer reads them
         * after the owner's death (ordered by the kernel's release of the life lock). */
        uint64_t w = atomic_load_explicit(GF_A64(&e[i]), memory_order_relaxed);
        for (;;) {
            uint64_t c = w & GF__LCNT_MAX;
            if (c != 0 && ((w >> GF__LCNT_BITS) != key || c == GF__LCNT_MAX)) break;
            uint64_t nw = c == 0 ? key << GF__LCNT_BITS | 1 : w + 1;
            if (atomic_compare_exchange_weak_explicit(GF_A64(&e[i]), &w, nw,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed))
                return 1;
        }
    }
    return 0;
}

/* Take one from key's count in table e. Result 1, or 0 (not there). An entry lies within
 * `probe` words of its hash and every word before it on the way was non-zero when it was
 * added (words never go back to 0 while the owner lives), so a 0 word ends the search. */
static int gf__lt_sub(uint64_t *e, uint64_t mask, uint64_t key, uint64_t probe) {
    uint64_t i = gf__lhash(key) & mask;
    for (uint64_t n = 0; n < probe && n <= mask; n++, i = (i + 1) & mask) {
        uint64_t w = atomic_load_explicit(GF_A64(&e[i]), memory_order_relaxed);
        if (w == 0) return 0;
        while ((w >> GF__LCNT_BITS) == key && (w & GF__LCNT_MAX) != 0)
            if (atomic_compare_exchange_weak_explicit(GF_A64(&e[i]), &w, w - 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed))
                return 1;
    }
    return 0;
}

/* The calling process's slot, or NULL (no slot of its own: a forked child not yet attached). */
static inline gf__slot *gf__own_slot(gf_arena *a) {
    if (GF_UNLIKELY(!a || a->slot >= GF_ARENA_MAX_PROCS || a->pid != gf__pid())) return NULL;
    return &a->h->slots[a->slot];
}

static inline gf__ltab *gf__lt_at(gf_arena *a, uint64_t *link) {
    /* acquire: pairs with the release CAS that linked the (initialised) table. */
    gf_off t = atomic_load_explicit(GF_A64(link), memory_order_acquire);
    return t ? (gf__ltab *)(a->base + t) : NULL;
}

/* Link chained table number k (0-based) at *link (0 there). Result: the table now linked
 * there (this one or a racing thread's), NULL if none could be allocated. */
static gf__ltab *gf__lt_grow(gf_arena *a, uint64_t *link, unsigned k) {
    uint64_t cap = (uint64_t)512 << (2 * k);
    gf_off off;
    int fresh;
    /* GF__BLK_SYS and, once linked, uncounted (as the thread caches' arrays): bookkeeping. */
    if (gf__alloc_raw(a, sizeof(gf__ltab) + cap * 8, GF__BLK_SYS, &off, &fresh) < 0)
        return NULL;
    (void)fresh;
    /* In the block ledger until just before it is linked (counted as live until then: the
     * survivors free it if this process dies meanwhile). */
    int hh = gf__block_hold(a, off);
    gf__ltab *t = (gf__ltab *)(a->base + off);
    memset(t, 0, sizeof(gf__ltab) + cap * 8);
    t->magic = GF__LTAB_MAGIC;
    t->cap = cap;
    gf__block_unhold(a, hh);
    uint64_t z = 0;
    /* release: the table's words are initialised before a reclaimer can find it. */
    if (atomic_compare_exchange_strong_explicit(GF_A64(link), &z, off, memory_order_release,
                                                memory_order_acquire)) {
        gf__stats_add(a, gf_block_size(a, off), -1);
        return t;
    }
    gf_free(a, off);
    return (gf__ltab *)(a->base + z);
}

/* Record one reference on the live block `off` (a gf_obj or a plain block) as held by the
 * calling process. Result 1 recorded, 0 not recorded (no slot of its own, bad offset, or the
 * ledger is full: counted in refs_unrecorded). Never fails. */
static __attribute__((noinline)) int gf__ref_hold_slow(gf_arena *a, gf__slot *s,
                                                        uint64_t key) {
    if (gf__lt_add(s->refs, GF__LINLINE - 1, key, GF__LPROBE_IN)) return 1;
    uint64_t *link = &s->ltab;
    for (unsigned k = 0; k < a->ledger_tables; k++) {
        gf__ltab *t = gf__lt_at(a, link);
        if (!t && !(t = gf__lt_grow(a, link, k))) break;
        if (gf__lt_add(t->e, t->cap - 1, key, GF__LPROBE)) return 1;
        link = &t->next;
    }
    atomic_fetch_add_explicit(GF_A64(&a->h->refs_unrecorded), 1, memory_order_relaxed);
    return 0;
}

int gf_ref_hold(gf_arena *a, gf_off off) {
    gf__slot *s = gf__own_slot(a);
    if (!s || !off || (off & 63) || off >= a->size) return 0;
    uint64_t key = off >> 6;
    /* Fast path: the first word of the inline table is free or this offset's. */
    uint64_t *e = &s->refs[gf__lhash(key) & (GF__LINLINE - 1)];
    uint64_t w = atomic_load_explicit(GF_A64(e), memory_order_relaxed);
    uint64_t c = w & GF__LCNT_MAX;
    if (GF_LIKELY(c == 0 || ((w >> GF__LCNT_BITS) == key && c < GF__LCNT_MAX)) &&
        atomic_compare_exchange_strong_explicit(GF_A64(e), &w,
                                                c == 0 ? key << GF__LCNT_BITS | 1 : w + 1,
                                                memory_order_relaxed, memory_order_relaxed))
        return 1;
    return gf__ref_hold_slow(a, s, key);
}

/* Forget one recorded reference on `off` of the calling process (before it drops or hands
 * on that reference). Result 1 forgotten, 0 none was recorded. Never fails. */
static __attribute__((noinline)) int gf__ref_unhold_slow(gf_arena *a, gf__slot *s,
                                                          uint64_t key) {
    if (gf__lt_sub(s->refs, GF__LINLINE - 1, key, GF__LPROBE_IN)) return 1;
    for (gf__ltab *t = gf__lt_at(a, &s->ltab); t; t = gf__lt_at(a, &t->next))
        if (gf__lt_sub(t->e, t->cap - 1, key, GF__LPROBE)) return 1;
    return 0;
}

int gf_ref_unhold(gf_arena *a, gf_off off) {
    gf__slot *s = gf__own_slot(a);
    if (!s || !off) return 0;
    uint64_t key = off >> 6;
    /* Fast path: the first word of the inline table counts this offset. */
    uint64_t *e = &s->refs[gf__lhash(key) & (GF__LINLINE - 1)];
    uint64_t w = atomic_load_explicit(GF_A64(e), memory_order_relaxed);
    if (GF_LIKELY((w >> GF__LCNT_BITS) == key && (w & GF__LCNT_MAX) != 0) &&
        atomic_compare_exchange_strong_explicit(GF_A64(e), &w, w - 1, memory_order_relaxed,
                                                memory_order_relaxed))
        return 1;
    return gf__ref_unhold_slow(a, s, key);
}

/* gf_obj_incref, then record the new reference. Result and failures: gf_obj_incref's. */
int gf_obj_incref_held(gf_arena *a, gf_off off) {
    int r = gf_obj_incref(a, off);
    if (r == 0) gf_ref_hold(a, off);
    return r;
}

/* Forget one recorded reference, then gf_obj_decref. Result and failures: gf_obj_decref's. */
int gf_obj_decref_held(gf_arena *a, gf_off off) {
    gf_ref_unhold(a, off);
    return gf_obj_decref(a, off);
}

/* Forget one recorded holder, then gf_free. Result and failures: gf_free's. */
int gf_free_held(gf_arena *a, gf_off off) {
    gf_ref_unhold(a, off);
    return gf_free(a, off);
}

/* Drop the references of n words at e (emptied first, word by word). Result: the count. */
static uint64_t gf__lt_drop(gf_arena *a, uint64_t *e, uint64_t n) {
    uint64_t dropped = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (atomic_load_explicit(GF_A64(&e[i]), memory_order_relaxed) == 0) continue;
        /* acquire: the owner's stores to the objects happen before (its death orders them). */
        uint64_t w = atomic_exchange_explicit(GF_A64(&e[i]), 0, memory_order_acquire);
        gf_off off = (w >> GF__LCNT_BITS) << 6;
        for (uint64_t c = w & GF__LCNT_MAX; c > 0; c--) {
            const gf__block *b = gf__live_block(a, off);
            if (!b) break; /* cannot happen while the rule holds: never act on a stale word */
            if (b->flags & GF__BLK_OBJ ? gf_obj_decref(a, off) < 0 : gf_free(a, off) < 0) break;
            dropped++;
        }
    }
    return dropped;
}

/* See arena_internal.h. */
uint64_t gf__ledger_release(gf_arena *a, uint32_t i) {
    gf__slot *s = &a->h->slots[i];
    uint64_t n = gf__lt_drop(a, s->refs, GF__LINLINE);
    for (gf__ltab *t = gf__lt_at(a, &s->ltab); t; t = gf__lt_at(a, &t->next)) {
        gf_off off = (gf_off)((char *)t - a->base);
        if (gf_block_size(a, off) < sizeof(gf__ltab) || t->magic != GF__LTAB_MAGIC ||
            gf_block_size(a, off) < sizeof(gf__ltab) + t->cap * 8)
            break; /* not a table (cannot happen): stop rather than drop what it says */
        n += gf__lt_drop(a, t->e, t->cap);
    }
    /* Unlink, then free the tables (a kill in between leaks them, never frees them twice). */
    gf_off t = atomic_exchange_explicit(GF_A64(&s->ltab), 0, memory_order_acquire);
    while (t && gf_block_size(a, t) >= sizeof(gf__ltab)) {
        gf__ltab *lt = (gf__ltab *)(a->base + t);
        gf_off next = lt->magic == GF__LTAB_MAGIC ? lt->next : 0;
        lt->magic = 0;
        gf__stats_add(a, gf_block_size(a, t), 1);
        gf_free(a, t);
        t = next;
    }
    if (n) atomic_fetch_add_explicit(GF_A64(&a->h->refs_reclaimed), n, memory_order_relaxed);
    return n;
}
