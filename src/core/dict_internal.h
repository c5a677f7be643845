/*
 * dict_internal.h -- the shared dict's layout and the helpers its files share: dict.c (stripes,
 * tables, growing, create/destroy, the user lock), dict_ops.c (mutations), dict_read.c (lock-free
 * and locked reads, len) and dict_iter.c (snapshots, the consistency check). Not installed.
 *
 * The dict: GF_DICT_STRIPES independent chained hash tables ("stripes") of opaque byte keys and
 * values in the arena.
 *
 * Layout
 *   gf__dict (a gf_obj GF_OBJ_DICT): header line + GF_DICT_STRIPES stripes of one cache line each
 *   (a gf_mutex, the stripe's entry count, its seq, its table and a resize's pending array).
 *   stripe table: packed {offset of a gf__dtab bucket array | which `next` field chains use
 *   (bit 0)}, 0 until the stripe's first insert.
 *   entry: one arena block {next[2], hash, klen, vlen, order, key bytes, value bytes}; `order`
 *   puts the keys in insertion order (as a dict's): snapshots (keys, items, iteration) are
 *   sorted by it, a replace keeps it, a delete then insert moves the key to the end.
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
#ifndef GF_DICT_INTERNAL_H
#define GF_DICT_INTERNAL_H

#include "internal.h"

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
    GF__CP_REPLACE_COMMITTED, /* set: new entry replaced the old, old not freed */
    GF__CP_ENT_ALLOCATED,     /* set: new entry allocated, key and value not copied yet */
    GF__CP_GROW_ALLOCATED     /* grow: new array allocated, not zeroed (stripe held) */
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
    uint64_t order;       /* the key's place in insertion order (see gf__dict_ent_new) */
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
static inline uint64_t gf__hash(const void *key, size_t n) {
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

static inline void gf__stripe_unlock(gf_arena *a, gf__dict *d, unsigned s) {
    gf_mutex_unlock(a, &d->stripe[s].m);
}

/* 1 if another thread holds `with d.lock:`. Called with a stripe held (whose acquire orders this
 * relaxed load after the locker's barrier) or, in gf_dict_len, as a hint. */
static inline int gf__user_blocks(gf_arena *a, gf__dict *d) {
    uint32_t w = atomic_load_explicit(GF_A32(&d->user.word), memory_order_relaxed);
    return GF_UNLIKELY(w != 0) && !gf_mutex_is_mine(a, &d->user);
}

/* 1 if stripe st has a table and one more entry would make it grow (more entries than
 * buckets: load factor 1). */
static inline int gf__stripe_full(gf_arena *a, gf__dstripe *st) {
    gf__dtab *tab = gf__tab(a, gf__table(st));
    return tab && gf__count_load(st) + 1 > tab->nbuckets;
}

/* ------------------------------------------------------------------------------------------ */
/* Shared between the dict's files                                                             */
/* ------------------------------------------------------------------------------------------ */

/* dict.c: lock stripe s (GF_EINTR retried). Result: 0, or 1 when the previous holder died (the
 * stripe has been recovered). */
int gf__dict_stripe_lock(gf_arena *a, gf__dict *d, unsigned s);
/* dict.c: wait until the user lock is free. Result 0. Fails: GF_EINTR. */
int gf__dict_user_wait(gf_arena *a, gf__dict *d);
/* dict.c: take the key's stripe, waiting out a user-lock holder. Result 0. Fails: GF_EINTR. */
int gf__dict_op_begin(gf_arena *a, gf__dict *d, unsigned s);
/* dict.c: take the key's stripe without waiting. Result 0. Fails: GF_EAGAIN (nothing held). */
int gf__dict_op_try_begin(gf_arena *a, gf__dict *d, unsigned s);
/* dict.c: take / drop every stripe in order. */
void gf__dict_lock_all(gf_arena *a, gf__dict *d);
void gf__dict_unlock_all(gf_arena *a, gf__dict *d);
/* dict.c: every stripe, waiting out a user-lock holder. Result 0. Fails: GF_EINTR. */
int gf__dict_lock_all_user(gf_arena *a, gf__dict *d);
/* dict.c: find key in table word t (stripe held). Result: the entry (0 if absent); *linkp = the
 * word that points to it (NULL when there is no table). */
gf_off gf__dict_find(gf_arena *a, uint64_t t, uint64_t h, const void *key, size_t klen,
                     uint64_t **linkp);
/* dict.c: allocate and fill an entry (links unset). Result 0 and *out. Fails: GF_ENOSPC. */
int gf__dict_ent_new(gf_arena *a, uint64_t h, const void *key, size_t klen, const void *val,
                     size_t vlen, gf_off *out);
/* dict.c: link the new entry ne (key absent) into stripe s (held), growing its table when
 * full. Result 0; *old_tab = a replaced bucket array to free after the unlock. Fails:
 * GF_ENOSPC (nothing linked). */
int gf__dict_insert_locked(gf_arena *a, gf__dict *d, unsigned s, gf_off ne, gf_off *old_tab);
/* The blocks a mutation of the calling thread holds in its process's block ledger
 * (gf__block_hold), so that the survivors free them if it is killed: the new entry from its
 * allocation (gf__dict_ent_new) to just before the store that links it, and a replaced bucket
 * array from just after the grow's commit to its free. A kill in the few instructions between
 * a store and the record's change leaks that block (as before), and so does a kill between
 * the unlinking of a replaced or deleted entry and its free (the stripe unlock in between):
 * recording those too cost another ~60 instructions per replace (callgrind), for a window
 * that short. */
extern __thread int gf__dict_h_new __attribute__((tls_model("initial-exec")));
extern __thread int gf__dict_h_old __attribute__((tls_model("initial-exec")));
static inline void gf__dict_unhold(gf_arena *a, int *h) {
    if (*h) {
        gf__block_unhold(a, *h);
        *h = 0;
    }
}
/* Just before the store that links the new entry. */
static inline void gf__ent_linking(gf_arena *a) { gf__dict_unhold(a, &gf__dict_h_new); }
/* Free the new entry (never linked). */
static inline void gf__ent_free_new(gf_arena *a, gf_off ne) {
    int h = gf__dict_h_new;
    gf__dict_h_new = 0;
    gf__free_held(a, ne, h); /* (the record dropped at the last moment) */
}
/* Just after the store that unlinked `old` (a bucket array). */
static inline void gf__dict_hold_old(gf_arena *a, gf_off old) {
    gf__dict_h_old = old ? gf__block_hold(a, old) : 0;
}
/* Free what gf__dict_hold_old recorded. */
static inline void gf__dict_free_old(gf_arena *a, gf_off old) {
    int h = gf__dict_h_old;
    gf__dict_h_old = 0;
    gf__free_held(a, old, h);
}
/* dict.c: after dropping the stripe, free the bucket array a grow replaced (0: nothing). */
void gf__dict_free_old_table(gf_arena *a, gf_off old);
/* dict.c: free every entry of table word t and its bucket array (unreachable by now). */
void gf__dict_table_free(gf_arena *a, uint64_t t);

#endif /* GF_DICT_INTERNAL_H */
