/*
 * list.c -- the shared list: a growable vector of item offsets in the arena, one recursive lock.
 *
 * Layout
 *   gf__list (a gf_obj GF_OBJ_LIST): the lock and `arr`, the offset of the current index array.
 *   index array (gf__larr): {len, cap, slot[cap]}: len and the slots live together so that one
 *   store of `arr` can swap all three.
 *   item: one arena block {u64 len, bytes}.
 *
 * Crash consistency (a process SIGKILLed anywhere, holding the lock or not)
 *   Every mutation is committed by one release store:
 *     append/extend in place   write the new slots past len, then store len;
 *     l[i] = v                 store the slot;
 *     pop()/del at the end     store len;
 *     anything else            (insert, delete in the middle, slice assignment, growth, clear)
 *                              build a new index array, then store `arr`.
 *   Blocks (replaced items, old arrays) are freed only after the commit and after the lock is
 *   dropped; a crash in between leaks them. So the next locker, even after GF_EOWNERDEAD, sees
 *   either the old or the new list, never a mix, and never an item twice (no double free).
 *   A process killed while holding `with l.lock:` leaves the lock to the next locker.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define GF__LIST_MAGIC 0x5453494cu /* "LIST" */
#define GF__LIST_MIN_CAP 8

typedef struct gf__list {
    gf_obj obj;
    uint32_t magic;
    uint32_t pad;
    uint64_t arr; /* gf_off of the current gf__larr; the commit point of structural changes */
    uint64_t pad2;
    gf_mutex lock; /* recursive: every operation, and `with l.lock:` */
} gf__list;

typedef struct gf__larr {
    uint64_t len;
    uint64_t cap;
    uint64_t pad[6];
    uint64_t slot[]; /* gf_off of gf__litem */
} gf__larr;

typedef struct gf__litem {
    uint64_t len;
    unsigned char data[];
} gf__litem;

static inline gf__list *gf__list_at(gf_arena *a, gf_off l) {
    gf__list *p = gf_ptr(a, l);
    if (GF_UNLIKELY(!p || p->magic != GF__LIST_MAGIC)) return NULL;
    return p;
}
static inline gf__litem *gf__item(gf_arena *a, gf_off i) { return gf_ptr(a, i); }

/* The current array. Acquire: pairs with the release store that published it (the lock already
 * orders this for its holder; the acquire also documents the pairing). */
static inline gf__larr *gf__arr(gf_arena *a, gf__list *l) {
    return gf_ptr(a, atomic_load_explicit(GF_A64(&l->arr), memory_order_acquire));
}
/* Commit stores: release, so that everything written before (items, slots, a new array) is
 * visible to the next lock holder and is never reordered after the commit by the compiler --
 * which is what makes a SIGKILL at any point harmless. */
static inline void gf__commit(uint64_t *word, uint64_t v) {
    atomic_store_explicit(GF_A64(word), v, memory_order_release);
}

/* Take the list lock. Result: 0 (also when the previous holder died: the list is consistent by
 * construction). Fails: GF_EINTR, GF_EAGAIN (recursion depth overflow). */
static int gf__list_lock(gf_arena *a, gf__list *l) {
    int r = gf_mutex_lock(a, &l->lock, GF_FOREVER);
    return r == GF_EOWNERDEAD ? 0 : r;
}
static inline void gf__list_unlock(gf_arena *a, gf__list *l) { gf_mutex_unlock(a, &l->lock); }

/* Allocate an item holding a copy of v. Result 0 and *out. Fails: GF_ENOSPC. */
static int gf__item_new(gf_arena *a, const void *v, size_t n, gf_off *out) {
    if (n > SIZE_MAX / 2) return GF_ENOSPC;
    gf_off o;
    int r = gf_alloc(a, sizeof(gf__litem) + n, &o);
    if (r < 0) return r == GF_EINVAL ? GF_ENOSPC : r;
    gf__litem *it = gf__item(a, o);
    it->len = n;
    if (n) memcpy(it->data, v, n);
    *out = o;
    return 0;
}

/* Allocate an index array of `cap` slots (len 0). Result 0 and *out. Fails: GF_ENOSPC. */
static int gf__arr_new(gf_arena *a, uint64_t cap, gf_off *out) {
    if (cap < GF__LIST_MIN_CAP) cap = GF__LIST_MIN_CAP;
    if (cap > (SIZE_MAX - sizeof(gf__larr)) / 8) return GF_ENOSPC;
    gf_off o;
    int r = gf_alloc(a, sizeof(gf__larr) + cap * 8, &o);
    if (r < 0) return r == GF_EINVAL ? GF_ENOSPC : r;
    gf__larr *p = gf_ptr(a, o);
    p->len = 0;
    p->cap = cap;
    *out = o;
    return 0;
}

/* Python index normalisation. Result: the index in [0, len), or -1 if out of range. */
static inline int64_t gf__norm_index(int64_t i, uint64_t len) {
    if (i < 0) i += (int64_t)len;
    return (i < 0 || (uint64_t)i >= len) ? -1 : i;
}
/* Python slice bound (step 1): clamp into [0, len]. */
static inline uint64_t gf__norm_bound(int64_t i, uint64_t len) {
    if (i < 0) {
        i += (int64_t)len;
        return i < 0 ? 0 : (uint64_t)i;
    }
    return (uint64_t)i > len ? len : (uint64_t)i;
}

static void gf__free_items(gf_arena *a, const gf_off *items, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (items[i]) gf_free(a, items[i]);
}

/* ------------------------------------------------------------------------------------------ */

/* Create an empty list with room for `capacity` items. Result 0. Fails: GF_ENOSPC. */
int gf_list_create(gf_arena *a, size_t capacity, gf_off *out) {
    if (!a || !out) return GF_EINVAL;
    gf_off off, arr;
    int r = gf_obj_new(a, GF_OBJ_LIST, sizeof(gf__list), &off);
    if (r < 0) return r;
    gf__list *l = gf_ptr(a, off);
    memset((char *)l + sizeof(gf_obj), 0, sizeof(gf__list) - sizeof(gf_obj));
    r = gf__arr_new(a, capacity, &arr);
    if (r < 0) {
        gf_obj_decref(a, off); /* magic 0: the destructor leaves it alone */
        return r;
    }
    l->arr = arr;
    gf_mutex_init(&l->lock, GF_MUTEX_RECURSIVE);
    /* Release: publishes the initialised list to whoever receives the offset. */
    atomic_store_explicit(GF_A32(&l->magic), GF__LIST_MAGIC, memory_order_release);
    *out = off;
    return 0;
}

/* The destructor (gf_obj_decref at zero): free every item and the array. No locks: nobody else
 * can reach the list any more. */
void gf__list_destroy(gf_arena *a, gf_off off) {
    gf__list *l = gf_ptr(a, off);
    if (!l || l->magic != GF__LIST_MAGIC) return;
    gf__larr *arr = gf_ptr(a, l->arr);
    if (arr) {
        gf__free_items(a, arr->slot, arr->len);
        gf_free(a, l->arr);
    }
    l->magic = 0;
}

/* len(l). Result >= 0. Fails: GF_EINTR, GF_EINVAL. */
int64_t gf_list_len(gf_arena *a, gf_off loff) {
    gf__list *l = gf__list_at(a, loff);
    if (!l) return GF_EINVAL;
    int r = gf__list_lock(a, l);
    if (r < 0) return r;
    int64_t n = (int64_t)gf__arr(a, l)->len;
    gf__list_unlock(a, l);
    return n;
}

/* Replace [start, stop) of the current array by items[0..n) (already allocated). The caller
 * holds the lock. In place when appending within capacity, else copy-on-write: then *old_arr is
 * the replaced array (still holding the removed items' offsets), for the caller to free after
 * unlocking; 0 if done in place. Result 0. Fails: GF_ENOSPC (nothing changed). */
static int gf__splice_locked(gf_arena *a, gf__list *l, uint64_t start, uint64_t stop,
                             const gf_off *items, size_t n, gf_off *old_arr) {
    gf__larr *arr = gf__arr(a, l);
    uint64_t len = arr->len;
    uint64_t newlen = len - (stop - start) + n;
    *old_arr = 0;
    if (start == len && stop == len && newlen <= arr->cap) {
        /* Append in place: the new slots are past len (invisible) until len is stored. */
        for (size_t i = 0; i < n; i++) arr->slot[len + i] = items[i];
        gf__commit(&arr->len, newlen);
        return 0;
    }
    uint64_t cap = arr->cap;
    if (newlen > cap) cap = newlen > cap * 2 ? newlen : cap * 2;
    else if (newlen < cap / 4 && cap > GF__LIST_MIN_CAP) cap = newlen * 2; /* shrink */
    gf_off no;
    int r = gf__arr_new(a, cap, &no);
    if (r < 0) return r;
    gf__larr *na = gf_ptr(a, no);
    memcpy(na->slot, arr->slot, start * 8);
    if (n) memcpy(na->slot + start, items, n * 8);
    memcpy(na->slot + start + n, arr->slot + stop, (len - stop) * 8);
    na->len = newlen;
    *old_arr = atomic_load_explicit(GF_A64(&l->arr), memory_order_relaxed);
    gf__commit(&l->arr, no); /* commit: the new array replaces the old one */
    return 0;
}

/* l[start:stop] = items. Result 0. Fails: GF_ENOSPC, GF_EINTR, GF_EINVAL. */
int gf_list_splice(gf_arena *a, gf_off loff, int64_t start, int64_t stop,
                   const struct iovec *items, size_t n) {
    gf__list *l = gf__list_at(a, loff);
    if (!l || (n && !items)) return GF_EINVAL;
    gf_off one, *offs = &one;
    if (n > 1) {
        offs = calloc(n, sizeof(gf_off));
        if (!offs) return GF_ENOMEM;
    }
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        r = gf__item_new(a, items[i].iov_base, items[i].iov_len, &offs[i]);
        if (r < 0) offs[i] = 0;
    }
    if (r == 0) r = gf__list_lock(a, l);
    if (r < 0) {
        gf__free_items(a, offs, n);
        if (offs != &one) free(offs);
        return r;
    }
    gf__larr *arr = gf__arr(a, l);
    uint64_t len = arr->len;
    uint64_t s = gf__norm_bound(start, len), e = gf__norm_bound(stop, len);
    if (e < s) e = s;
    gf_off old_arr;
    r = gf__splice_locked(a, l, s, e, offs, n, &old_arr);
    gf__list_unlock(a, l);
    if (r < 0) {
        gf__free_items(a, offs, n);
    } else if (old_arr) {
        /* The old array is unreachable now: free the items it had in the replaced range. */
        gf__larr *oa = gf_ptr(a, old_arr);
        gf__free_items(a, oa->slot + s, e - s);
        gf_free(a, old_arr);
    }
    if (offs != &one) free(offs);
    return r;
}

/* l.append(v). Result 0. Fails: GF_ENOSPC, GF_EINTR, GF_EINVAL. */
int gf_list_append(gf_arena *a, gf_off l, const void *val, size_t vlen) {
    struct iovec iov = {(void *)val, vlen};
    return gf_list_splice(a, l, GF_LIST_END, GF_LIST_END, &iov, 1);
}

/* l.extend(items). Result 0. Fails: GF_ENOSPC, GF_ENOMEM, GF_EINTR, GF_EINVAL. */
int gf_list_extend(gf_arena *a, gf_off l, const struct iovec *items, size_t n) {
    return gf_list_splice(a, l, GF_LIST_END, GF_LIST_END, items, n);
}

/* l.insert(i, v). Result 0. Fails: GF_ENOSPC, GF_EINTR, GF_EINVAL. */
int gf_list_insert(gf_arena *a, gf_off l, int64_t i, const void *val, size_t vlen) {
    struct iovec iov = {(void *)val, vlen};
    if (i == INT64_MIN) i = INT64_MIN + 1;
    return gf_list_splice(a, l, i, i, &iov, 1);
}

/* Copy l[i] out. Result 0. Fails: GF_ENOENT, GF_ENOMEM, GF_EINTR, GF_EINVAL. */
int gf_list_get(gf_arena *a, gf_off loff, int64_t i, void *buf, size_t cap, gf_buf *out) {
    gf__list *l = gf__list_at(a, loff);
    if (!l) return GF_EINVAL;
    int r = gf__list_lock(a, l);
    if (r < 0) return r;
    gf__larr *arr = gf__arr(a, l);
    int64_t k = gf__norm_index(i, arr->len);
    if (k < 0) {
        r = GF_ENOENT;
    } else {
        gf__litem *it = gf__item(a, arr->slot[k]);
        r = gf__copy_out(it->data, it->len, buf, cap, out);
    }
    gf__list_unlock(a, l);
    return r;
}

/* l[i] = v. Result 0. Fails: GF_ENOENT, GF_ENOSPC, GF_EINTR, GF_EINVAL. */
int gf_list_set(gf_arena *a, gf_off loff, int64_t i, const void *val, size_t vlen) {
    gf__list *l = gf__list_at(a, loff);
    if (!l) return GF_EINVAL;
    gf_off it;
    int r = gf__item_new(a, val, vlen, &it);
    if (r < 0) return r;
    r = gf__list_lock(a, l);
    if (r < 0) {
        gf_free(a, it);
        return r;
    }
    gf__larr *arr = gf__arr(a, l);
    int64_t k = gf__norm_index(i, arr->len);
    gf_off old = it;
    if (k >= 0) {
        old = arr->slot[k];
        gf__commit(&arr->slot[k], it); /* commit: one slot now names the new item */
    }
    gf__list_unlock(a, l);
    gf_free(a, old);
    return k < 0 ? GF_ENOENT : 0;
}

/* Remove l[i], copying it out first when out != NULL. Result 0. Fails: GF_ENOENT, GF_ENOMEM,
 * GF_ENOSPC, GF_EINTR, GF_EINVAL. */
int gf_list_pop(gf_arena *a, gf_off loff, int64_t i, void *buf, size_t cap, gf_buf *out) {
    gf__list *l = gf__list_at(a, loff);
    if (!l) return GF_EINVAL;
    int r = gf__list_lock(a, l);
    if (r < 0) return r;
    gf__larr *arr = gf__arr(a, l);
    int64_t k = gf__norm_index(i, arr->len);
    if (k < 0) {
        gf__list_unlock(a, l);
        return GF_ENOENT;
    }
    gf_off it = arr->slot[k], old_arr = 0;
    gf__litem *p = gf__item(a, it);
    r = gf__copy_out(p->data, p->len, buf, cap, out);
    if (r == 0) {
        if ((uint64_t)k == arr->len - 1 && arr->len - 1 >= arr->cap / 4)
            gf__commit(&arr->len, arr->len - 1); /* commit: the last slot is gone */
        else
            r = gf__splice_locked(a, l, (uint64_t)k, (uint64_t)k + 1, NULL, 0, &old_arr);
        if (r < 0) gf_buf_release(out);
    }
    gf__list_unlock(a, l);
    if (r == 0) {
        gf_free(a, it);
        if (old_arr) gf_free(a, old_arr);
    }
    return r;
}

/* del l[i]. Result 0. Fails: GF_ENOENT, GF_ENOSPC, GF_EINTR, GF_EINVAL. */
int gf_list_delete(gf_arena *a, gf_off l, int64_t i) {
    return gf_list_pop(a, l, i, NULL, 0, NULL);
}

/* Copy l[start:stop] into a snapshot. Result 0. Fails: GF_ENOMEM, GF_EINTR, GF_EINVAL. */
int gf_list_slice(gf_arena *a, gf_off loff, int64_t start, int64_t stop, gf_snap *out) {
    gf__list *l = gf__list_at(a, loff);
    if (!l || !out) return GF_EINVAL;
    out->buf = NULL;
    out->len = out->count = 0;
    int r = gf__list_lock(a, l);
    if (r < 0) return r;
    gf__larr *arr = gf__arr(a, l);
    uint64_t s = gf__norm_bound(start, arr->len), e = gf__norm_bound(stop, arr->len);
    size_t total = 0, cap = 0;
    for (uint64_t k = s; k < e; k++) total += 16 + ((gf__item(a, arr->slot[k])->len + 7) & ~7ull);
    if (total) {
        out->buf = malloc(total);
        if (!out->buf) r = GF_ENOMEM;
        cap = total;
    }
    for (uint64_t k = s; k < e && r == 0; k++) {
        gf__litem *it = gf__item(a, arr->slot[k]);
        r = gf__snap_put(out, &cap, NULL, 0, it->data, it->len);
    }
    gf__list_unlock(a, l);
    if (r < 0) gf_snap_free(out);
    return r;
}

/* l.clear(). Result 0. Fails: GF_ENOSPC, GF_EINTR, GF_EINVAL. */
int gf_list_clear(gf_arena *a, gf_off loff) {
    gf__list *l = gf__list_at(a, loff);
    if (!l) return GF_EINVAL;
    gf_off na;
    int r = gf__arr_new(a, GF__LIST_MIN_CAP, &na);
    if (r < 0) return r;
    r = gf__list_lock(a, l);
    if (r < 0) {
        gf_free(a, na);
        return r;
    }
    gf_off old = atomic_load_explicit(GF_A64(&l->arr), memory_order_relaxed);
    gf__commit(&l->arr, na); /* commit: the empty array replaces everything */
    gf__list_unlock(a, l);
    gf__larr *oa = gf_ptr(a, old);
    gf__free_items(a, oa->slot, oa->len);
    gf_free(a, old);
    return 0;
}

/* Scan for items equal to val in [start, stop): the first index (find_first) or the count.
 * Result: index / count. Fails: GF_ENOENT (index, none), GF_EINTR, GF_EINVAL. */
static int64_t gf__list_scan(gf_arena *a, gf_off loff, const void *val, size_t vlen,
                             int64_t start, int64_t stop, int find_first) {
    gf__list *l = gf__list_at(a, loff);
    if (!l) return GF_EINVAL;
    int r = gf__list_lock(a, l);
    if (r < 0) return r;
    gf__larr *arr = gf__arr(a, l);
    uint64_t s = gf__norm_bound(start, arr->len), e = gf__norm_bound(stop, arr->len);
    int64_t res = find_first ? GF_ENOENT : 0;
    for (uint64_t k = s; k < e; k++) {
        gf__litem *it = gf__item(a, arr->slot[k]);
        if (it->len == vlen && memcmp(it->data, val, vlen) == 0) {
            if (find_first) {
                res = (int64_t)k;
                break;
            }
            res++;
        }
    }
    gf__list_unlock(a, l);
    return res;
}

/* l.index(val, start, stop). Result: the index. Fails: GF_ENOENT, GF_EINTR, GF_EINVAL. */
int64_t gf_list_index(gf_arena *a, gf_off l, const void *val, size_t vlen, int64_t start,
                      int64_t stop) {
    return gf__list_scan(a, l, val, vlen, start, stop, 1);
}

/* l.count(val). Result >= 0. Fails: GF_EINTR, GF_EINVAL. */
int64_t gf_list_count(gf_arena *a, gf_off l, const void *val, size_t vlen) {
    return gf__list_scan(a, l, val, vlen, 0, GF_LIST_END, 0);
}

/* `with l.lock:` enter. Result 0 / GF_EOWNERDEAD. Fails: GF_ETIMEDOUT, GF_EINTR, GF_EAGAIN,
 * GF_EINVAL. */
int gf_list_lock(gf_arena *a, gf_off loff, int64_t deadline) {
    gf__list *l = gf__list_at(a, loff);
    if (!l) return GF_EINVAL;
    return gf_mutex_lock(a, &l->lock, deadline);
}

/* `with l.lock:` exit. Result 0. Fails: GF_EPERM, GF_EOVERFLOW, GF_EINVAL. */
int gf_list_unlock(gf_arena *a, gf_off loff) {
    gf__list *l = gf__list_at(a, loff);
    if (!l) return GF_EINVAL;
    return gf_mutex_unlock(a, &l->lock);
}

static int gf__cmp_off(const void *x, const void *y) {
    gf_off a = *(const gf_off *)x, b = *(const gf_off *)y;
    return a < b ? -1 : a > b;
}

/* Consistency check (tests): the array and every item are live blocks, len <= cap, no item is
 * named twice. Result: the length. Fails: GF_EBADMSG, GF_ENOMEM, GF_EINTR, GF_EINVAL. */
int64_t gf_list_check(gf_arena *a, gf_off loff) {
    gf__list *l = gf__list_at(a, loff);
    if (!l) return GF_EINVAL;
    if (gf_obj_check(a, loff, GF_OBJ_LIST) < 0) return GF_EBADMSG;
    int r = gf__list_lock(a, l);
    if (r < 0) return r;
    int64_t res = 0;
    gf_off ao = atomic_load_explicit(GF_A64(&l->arr), memory_order_relaxed);
    gf__larr *arr = gf_ptr(a, ao);
    gf_off *copy = NULL;
    if (gf_arena_check_block(a, ao, sizeof(gf__larr)) < 0 || arr->len > arr->cap ||
        gf_arena_check_block(a, ao, sizeof(gf__larr) + arr->cap * 8) < 0) {
        res = GF_EBADMSG;
        goto out;
    }
    copy = malloc((arr->len + 1) * sizeof(gf_off));
    if (!copy) {
        res = GF_ENOMEM;
        goto out;
    }
    for (uint64_t k = 0; k < arr->len; k++) {
        gf_off it = arr->slot[k];
        if (gf_arena_check_block(a, it, sizeof(gf__litem)) < 0 ||
            gf_arena_check_block(a, it, sizeof(gf__litem) + gf__item(a, it)->len) < 0) {
            res = GF_EBADMSG;
            goto out;
        }
        copy[k] = it;
    }
    qsort(copy, arr->len, sizeof(gf_off), gf__cmp_off);
    for (uint64_t k = 1; k < arr->len; k++)
        if (copy[k] == copy[k - 1]) {
            res = GF_EBADMSG;
            goto out;
        }
    res = (int64_t)arr->len;
out:
    free(copy);
    gf__list_unlock(a, l);
    return res;
}
