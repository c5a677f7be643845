/*
 * dict_iter.c -- whole-dict walks of the shared dict: snapshot records (also used by list.c),
 * gf_dict_snapshot (every stripe held), and the consistency check gf_dict_check (tests).
 */
#include "dict_internal.h"

#include <stdlib.h>

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
    int r = gf__dict_lock_all_user(a, d);
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
    gf__dict_unlock_all(a, d);
    if (r < 0) gf_snap_free(out);
    return r;
}

/* Consistency walk (tests). Result: the number of entries. Fails: GF_EBADMSG, GF_EINVAL. */
int64_t gf_dict_check(gf_arena *a, gf_off doff) {
    gf__dict *d = gf__dict_at(a, doff);
    if (!d) return GF_EINVAL;
    if (gf_obj_check(a, doff, GF_OBJ_DICT) < 0) return GF_EBADMSG;
    gf__dict_lock_all(a, d);
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
    gf__dict_unlock_all(a, d);
    return res;
}
