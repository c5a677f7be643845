/*
 * arena_reclaim.c -- what a dead process held, found in shared memory and released by the
 * survivors: the ledger of blocks it allocated and had not handed on yet (gf__block_hold /
 * gf__block_unhold), and the blocks in its thread caches (their arrays live in the arena,
 * registered in its slot), and its references (arena_ledger.c). gf_arena_reclaim releases a
 * dead slot's holdings; an attach that re-takes a dead slot does the same first.
 */
#include "arena_internal.h"

#include <unistd.h>

/* Record `off` in the calling process's ledger. Result: a handle for gf__block_unhold, 0 if
 * not recorded (no slot of its own, ledger full). */
int gf__block_hold(gf_arena *a, gf_off off) {
    if (!a || !off || a->slot >= GF_ARENA_MAX_PROCS || a->pid != gf__pid()) return 0;
    uint64_t *held = a->h->slots[a->slot].held;
    for (int i = 0; i < GF__HELD_N; i++) {
        uint64_t z = 0;
        if (atomic_load_explicit(GF_A64(&held[i]), memory_order_relaxed) != 0) continue;
        /* relaxed: only this process writes its ledger; a reclaimer reads it after its
         * death (the kernel's release of the life lock orders everything before it). */
        if (atomic_compare_exchange_strong_explicit(GF_A64(&held[i]), &z, off,
                                                    memory_order_relaxed, memory_order_relaxed))
            return i + 1;
    }
    return 0;
}

/* Drop the record behind `handle` (0: nothing). */
void gf__block_unhold(gf_arena *a, int handle) {
    if (handle <= 0 || handle > GF__HELD_N || a->slot >= GF_ARENA_MAX_PROCS) return;
    /* release: ordered before the caller's store that hands the block on. */
    atomic_store_explicit(GF_A64(&a->h->slots[a->slot].held[handle - 1]), 0,
                          memory_order_release);
}

/* Blocks held until the calling thread's next ring put (out-of-band buffers of a message
 * being encoded): that put drops them from the ledger just before its commit. */
static __thread struct {
    gf_arena *a;
    int h[GF__HELD_N];
} gf__pend;
/* Its count, on the path of every ring put: initial-exec (a plain %fs-relative load, 4 bytes
 * of the static TLS surplus) instead of a __tls_get_addr call (+28 instructions per small
 * put/get pair, measured with callgrind). */
__thread int gf__pend_n __attribute__((tls_model("initial-exec")));

int gf__block_hold_for_put(gf_arena *a, gf_off off) {
    /* only with room to remember it: a record no put drops would outlive the block */
    if (gf__pend_n >= GF__HELD_N || (gf__pend_n > 0 && gf__pend.a != a)) return 0;
    int h = gf__block_hold(a, off);
    if (h) {
        gf__pend.a = a;
        gf__pend.h[gf__pend_n++] = h;
    }
    return h;
}

void gf__held_put_slow(gf_arena *a) {
    if (gf__pend.a != a) return;
    for (int i = 0; i < gf__pend_n; i++) gf__block_unhold(a, gf__pend.h[i]);
    gf__pend_n = 0;
}

void gf__block_unhold_off(gf_arena *a, gf_off off) {
    if (!a || !off || a->slot >= GF_ARENA_MAX_PROCS || a->pid != gf__pid()) return;
    if (gf__pend.a != a) return;
    uint64_t *held = a->h->slots[a->slot].held;
    /* Only the records held for the next put: the block may also be recorded for another
     * reason (a NumPy array made here, src/ext/npalloc.c) and that record stays. Every such
     * record: a message held twice (put retried) is recorded twice. */
    for (int k = 0; k < gf__pend_n; k++) {
        int i = gf__pend.h[k] - 1;
        if (atomic_load_explicit(GF_A64(&held[i]), memory_order_relaxed) != off) continue;
        atomic_store_explicit(GF_A64(&held[i]), 0, memory_order_release);
        gf__pend.h[k--] = gf__pend.h[--gf__pend_n];
    }
}

/* List the blocks cached in the arrays at `off` (a dead thread's cache) on their free lists.
 * Result: the number of blocks listed. Every entry is checked (a FREE block of its class). */
static uint64_t gf__tc_reclaim(gf_arena *a, gf_off off, uint64_t *bytes) {
    gf__arena_hdr *h = a->h;
    if (gf_block_size(a, off) < sizeof(gf__tcarr)) return 0;
    gf__tcarr *t = (gf__tcarr *)(a->base + off);
    if (t->magic != GF__TCARR_MAGIC) return 0;
    uint64_t n = 0;
    gf__alloc_lock(a);
    for (uint32_t c = 0; c < GF__TC_NCLASS; c++) {
        uint32_t cnt = t->n[c] > GF__TC_CAP ? GF__TC_CAP : t->n[c];
        for (uint32_t i = 0; i < cnt; i++) {
            gf_off b_off = t->blk[c][i];
            if (!gf__off_plausible(a, b_off, h->top)) continue;
            gf__block *b = gf__blk(a, b_off);
            if (b->magic != GF__BLK_FREE || b->cls != c || b->self != b_off) continue;
            b->next = h->heads[c];
            /* release: `next` is stored before the block is published on the list. */
            atomic_store_explicit(GF_A64(&h->heads[c]), b_off, memory_order_release);
            n++;
            *bytes += b->usable;
        }
        t->n[c] = 0;
    }
    t->magic = 0;
    pthread_mutex_unlock(&h->alloc_lock);
    return n;
}

int gf__slot_release(gf_arena *a, uint32_t i) {
    gf__arena_hdr *h = a->h;
    gf__slot *s = &h->slots[i];
    uint64_t n = 0, bytes = 0, held[GF__HELD_N], tcs[GF__SLOT_TCS];
    /* Empty the records first: the frees below may bind this thread's cache, which registers
     * its arrays in the caller's slot (possibly this one, just re-taken). */
    for (int k = 0; k < GF__HELD_N; k++)
        held[k] = atomic_exchange_explicit(GF_A64(&s->held[k]), 0, memory_order_acquire);
    for (int k = 0; k < GF__SLOT_TCS; k++)
        tcs[k] = atomic_exchange_explicit(GF_A64(&s->tcs[k]), 0, memory_order_acquire);
    for (int k = 0; k < GF__HELD_N; k++) {
        size_t u = held[k] ? gf_block_size(a, held[k]) : 0;
        if (u && gf_free(a, held[k]) == 0) {
            n++;
            bytes += u;
        }
    }
    for (int k = 0; k < GF__SLOT_TCS; k++) {
        if (!tcs[k]) continue;
        n += gf__tc_reclaim(a, tcs[k], &bytes);
        size_t u = gf_block_size(a, tcs[k]);
        if (u) {
            gf__stats_add(a, u, 1); /* the arrays were never counted */
            gf_free(a, tcs[k]);
        }
    }
    if (n) {
        atomic_fetch_add_explicit(GF_A64(&h->reclaimed_blocks), n, memory_order_relaxed);
        atomic_fetch_add_explicit(GF_A64(&h->reclaimed_bytes), bytes, memory_order_relaxed);
    }
    n += gf__ledger_release(a, i); /* its references on shared objects and blocks */
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

/* Release slot i's holdings if its owner is gone. Result: blocks released. Fails: GF_EBUSY
 * (its owner is alive). */
static int gf__reclaim_one(gf_arena *a, uint32_t i) {
    gf__slot *s = &a->h->slots[i];
    int r = pthread_mutex_trylock(&s->life);
    if (r == EBUSY) return GF_EBUSY;
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(&s->life);
        s->state = GF__SLOT_DEAD;
    } else if (r != 0) {
        return GF_EBUSY;
    }
    int n = 0;
    if (s->state != GF__SLOT_FREE) {
        n = gf__slot_release(a, i);
        s->state = GF__SLOT_FREE;
    }
    pthread_mutex_unlock(&s->life);
    return n;
}

/* Release what the process that owned process slot `slot` held when it died, or, with
 * GF_ARENA_RECLAIM_DEAD, of every dead process. Result: the number of blocks released.
 * Fails: GF_EINVAL (no such slot), GF_EBUSY (that process is alive, or it is this one). */
int gf_arena_reclaim(gf_arena *a, uint32_t slot) {
    if (!a) return GF_EINVAL;
    int own = a->slot < GF_ARENA_MAX_PROCS && a->pid == getpid();
    /* acquire: the slots below hwm have initialised mutexes. */
    uint32_t hwm = atomic_load_explicit(GF_A32(&a->h->slots_hwm), memory_order_acquire);
    if (slot != GF_ARENA_RECLAIM_DEAD) {
        if (slot >= hwm) return GF_EINVAL;
        if (own && slot == a->slot) return GF_EBUSY;
        return gf__reclaim_one(a, slot);
    }
    int total = 0;
    for (uint32_t i = 0; i < hwm; i++) {
        if ((own && i == a->slot) || a->h->slots[i].state == GF__SLOT_FREE) continue;
        int n = gf__reclaim_one(a, i);
        if (n > 0) total += n;
    }
    return total;
}
