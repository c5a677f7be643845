/*
 * dict_read.c -- the shared dict's reads: the lock-free lookup validated by the stripe's seq
 * (and its no-wait entry points), the locked fallbacks (get, get_cb, contains), and len.
 */
#include "dict_internal.h"

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
    int r = gf__dict_op_begin(a, d, s);
    if (r < 0) return r;
    gf_off e = gf__dict_find(a, gf__table(&d->stripe[s]), h, key, klen, NULL);
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
    int r = gf__dict_op_begin(a, d, s);
    if (r < 0) return r;
    gf_off e = gf__dict_find(a, gf__table(&d->stripe[s]), h, key, klen, NULL);
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
    r = gf__dict_op_begin(a, d, s);
    if (r < 0) return r;
    r = gf__dict_find(a, gf__table(&d->stripe[s]), h, key, klen, NULL) != 0;
    gf__stripe_unlock(a, d, s);
    return r;
}

/* len(d). Result >= 0. Fails: GF_EINTR, GF_EINVAL. */
int64_t gf_dict_len(gf_arena *a, gf_off doff) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    if (gf__user_blocks(a, d)) {
        int r = gf__dict_user_wait(a, d);
        if (r < 0) return r;
    }
    uint64_t n = 0;
    for (unsigned s = 0; s < GF__NS; s++) {
        /* A stripe held by a dead process may have a stale count: take it over (which
         * recounts). Relaxed: only a hint; the lock orders the recount. */
        uint32_t w = atomic_load_explicit(GF_A32(&d->stripe[s].m.word), memory_order_relaxed);
        if (GF_UNLIKELY(w != 0) && !gf__ident_alive(a, w & ~GF__MUTEX_WAITERS)) {
            gf__dict_stripe_lock(a, d, s);
            gf__stripe_unlock(a, d, s);
        }
        n += gf__count_load(&d->stripe[s]);
    }
    return (int64_t)n;
}

