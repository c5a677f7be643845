/*
 * dict_ops.c -- the shared dict's mutations: set (and its no-wait form), delete / pop,
 * popitem, setdefault, compare-and-set, clear; each committed by one release store (see
 * dict_internal.h).
 */
#include "dict_internal.h"

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
    int r = gf__dict_ent_new(a, h, key, klen, val, vlen, &ne);
    if (r < 0) return r;
    r = nowait ? gf__dict_op_try_begin(a, d, s) : gf__dict_op_begin(a, d, s);
    if (r < 0) {
        gf__ent_free_new(a, ne);
        return r;
    }
    uint64_t t = gf__table(st);
    uint64_t *link;
    gf_off old = gf__dict_find(a, t, h, key, klen, &link), old_tab = 0;
    if (old) {
        gf__ent(a, ne)->next[t & 1] = gf__ent(a, old)->next[t & 1];
        gf__ent(a, ne)->order = gf__ent(a, old)->order; /* a replace keeps the key's place */
        gf__ent_linking(a);
        gf__link_store(link, ne); /* commit: the new entry replaces the old one in the chain */
        GF__CP(GF__CP_REPLACE_COMMITTED);
        gf__seq_bump(st); /* old is freed below */
    } else if (nowait && gf__stripe_full(a, st)) {
        /* The insert would grow the stripe's table (relinks all its entries): not short. */
        gf__stripe_unlock(a, d, s);
        gf__ent_free_new(a, ne);
        return GF_EAGAIN;
    } else {
        r = gf__dict_insert_locked(a, d, s, ne, &old_tab);
    }
    gf__stripe_unlock(a, d, s);
    if (r < 0) {
        gf__ent_free_new(a, ne);
        return r;
    }
    if (old) gf_free(a, old);
    gf__dict_free_old_table(a, old_tab);
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

/* Remove d[key], copying its value out first when out != NULL. Result 0. Fails: GF_ENOENT,
 * GF_ENOMEM, GF_EINTR, GF_EINVAL. */
static int gf__dict_remove(gf_arena *a, gf_off doff, const void *key, size_t klen, void *buf,
                           size_t cap, gf_buf *out) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    uint64_t h = gf__hash(key, klen);
    unsigned s = gf__stripe_of(h);
    gf__dstripe *st = &d->stripe[s];
    int r = gf__dict_op_begin(a, d, s);
    if (r < 0) return r;
    uint64_t t = gf__table(st);
    uint64_t *link;
    gf_off e = gf__dict_find(a, t, h, key, klen, &link);
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
        int r = gf__dict_op_begin(a, d, s);
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
        int r = gf__dict_op_begin(a, d, s);
        if (r < 0) break;
        gf_off e = gf__dict_find(a, gf__table(&d->stripe[s]), h, key, klen, NULL);
        if (e) { /* present: copy it out */
            gf__dent *p = gf__ent(a, e);
            r = gf__copy_out(p->data + p->klen, p->vlen, buf, cap, out);
            gf__stripe_unlock(a, d, s);
            if (ne) gf__ent_free_new(a, ne);
            return r < 0 ? r : 0;
        }
        if (!ne) { /* absent: allocate outside the lock, then look again */
            gf__stripe_unlock(a, d, s);
            r = gf__dict_ent_new(a, h, key, klen, val, vlen, &ne);
            if (r < 0) return r;
            continue;
        }
        gf__dent *p = gf__ent(a, ne);
        r = gf__copy_out(p->data + p->klen, p->vlen, buf, cap, out);
        gf_off old_tab = 0;
        if (r == 0) {
            r = gf__dict_insert_locked(a, d, s, ne, &old_tab);
            if (r < 0) gf_buf_release(out);
        }
        gf__stripe_unlock(a, d, s);
        if (r < 0) {
            gf__ent_free_new(a, ne);
            return r;
        }
        gf__dict_free_old_table(a, old_tab);
        return 1;
    }
    if (ne) gf__ent_free_new(a, ne);
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
        int r = gf__dict_ent_new(a, h, key, klen, newv, nlen, &ne);
        if (r < 0) return r;
    }
    int r = gf__dict_op_begin(a, d, s);
    if (r < 0) {
        if (ne) gf__ent_free_new(a, ne);
        return r;
    }
    uint64_t t = gf__table(st);
    unsigned w = (unsigned)(t & 1);
    uint64_t *link;
    gf_off old = gf__dict_find(a, t, h, key, klen, &link);
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
            gf__ent(a, ne)->order = gf__ent(a, old)->order;
            gf__ent_linking(a);
            gf__link_store(link, ne); /* commit */
            gf__seq_bump(st);
        } else if (old) { /* delete */
            gf__link_store(link, gf__link_load(&gf__ent(a, old)->next[w])); /* commit */
            gf__count_store(st, gf__count_load(st) - 1);
            gf__seq_bump(st);
        } else if (ne) { /* insert */
            r = gf__dict_insert_locked(a, d, s, ne, &old_tab);
            if (r < 0) {
                to_free = ne;
                match = r;
            }
        }
    }
    gf__stripe_unlock(a, d, s);
    if (to_free && to_free == ne)
        gf__ent_free_new(a, ne);
    else if (to_free)
        gf_free(a, to_free);
    gf__dict_free_old_table(a, old_tab);
    return match;
}

/* d.clear(). Result 0. Fails: GF_EINTR, GF_EINVAL. */
int gf_dict_clear(gf_arena *a, gf_off doff) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    int r = gf__dict_lock_all_user(a, d);
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
    gf__dict_unlock_all(a, d);
    /* Free the old entries outside every lock (a crash here only leaks them). */
    for (unsigned s = 0; s < GF__NS; s++) gf__dict_table_free(a, old[s]);
    return 0;
}
