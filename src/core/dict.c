/*
 * dict.c -- the shared dict's structure: stripe locks (with recovery from a dead holder and the
 * `with d.lock:` user lock), chain lookup, entries and bucket arrays, growing a stripe's table,
 * create / destroy, and gf_dict_lock / gf_dict_unlock (see dict_internal.h for the layout,
 * the locking rules and the crash-consistency argument).
 */
#include "dict_internal.h"

#include <stdlib.h>

/* ------------------------------------------------------------------------------------------ */
/* Copy-out buffers                                                                            */
/* ------------------------------------------------------------------------------------------ */

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

/* ------------------------------------------------------------------------------------------ */
/* Stripe locks                                                                               */
/* ------------------------------------------------------------------------------------------ */

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
int gf__dict_stripe_lock(gf_arena *a, gf__dict *d, unsigned s) {
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

/* Wait until the user lock is free (take it and give it back; a dead holder is taken over).
 * Result 0. Fails: GF_EINTR. */
int gf__dict_user_wait(gf_arena *a, gf__dict *d) {
    int r = gf_mutex_lock(a, &d->user, GF_FOREVER);
    if (r == 0 || r == GF_EOWNERDEAD) {
        gf_mutex_unlock(a, &d->user);
        return 0;
    }
    return r;
}

/* Take the key's stripe, waiting out a user-lock holder. Result 0. Fails: GF_EINTR. */
int gf__dict_op_begin(gf_arena *a, gf__dict *d, unsigned s) {
    for (;;) {
        gf__dict_stripe_lock(a, d, s);
        if (GF_LIKELY(!gf__user_blocks(a, d))) return 0;
        gf__stripe_unlock(a, d, s);
        int r = gf__dict_user_wait(a, d);
        if (r < 0) return r;
    }
}

/* Take the key's stripe without waiting (no spin, no sleep): the stripe must be free and the
 * user lock free or ours. Result 0. Fails: GF_EAGAIN (nothing held). */
int gf__dict_op_try_begin(gf_arena *a, gf__dict *d, unsigned s) {
    int r = gf_mutex_lock(a, &d->stripe[s].m, 0);
    if (GF_UNLIKELY(r == GF_EOWNERDEAD)) gf__stripe_recover(a, d, s);
    else if (GF_UNLIKELY(r != 0)) return GF_EAGAIN;
    if (GF_LIKELY(!gf__user_blocks(a, d))) return 0;
    gf__stripe_unlock(a, d, s);
    return GF_EAGAIN;
}

/* Take every stripe in order. */
void gf__dict_lock_all(gf_arena *a, gf__dict *d) {
    for (unsigned s = 0; s < GF__NS; s++) gf__dict_stripe_lock(a, d, s);
}
void gf__dict_unlock_all(gf_arena *a, gf__dict *d) {
    for (unsigned s = GF__NS; s-- > 0;) gf__stripe_unlock(a, d, s);
}

/* Every stripe, waiting out a user-lock holder. Result 0. Fails: GF_EINTR. */
int gf__dict_lock_all_user(gf_arena *a, gf__dict *d) {
    for (;;) {
        gf__dict_lock_all(a, d);
        if (!gf__user_blocks(a, d)) return 0;
        gf__dict_unlock_all(a, d);
        int r = gf__dict_user_wait(a, d);
        if (r < 0) return r;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Chains, entries and bucket arrays                                                          */
/* ------------------------------------------------------------------------------------------ */

/* Find key in the chain of its bucket in table word t (0 = no table: absent). The caller holds
 * the stripe. Result: the entry's offset (0 if absent); *linkp = the word that points to it
 * (bucket head or predecessor's next; NULL when there is no table). */
gf_off gf__dict_find(gf_arena *a, uint64_t t, uint64_t h, const void *key, size_t klen,
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

/* A new key's place in insertion order: CLOCK_MONOTONIC nanoseconds (the same clock in every
 * process), made strictly increasing per thread. Inserts that follow one another (in one
 * thread, or ordered between threads or processes by any synchronisation, which takes far more
 * than a nanosecond) get increasing values; equal values come only from concurrent inserts,
 * which snapshots order by entry offset. No shared counter: two processes inserting distinct
 * keys still share no cache line. Result: the order value, never fails. */
static uint64_t gf__dict_order_next(void) {
    static __thread uint64_t last;
    uint64_t now = (uint64_t)gf_now_ns();
    if (now <= last) now = last + 1;
    last = now;
    return now;
}

__thread int gf__dict_h_new __attribute__((tls_model("initial-exec")));
__thread int gf__dict_h_old __attribute__((tls_model("initial-exec")));

/* Allocate and fill an entry (links and order left unset), held in the block ledger until it
 * is linked or freed (see dict_internal.h). Result 0 and *out. Fails: GF_ENOSPC. */
int gf__dict_ent_new(gf_arena *a, uint64_t h, const void *key, size_t klen, const void *val,
                     size_t vlen, gf_off *out) {
    if (klen > SIZE_MAX / 4 || vlen > SIZE_MAX / 4) return GF_ENOSPC;
    gf_off e;
    /* Recorded from the moment it is live (inside the allocator), not after the copies below:
     * a writer killed while copying a long value leaked the entry. */
    int r = gf__alloc_held(a, sizeof(gf__dent) + klen + vlen, &e, &gf__dict_h_new);
    if (r < 0) return r == GF_EINVAL ? GF_ENOSPC : r;
    GF__CP(GF__CP_ENT_ALLOCATED);
    gf__dent *p = gf__ent(a, e);
    p->next[0] = p->next[1] = 0;
    p->hash = h;
    p->klen = klen;
    p->vlen = vlen;
    p->order = 0; /* set when it is linked as a new key, or copied from the entry it replaces */
    if (klen) memcpy(p->data, key, klen);
    if (vlen) memcpy(p->data + klen, val, vlen);
    *out = e;
    return 0;
}

/* Allocate a zeroed bucket array of nb buckets, recorded in the block ledger (*hold: the
 * handle, 0 if not recorded) from the moment it is live: zeroing a large array takes long
 * enough for a kill to land in it. Result 0. Fails: GF_ENOSPC. */
static int gf__tab_new(gf_arena *a, uint64_t nb, gf_off *out, int *hold) {
    if (nb > (SIZE_MAX - sizeof(gf__dtab)) / 8) return GF_ENOSPC;
    gf_off t;
    int r = gf__alloc_held(a, sizeof(gf__dtab) + nb * 8, &t, hold);
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
    int hold;
    *old = 0;
    int r = gf__tab_new(a, n, &nt, &hold);
    if (r < 0) return r;
    if (cp) GF__CP(GF__CP_GROW_ALLOCATED);
    /* Record the array before linking anything through it, so that whoever takes the stripe
     * over after a crash frees it (gf__stripe_recover); the ledger's record goes just before
     * (both at once would free it twice; a kill between the two stores leaks it). Relaxed:
     * only read under the lock. */
    gf__block_unhold(a, hold);
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
    *old = otab ? (t & ~(uint64_t)63) : 0;
    gf__dict_hold_old(a, *old); /* unreachable now: the survivors free it if we die */
    if (cp) GF__CP(GF__CP_GROW_COMMITTED);
    atomic_store_explicit(GF_A64(&st->pending), 0, memory_order_relaxed);
    gf__seq_bump(st); /* the old bucket array is freed once the stripe is dropped */
    return 0;
}

/* After dropping the stripe: free the bucket array a grow replaced (a crash before this only
 * leaks it). */
void gf__dict_free_old_table(gf_arena *a, gf_off old) {
    if (!old) return;
    GF__CP(GF__CP_GROW_UNLOCKED);
    GF__CP(GF__CP_GROW_FREE);
    gf__dict_free_old(a, old);
}

/* Link the new entry ne (its key absent) at the head of its bucket in stripe s, held by the
 * caller (the stripe's first insert gives it its table), then grow the stripe's table if it now
 * holds more entries than buckets (best effort: on GF_ENOSPC chains just get longer). Result 0;
 * *old_tab as gf__stripe_grow. Fails: GF_ENOSPC (the stripe had no table and none could be
 * allocated; nothing linked). */
int gf__dict_insert_locked(gf_arena *a, gf__dict *d, unsigned s, gf_off ne, gf_off *old_tab) {
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
    p->order = gf__dict_order_next(); /* a new key: the end of the insertion order */
    p->next[w] = gf__link_load(head);
    gf__ent_linking(a);
    gf__link_store(head, ne); /* commit: the new entry heads its chain */
    GF__CP(GF__CP_INSERT_COMMITTED);
    uint64_t c = gf__count_load(st) + 1;
    gf__count_store(st, c);
    gf__seq_bump(st); /* (nothing freed; keeps reads equivalent to locked ones) */
    if (c > tab->nbuckets) (void)gf__stripe_grow(a, d, s, tab->nbuckets * 2, 1, old_tab);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Create / destroy                                                                           */
/* ------------------------------------------------------------------------------------------ */

/* Free every entry of table word t and its bucket array (nobody else can reach them). */
void gf__dict_table_free(gf_arena *a, uint64_t t) {
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
                for (unsigned k = 0; k < s; k++) gf__dict_table_free(a, d->stripe[k].table);
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
        gf__dict_table_free(a, st->table);
    }
    d->magic = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The user lock (`with d.lock:`)                                                             */
/* ------------------------------------------------------------------------------------------ */

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
            gf__dict_stripe_lock(a, d, s);
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
