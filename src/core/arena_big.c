/*
 * arena_big.c -- big blocks (payload > 4 KiB): split on allocation, coalesced with free
 * neighbours on free, their whole pages handed back to the kernel after the warm delay or
 * over the warm budget (fallocate PUNCH_HOLE on the memfd); the heal walk after a holder of
 * the allocator lock died; gf_arena_trim. Layout and crash-safety argument: arena_internal.h.
 */
#include "arena_internal.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/mman.h>

#define GF__PAGE ((uint64_t)4096)
#define GF__NBMAP ((GF__NCLASS + 63) / 64)

static inline gf__block *gf__hdr_at(const gf_arena *a, uint64_t hoff) {
    return (gf__block *)(a->base + hoff);
}

/* CLOCK_MONOTONIC in ns (never 0): free times, so that LRU order is exact. */
static inline uint64_t gf__now(void) { return (uint64_t)gf_now_ns() + 1; }

/* Add d to a big-block counter (big_free, big_warm): written under the allocator lock, read
 * outside it as a hint (gf_arena_trim) and for statistics, hence a relaxed atomic store. */
static inline void gf__ctr_add(uint64_t *c, int64_t d) {
    atomic_store_explicit(GF_A64(c), *c + (uint64_t)d, memory_order_relaxed);
}

/* The floor class of `usable` bytes: the bin of a free big block of that size. */
uint32_t gf__bin_of(uint64_t usable) {
    if (usable < 64) return 0;
    uint32_t c = gf__class_of(usable);
    if (c >= GF__NCLASS) return GF__NCLASS - 1;
    if (gf__class_size(c) > usable) c--;
    return c;
}

/* The page-aligned part [*s, *e) of b's payload; 0 if it holds no whole page. */
static inline int gf__pages(const gf__block *b, uint64_t *s, uint64_t *e) {
    *s = (b->self + GF__PAGE - 1) & ~(GF__PAGE - 1);
    *e = (b->self + b->usable) & ~(GF__PAGE - 1);
    return *e > *s;
}

/* 1 if the header at payload offset `off` is a listed free big block. */
static inline int gf__binned(const gf_arena *a, uint64_t off, uint64_t top) {
    if (!gf__off_plausible(a, off, top)) return 0;
    const gf__block *b = gf__blk(a, off);
    return b->magic == GF__BLK_FREE && b->cls == GF__CLS_BIG && (b->flags & GF__BLK_BIN) &&
           b->self == off && b->usable <= top - off;
}

static void gf__bin_push(gf_arena *a, gf__block *b) {
    gf__arena_hdr *h = a->h;
    uint32_t k = gf__bin_of(b->usable);
    uint64_t head = h->bins[k];
    b->cls = GF__CLS_BIG;
    b->next = head;
    b->shares = 0;
    b->flags |= GF__BLK_BIN;
    h->bmap[k >> 6] |= 1ull << (k & 63); /* before the link: a set bit is only a hint */
    if (head) gf__blk(a, head)->shares = b->self;
    h->bins[k] = b->self;
    gf__ctr_add(&h->big_free, (int64_t)b->usable);
    if (b->flags & GF__BLK_WARM) {
        if (h->big_warm == 0 || b->freed < h->warm_oldest) h->warm_oldest = b->freed;
        gf__ctr_add(&h->big_warm, (int64_t)b->usable);
    }
}

static void gf__bin_unlink(gf_arena *a, gf__block *b) {
    gf__arena_hdr *h = a->h;
    uint32_t k = gf__bin_of(b->usable);
    uint64_t prev = b->shares, next = b->next;
    if (prev) gf__blk(a, prev)->next = next;
    else h->bins[k] = next;
    if (next) gf__blk(a, next)->shares = prev;
    b->flags &= ~GF__BLK_BIN;
    b->next = 0;
    b->shares = 0;
    if (!h->bins[k]) h->bmap[k >> 6] &= ~(1ull << (k & 63));
    gf__ctr_add(&h->big_free, -(int64_t)b->usable);
    if (b->flags & GF__BLK_WARM) gf__ctr_add(&h->big_warm, -(int64_t)b->usable);
}

/* The block above b now starts right after b's (new) end: point its aprev at b, or make b the
 * last block. */
static void gf__fix_above(gf_arena *a, const gf__block *b) {
    uint64_t nh = b->self + b->usable;
    if (nh < a->h->top) gf__hdr_at(a, nh)->aprev = b->self;
    else a->h->last = b->self;
}

gf_off gf__bump_hdr(gf_arena *a, uint64_t at, gf_off aprev, uint32_t c, uint64_t usable,
                    uint32_t magic, uint32_t flags) {
    gf__block *b = gf__hdr_at(a, at);
    b->cls = c;
    b->self = at + GF__HDR_SIZE;
    b->usable = usable;
    b->next = 0;
    b->flags = flags;
    b->owner = a->ident;
    b->shares = 0;
    b->aprev = aprev;
    b->freed = 0;
    atomic_store_explicit(GF_A32(&b->magic), magic, memory_order_relaxed);
    return b->self;
}

void gf__bump_commit(gf_arena *a, uint64_t newtop, gf_off last) {
    /* release: the headers are written before the blocks exist (below top). */
    atomic_store_explicit(GF_A64(&a->h->top), newtop, memory_order_release);
    a->h->last = last;
}

/* The first listed block of a bin >= c, or 0. Clears stale hint bits on the way. */
static uint64_t gf__bin_find(gf_arena *a, uint32_t c) {
    gf__arena_hdr *h = a->h;
    for (uint32_t w = c >> 6; w < GF__NBMAP; w++) {
        uint64_t m = h->bmap[w];
        if (w == c >> 6) m &= ~0ull << (c & 63);
        while (m) {
            uint32_t k = w * 64 + (uint32_t)__builtin_ctzll(m);
            if (h->bins[k]) return h->bins[k];
            h->bmap[w] &= ~(1ull << (k & 63));
            m &= m - 1;
        }
    }
    return 0;
}

/* Cut the listed-then-unlinked free block b down to `usable` bytes; the rest (if any: at
 * least a header) becomes a free block of its own, listed. */
static void gf__split(gf_arena *a, gf__block *b, uint64_t usable) {
    uint64_t rest = b->usable - usable;
    if (rest < GF__HDR_SIZE) return;
    gf__block *r = gf__hdr_at(a, b->self + usable);
    r->cls = GF__CLS_BIG;
    r->self = b->self + usable + GF__HDR_SIZE;
    r->usable = rest - GF__HDR_SIZE;
    r->next = 0;
    r->shares = 0;
    r->owner = 0;
    r->aprev = b->self;
    r->freed = b->freed;
    uint64_t s, e;
    r->flags = (b->flags & GF__BLK_WARM) && gf__pages(r, &s, &e) ? GF__BLK_WARM : 0;
    atomic_store_explicit(GF_A32(&r->magic), GF__BLK_FREE, memory_order_relaxed);
    GF__ALLOC_CRASH(2);
    b->usable = usable; /* commits the split for the address-order walk */
    GF__ALLOC_CRASH(3);
    gf__fix_above(a, r);
    gf__bin_push(a, r);
}

int gf__big_alloc_locked(gf_arena *a, uint32_t c, uint64_t usable, uint32_t flags, gf_off *out,
                         int *fresh_out) {
    gf__arena_hdr *h = a->h;
    for (int tries = 0; tries < 2; tries++) {
        uint64_t off = gf__bin_find(a, c);
        if (!off) break;
        if (!gf__binned(a, off, h->top) || gf__blk(a, off)->usable < usable) {
            gf__heal(a); /* a list that does not hold up: rebuild the bins from the walk */
            continue;
        }
        gf__block *b = gf__blk(a, off);
        int warm = (b->flags & GF__BLK_WARM) != 0;
        gf__bin_unlink(a, b);
        GF__ALLOC_CRASH(1);
        gf__split(a, b, usable);
        GF__ALLOC_CRASH(4);
        b->cls = c;
        b->next = 0;
        b->flags = flags;
        b->owner = a->ident;
        b->shares = 0;
        b->freed = 0;
        /* release: the header is complete before it says LIVE (readers check it unlocked). */
        atomic_store_explicit(GF_A32(&b->magic), GF__BLK_LIVE, memory_order_release);
        *out = off;
        *fresh_out = !warm;
        return 0;
    }
    uint64_t top = h->top;
    if (top + GF__HDR_SIZE + usable > h->reserve) return GF_ENOSPC;
    gf_off off = gf__bump_hdr(a, top, h->last, c, usable, GF__BLK_LIVE, flags);
    gf__bump_commit(a, top + GF__HDR_SIZE + usable, off);
    *out = off;
    *fresh_out = 1;
    return 0;
}

/* Merge the listed free block above b (if any) into b. */
static void gf__merge_above(gf_arena *a, gf__block *b) {
    uint64_t nh = b->self + b->usable;
    if (nh >= a->h->top || !gf__binned(a, nh + GF__HDR_SIZE, a->h->top)) return;
    gf__block *n = gf__hdr_at(a, nh);
    gf__bin_unlink(a, n);
    GF__ALLOC_CRASH(6);
    if (n->flags & GF__BLK_WARM) b->flags |= GF__BLK_WARM;
    b->usable += GF__HDR_SIZE + n->usable; /* commits the merge */
    gf__fix_above(a, b);
}

void gf__big_free_locked(gf_arena *a, gf__block *b) {
    b->cls = GF__CLS_BIG;
    b->flags = GF__BLK_WARM; /* its pages were in use */
    GF__ALLOC_CRASH(5);
    gf__merge_above(a, b);
    uint64_t p = b->aprev;
    if (p && gf__binned(a, p, a->h->top) && p + gf__blk(a, p)->usable + GF__HDR_SIZE == b->self) {
        gf__block *w = gf__blk(a, p);
        gf__bin_unlink(a, w);
        GF__ALLOC_CRASH(7);
        w->flags |= GF__BLK_WARM;
        w->usable += GF__HDR_SIZE + b->usable; /* commits the merge */
        gf__fix_above(a, w);
        b = w;
    }
    uint64_t s, e;
    if (!gf__pages(b, &s, &e)) b->flags &= ~GF__BLK_WARM;
    b->freed = gf__now();
    gf__bin_push(a, b);
    GF__ALLOC_CRASH(8);
    gf__trim_locked(a, a->warm_budget, a->warm_ms);
}

/* ---------------------------------------------------------------- returning pages */

/* Hand the whole pages of the listed WARM block b back to the kernel. */
static void gf__punch(gf_arena *a, gf__block *b) {
    uint64_t s, e;
    if (gf__pages(b, &s, &e)) {
        if (fallocate(a->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)s,
                      (off_t)(e - s)) != 0)
            (void)madvise(a->base + s, e - s, MADV_REMOVE);
        a->h->punched += e - s;
    }
    b->flags &= ~GF__BLK_WARM;
    gf__ctr_add(&a->h->big_warm, -(int64_t)b->usable);
}

/* Hand the whole pages inside [off, off + len) back to the kernel (they read as zeros
 * afterwards). The caller owns that memory and nobody touches it meanwhile (gf_ring_trim). */
void gf__arena_punch(gf_arena *a, gf_off off, size_t len) {
    uint64_t s = (off + GF__PAGE - 1) & ~(GF__PAGE - 1), e = (off + len) & ~(GF__PAGE - 1);
    if (e <= s) return;
    if (fallocate(a->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)s, (off_t)(e - s)) !=
        0)
        (void)madvise(a->base + s, e - s, MADV_REMOVE);
}

/* One pass over every listed block: punch the WARM ones freed at least max_age_ms ago.
 * (`freed` and `warm_oldest` are ns.)
 * Result: the oldest WARM block left (0 if none); h->warm_oldest updated. */
static uint64_t gf__trim_pass(gf_arena *a, uint64_t now, uint64_t max_age_ms) {
    uint64_t max_age = max_age_ms * 1000000u;
    gf__arena_hdr *h = a->h;
    uint64_t oldest = 0, oldest_t = UINT64_MAX, guard = 1u << 22;
    for (uint32_t k = 0; k < GF__NCLASS; k++) {
        if (!(h->bmap[k >> 6] >> (k & 63) & 1)) continue;
        for (uint64_t off = h->bins[k]; off && guard--; off = gf__blk(a, off)->next) {
            if (!gf__binned(a, off, h->top)) return oldest; /* the next heal sorts it out */
            gf__block *b = gf__blk(a, off);
            if (!(b->flags & GF__BLK_WARM)) continue;
            if (now - b->freed >= max_age || b->freed > now) gf__punch(a, b);
            else if (b->freed < oldest_t) oldest_t = b->freed, oldest = off;
        }
    }
    h->warm_oldest = oldest ? oldest_t : now;
    return oldest;
}

void gf__trim_locked(gf_arena *a, uint64_t budget, uint64_t max_age_ms) {
    gf__arena_hdr *h = a->h;
    if (h->big_warm == 0) return;
    uint64_t now = gf__now();
    if (h->big_warm <= budget && now - h->warm_oldest < max_age_ms * 1000000u) return;
    for (int i = 0; i < 1024; i++) {
        uint64_t oldest = gf__trim_pass(a, now, max_age_ms);
        if (!oldest || h->big_warm <= budget) return;
        gf__punch(a, gf__blk(a, oldest)); /* over budget: least recently freed first */
        if (h->big_warm <= budget) return;
    }
}

/* Return the free memory the trimming policy allows to the kernel: with `all`, every free big
 * block's whole pages; without, those freed longer than the warm delay ago and, oldest
 * first, whatever exceeds the warm budget. Result 0. Never fails. */
int gf_arena_trim(gf_arena *a, int all) {
    if (!a) return GF_EINVAL;
    /* relaxed: a hint; nothing to do is the common case of a periodic call. */
    if (!all && atomic_load_explicit(GF_A64(&a->h->big_warm), memory_order_relaxed) == 0)
        return 0;
    gf__alloc_lock(a);
    gf__trim_locked(a, all ? 0 : a->warm_budget, all ? 0 : a->warm_ms);
    pthread_mutex_unlock(&a->h->alloc_lock);
    return 0;
}

/* ---------------------------------------------------------------- heal */

/* A header the address-order walk can step over (at header offset p, below top). */
static inline int gf__walkable(const gf__block *b, uint64_t p, uint64_t top) {
    return (b->magic == GF__BLK_LIVE || b->magic == GF__BLK_FREE) &&
           b->self == p + GF__HDR_SIZE && (b->usable & 63) == 0 &&
           b->usable <= top - p - GF__HDR_SIZE;
}

void gf__heal(gf_arena *a) {
    gf__arena_hdr *h = a->h;
    h->heals++;
    memset(h->bins, 0, sizeof h->bins);
    memset(h->bmap, 0, sizeof h->bmap);
    gf__ctr_add(&h->big_free, -(int64_t)h->big_free);
    gf__ctr_add(&h->big_warm, -(int64_t)h->big_warm);
    uint64_t top = h->top, prev = 0, now = gf__now();
    gf__block *run = NULL; /* the free big block being grown by its free big successors */
    for (uint64_t p = h->data_start; p < top;) {
        gf__block *b = gf__hdr_at(a, p);
        if (!gf__walkable(b, p, top)) break; /* only a stray write can do this: stop here */
        uint64_t next = p + GF__HDR_SIZE + b->usable;
        if (b->magic == GF__BLK_FREE && b->cls >= GF__BIG_CLASS) {
            if (run) {
                run->usable += GF__HDR_SIZE + b->usable;
                p = next;
                continue;
            }
            run = b;
            b->cls = GF__CLS_BIG;
            b->flags = GF__BLK_WARM; /* not known: assume backed, the trimmer punches it */
            if (!b->freed || b->freed > now) b->freed = now;
        } else if (run) {
            uint64_t s, e;
            if (!gf__pages(run, &s, &e)) run->flags = 0;
            gf__bin_push(a, run);
            run = NULL;
        }
        b->aprev = prev;
        prev = b->self;
        p = next;
    }
    if (run) {
        uint64_t s, e;
        if (!gf__pages(run, &s, &e)) run->flags = 0;
        gf__bin_push(a, run);
    }
    h->last = prev;
}
