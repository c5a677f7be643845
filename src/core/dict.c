/*
 * dict.c -- the shared dict: GF_DICT_STRIPES independent chained hash tables ("stripes") of
 * opaque byte keys and values in the arena.
 *
 * Layout
 *   gf__dict (a gf_obj GF_OBJ_DICT): header line + GF_DICT_STRIPES stripes of one cache line each
 *   (a gf_mutex, the stripe's entry count, its seq, its table and a resize's pending array).
 *   stripe table: packed {offset of a gf__dtab bucket array | which `next` field chains use
 *   (bit 0)}, 0 until the stripe's first insert.
 *   entry: one arena block {next[2], hash, klen, vlen, key bytes, value bytes}.
 *   A key's stripe is the low GF__NS_BITS bits of its hash; its bucket in the stripe's table the
 *   bits above them.
 *
 * Locking
 *   An operation holds its key's stripe mutex, and nothing else: a stripe grows its own table
 *   under its own mutex, so two processes working on different keys only meet when their keys
 *   share a stripe (a table-wide resize stopped every other process each time the dict doubled:
 *   two processes inserting distinct keys ran slower than one).
 *   Clear, snapshot and the consistency check take every stripe, in order.
 *   `user` is the recursive lock behind `with d.lock:`. An operation checks it after taking its
 *   stripe; if another thread holds it, it drops the stripe and waits for `user`. The locker,
 *   once it has `user`, takes and drops every stripe once (a barrier): any operation that saw
 *   `user` free has then finished, and any later one sees it held.
 *
 * Crash consistency (a process SIGKILLed anywhere)
 *   Every mutation is committed by one release store of a 64-bit word:
 *     insert   fill the entry, then store the bucket head;
 *     replace  new entry with the old one's `next`, then store the link that pointed to the old;
 *     delete   store the link to the entry's `next`;
 *     grow     build the stripe's new bucket array by linking its entries through their *other*
 *              `next` field (the live chains are untouched), then store the stripe's table =
 *              {new array, which};
 *     clear    store each stripe's table = 0 (stripe by stripe, every stripe held: a clear cut
 *              short by a crash has emptied some stripes and left the others whole).
 *   Blocks are freed only after the commit (a crash in between leaks them). A half-built bucket
 *   array is recorded in the stripe's `pending` before it is built; whoever takes the stripe
 *   over from the dead process (GF_EOWNERDEAD) frees it and recounts the stripe's chains.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define GF__DICT_MAGIC 0x54434944u /* "DICT" */
#define GF__NS GF_DICT_STRIPES
#define GF__NS_BITS 6
#define GF__STRIPE_MIN_BUCKETS ((uint64_t)8)
_Static_assert((1u << GF__NS_BITS) == GF__NS, "GF__NS_BITS matches GF_DICT_STRIPES");

/* Crash points for tests (a weak hook, NULL outside tests): a test kills itself there. */
#define GF__CP(n)                                                                              \
    do {                                                                                       \
        if (GF_UNLIKELY(gf__dict_crash_point != NULL)) gf__dict_crash_point(n);                \
    } while (0)
enum {
    GF__CP_GROW_PENDING = 1, /* grow: new array recorded, nothing built (stripe held) */
    GF__CP_GROW_BUILD,       /* grow: half of the new chains built (stripe held) */
    GF__CP_GROW_COMMITTED,   /* grow: new table stored, pending still set (stripe held) */
    GF__CP_GROW_UNLOCKED,    /* grow: stripe dropped, old array not freed yet */
    GF__CP_GROW_FREE,        /* grow: just before the old array is freed */
    GF__CP_CLEAR_COMMITTED,  /* clear: every stripe emptied, counts not reset yet */
    GF__CP_INSERT_COMMITTED, /* set: new entry linked, count not updated */
    GF__CP_DELETE_COMMITTED, /* delete: entry unlinked, count not updated, not freed */
    GF__CP_REPLACE_COMMITTED /* set: new entry replaced the old, old not freed */
};

typedef struct gf__dstripe {
    gf_mutex m;
    uint64_t count;   /* entries in this stripe: written under m, read relaxed */
    uint64_t seq;     /* bumped under m after every commit, before any free (lock-free reads) */
    uint64_t table;   /* gf_off of the gf__dtab | which next (bit 0); 0 = none yet; the commit
                         point of a grow; written under m, read with acquire */
    uint64_t pending; /* bucket array being built by a grow (0 = none); only under m */
    char pad[GF_CACHELINE - sizeof(gf_mutex) - 4 * sizeof(uint64_t)];
} gf__dstripe;

typedef struct gf__dict {
    gf_obj obj;
    uint32_t magic;
    uint32_t nstripes;
    gf_mutex user; /* recursive: `with d.lock:` */
    gf__dstripe stripe[GF__NS] GF_ALIGNED(GF_CACHELINE);
} gf__dict;

_Static_assert(sizeof(gf__dstripe) == GF_CACHELINE, "one stripe per cache line");
_Static_assert(offsetof(gf__dict, stripe) == GF_CACHELINE, "stripes start on a cache line");

typedef struct gf__dtab {
    uint64_t nbuckets; /* power of two >= GF__STRIPE_MIN_BUCKETS */
    uint64_t pad[7];
    uint64_t b[];      /* gf_off of the first entry of each chain */
} gf__dtab;

typedef struct gf__dent {
    uint64_t next[2];
    uint64_t hash;
    uint64_t klen;
    uint64_t vlen;
    unsigned char data[]; /* key, then value */
} gf__dent;

/* ------------------------------------------------------------------------------------------ */
/* Hash: a fixed 64-bit function of the bytes (the same in every process, unlike Python's).   */
/* Folded 64x64->128 multiplies over 16-byte strides, then a final avalanche.                  */
/* ------------------------------------------------------------------------------------------ */

#define GF__K0 0x9e3779b97f4a7c15ull
#define GF__K1 0xbf58476d1ce4e5b9ull
#define GF__K2 0x94d049bb133111ebull
#define GF__K3 0x2545f4914f6cdd1dull

static inline uint64_t gf__rd64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* 64x64 -> 128 multiply, folded (hi ^ lo). */
static inline uint64_t gf__fold(uint64_t x, uint64_t y) {
    __uint128_t r = (__uint128_t)x * y;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* The dict's hash of `n` bytes. Result: 64 bits, never fails. */
static uint64_t gf__hash(const void *key, size_t n) {
    const unsigned char *p = key;
    uint64_t h = GF__K0 ^ ((uint64_t)n * GF__K3);
    size_t left = n;
    while (left > 16) {
        h = gf__fold(gf__rd64(p) ^ GF__K1, gf__rd64(p + 8) ^ h ^ GF__K2);
        p += 16;
        left -= 16;
    }
    uint64_t x = 0, y = 0;
    if (left >= 8) { /* 8..16 bytes: two (overlapping) words */
        x = gf__rd64(p);
        y = gf__rd64(p + left - 8);
    } else if (left >= 4) {
        uint32_t u, v;
        memcpy(&u, p, 4);
        memcpy(&v, p + left - 4, 4);
        x = ((uint64_t)u << 32) | v;
    } else if (left > 0) {
        x = ((uint64_t)p[0] << 16) | ((uint64_t)p[left >> 1] << 8) | p[left - 1];
    }
    h = gf__fold(x ^ GF__K1 ^ h, y ^ GF__K2 ^ (uint64_t)left);
    h = gf__fold(h ^ GF__K3, h ^ GF__K0);
    return h ^ (h >> 29);
}

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */

static inline gf__dict *gf__dict_at(gf_arena *a, gf_off d) {
    gf__dict *p = gf__ptr(a, d);
    if (GF_UNLIKELY(!p || p->magic != GF__DICT_MAGIC)) return NULL;
    return p;
}
static inline gf__dent *gf__ent(gf_arena *a, gf_off e) { return gf__ptr(a, e); }

static inline unsigned gf__stripe_of(uint64_t h) { return (unsigned)(h & (GF__NS - 1)); }
/* The bucket of hash h in a table of nb buckets: the bits above the stripe's. */
static inline uint64_t gf__bucket(uint64_t h, uint64_t nb) { return (h >> GF__NS_BITS) & (nb - 1); }

/* Stripe s's table word. Acquire: pairs with the grow commit, so the array (and the chains built
 * through the other next field) are visible. Callers hold the stripe. */
static inline uint64_t gf__table(gf__dstripe *st) {
    return atomic_load_explicit(GF_A64(&st->table), memory_order_acquire);
}
/* The bucket array of a table word, NULL for 0 (no table yet). */
static inline gf__dtab *gf__tab(gf_arena *a, uint64_t t) {
    return t ? gf__ptr(a, t & ~(uint64_t)63) : NULL;
}

/* Store a link (bucket head or next field). Release: the entry it points to was filled before
 * and must be visible to the next lock holder; it also keeps the compiler from sinking the
 * entry's stores below the commit, which is what makes a SIGKILL at any point harmless. */
static inline void gf__link_store(uint64_t *link, uint64_t v) {
    atomic_store_explicit(GF_A64(link), v, memory_order_release);
}
/* Links are only written under the stripe lock; relaxed loads suffice for its holder. */
static inline uint64_t gf__link_load(const uint64_t *link) {
    return atomic_load_explicit(GF_A64((uint64_t *)link), memory_order_relaxed);
}

/* After a commit and before freeing what it unlinked: tell lock-free readers of this stripe that
 * what they read may be gone. Release: orders the commit before the bump; the frees that follow
 * go through the allocator's lock (a full barrier), so a reader that saw freed memory also sees
 * the new seq (see gf__get_fast). */
static inline void gf__seq_bump(gf__dstripe *s) {
    uint64_t v = atomic_load_explicit(GF_A64(&s->seq), memory_order_relaxed);
    atomic_store_explicit(GF_A64(&s->seq), v + 1, memory_order_release);
}

static inline uint64_t gf__count_load(gf__dstripe *s) {
    return atomic_load_explicit(GF_A64(&s->count), memory_order_relaxed);
}
/* Counts are written under the stripe lock and read without it by gf_dict_len: relaxed. */
static inline void gf__count_store(gf__dstripe *s, uint64_t v) {
    atomic_store_explicit(GF_A64(&s->count), v, memory_order_relaxed);
}

/* Copy bytes out: into buf if they fit, else a malloc'd block. Result 0. Fails: GF_ENOMEM. */
int gf__copy_out(const void *src, size_t n, void *buf, size_t cap, gf_buf *out) {
    if (!out) return 0;
    if (buf && n <= cap) {
        memcpy(buf, src, n);
        out->data = buf;
        out->heap = NULL;
    } else {
        void *h = malloc(n ? n : 1);
        if (!h) return GF_ENOMEM;
        memcpy(h, src, n);
        out->data = h;
        out->heap = h;
    }
    out->len = n;
    return 0;
}

/* Free a gf_buf's malloc'd block, if any. */
void gf_buf_release(gf_buf *b) {
    if (!b) return;
    free(b->heap);
    b->heap = NULL;
    b->data = NULL;
    b->len = 0;
}

/* Take over stripe s from a holder that died (the caller now holds it): free the bucket array
 * a grow had recorded but not committed, and count the entries by walking the chains (the holder
 * may have died between a commit and its count update). The chains themselves are consistent
 * by construction. */
static void gf__stripe_recover(gf_arena *a, gf__dict *d, unsigned s) {
    gf__dstripe *st = &d->stripe[s];
    uint64_t t = gf__table(st);
    /* pending is only accessed under the stripe lock: relaxed. */
    uint64_t pend = atomic_load_explicit(GF_A64(&st->pending), memory_order_relaxed);
    if (pend) {
        /* Committed (it is the live table): keep it. Otherwise nothing references it. */
        if (pend != (t & ~(uint64_t)63)) gf_free(a, pend);
        atomic_store_explicit(GF_A64(&st->pending), 0, memory_order_relaxed);
    }
    gf__dtab *tab = gf__tab(a, t);
    unsigned w = (unsigned)(t & 1);
    uint64_t n = 0;
    for (uint64_t b = 0; tab && b < tab->nbuckets; b++)
        for (gf_off e = gf__link_load(&tab->b[b]); e; e = gf__link_load(&gf__ent(a, e)->next[w]))
            n++;
    gf__count_store(st, n);
    gf__seq_bump(st);
}

/* Lock stripe s. Stripes are held for short, bounded times, so a signal does not abort the wait
 * (GF_EINTR is retried). Result: 0, or 1 when the previous holder died (the stripe has been
 * recovered: see gf__stripe_recover). */
static int gf__stripe_lock(gf_arena *a, gf__dict *d, unsigned s) {
    for (;;) {
        int r = gf_mutex_lock(a, &d->stripe[s].m, GF_FOREVER);
        if (GF_LIKELY(r == 0)) return 0;
        if (r == GF_EOWNERDEAD) {
            gf__stripe_recover(a, d, s);
            return 1;
        }
        /* GF_EINTR (or anything transient): try again. */
    }
}
static inline void gf__stripe_unlock(gf_arena *a, gf__dict *d, unsigned s) {
    gf_mutex_unlock(a, &d->stripe[s].m);
}

/* 1 if another thread holds `with d.lock:`. Called with a stripe held (whose acquire orders this
 * relaxed load after the locker's barrier) or, in gf_dict_len, as a hint. */
static inline int gf__user_blocks(gf_arena *a, gf__dict *d) {
    uint32_t w = atomic_load_explicit(GF_A32(&d->user.word), memory_order_relaxed);
    return GF_UNLIKELY(w != 0) && !gf_mutex_is_mine(a, &d->user);
}

/* Wait until the user lock is free (take it and give it back; a dead holder is taken over).
 * Result 0. Fails: GF_EINTR. */
static int gf__user_wait(gf_arena *a, gf__dict *d) {
    int r = gf_mutex_lock(a, &d->user, GF_FOREVER);
    if (r == 0 || r == GF_EOWNERDEAD) {
        gf_mutex_unlock(a, &d->user);
        return 0;
    }
    return r;
}

/* Take the key's stripe, waiting out a user-lock holder. Result 0. Fails: GF_EINTR. */
static int gf__op_begin(gf_arena *a, gf__dict *d, unsigned s) {
    for (;;) {
        gf__stripe_lock(a, d, s);
        if (GF_LIKELY(!gf__user_blocks(a, d))) return 0;
        gf__stripe_unlock(a, d, s);
        int r = gf__user_wait(a, d);
        if (r < 0) return r;
    }
}

/* Take every stripe in order. */
static void gf__lock_all(gf_arena *a, gf__dict *d) {
    for (unsigned s = 0; s < GF__NS; s++) gf__stripe_lock(a, d, s);
}
static void gf__unlock_all(gf_arena *a, gf__dict *d) {
    for (unsigned s = GF__NS; s-- > 0;) gf__stripe_unlock(a, d, s);
}

/* Every stripe, waiting out a user-lock holder. Result 0. Fails: GF_EINTR. */
static int gf__lock_all_user(gf_arena *a, gf__dict *d) {
    for (;;) {
        gf__lock_all(a, d);
        if (!gf__user_blocks(a, d)) return 0;
        gf__unlock_all(a, d);
        int r = gf__user_wait(a, d);
        if (r < 0) return r;
    }
}

/* Find key in the chain of its bucket in table word t (0 = no table: absent). The caller holds
 * the stripe. Result: the entry's offset (0 if absent); *linkp = the word that points to it
 * (bucket head or predecessor's next; NULL when there is no table). */
static gf_off gf__find(gf_arena *a, uint64_t t, uint64_t h, const void *key, size_t klen,
                       uint64_t **linkp) {
    gf__dtab *tab = gf__tab(a, t);
    if (linkp) *linkp = NULL;
    if (!tab) return 0;
    unsigned w = (unsigned)(t & 1);
    uint64_t *link = &tab->b[gf__bucket(h, tab->nbuckets)];
    for (gf_off e = gf__link_load(link); e; e = gf__link_load(link)) {
        gf__dent *p = gf__ent(a, e);
        if (p->hash == h && p->klen == klen && memcmp(p->data, key, klen) == 0) {
            if (linkp) *linkp = link;
            return e;
        }
        link = &p->next[w];
    }
    return 0;
}

/* Allocate and fill an entry (links left unset). Result 0 and *out. Fails: GF_ENOSPC. */
static int gf__ent_new(gf_arena *a, uint64_t h, const void *key, size_t klen, const void *val,
                       size_t vlen, gf_off *out) {
    if (klen > SIZE_MAX / 4 || vlen > SIZE_MAX / 4) return GF_ENOSPC;
    gf_off e;
    int r = gf_alloc(a, sizeof(gf__dent) + klen + vlen, &e);
    if (r < 0) return r == GF_EINVAL ? GF_ENOSPC : r;
    gf__dent *p = gf__ent(a, e);
    p->next[0] = p->next[1] = 0;
    p->hash = h;
    p->klen = klen;
    p->vlen = vlen;
    if (klen) memcpy(p->data, key, klen);
    if (vlen) memcpy(p->data + klen, val, vlen);
    *out = e;
    return 0;
}

/* Allocate a zeroed bucket array of nb buckets. Result 0. Fails: GF_ENOSPC. */
static int gf__tab_new(gf_arena *a, uint64_t nb, gf_off *out) {
    if (nb > (SIZE_MAX - sizeof(gf__dtab)) / 8) return GF_ENOSPC;
    gf_off t;
    int r = gf_alloc(a, sizeof(gf__dtab) + nb * 8, &t);
    if (r < 0) return r == GF_EINVAL ? GF_ENOSPC : r;
    gf__dtab *p = gf__ptr(a, t);
    memset(p, 0, sizeof(gf__dtab) + nb * 8);
    p->nbuckets = nb;
    *out = t;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Growing a stripe                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* 1 if stripe st has a table and one more entry would make it grow (more entries than
 * buckets: load factor 1). */
static inline int gf__stripe_full(gf_arena *a, gf__dstripe *st) {
    gf__dtab *tab = gf__tab(a, gf__table(st));
    return tab && gf__count_load(st) + 1 > tab->nbuckets;
}

/* Give stripe s (held by the caller) a table of at least nb buckets (a power of two >= 8), its
 * entries relinked into it; cp: pass the crash points (a grow, not a stripe's first table).
 * Result 0; *old = the previous bucket array, to free once the stripe is dropped (0 = none).
 * Fails: GF_ENOSPC (nothing changed). */
static int gf__stripe_grow(gf_arena *a, gf__dict *d, unsigned s, uint64_t nb, int cp,
                           gf_off *old) {
    gf__dstripe *st = &d->stripe[s];
    uint64_t n = GF__STRIPE_MIN_BUCKETS;
    while (n < nb && n < ((uint64_t)1 << 40)) n <<= 1;
    gf_off nt;
    *old = 0;
    int r = gf__tab_new(a, n, &nt);
    if (r < 0) return r;
    /* Record the array before linking anything through it, so that whoever takes the stripe
     * over after a crash frees it (gf__stripe_recover). Relaxed: only read under the lock. */
    atomic_store_explicit(GF_A64(&st->pending), nt, memory_order_relaxed);
    if (cp) GF__CP(GF__CP_GROW_PENDING);
    uint64_t t = gf__table(st);
    gf__dtab *otab = gf__tab(a, t), *tab = gf__ptr(a, nt);
    unsigned w = (unsigned)(t & 1), nw = w ^ 1;
    uint64_t onb = otab ? otab->nbuckets : 0;
    for (uint64_t b = 0; b < onb; b++) {
        if (cp && b == onb / 2) GF__CP(GF__CP_GROW_BUILD);
        for (gf_off e = otab->b[b]; e;) {
            gf__dent *p = gf__ent(a, e);
            gf_off next = p->next[w];
            uint64_t nbk = gf__bucket(p->hash, n);
            /* Plain stores: the new chains are invisible until the commit below. */
            p->next[nw] = tab->b[nbk];
            tab->b[nbk] = e;
            e = next;
        }
    }
    /* Commit: one release store publishes the new array and its chains. */
    atomic_store_explicit(GF_A64(&st->table), nt | nw, memory_order_release);
    if (cp) GF__CP(GF__CP_GROW_COMMITTED);
    atomic_store_explicit(GF_A64(&st->pending), 0, memory_order_relaxed);
    gf__seq_bump(st); /* the old bucket array is freed once the stripe is dropped */
    *old = otab ? (t & ~(uint64_t)63) : 0;
    return 0;
}

/* After dropping the stripe: free the bucket array a grow replaced (a crash before this only
 * leaks it). */
static void gf__free_old_table(gf_arena *a, gf_off old) {
    if (!old) return;
    GF__CP(GF__CP_GROW_UNLOCKED);
    GF__CP(GF__CP_GROW_FREE);
    gf_free(a, old);
}

/* Link the new entry ne (its key absent) at the head of its bucket in stripe s, held by the
 * caller (the stripe's first insert gives it its table), then grow the stripe's table if it now
 * holds more entries than buckets (best effort: on GF_ENOSPC chains just get longer). Result 0;
 * *old_tab as gf__stripe_grow. Fails: GF_ENOSPC (the stripe had no table and none could be
 * allocated; nothing linked). */
static int gf__insert_locked(gf_arena *a, gf__dict *d, unsigned s, gf_off ne, gf_off *old_tab) {
    gf__dstripe *st = &d->stripe[s];
    *old_tab = 0;
    if (!gf__table(st)) {
        int r = gf__stripe_grow(a, d, s, GF__STRIPE_MIN_BUCKETS, 0, old_tab);
        if (r < 0) return r;
    }
    uint64_t t = gf__table(st);
    gf__dtab *tab = gf__tab(a, t);
    unsigned w = (unsigned)(t & 1);
    gf__dent *p = gf__ent(a, ne);
    uint64_t *head = &tab->b[gf__bucket(p->hash, tab->nbuckets)];
    p->next[w] = gf__link_load(head);
    gf__link_store(head, ne); /* commit: the new entry heads its chain */
    GF__CP(GF__CP_INSERT_COMMITTED);
    uint64_t c = gf__count_load(st) + 1;
    gf__count_store(st, c);
    gf__seq_bump(st); /* (nothing freed; keeps reads equivalent to locked ones) */
    if (c > tab->nbuckets) (void)gf__stripe_grow(a, d, s, tab->nbuckets * 2, 1, old_tab);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Lock-free reads                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* One optimistic lookup without the stripe lock. Entries are immutable once linked and every
 * link changes by one store, so the chain read is always some committed state; the only hazard
 * is memory freed (and reused) under our feet, which the caller detects with the stripe's seq.
 * Meanwhile every offset and length is bounds-checked against the mapping so that garbage is
 * never followed outside it, and the walk is bounded.
 * Result: 1 found (copied into buf if copy; *vlen), 0 absent, -1 value larger than cap,
 * -2 inconsistent (retry). */
static int gf__get_fast_once(gf_arena *a, gf__dstripe *st, uint64_t h, const void *key,
                             size_t klen, int copy, void *buf, size_t cap, size_t *vlen) {
    const char *base = gf__abase(a);
    const uint64_t size = gf__asize(a);
    /* Acquire loads of the table and of every link: pair with the release stores that
     * published them (the entry behind a link is filled before the link is stored). */
    uint64_t t = atomic_load_explicit(GF_A64(&st->table), memory_order_acquire);
    if (t == 0) return 0; /* no table yet: empty stripe */
    uint64_t toff = t & ~(uint64_t)63;
    unsigned w = (unsigned)(t & 1);
    if (toff < GF_CACHELINE || toff > size - sizeof(gf__dtab)) return -2;
    gf__dtab *tab = (gf__dtab *)(base + toff);
    uint64_t nb = atomic_load_explicit(GF_A64(&tab->nbuckets), memory_order_relaxed);
    if (nb == 0 || (nb & (nb - 1)) || nb > (size - toff - sizeof(gf__dtab)) / 8) return -2;
    gf_off e = atomic_load_explicit(GF_A64(&tab->b[gf__bucket(h, nb)]), memory_order_acquire);
    for (unsigned steps = 0; e; steps++) {
        if (steps > 64 || e < GF_CACHELINE || e > size - sizeof(gf__dent)) return -2;
        gf__dent *p = (gf__dent *)(base + e);
        uint64_t room = size - e - sizeof(gf__dent);
        if (atomic_load_explicit(GF_A64(&p->hash), memory_order_relaxed) == h &&
            atomic_load_explicit(GF_A64(&p->klen), memory_order_relaxed) == klen) {
            if (klen > room) return -2;
            if (memcmp(p->data, key, klen) == 0) {
                uint64_t vl = atomic_load_explicit(GF_A64(&p->vlen), memory_order_relaxed);
                if (vl > room - klen) return -2;
                if (copy) {
                    if (vl > cap) return -1;
                    memcpy(buf, p->data + klen, vl);
                }
                *vlen = vl;
                return 1;
            }
        }
        e = atomic_load_explicit(GF_A64(&p->next[w]), memory_order_acquire);
    }
    return 0;
}

/* Lock-free lookup, validated by the stripe's seq: equivalent to a locked read at the time seq
 * was first read (a mutation of this stripe in between changes seq; one that completed before
 * it and belonged to a `with d.lock:` group is seen through the user lock word, which its
 * holder set before). Result: 1 found, 0 absent, -1 take the locked path (value larger than
 * cap, user lock held by another thread, or writers kept changing the stripe). */
static int gf__get_fast(gf_arena *a, gf__dict *d, unsigned s, uint64_t h, const void *key,
                        size_t klen, int copy, void *buf, size_t cap, size_t *vlen) {
    gf__dstripe *st = &d->stripe[s];
    for (int attempt = 0; attempt < 4; attempt++) {
        /* Acquire: nothing below is read before seq. */
        uint64_t s1 = atomic_load_explicit(GF_A64(&st->seq), memory_order_acquire);
        if (gf__user_blocks(a, d)) return -1;
        int r = gf__get_fast_once(a, st, h, key, klen, copy, buf, cap, vlen);
        if (r == -1) return -1;
        /* Acquire fence: every read above happens before the second read of seq, so if any of
         * them saw memory written after a free, this read sees the bump made before it. */
        atomic_thread_fence(memory_order_acquire);
        if (r >= 0 && atomic_load_explicit(GF_A64(&st->seq), memory_order_relaxed) == s1) return r;
        gf__cpu_relax();
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Public API                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* Free every entry of table word t and its bucket array (nobody else can reach them). */
static void gf__table_free(gf_arena *a, uint64_t t) {
    gf__dtab *tab = gf__tab(a, t);
    if (!tab) return;
    unsigned w = (unsigned)(t & 1);
    for (uint64_t b = 0; b < tab->nbuckets; b++) {
        for (gf_off e = tab->b[b]; e;) {
            gf_off next = gf__ent(a, e)->next[w];
            gf_free(a, e);
            e = next;
        }
    }
    gf_free(a, t & ~(uint64_t)63);
}

/* Create a dict sized for `capacity` entries (0: each stripe gets its table on its first
 * insert). Result 0 and *out. Fails: GF_ENOSPC. */
int gf_dict_create(gf_arena *a, size_t capacity, gf_off *out) {
    if (!a || !out) return GF_EINVAL;
    gf_off off;
    int r = gf_obj_new(a, GF_OBJ_DICT, sizeof(gf__dict), &off);
    if (r < 0) return r;
    gf__dict *d = gf__ptr(a, off);
    if (GF_UNLIKELY(!d)) return GF_EINVAL; /* (off is never 0 here; tells the compiler) */
    memset((char *)d + sizeof(gf_obj), 0, sizeof(gf__dict) - sizeof(gf_obj));
    d->nstripes = GF__NS;
    gf_mutex_init(&d->user, GF_MUTEX_RECURSIVE);
    for (unsigned s = 0; s < GF__NS; s++) gf_mutex_init(&d->stripe[s].m, 0);
    if (capacity > 0) {
        uint64_t per = ((uint64_t)capacity + GF__NS - 1) / GF__NS;
        for (unsigned s = 0; s < GF__NS; s++) {
            gf_off old;
            r = gf__stripe_grow(a, d, s, per, 0, &old); /* nobody sees d yet: no locks */
            if (r < 0) {
                for (unsigned k = 0; k < s; k++) gf__table_free(a, d->stripe[k].table);
                gf_obj_decref(a, off); /* magic is 0: the destructor leaves it alone */
                return r;
            }
        }
    }
    /* Release: publishes the initialised header to whoever receives the offset. */
    atomic_store_explicit(GF_A32(&d->magic), GF__DICT_MAGIC, memory_order_release);
    *out = off;
    return 0;
}

/* The destructor, called by gf_obj_decref when the last reference goes: frees every entry and
 * bucket array. Nobody else can reach the dict any more, so no locks. */
void gf__dict_destroy(gf_arena *a, gf_off off) {
    gf__dict *d = gf__ptr(a, off);
    if (!d || d->magic != GF__DICT_MAGIC) return;
    for (unsigned s = 0; s < GF__NS; s++) {
        gf__dstripe *st = &d->stripe[s];
        if (st->pending && st->pending != (st->table & ~(uint64_t)63)) gf_free(a, st->pending);
        gf__table_free(a, st->table);
    }
    d->magic = 0;
}

/* Take the key's stripe without waiting (no spin, no sleep): the stripe must be free and the
 * user lock free or ours. Result 0. Fails: GF_EAGAIN (nothing held). */
static int gf__op_try_begin(gf_arena *a, gf__dict *d, unsigned s) {
    int r = gf_mutex_lock(a, &d->stripe[s].m, 0);
    if (GF_UNLIKELY(r == GF_EOWNERDEAD)) gf__stripe_recover(a, d, s);
    else if (GF_UNLIKELY(r != 0)) return GF_EAGAIN;
    if (GF_LIKELY(!gf__user_blocks(a, d))) return 0;
    gf__stripe_unlock(a, d, s);
    return GF_EAGAIN;
}

/* d[key] = val; nowait: never wait (see gf_dict_try_set). Result: 0 inserted, 1 replaced.
 * Fails: GF_ENOSPC, GF_EINTR, GF_EINVAL, GF_EAGAIN (nowait only: nothing done). */
static int gf__dict_set(gf_arena *a, gf_off doff, const void *key, size_t klen, const void *val,
                        size_t vlen, int nowait) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    uint64_t h = gf__hash(key, klen);
    unsigned s = gf__stripe_of(h);
    gf__dstripe *st = &d->stripe[s];
    gf_off ne;
    int r = gf__ent_new(a, h, key, klen, val, vlen, &ne);
    if (r < 0) return r;
    r = nowait ? gf__op_try_begin(a, d, s) : gf__op_begin(a, d, s);
    if (r < 0) {
        gf_free(a, ne);
        return r;
    }
    uint64_t t = gf__table(st);
    uint64_t *link;
    gf_off old = gf__find(a, t, h, key, klen, &link), old_tab = 0;
    if (old) {
        gf__ent(a, ne)->next[t & 1] = gf__ent(a, old)->next[t & 1];
        gf__link_store(link, ne); /* commit: the new entry replaces the old one in the chain */
        GF__CP(GF__CP_REPLACE_COMMITTED);
        gf__seq_bump(st); /* old is freed below */
    } else if (nowait && gf__stripe_full(a, st)) {
        /* The insert would grow the stripe's table (relinks all its entries): not short. */
        gf__stripe_unlock(a, d, s);
        gf_free(a, ne);
        return GF_EAGAIN;
    } else {
        r = gf__insert_locked(a, d, s, ne, &old_tab);
    }
    gf__stripe_unlock(a, d, s);
    if (r < 0) {
        gf_free(a, ne);
        return r;
    }
    if (old) gf_free(a, old);
    gf__free_old_table(a, old_tab);
    return old ? 1 : 0;
}

/* d[key] = val. Result: 0 inserted, 1 replaced. Fails: GF_ENOSPC, GF_EINTR, GF_EINVAL. */
int gf_dict_set(gf_arena *a, gf_off doff, const void *key, size_t klen, const void *val,
                size_t vlen) {
    return gf__dict_set(a, doff, key, klen, val, vlen, 0);
}

/* d[key] = val without waiting. Result: 0 inserted, 1 replaced. Fails: GF_EAGAIN (it would
 * wait, or grow the table: nothing done), GF_ENOSPC, GF_EINVAL. */
int gf_dict_try_set(gf_arena *a, gf_off doff, const void *key, size_t klen, const void *val,
                    size_t vlen) {
    return gf__dict_set(a, doff, key, klen, val, vlen, 1);
}

/* Copy d[key] into buf by the lock-free read only. Result 0 (out->data = buf). Fails:
 * GF_ENOENT, GF_EAGAIN (needs the locked path: retry with gf_dict_get), GF_EINVAL. */
int gf_dict_try_get(gf_arena *a, gf_off doff, const void *key, size_t klen, void *buf,
                    size_t cap, gf_buf *out) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d || !buf || !out) return GF_EINVAL;
    uint64_t h = gf__hash(key, klen);
    size_t vl;
    int f = gf__get_fast(a, d, gf__stripe_of(h), h, key, klen, 1, buf, cap, &vl);
    if (f == 0) return GF_ENOENT;
    if (f < 0) return GF_EAGAIN;
    out->data = buf;
    out->len = vl;
    out->heap = NULL;
    return 0;
}

/* Lock-free membership test only. Result: 1 present, 0 absent. Fails: GF_EAGAIN (retry with
 * gf_dict_contains), GF_EINVAL. */
int gf_dict_try_contains(gf_arena *a, gf_off doff, const void *key, size_t klen) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    uint64_t h = gf__hash(key, klen);
    size_t vl;
    int f = gf__get_fast(a, d, gf__stripe_of(h), h, key, klen, 0, NULL, 0, &vl);
    return f < 0 ? GF_EAGAIN : f;
}

/* Copy d[key] out. Result 0. Fails: GF_ENOENT, GF_ENOMEM, GF_EINTR, GF_EINVAL. */
int gf_dict_get(gf_arena *a, gf_off doff, const void *key, size_t klen, void *buf, size_t cap,
                gf_buf *out) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    uint64_t h = gf__hash(key, klen);
    unsigned s = gf__stripe_of(h);
    if (buf && out) {
        size_t vl;
        int f = gf__get_fast(a, d, s, h, key, klen, 1, buf, cap, &vl);
        if (f == 0) return GF_ENOENT;
        if (f == 1) {
            out->data = buf;
            out->len = vl;
            out->heap = NULL;
            return 0;
        }
    }
    int r = gf__op_begin(a, d, s);
    if (r < 0) return r;
    gf_off e = gf__find(a, gf__table(&d->stripe[s]), h, key, klen, NULL);
    if (!e) {
        r = GF_ENOENT;
    } else {
        gf__dent *p = gf__ent(a, e);
        r = gf__copy_out(p->data + p->klen, p->vlen, buf, cap, out);
    }
    gf__stripe_unlock(a, d, s);
    return r;
}

/* Run cb on d[key] under the stripe lock. Result: cb's. Fails: GF_ENOENT, GF_EINTR, GF_EINVAL. */
int gf_dict_get_cb(gf_arena *a, gf_off doff, const void *key, size_t klen,
                   int (*cb)(void *ctx, const void *val, size_t vlen), void *ctx) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d || !cb) return GF_EINVAL;
    uint64_t h = gf__hash(key, klen);
    unsigned s = gf__stripe_of(h);
    int r = gf__op_begin(a, d, s);
    if (r < 0) return r;
    gf_off e = gf__find(a, gf__table(&d->stripe[s]), h, key, klen, NULL);
    if (!e) {
        r = GF_ENOENT;
    } else {
        gf__dent *p = gf__ent(a, e);
        r = cb(ctx, p->data + p->klen, p->vlen);
    }
    gf__stripe_unlock(a, d, s);
    return r;
}

/* Result: 1 present, 0 absent. Fails: GF_EINTR, GF_EINVAL. */
int gf_dict_contains(gf_arena *a, gf_off doff, const void *key, size_t klen) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    uint64_t h = gf__hash(key, klen);
    unsigned s = gf__stripe_of(h);
    size_t vl;
    int r = gf__get_fast(a, d, s, h, key, klen, 0, NULL, 0, &vl);
    if (r >= 0) return r;
    r = gf__op_begin(a, d, s);
    if (r < 0) return r;
    r = gf__find(a, gf__table(&d->stripe[s]), h, key, klen, NULL) != 0;
    gf__stripe_unlock(a, d, s);
    return r;
}

/* Remove d[key], copying its value out first when out != NULL. Result 0. Fails: GF_ENOENT,
 * GF_ENOMEM, GF_EINTR, GF_EINVAL. */
static int gf__dict_remove(gf_arena *a, gf_off doff, const void *key, size_t klen, void *buf,
                           size_t cap, gf_buf *out) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    uint64_t h = gf__hash(key, klen);
    unsigned s = gf__stripe_of(h);
    gf__dstripe *st = &d->stripe[s];
    int r = gf__op_begin(a, d, s);
    if (r < 0) return r;
    uint64_t t = gf__table(st);
    uint64_t *link;
    gf_off e = gf__find(a, t, h, key, klen, &link);
    if (!e) {
        gf__stripe_unlock(a, d, s);
        return GF_ENOENT;
    }
    gf__dent *p = gf__ent(a, e);
    r = gf__copy_out(p->data + p->klen, p->vlen, buf, cap, out);
    if (r == 0) {
        gf__link_store(link, gf__link_load(&p->next[t & 1])); /* commit: unlinked */
        GF__CP(GF__CP_DELETE_COMMITTED);
        gf__count_store(st, gf__count_load(st) - 1);
        gf__seq_bump(st);
    }
    gf__stripe_unlock(a, d, s);
    if (r == 0) gf_free(a, e);
    return r;
}

/* del d[key]. Result 0. Fails: GF_ENOENT, GF_EINTR, GF_EINVAL. */
int gf_dict_delete(gf_arena *a, gf_off d, const void *key, size_t klen) {
    return gf__dict_remove(a, d, key, klen, NULL, 0, NULL);
}

/* d.pop(key). Result 0. Fails: GF_ENOENT, GF_ENOMEM, GF_EINTR, GF_EINVAL. */
int gf_dict_pop(gf_arena *a, gf_off d, const void *key, size_t klen, void *buf, size_t cap,
                gf_buf *out) {
    return gf__dict_remove(a, d, key, klen, buf, cap, out);
}

/* d.popitem(): remove some entry (scanning stripes from a per-process rotating start). Result 0.
 * Fails: GF_ENOENT (empty), GF_ENOMEM, GF_EINTR, GF_EINVAL. */
int gf_dict_popitem(gf_arena *a, gf_off doff, gf_buf *key, gf_buf *val) {
    static _Atomic unsigned rot; /* per process: spreads concurrent popitems over stripes */
    gf__dict *d = gf__dict_at(a, doff);
    if (!d || !key || !val) return GF_EINVAL;
    unsigned start = atomic_fetch_add_explicit(&rot, 1, memory_order_relaxed);
    for (unsigned i = 0; i < GF__NS; i++) {
        unsigned s = (start + i) & (GF__NS - 1);
        gf__dstripe *st = &d->stripe[s];
        if (gf__count_load(st) == 0) continue; /* hint; rechecked under the lock */
        int r = gf__op_begin(a, d, s);
        if (r < 0) return r;
        uint64_t t = gf__table(st);
        gf__dtab *tab = gf__tab(a, t);
        unsigned w = (unsigned)(t & 1);
        for (uint64_t b = 0; tab && b < tab->nbuckets; b++) {
            gf_off e = gf__link_load(&tab->b[b]);
            if (!e) continue;
            gf__dent *p = gf__ent(a, e);
            r = gf__copy_out(p->data, p->klen, NULL, 0, key);
            if (r == 0) {
                r = gf__copy_out(p->data + p->klen, p->vlen, NULL, 0, val);
                if (r < 0) gf_buf_release(key);
            }
            if (r == 0) {
                gf__link_store(&tab->b[b], gf__link_load(&p->next[w])); /* commit */
                gf__count_store(st, gf__count_load(st) - 1);
                gf__seq_bump(st);
            }
            gf__stripe_unlock(a, d, s);
            if (r == 0) gf_free(a, e);
            return r;
        }
        gf__stripe_unlock(a, d, s);
    }
    return GF_ENOENT;
}

/* d.setdefault(key, val) with the stored value copied out. Result: 1 inserted, 0 was present.
 * Fails: GF_ENOSPC, GF_ENOMEM, GF_EINTR, GF_EINVAL. */
int gf_dict_setdefault(gf_arena *a, gf_off doff, const void *key, size_t klen, const void *val,
                       size_t vlen, void *buf, size_t cap, gf_buf *out) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    uint64_t h = gf__hash(key, klen);
    unsigned s = gf__stripe_of(h);
    gf_off ne = 0;
    for (;;) {
        int r = gf__op_begin(a, d, s);
        if (r < 0) break;
        gf_off e = gf__find(a, gf__table(&d->stripe[s]), h, key, klen, NULL);
        if (e) { /* present: copy it out */
            gf__dent *p = gf__ent(a, e);
            r = gf__copy_out(p->data + p->klen, p->vlen, buf, cap, out);
            gf__stripe_unlock(a, d, s);
            if (ne) gf_free(a, ne);
            return r < 0 ? r : 0;
        }
        if (!ne) { /* absent: allocate outside the lock, then look again */
            gf__stripe_unlock(a, d, s);
            r = gf__ent_new(a, h, key, klen, val, vlen, &ne);
            if (r < 0) return r;
            continue;
        }
        gf__dent *p = gf__ent(a, ne);
        r = gf__copy_out(p->data + p->klen, p->vlen, buf, cap, out);
        gf_off old_tab = 0;
        if (r == 0) {
            r = gf__insert_locked(a, d, s, ne, &old_tab);
            if (r < 0) gf_buf_release(out);
        }
        gf__stripe_unlock(a, d, s);
        if (r < 0) {
            gf_free(a, ne);
            return r;
        }
        gf__free_old_table(a, old_tab);
        return 1;
    }
    if (ne) gf_free(a, ne);
    return GF_EINTR;
}

/* Compare-and-set (see gilfree.h). Result: 1 done, 0 mismatch. Fails: GF_ENOSPC, GF_EINTR,
 * GF_EINVAL. */
int gf_dict_cas(gf_arena *a, gf_off doff, const void *key, size_t klen, const void *expected,
                size_t elen, const void *newv, size_t nlen) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    uint64_t h = gf__hash(key, klen);
    unsigned s = gf__stripe_of(h);
    gf__dstripe *st = &d->stripe[s];
    gf_off ne = 0;
    if (newv) {
        int r = gf__ent_new(a, h, key, klen, newv, nlen, &ne);
        if (r < 0) return r;
    }
    int r = gf__op_begin(a, d, s);
    if (r < 0) {
        if (ne) gf_free(a, ne);
        return r;
    }
    uint64_t t = gf__table(st);
    unsigned w = (unsigned)(t & 1);
    uint64_t *link;
    gf_off old = gf__find(a, t, h, key, klen, &link);
    int match;
    if (!expected) {
        match = old == 0;
    } else {
        gf__dent *p = old ? gf__ent(a, old) : NULL;
        match = p && p->vlen == elen && memcmp(p->data + p->klen, expected, elen) == 0;
    }
    gf_off to_free = ne, old_tab = 0;
    if (match) {
        to_free = old;
        if (old && ne) { /* replace */
            gf__ent(a, ne)->next[w] = gf__ent(a, old)->next[w];
            gf__link_store(link, ne); /* commit */
            gf__seq_bump(st);
        } else if (old) { /* delete */
            gf__link_store(link, gf__link_load(&gf__ent(a, old)->next[w])); /* commit */
            gf__count_store(st, gf__count_load(st) - 1);
            gf__seq_bump(st);
        } else if (ne) { /* insert */
            r = gf__insert_locked(a, d, s, ne, &old_tab);
            if (r < 0) {
                to_free = ne;
                match = r;
            }
        }
    }
    gf__stripe_unlock(a, d, s);
    if (to_free) gf_free(a, to_free);
    gf__free_old_table(a, old_tab);
    return match;
}

/* len(d). Result >= 0. Fails: GF_EINTR, GF_EINVAL. */
int64_t gf_dict_len(gf_arena *a, gf_off doff) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    if (gf__user_blocks(a, d)) {
        int r = gf__user_wait(a, d);
        if (r < 0) return r;
    }
    uint64_t n = 0;
    for (unsigned s = 0; s < GF__NS; s++) {
        /* A stripe held by a dead process may have a stale count: take it over (which
         * recounts). Relaxed: only a hint; the lock orders the recount. */
        uint32_t w = atomic_load_explicit(GF_A32(&d->stripe[s].m.word), memory_order_relaxed);
        if (GF_UNLIKELY(w != 0) && !gf__ident_alive(a, w & ~GF__MUTEX_WAITERS)) {
            gf__stripe_lock(a, d, s);
            gf__stripe_unlock(a, d, s);
        }
        n += gf__count_load(&d->stripe[s]);
    }
    return (int64_t)n;
}

/* d.clear(). Result 0. Fails: GF_EINTR, GF_EINVAL. */
int gf_dict_clear(gf_arena *a, gf_off doff) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    int r = gf__lock_all_user(a, d);
    if (r < 0) return r;
    uint64_t old[GF__NS];
    for (unsigned s = 0; s < GF__NS; s++) {
        old[s] = gf__table(&d->stripe[s]);
        /* Commit (this stripe): its chains become unreachable. */
        atomic_store_explicit(GF_A64(&d->stripe[s].table), 0, memory_order_release);
    }
    GF__CP(GF__CP_CLEAR_COMMITTED);
    for (unsigned s = 0; s < GF__NS; s++) {
        gf__count_store(&d->stripe[s], 0);
        gf__seq_bump(&d->stripe[s]); /* every entry is freed below */
    }
    gf__unlock_all(a, d);
    /* Free the old entries outside every lock (a crash here only leaks them). */
    for (unsigned s = 0; s < GF__NS; s++) gf__table_free(a, old[s]);
    return 0;
}

/* Append a snapshot record. Result 0. Fails: GF_ENOMEM. */
int gf__snap_put(gf_snap *s, size_t *cap, const void *k, uint64_t kl, const void *v,
                        uint64_t vl) {
    size_t need = 16 + ((kl + vl + 7) & ~(size_t)7);
    if (s->len + need > *cap) {
        size_t nc = *cap ? *cap * 2 : 4096;
        while (nc < s->len + need) nc *= 2;
        void *nb = realloc(s->buf, nc);
        if (!nb) return GF_ENOMEM;
        s->buf = nb;
        *cap = nc;
    }
    char *p = (char *)s->buf + s->len;
    memcpy(p, &kl, 8);
    memcpy(p + 8, &vl, 8);
    if (kl) memcpy(p + 16, k, kl);
    if (vl) memcpy(p + 16 + kl, v, vl);
    s->len += need;
    s->count++;
    return 0;
}

/* Next snapshot record. Result: 1 and *it, or 0 at the end. */
int gf_snap_next(const gf_snap *s, size_t *pos, gf_snap_item *it) {
    if (!s || !s->buf || *pos + 16 > s->len) return 0;
    const char *p = (const char *)s->buf + *pos;
    uint64_t kl, vl;
    memcpy(&kl, p, 8);
    memcpy(&vl, p + 8, 8);
    it->key = kl ? p + 16 : NULL;
    it->klen = kl;
    it->val = p + 16 + kl;
    it->vlen = vl;
    *pos += 16 + ((kl + vl + 7) & ~(size_t)7);
    return 1;
}

/* Free a snapshot's buffer. */
void gf_snap_free(gf_snap *s) {
    if (!s) return;
    free(s->buf);
    s->buf = NULL;
    s->len = s->count = 0;
}

/* A consistent copy of the dict (every stripe held while copying). Result 0. Fails:
 * GF_ENOMEM, GF_EINTR, GF_EINVAL. */
int gf_dict_snapshot(gf_arena *a, gf_off doff, unsigned what, gf_snap *out) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d || !out) return GF_EINVAL;
    out->buf = NULL;
    out->len = out->count = 0;
    int r = gf__lock_all_user(a, d);
    if (r < 0) return r;
    /* Size it first, so the copy is one allocation. */
    size_t total = 0;
    for (unsigned s = 0; s < GF__NS; s++) {
        uint64_t t = gf__table(&d->stripe[s]);
        gf__dtab *tab = gf__tab(a, t);
        unsigned w = (unsigned)(t & 1);
        for (uint64_t b = 0; tab && b < tab->nbuckets; b++)
            for (gf_off e = tab->b[b]; e; e = gf__ent(a, e)->next[w]) {
                gf__dent *p = gf__ent(a, e);
                total += 16 + (((what & GF_SNAP_KEYS ? p->klen : 0) +
                                (what & GF_SNAP_VALUES ? p->vlen : 0) + 7) & ~(size_t)7);
            }
    }
    size_t cap = 0;
    if (total) {
        out->buf = malloc(total);
        if (!out->buf) r = GF_ENOMEM;
        cap = total;
    }
    for (unsigned s = 0; r == 0 && s < GF__NS; s++) {
        uint64_t t = gf__table(&d->stripe[s]);
        gf__dtab *tab = gf__tab(a, t);
        unsigned w = (unsigned)(t & 1);
        for (uint64_t b = 0; r == 0 && tab && b < tab->nbuckets; b++)
            for (gf_off e = tab->b[b]; r == 0 && e; e = gf__ent(a, e)->next[w]) {
                gf__dent *p = gf__ent(a, e);
                r = gf__snap_put(out, &cap, p->data, what & GF_SNAP_KEYS ? p->klen : 0,
                                 p->data + p->klen, what & GF_SNAP_VALUES ? p->vlen : 0);
            }
    }
    gf__unlock_all(a, d);
    if (r < 0) gf_snap_free(out);
    return r;
}

/* `with d.lock:` enter. Result 0 / GF_EOWNERDEAD. Fails: GF_ETIMEDOUT, GF_EINTR, GF_EAGAIN,
 * GF_EINVAL. */
int gf_dict_lock(gf_arena *a, gf_off doff, int64_t deadline) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    int r = gf_mutex_lock(a, &d->user, deadline);
    if (r < 0 && r != GF_EOWNERDEAD) return r;
    /* First acquisition: wait out the operations that started before we took the lock (they
     * saw it free). Each stripe taken and dropped once. Our own depth: relaxed. */
    if (atomic_load_explicit(GF_A32(&d->user.depth), memory_order_relaxed) <= 1)
        for (unsigned s = 0; s < GF__NS; s++) {
            gf__stripe_lock(a, d, s);
            gf__stripe_unlock(a, d, s);
        }
    return r;
}

/* `with d.lock:` exit. Result 0. Fails: GF_EPERM, GF_EOVERFLOW, GF_EINVAL. */
int gf_dict_unlock(gf_arena *a, gf_off doff) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    return gf_mutex_unlock(a, &d->user);
}

/* Consistency walk (tests). Result: the number of entries. Fails: GF_EBADMSG, GF_EINVAL. */
int64_t gf_dict_check(gf_arena *a, gf_off doff) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    if (gf_obj_check(a, doff, GF_OBJ_DICT) < 0) return GF_EBADMSG;
    gf__lock_all(a, d);
    int64_t res = 0;
    gf_arena_stats stats;
    uint64_t bound = gf_arena_stats_get(a, &stats) == 0 ? stats.live_blocks + 1 : UINT64_MAX;
    uint64_t total = 0;
    for (unsigned s = 0; s < GF__NS && res == 0; s++) {
        gf__dstripe *st = &d->stripe[s];
        uint64_t t = gf__table(st);
        gf_off toff = t & ~(uint64_t)63;
        if (st->pending) { /* only set while a grow runs, under the lock we hold */
            res = GF_EBADMSG;
            break;
        }
        if (!t) {
            if (gf__count_load(st) != 0) res = GF_EBADMSG;
            continue;
        }
        gf__dtab *tab = gf__ptr(a, toff);
        if (gf_arena_check_block(a, toff, sizeof(gf__dtab)) < 0 ||
            tab->nbuckets < GF__STRIPE_MIN_BUCKETS || (tab->nbuckets & (tab->nbuckets - 1)) ||
            gf_arena_check_block(a, toff, sizeof(gf__dtab) + tab->nbuckets * 8) < 0) {
            res = GF_EBADMSG;
            break;
        }
        unsigned w = (unsigned)(t & 1);
        uint64_t count = 0;
        for (uint64_t b = 0; b < tab->nbuckets && res == 0; b++) {
            for (gf_off e = tab->b[b]; e; e = gf__ent(a, e)->next[w]) {
                gf__dent *p = gf__ent(a, e);
                if (++total > bound || gf_arena_check_block(a, e, sizeof(gf__dent)) < 0 ||
                    gf_arena_check_block(a, e, sizeof(gf__dent) + p->klen + p->vlen) < 0 ||
                    p->hash != gf__hash(p->data, p->klen) || gf__stripe_of(p->hash) != s ||
                    gf__bucket(p->hash, tab->nbuckets) != b) {
                    res = GF_EBADMSG;
                    break;
                }
                count++;
            }
        }
        if (res == 0 && count != gf__count_load(st)) res = GF_EBADMSG;
    }
    if (res == 0) res = (int64_t)total;
    gf__unlock_all(a, d);
    return res;
}
