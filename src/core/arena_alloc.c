/*
 * arena_alloc.c -- the arena's allocator: size-class free lists and the bump pointer under
 * one robust process-shared lock, and a per-thread cache of free blocks in front of them (see
 * arena_internal.h for the layout and the crash-safe store order).
 */
#include "arena_internal.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* ---------------------------------------------------------------- the allocator lock */

/* Lock a robust mutex; result 1 if its previous owner died (the allocator then heals: see
 * arena_internal.h). The allocator's critical sections are a few
 * hundred nanoseconds, while glibc's mutex sleeps at once on contention and a futex wake costs
 * ~45 µs on a VM whose idle CPUs halt: a held lock is retried for up to gf__spin_ns() first
 * (measured: two processes filling dicts spent a fifth of their time in futex sleeps/wakes on
 * this lock). */
int gf__robust_lock(pthread_mutex_t *m) {
    int r = pthread_mutex_trylock(m);
    if (GF_UNLIKELY(r == EBUSY)) {
        int64_t end = 0;
        for (unsigned i = 1;; i++) {
            gf__cpu_relax();
            if ((i & 15) != 0) continue;
            r = pthread_mutex_trylock(m);
            if (r != EBUSY) break;
            if ((i & 255) == 0) {
                int64_t now = gf_now_ns();
                if (end == 0) {
                    end = now + gf__spin_ns();
                } else if (now >= end) {
                    r = pthread_mutex_lock(m);
                    break;
                }
                sched_yield(); /* the holder may be waiting for this CPU */
            }
        }
    }
    if (GF_UNLIKELY(r == EOWNERDEAD)) {
        pthread_mutex_consistent(m);
        return 1;
    }
    return 0;
}

/* Initialise a robust process-shared mutex. Result 0 or a pthread error number. */
int gf__robust_init(pthread_mutex_t *m) {
    pthread_mutexattr_t at;
    int r = pthread_mutexattr_init(&at);
    if (r) return r;
    r = pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
    if (!r) r = pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
    if (!r) r = pthread_mutex_init(m, &at);
    pthread_mutexattr_destroy(&at);
    return r;
}

/* ---------------------------------------------------------------- per-thread cache
 *
 * Every thread keeps up to 2 * gf__tc_batch(c) free blocks of each small class c (payload
 * <= 4 KiB) so that most allocations and frees take no shared lock. Cached blocks are FREE in
 * their headers (so a double free is still caught, and gf__arena_verify sees valid headers)
 * but on no free list: they belong to the thread. Refills (gf__tc_batch(c) blocks popped from
 * the list, or bumped at once) and flushes (back to the list) run under the allocator lock
 * with the same crash-safe store order as gf_alloc/gf_free; a process killed with a full cache
 * leaks its cached blocks (at most GF__TC_CAP per class per thread), nothing else.
 * A batch is about GF__TC_BATCH_BYTES of blocks (8..64 of them): bumped batches of two
 * processes that allocate at the same time then rarely share a page or a cache line (with
 * 16-block batches of 128-byte blocks, every page was written, and faulted in, by both:
 * two processes filling a dict ran no faster than one; with 8 KiB batches, 1.3x).
 * Statistics count cached blocks as free: in_use / live_blocks are exact.
 * A cache belongs to one arena (the first one the thread allocates from; other arenas of the
 * same thread use the locked path). It is flushed at thread exit (key destructor) and for
 * every thread by gf_arena_detach; a forked child forgets every inherited cache (atfork
 * child handler): those blocks are the parent's. GILFREE_NO_TCACHE=1 disables it. */

#define GF__TC_BATCH_BYTES ((uint64_t)8 << 10)

/* Blocks per refill or flush of class c: about GF__TC_BATCH_BYTES, 8..GF__TC_BATCH_MAX. */
static inline uint32_t gf__tc_batch(uint32_t c) {
    uint64_t n = GF__TC_BATCH_BYTES / (GF__HDR_SIZE + gf__class_size(c));
    return n < 8 ? 8 : n > GF__TC_BATCH_MAX ? GF__TC_BATCH_MAX : (uint32_t)n;
}

typedef struct gf__tcache {
    gf_arena *a; /* the arena its blocks belong to; NULL = unbound */
    gf__tcarr *arr; /* the arrays: in the arena (shared_off) or `local` */
    int disabled;
    int cell; /* claimed statistics cell of a->h, or -1 (then the process's atomic counters) */
    int tcs;  /* index of shared_off in the slot's tcs[], or -1 */
    gf_off shared_off;              /* the arena block holding arr, 0 = local */
    struct gf__tcache *prev, *next; /* gf__tc_all, under gf__tc_lock */
    gf__tcarr local;
} gf__tcache;

_Static_assert(GF__TC_NCLASS <= GF__NCLASS, "cached classes exist");
_Static_assert(GF__TC_NCLASS == GF__BIG_CLASS, "cached classes are the small ones");

/* initial-exec: a plain %fs-relative load instead of a __tls_get_addr call (8 bytes of the
 * static TLS surplus that glibc keeps for dlopen'ed libraries). */
static __thread gf__tcache *gf__tc __attribute__((tls_model("initial-exec")));
static gf__tcache gf__tc_none = {.disabled = 1}; /* a thread that must not cache */
static pthread_mutex_t gf__tc_lock = PTHREAD_MUTEX_INITIALIZER;
static gf__tcache *gf__tc_all; /* every bound cache of this process */
static pthread_key_t gf__tc_key;
static pthread_once_t gf__tc_once = PTHREAD_ONCE_INIT;
static int gf__tc_off; /* 1: disabled (GILFREE_NO_TCACHE or no key) */

/* Give blocks n-1 .. keep of class c back to the free list. Caller: the owning thread, or
 * anyone holding gf__tc_lock while the owner cannot run (detach, thread exit). */
static void gf__tc_flush(gf__tcache *tc, uint32_t c, uint32_t keep) {
    gf_arena *a = tc->a;
    gf__arena_hdr *h = a->h;
    if (tc->arr->n[c] <= keep) return;
    gf__alloc_lock(a);
    gf__tcarr *t = tc->arr;
    while (t->n[c] > keep) {
        gf_off off = t->blk[c][t->n[c] - 1];
        /* n drops before the block is listed: a kill in between leaks it, never lists it
         * twice (a reclaimer lists what n counts). */
        t->n[c]--;
        atomic_signal_fence(memory_order_seq_cst);
        gf__block *b = gf__blk(a, off);
        b->next = h->heads[c];
        /* release: `next` is stored before the block is published on the list. */
        atomic_store_explicit(GF_A64(&h->heads[c]), off, memory_order_release);
    }
    pthread_mutex_unlock(&h->alloc_lock);
}

static void gf__tc_flush_all(gf__tcache *tc) {
    for (uint32_t c = 0; c < GF__TC_NCLASS; c++) gf__tc_flush(tc, c, 0);
}

/* Claim a statistics cell for tc (bound to a): a free one, or one whose claimant died. Only
 * a process that owns its slot claims (a forked child that has not taken its own slot yet
 * would claim with its parent's identity). Leaves tc->cell -1 if none. */
static void gf__tc_claim_cell(gf__tcache *tc) {
    gf_arena *a = tc->a;
    tc->cell = -1;
    if (a->ident == 0 || a->pid != getpid()) return;
    for (int i = 0; i < GF__NCELLS; i++) {
        uint32_t *cl = &a->h->cells[i].claim;
        uint32_t c = atomic_load_explicit(GF_A32(cl), memory_order_relaxed);
        if (c != 0 && (c == a->ident || gf__ident_alive(a, c))) continue;
        /* acq_rel: the previous owner's last counter stores (released with its claim) are
         * seen before we continue from them. */
        if (atomic_compare_exchange_strong_explicit(GF_A32(cl), &c, a->ident,
                                                    memory_order_acq_rel, memory_order_relaxed)) {
            tc->cell = i;
            return;
        }
    }
}

static void gf__tc_release_cell(gf__tcache *tc) {
    if (tc->cell < 0) return;
    /* release: our counter stores happen before the next claimant reads them. */
    atomic_store_explicit(GF_A32(&tc->a->h->cells[tc->cell].claim), 0, memory_order_release);
    tc->cell = -1;
}

/* Count an allocation (+1) or free (-1) for the calling thread: in its cell (single writer:
 * relaxed load + store, no locked instruction), else in the process's counters. */
static inline void gf__stats_add_tc(gf__tcache *tc, uint64_t usable, int dir) {
    if (GF_UNLIKELY(tc->cell < 0)) {
        gf__stats_add(tc->a, usable, dir);
        return;
    }
    uint64_t *in_use = &tc->a->h->cells[tc->cell].in_use, *live = in_use + 1;
    uint64_t u = atomic_load_explicit(GF_A64(in_use), memory_order_relaxed);
    uint64_t l = atomic_load_explicit(GF_A64(live), memory_order_relaxed);
    atomic_store_explicit(GF_A64(in_use), dir > 0 ? u + usable : u - usable,
                          memory_order_relaxed);
    atomic_store_explicit(GF_A64(live), dir > 0 ? l + 1 : l - 1, memory_order_relaxed);
}

/* Put tc's arrays (empty, not bound yet) into an arena block registered in the slot of the
 * process, so that they are found if it dies. Without a slot of its own, or with the slot's
 * tcs[] full, the arrays stay process-local. The block is not counted in the statistics
 * (GF__BLK_SYS: internal). */
static void gf__tc_share(gf__tcache *tc, gf_arena *a) {
    if (a->slot >= GF_ARENA_MAX_PROCS || a->pid != getpid()) return;
    gf_off off;
    int fresh;
    if (gf__alloc_raw(a, sizeof(gf__tcarr), GF__BLK_SYS, &off, &fresh) != 0) return;
    size_t usable = gf_block_size(a, off);
    gf__stats_add(a, usable, -1);
    gf__tcarr *t = (gf__tcarr *)(a->base + off);
    memset(t->n, 0, sizeof t->n);
    t->magic = GF__TCARR_MAGIC;
    uint64_t *tcs = a->h->slots[a->slot].tcs;
    for (int i = 0; i < GF__SLOT_TCS; i++) {
        uint64_t z = 0;
        /* release: the arrays are initialised before a reclaimer can find them. */
        if (atomic_compare_exchange_strong_explicit(GF_A64(&tcs[i]), &z, off,
                                                    memory_order_release, memory_order_relaxed)) {
            tc->tcs = i;
            tc->shared_off = off;
            tc->arr = t;
            return;
        }
    }
    gf__stats_add(a, usable, 1);
    gf_free(a, off);
}

/* Give back tc's arena arrays (flushed: empty) and go back to the local ones. */
static void gf__tc_unshare(gf__tcache *tc) {
    gf_arena *a = tc->a;
    if (!tc->shared_off) return;
    if (tc->tcs >= 0 && a->slot < GF_ARENA_MAX_PROCS && a->pid == getpid())
        atomic_store_explicit(GF_A64(&a->h->slots[a->slot].tcs[tc->tcs]), 0,
                              memory_order_relaxed);
    gf__stats_add(a, gf_block_size(a, tc->shared_off), 1);
    gf_free(a, tc->shared_off);
    tc->shared_off = 0;
    tc->tcs = -1;
    tc->arr = &tc->local;
}

static void gf__tc_unlink(gf__tcache *tc) {
    if (tc->a) gf__tc_release_cell(tc);
    if (tc->a) gf__tc_unshare(tc);
    if (tc->prev) tc->prev->next = tc->next;
    else if (gf__tc_all == tc) gf__tc_all = tc->next;
    if (tc->next) tc->next->prev = tc->prev;
    tc->prev = tc->next = NULL;
    tc->a = NULL;
}

/* Thread exit: flush the cache back, forget it. */
static void gf__tc_destructor(void *p) {
    gf__tcache *tc = p;
    pthread_mutex_lock(&gf__tc_lock);
    if (tc->a) {
        gf__tc_flush_all(tc);
        gf__tc_unlink(tc);
    }
    pthread_mutex_unlock(&gf__tc_lock);
    gf__tc = &gf__tc_none; /* an allocation from a later destructor takes the locked path */
    free(tc);
}

static void gf__tc_prepare(void) { pthread_mutex_lock(&gf__tc_lock); }
static void gf__tc_parent(void) { pthread_mutex_unlock(&gf__tc_lock); }
/* In a forked child: every inherited cache holds the parent's blocks; drop them all. The
 * other threads' caches (those threads do not exist here) are leaked (process-local malloc). */
static void gf__tc_child(void) {
    for (gf__tcache *tc = gf__tc_all, *nx; tc; tc = nx) {
        nx = tc->next;
        /* the arrays in the arena are the parent's: never written here */
        tc->arr = &tc->local;
        tc->shared_off = 0;
        tc->tcs = -1;
        memset(tc->local.n, 0, sizeof tc->local.n);
        tc->a = NULL;
        tc->cell = -1; /* the parent's thread keeps writing it */
        tc->prev = tc->next = NULL;
    }
    gf__tc_all = NULL;
    pthread_mutex_init(&gf__tc_lock, NULL);
}

static void gf__tc_init(void) {
    const char *e = getenv("GILFREE_NO_TCACHE");
    if ((e && *e && *e != '0') || pthread_key_create(&gf__tc_key, gf__tc_destructor) != 0) {
        gf__tc_off = 1;
        return;
    }
    pthread_atfork(gf__tc_prepare, gf__tc_parent, gf__tc_child);
}

/* See arena_internal.h. */
void gf__tc_ready(void) { pthread_once(&gf__tc_once, gf__tc_init); }

/* The calling thread's cache for arena a, bound on first use; NULL = use the locked path. */
static gf__tcache *gf__tc_get_slow(gf_arena *a) {
    gf__tcache *tc = gf__tc;
    if (!tc) {
        pthread_once(&gf__tc_once, gf__tc_init);
        if (gf__tc_off || !(tc = calloc(1, sizeof *tc))) {
            gf__tc = &gf__tc_none;
            return NULL;
        }
        tc->cell = -1;
        tc->tcs = -1;
        tc->arr = &tc->local;
        if (pthread_setspecific(gf__tc_key, tc) != 0) {
            free(tc);
            gf__tc = &gf__tc_none;
            return NULL;
        }
        gf__tc = tc;
    }
    if (tc->disabled) return NULL;
    if (tc->a == a) return tc;
    if (tc->a) return NULL; /* bound to another arena */
    gf__tc_share(tc, a);
    pthread_mutex_lock(&gf__tc_lock);
    tc->a = a;
    tc->prev = NULL;
    tc->next = gf__tc_all;
    if (gf__tc_all) gf__tc_all->prev = tc;
    gf__tc_all = tc;
    gf__tc_claim_cell(tc);
    pthread_mutex_unlock(&gf__tc_lock);
    return tc;
}

static inline gf__tcache *gf__tc_get(gf_arena *a) {
    gf__tcache *tc = gf__tc;
    if (GF_LIKELY(tc && tc->a == a)) return tc;
    return gf__tc_get_slow(a);
}

/* After gf_arena_after_fork_child: a cache bound between the fork and now has no statistics
 * cell (it had no identity of its own): claim one. */
void gf__tc_attached(gf_arena *a) {
    gf__tcache *tc = gf__tc;
    if (tc && tc->a == a && tc->cell < 0) {
        pthread_mutex_lock(&gf__tc_lock);
        gf__tc_claim_cell(tc);
        pthread_mutex_unlock(&gf__tc_lock);
    }
}

/* Detach: flush every thread's cache of arena a (the other threads must not be allocating
 * from a any more). */
void gf__tc_detach(gf_arena *a) {
    pthread_mutex_lock(&gf__tc_lock);
    for (gf__tcache *tc = gf__tc_all, *nx; tc; tc = nx) {
        nx = tc->next;
        if (tc->a != a) continue;
        gf__tc_flush_all(tc);
        gf__tc_unlink(tc);
    }
    pthread_mutex_unlock(&gf__tc_lock);
}

/* Give the calling thread's cached blocks of arena a back to the free lists (a process about
 * to _exit without detaching calls this, or its cached blocks leak). Result 0. Never fails. */
int gf_arena_flush(gf_arena *a) {
    gf__tcache *tc = gf__tc;
    if (a && tc && tc->a == a) gf__tc_flush_all(tc);
    return 0;
}

/* Refill class c (empty) with up to gf__tc_batch(c) blocks: popped from its free list, else
 * bumped fresh. Result: the number of blocks now cached (0: arena full for this class, the
 * caller falls back to the locked path, which may use a larger class). */
static uint32_t gf__tc_refill(gf__tcache *tc, uint32_t c) {
    gf_arena *a = tc->a;
    gf__arena_hdr *h = a->h;
    uint64_t usable = gf__class_size(c);
    uint32_t n = 0, batch = gf__tc_batch(c);
    gf__alloc_lock(a);
    while (n < batch) {
        uint64_t head = h->heads[c];
        if (!head) break;
        gf__block *b;
        if (!gf__off_plausible(a, head, h->top) || (b = gf__blk(a, head))->magic != GF__BLK_FREE ||
            b->cls != c || b->self != head) {
            /* A forged header: drop (leak) the list rather than hand out garbage. */
            atomic_store_explicit(GF_A64(&h->heads[c]), 0, memory_order_release);
            break;
        }
        /* release: `next` was read before the pop is committed by this one store. The block
         * stays FREE: it now belongs to this thread (a crash here leaks it). */
        atomic_store_explicit(GF_A64(&h->heads[c]), b->next, memory_order_release);
        b->next = 0;
        tc->arr->blk[c][n++] = head;
    }
    if (n == 0) {
        uint64_t top = h->top, step = GF__HDR_SIZE + usable;
        gf_off prev = h->last;
        while (n < batch && top + step * (n + 1) <= h->reserve) {
            prev = gf__bump_hdr(a, top + step * n, prev, c, usable, GF__BLK_FREE, 0);
            n++;
        }
        /* cache in reverse so that the lowest address is handed out first */
        for (uint32_t i = 0; i < n; i++)
            tc->arr->blk[c][i] = top + step * (n - 1 - i) + GF__HDR_SIZE;
        /* one store commits the whole batch */
        if (n) gf__bump_commit(a, top + step * n, prev);
    }
    pthread_mutex_unlock(&h->alloc_lock);
    atomic_signal_fence(memory_order_seq_cst); /* the entries before the count */
    tc->arr->n[c] = n;
    return n;
}

/* ---------------------------------------------------------------- allocator */

/* Prefault the whole pages of [p, p + len) in one system call instead of one fault per page.
 * Errors (EINVAL before Linux 5.14, ENOMEM) are ignored: the pages then fault in on first
 * touch. */
void gf__populate(void *p, size_t len) {
    uintptr_t page = 4096, start = (uintptr_t)p, end = start + len;
    start = (start + page - 1) & ~(page - 1);
    end &= ~(page - 1);
    if (end > start) (void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
}

/* Record the block just allocated in this process's ledger (hmode 1: gf__block_hold, its
 * handle in *hold; 2: held for the next ring put, gf__block_hold_for_put). */
static inline void gf__hold_new(gf_arena *a, gf_off off, int hmode, int *hold) {
    int h = hmode == 2 ? gf__block_hold_for_put(a, off) : gf__block_hold(a, off);
    if (hold) *hold = h;
}

/* The locked path of gf__alloc_raw for class c (payload `usable`): a free block of the class
 * (of any larger class when the arena is full), else a fresh one bumped. Result 0, *out, and
 * *fresh_out = 1 if bumped. With hmode, the block is recorded in the ledger before the lock is
 * released (see gf__alloc_raw_held). Fails: GF_ENOSPC. */
/* noinline: kept out of gf__alloc_raw's thread-cache fast path (its registers and size). */
__attribute__((noinline)) static int gf__alloc_locked(gf_arena *a, uint32_t c, uint64_t usable,
                                                      uint32_t flags, gf_off *out,
                                                      int *fresh_out, int hmode, int *hold) {
    gf__arena_hdr *h = a->h;
    gf_off off = 0;
    int fresh = 0, rc = 0;
    gf__alloc_lock(a);
    if (c >= GF__BIG_CLASS) {
        rc = gf__big_alloc_locked(a, c, usable, flags, &off, &fresh);
        goto out;
    }
    for (uint32_t k = c; k < GF__BIG_CLASS && !off; k++) {
        /* Reuse a free block of this class; only when the arena is full, any larger one. */
        uint64_t head = h->heads[k];
        if (!head) {
            if (k == c && h->top + GF__HDR_SIZE + usable <= h->reserve) break;
            continue;
        }
        gf__block *b;
        if (!gf__off_plausible(a, head, h->top) ||
            (b = gf__blk(a, head))->magic != GF__BLK_FREE || b->cls != k || b->self != head) {
            /* Cannot happen unless someone wrote over a header: drop (leak) the list rather
             * than hand out garbage. */
            atomic_store_explicit(GF_A64(&h->heads[k]), 0, memory_order_release);
            continue;
        }
        /* release: `next` was read before the pop is committed by this one store. */
        atomic_store_explicit(GF_A64(&h->heads[k]), b->next, memory_order_release);
        b->next = 0;
        b->flags = flags;
        b->owner = a->ident;
        b->shares = 0;
        /* release: the header is complete before it says LIVE (readers check it unlocked). */
        atomic_store_explicit(GF_A32(&b->magic), GF__BLK_LIVE, memory_order_release);
        off = head;
        usable = b->usable;
    }
    if (!off) {
        uint64_t top = h->top;
        if (top + GF__HDR_SIZE + usable > h->reserve) {
            /* Full: carve the small block out of a free big one (it never merges back). */
            rc = gf__big_alloc_locked(a, c, usable, flags, &off, &fresh);
            goto out;
        }
        off = gf__bump_hdr(a, top, h->last, c, usable, GF__BLK_LIVE, flags);
        gf__bump_commit(a, top + GF__HDR_SIZE + usable, off);
        fresh = 1;
    }
out:
    /* Recorded while the lock is held: its release may make a system call (waking a waiter),
     * where a SIGKILL that arrived meanwhile strikes -- the block then leaked. */
    if (rc == 0 && hmode) gf__hold_new(a, off, hmode, hold);
    pthread_mutex_unlock(&h->alloc_lock);
    if (rc < 0) return rc;
    gf__stats_add(a, usable, 1);
    *fresh_out = fresh;
    *out = off;
    return 0;
}

/* gf__alloc_raw with the ledger mode hmode (0: none; constant in each caller). */
static inline __attribute__((always_inline)) int gf__alloc_any(gf_arena *a, size_t size,
                                                               uint32_t flags, gf_off *out,
                                                               int *fresh_out, int hmode,
                                                               int *hold) {
    if (size == 0) return GF_EINVAL;
    if (size > a->h->reserve) return GF_ENOSPC;
    uint32_t c = gf__class_of(size);
    uint64_t usable = gf__class_size(c);
    *fresh_out = 0;

    if (c < GF__TC_NCLASS) {
        gf__tcache *tc = gf__tc_get(a);
        if (tc && (tc->arr->n[c] || gf__tc_refill(tc, c))) {
            gf__tcarr *t = tc->arr;
            gf_off off = t->blk[c][--t->n[c]];
            gf__block *b = gf__blk(a, off);
            b->next = 0;
            b->flags = flags;
            b->owner = a->ident;
            b->shares = 0;
            /* release: the header is complete before it says LIVE (readers check it
             * unlocked). */
            atomic_store_explicit(GF_A32(&b->magic), GF__BLK_LIVE, memory_order_release);
            if (hmode) gf__hold_new(a, off, hmode, hold);
            gf__stats_add_tc(tc, usable, 1);
            *out = off;
            return 0;
        }
    }
    return gf__alloc_locked(a, c, usable, flags, out, fresh_out, hmode, hold);
}

/* Allocate a block of `size` bytes with header flags `flags`. Result 0, *out, and *fresh = 1
 * if the block was just bumped (its pages never touched: the caller may prefault them).
 * Fails: GF_EINVAL, GF_ENOSPC. */
int gf__alloc_raw(gf_arena *a, size_t size, uint32_t flags, gf_off *out, int *fresh_out) {
    return gf__alloc_any(a, size, flags, out, fresh_out, 0, NULL);
}

/* As gf__alloc_raw, the block recorded in this process's ledger as soon as it is live (before
 * the allocator lock is released): hmode 1 gf__block_hold (*hold: its handle, 0 if not
 * recorded), 2 held for the next ring put (gf__block_hold_for_put; hold may be NULL). */
int gf__alloc_raw_held(gf_arena *a, size_t size, gf_off *out, int *fresh_out, int hmode,
                       int *hold) {
    if (hold) *hold = 0;
    return gf__alloc_any(a, size, 0, out, fresh_out, hmode, hold);
}

/* As gf__alloc_raw; a fresh plain block of at least GF__POPULATE_MIN bytes is prefaulted
 * (plain blocks -- messages, buffers -- are written in full right away; objects such as a
 * SharedMemory buffer may be meant to stay sparse, so they are not). */
int gf__alloc(gf_arena *a, size_t size, uint32_t flags, gf_off *out) {
    int fresh;
    int rc = gf__alloc_raw(a, size, flags, out, &fresh);
    if (rc == 0 && fresh && !(flags & GF__BLK_OBJ) && size >= GF__POPULATE_MIN)
        gf__populate(a->base + *out, size);
    return rc;
}

/* As gf_alloc, the block recorded in this process's ledger (*hold: the gf__block_unhold
 * handle, 0 if not recorded) from the moment it is live, before the allocator lock is released
 * and before a fresh block is prefaulted (~0.4 ms per MiB): a process killed in either place
 * leaked the block. Same results. */
int gf__alloc_held(gf_arena *a, size_t size, gf_off *out, int *hold) {
    int fresh;
    int rc = gf__alloc_raw_held(a, size, out, &fresh, 1, hold);
    if (rc < 0) return rc;
    if (fresh && size >= GF__POPULATE_MIN) gf__populate(a->base + *out, size);
    return 0;
}

/* See internal.h. */
int gf__alloc_ref_held(gf_arena *a, size_t size, gf_off *out, int *recorded) {
    int fresh;
    *recorded = 0;
    int rc = gf__alloc_raw(a, size, 0, out, &fresh);
    if (rc < 0) return rc;
    *recorded = gf_ref_hold(a, *out);
    if (fresh && size >= GF__POPULATE_MIN) gf__populate(a->base + *out, size);
    return 0;
}

/* Allocate `size` bytes, 64-byte aligned. Result 0 and *out. Fails: GF_EINVAL (size 0),
 * GF_ENOSPC. */
int gf_alloc(gf_arena *a, size_t size, gf_off *out) { return gf__alloc(a, size, 0, out); }

/* Mark a live block FREE. Result 1 if this call did it, 0 if it was not live (a racing
 * double free). Acq_rel: a locked RMW, also a full barrier between the caller's earlier stores
 * (e.g. a dict stripe's seq bump) and any later reuse of the block by this thread, which is
 * what lock-free readers rely on (dict_read.c gf__get_fast); the locked path had the allocator
 * lock for that. */
static inline int gf__mark_free(gf__block *b) {
    uint32_t live = GF__BLK_LIVE;
    return atomic_compare_exchange_strong_explicit(GF_A32(&b->magic), &live, GF__BLK_FREE,
                                                   memory_order_acq_rel, memory_order_relaxed);
}

/* Add a holder to the live plain block `off`: it is then freed by the last of its holders'
 * gf_free calls (each holder calls it once). Used to send a block that already holds a
 * buffer by reference instead of copying it. Result 0. Fails: GF_EINVAL (not a live plain
 * block: objects have their own reference counts), GF_EOVERFLOW. */
int gf_block_share(gf_arena *a, gf_off off) {
    gf__block *b = (gf__block *)gf__live_block(a, off);
    if (!b || (b->flags & GF__BLK_OBJ)) return GF_EINVAL;
    /* relaxed: the caller holds a share already, which keeps the block alive (as for
     * gf_obj_incref). */
    uint64_t s = atomic_fetch_add_explicit(GF_A64(&b->shares), 1, memory_order_relaxed);
    if (s >= UINT32_MAX) {
        atomic_fetch_sub_explicit(GF_A64(&b->shares), 1, memory_order_relaxed);
        return GF_EOVERFLOW;
    }
    return 0;
}

/* gf_free, dropping the ledger record `hold` (0: none) at the last moment before the block
 * (or this holder's share of it) is let go: under the allocator lock for a big block, so that
 * a process killed while it waits for that lock still has the block recorded (it leaked
 * there: ~1 in 100 SIGKILLed pool workers returning NumPy arrays). A kill between the record's
 * drop and the release leaks the block; it is never freed twice. Inlined into both callers
 * (gf_free passes a constant 0: no cost). */
static inline __attribute__((always_inline)) int gf__free(gf_arena *a, gf_off off, int hold) {
    gf__arena_hdr *h = a->h;
    gf__block *b = (gf__block *)gf__live_block(a, off);
    if (!b) {
        if (hold) gf__block_unhold(a, hold); /* a stale record: nothing to free */
        return GF_EINVAL;
    }
    /* acquire: the other holders' writes to the block happen before we free it (their
     * decrements are releases). */
    uint64_t sh = atomic_load_explicit(GF_A64(&b->shares), memory_order_acquire);
    int had = hold != 0;
    while (GF_UNLIKELY(sh != 0)) {
        if (hold) gf__block_unhold(a, hold);
        hold = 0;
        /* release: this holder's writes happen before the last holder frees the block. */
        if (atomic_compare_exchange_weak_explicit(GF_A64(&b->shares), &sh, sh - 1,
                                                  memory_order_acq_rel, memory_order_acquire))
            return 0;
    }
    /* The other holders let go meanwhile: this is the last one after all, recorded again
     * until the release below. */
    if (had && !hold) hold = gf__block_hold(a, off);
    uint32_t c = b->cls;
    uint64_t usable = b->usable;
    gf__tcache *tc;
    if (c < GF__TC_NCLASS && (tc = gf__tc_get(a)) != NULL) {
        if (hold) gf__block_unhold(a, hold);
        if (!gf__mark_free(b)) return GF_EINVAL;
        b->flags = 0;
        uint32_t batch = gf__tc_batch(c);
        gf__tcarr *t = tc->arr;
        if (t->n[c] == 2 * batch) gf__tc_flush(tc, c, batch);
        uint32_t k = t->n[c];
        t->blk[c][k] = off;
        atomic_signal_fence(memory_order_seq_cst); /* the entry before the count */
        t->n[c] = k + 1;
        gf__stats_add_tc(tc, usable, -1);
        return 0;
    }
    gf__alloc_lock(a);
    if (hold) gf__block_unhold(a, hold);
    if (!gf__mark_free(b)) {
        pthread_mutex_unlock(&h->alloc_lock);
        return GF_EINVAL;
    }
    b->flags = 0;
    if (c >= GF__BIG_CLASS) {
        gf__big_free_locked(a, b);
        pthread_mutex_unlock(&h->alloc_lock);
        gf__stats_add(a, usable, -1);
        return 0;
    }
    b->next = h->heads[c];
    /* release: FREE and `next` are stored before the block is published on the list. */
    atomic_store_explicit(GF_A64(&h->heads[c]), off, memory_order_release);
    pthread_mutex_unlock(&h->alloc_lock);
    gf__stats_add(a, usable, -1);
    return 0;
}

/* Free a live block (or drop one holder of a shared block). Result 0. Fails: GF_EINVAL (not a
 * live block: double free, bad offset). */
int gf_free(gf_arena *a, gf_off off) { return gf__free(a, off, 0); }

/* See internal.h. */
int gf__free_held(gf_arena *a, gf_off off, int hold) { return gf__free(a, off, hold); }

/* Usable bytes of the live block `off`, or 0 if it is not one. */
size_t gf_block_size(const gf_arena *a, gf_off off) {
    const gf__block *b = gf__live_block(a, off);
    return b ? (size_t)b->usable : 0;
}

/* Validate that [off, off+len) lies in one live block (any 64-bit input). Result 0. Fails:
 * GF_EBADMSG. */
int gf_arena_check_block(const gf_arena *a, gf_off off, size_t len) {
    const gf__block *b = gf__live_block(a, off);
    /* The allocator's own blocks (thread-cache arrays, ledger tables) are nobody's data. */
    if (!b || len > b->usable || (b->flags & GF__BLK_SYS)) return GF_EBADMSG;
    return 0;
}
