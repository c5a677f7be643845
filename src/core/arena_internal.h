/*
 * arena_internal.h -- the arena's shared-memory layout and the helpers its files share
 * (arena.c, arena_proc.c, arena_alloc.c, arena_copy.c, arena_stats.c, arena_obj.c). Not
 * installed; nothing outside src/core/arena*.c includes it.
 *
 * Layout of the memfd:
 *
 *   [ gf__arena_hdr: magic, allocator, free-list heads, stats, process slots ][ blocks ... ]
 *   0                                                                 data_start         top
 *
 * A block is a 64-byte gf__block header followed by its payload; gf_alloc returns the offset
 * of the payload (64-byte aligned). Blocks are laid out back to back from data_start to `top`;
 * each header also names the block before it (`aprev`), so both neighbours are found in O(1).
 *
 * Small blocks (payload <= 4 KiB, classes < GF__BIG_CLASS) are never split or merged: a freed
 * one goes (LIFO) to the free list of its size class, or to a thread's cache. Big blocks
 * (arena_big.c) are split and coalesced: a free big block has class GF__CLS_BIG, any payload
 * size (a multiple of 64), flag GF__BLK_BIN while it sits on the doubly linked list of its bin
 * (the largest class not above its size), and it merges with free big neighbours when freed.
 * The whole pages of free big blocks are returned to the kernel (fallocate PUNCH_HOLE on the
 * memfd) once they have been free for the warm delay, or at once (oldest first) while more
 * than the warm budget of freed memory is still backed (GILFREE_ARENA_WARM_MS, _WARM_MB).
 *
 * Crash safety. The allocator runs under a robust process-shared mutex. A process killed while
 * holding it leaves the lock "owner died"; the next locker marks it consistent and carries on.
 * That is only sound because every store the allocator makes keeps the structure valid:
 *   bump:  write the new block's header, then release-store `top`;
 *   pop:   read head->next, then release-store the list head (one store commits the pop);
 *   push:  write the header's FREE magic and `next`, then release-store the list head.
 * So a death between two stores can leak one block, never corrupt a list.
 * Big blocks need more than one store (a split writes the remainder's header, then commits
 * with one store of the block's `usable`; a merge unlinks the neighbour, then commits with one
 * store of the survivor's `usable`): the address-order walk (each block's `usable` leads to the
 * next) is valid at every store, the bins, `aprev` links and counters may not be. A locker
 * that finds the lock "owner died" therefore runs gf__heal, which rebuilds the bins, `aprev`,
 * `last` and the counters from the walk (a big block popped but not yet handed out is listed
 * again, adjacent free big blocks are merged).
 */
#ifndef GF_ARENA_INTERNAL_H
#define GF_ARENA_INTERNAL_H

#include "internal.h"

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#define GF__ARENA_MAGIC 0x414e455245524647ull /* "GFRERENA" */
#define GF__ARENA_VERSION 3u

#define GF__BLK_LIVE 0x4556494cu /* "LIVE" */
#define GF__BLK_FREE 0x45455246u /* "FREE" */
#define GF__BLK_OBJ 1u           /* flags: the payload starts with a gf_obj */
#define GF__BLK_BIN 2u           /* flags (free big block): on its bin's list */
#define GF__BLK_WARM 4u          /* flags (free big block): its pages may still be backed */
#define GF__BLK_SYS 8u           /* flags: the allocator's own block (not counted by verify) */

#define GF__HDR_SIZE 64u /* block header */

/* Size classes (of the payload): 64..1024 by 64, then 4 classes per power of two
 * (1280, 1536, 1792, 2048, 2560, ...): at most 25% (on average ~11%) of a large request is
 * wasted, and that waste is address space, not memory, unless the bytes are touched. */
#define GF__NSMALL 16
#define GF__NCLASS (GF__NSMALL + 4 * 54)
/* Classes from here on (payload > 4 KiB) are big: split and coalesced (arena_big.c). */
#define GF__BIG_CLASS 24u
/* The class field of a free big block (any size: not a class). */
#define GF__CLS_BIG 0xB16u

/* Slot ids fit 12 bits, generations 19 bits: ident = gen << 12 | slot stays below 2^31 (bit 31
 * is the waiters bit of gf_mutex words) and is never 0 (gen >= 1). */
#define GF__SLOT_BITS 12
#define GF__GEN_MAX ((1u << 19) - 1)

_Static_assert(GF_ARENA_MAX_PROCS <= (1u << GF__SLOT_BITS), "slot ids must fit 12 bits");

/* A fresh plain block at least this large is prefaulted with MADV_POPULATE_WRITE: one system
 * call instead of a fault per page. Measured on the 2-vCPU VM (memfd, 4 KiB pages, fresh
 * block, then memset): 1 MiB 490-514 us -> 359-376 us, 256 KiB 131 -> 101 us, 64 KiB 33 ->
 * 26 us (medians of 200). */
#define GF__POPULATE_MIN ((size_t)64 << 10)

/* A slot's state. DEAD: its owner died and its holdings are not released yet (the slot's
 * life lock is free; whoever takes it -- gf_arena_reclaim, or an attach -- releases them). */
enum { GF__SLOT_FREE = 0, GF__SLOT_ATTACHED = 1, GF__SLOT_DEAD = 2 };

#define GF__HELD_N 16  /* ledger entries per process: blocks allocated, not yet handed on */
#define GF__SLOT_TCS 8 /* thread caches per process whose arrays live in the arena */

/* The reference ledger (arena_ledger.c): per process slot, the references it holds on shared
 * objects (gf_obj counts) and plain blocks (gf_block_share holders). An entry is one 64-bit
 * word, (offset >> 6) << GF__LCNT_BITS | count, 0 = never used, count 0 = a tombstone (any
 * key may take it over). Tables: one inline in the slot, then up to GF__LTAB_MAX arena blocks
 * (512, 2048, 8192, 32768 entries; GF__BLK_SYS, not counted in the statistics) linked from
 * the slot. An offset's entries lie within
 * GF__LPROBE_IN / GF__LPROBE words of its hash in each table (duplicates allowed: the counts
 * add up). */
#define GF__LINLINE 32 /* 256 bytes per slot: 4096 slots stay ~1 MiB of header */
#define GF__LCNT_BITS 20
#define GF__LCNT_MAX ((1u << GF__LCNT_BITS) - 1)
#define GF__LPROBE_IN 8 /* probe limit in the inline table */
#define GF__LPROBE 16   /* ... in a chained table */
#define GF__LTAB_MAX 4
#define GF__LTAB_MAGIC 0x42415444474c4631ull
typedef struct gf__ltab {
    uint64_t magic; /* GF__LTAB_MAGIC */
    uint64_t cap;   /* entries (a power of two) */
    uint64_t next;  /* payload offset of the next (4x larger) table, 0 = none; atomic */
    uint64_t pad[5];
    uint64_t e[];
} gf__ltab;

/* Thread-cache geometry (arena_alloc.c): classes 0..23 (payloads up to 4 KiB), up to
 * 2 batches of <= 64 blocks each. */
#define GF__TC_NCLASS 24
#define GF__TC_BATCH_MAX 64
#define GF__TC_CAP (2 * GF__TC_BATCH_MAX)
#define GF__TCARR_MAGIC 0x5243435446474e31ull

/* The arrays of a thread's block cache. In an arena block registered in the process's slot
 * (tcs[]) when it has one, so that survivors can give a dead process's cached blocks back
 * (arena_reclaim.c); its owner updates them in an order that keeps them valid at every store
 * (an entry below n[c] is written before n[c] counts it, n[c] drops before the entry is
 * reused), so a kill at any point leaks at most one block, never lists one twice. */
typedef struct gf__tcarr {
    uint64_t magic; /* GF__TCARR_MAGIC */
    uint32_t n[GF__TC_NCLASS];
    uint32_t pad;
    gf_off blk[GF__TC_NCLASS][GF__TC_CAP];
} gf__tcarr;

#define GF__NCELLS 1024 /* statistics cells for caching threads (one cache line each) */

typedef struct gf__block {
    uint32_t magic;  /* GF__BLK_LIVE or GF__BLK_FREE */
    uint32_t cls;    /* size class */
    uint64_t self;   /* offset of the payload: a forged or stale header rarely matches it */
    uint64_t usable; /* payload bytes (the class size) */
    uint64_t next;   /* free list: payload offset of the next free block, 0 = end */
    uint32_t flags;  /* GF__BLK_OBJ */
    uint32_t owner;  /* ident of the allocating process (debugging aid) */
    uint64_t shares; /* plain blocks: holders beyond the first (gf_block_share); atomic.
                        Free big block: the previous block on its bin's list */
    uint64_t aprev;  /* payload offset of the block just below this one, 0 for the first */
    uint64_t freed;  /* free big block: CLOCK_MONOTONIC ns when it was freed (warm delay) */
} gf__block;
_Static_assert(sizeof(gf__block) == GF__HDR_SIZE, "block header is one cache line");

typedef struct gf__slot {
    pthread_mutex_t life; /* robust, process-shared; held by the owner while attached */
    uint32_t pid;
    uint32_t gen; /* bumped by every new owner; read atomically */
    uint32_t state;
    /* Allocation statistics of the processes that owned this slot: allocations minus frees
     * (bytes, blocks), relaxed atomics, cumulative over owners (never reset), so the sum over
     * all slots plus the header's counters is exact. On their own line: the owner updates
     * them on every alloc/free, other processes only read them in gf_arena_stats_get. */
    uint64_t in_use GF_ALIGNED(GF_CACHELINE);
    uint64_t live_blocks;
    /* Holdings (arena_reclaim.c), written by the owner only: the ledger of blocks it
     * allocated and has not handed on yet (0 = empty entry), and its thread caches' arrays. */
    uint64_t held[GF__HELD_N] GF_ALIGNED(GF_CACHELINE);
    uint64_t tcs[GF__SLOT_TCS];
    /* The reference ledger (arena_ledger.c), written by the owner's threads only (CAS). */
    uint64_t ltab; /* payload offset of the first chained table, 0 = none; atomic */
    uint64_t refs[GF__LINLINE] GF_ALIGNED(GF_CACHELINE);
} GF_ALIGNED(GF_CACHELINE) gf__slot;

typedef struct gf__arena_hdr {
    /* immutable after create */
    uint64_t magic;
    uint32_t version;
    uint32_t max_procs;
    uint64_t reserve;    /* size of the memfd */
    uint64_t data_start; /* offset of the first block header */

    /* the allocator: everything below until `stats` is guarded by alloc_lock */
    pthread_mutex_t alloc_lock GF_ALIGNED(GF_CACHELINE);
    uint64_t top;       /* offset of the next block header to bump; read atomically outside */
    uint32_t slots_hwm; /* slots ever initialised; read atomically outside the lock */
    uint32_t pad0;
    uint64_t heads[GF__NCLASS]; /* small classes: free-list heads (payload offsets) */
    uint64_t last;              /* payload offset of the block just below top, 0 = none */
    uint64_t bins[GF__NCLASS];  /* free big blocks, doubly linked, by floor class */
    uint64_t bmap[(GF__NCLASS + 63) / 64]; /* bit set = bin may be non-empty (a hint) */
    /* big-block counters (under the lock; read relaxed by gf_arena_stats_get) */
    uint64_t big_free;   /* payload bytes of free big blocks */
    uint64_t big_warm;   /* ... of those flagged WARM (possibly backed) */
    uint64_t punched;    /* bytes handed back to the kernel, cumulative */
    uint64_t reclaimed_blocks, reclaimed_bytes; /* released for dead processes, cumulative */
    uint64_t heals;      /* gf__heal runs */
    uint64_t refs_reclaimed;  /* references dropped for dead processes, cumulative (atomic) */
    uint64_t refs_unrecorded; /* references the ledgers had no room for, cumulative (atomic) */
    uint64_t warm_oldest; /* ns: no WARM block was freed before this (a lower bound) */

    /* statistics of processes without a slot (a forked child before
     * gf_arena_after_fork_child): relaxed atomics; see gf__slot for the rest */
    uint64_t in_use GF_ALIGNED(GF_CACHELINE);
    uint64_t live_blocks;

    /* Statistics cells of threads that cache blocks (see "per-thread cache"): each claimed by
     * one thread (claim = its process ident) which updates it with plain relaxed stores. */
    struct {
        uint32_t claim;
        uint32_t pad;
        uint64_t in_use;
        uint64_t live_blocks;
        uint64_t pad2[5]; /* one line per cell: cells of different processes never share */
    } cells[GF__NCELLS] GF_ALIGNED(GF_CACHELINE);

    gf__slot slots[GF_ARENA_MAX_PROCS];
} gf__arena_hdr;

struct gf_arena {
    char *base;
    size_t size;
    int fd;
    uint32_t slot;  /* GF_ARENA_MAX_PROCS = none */
    uint32_t ident; /* 0 = none */
    pid_t pid;      /* the process that owns `slot` (a forked child must take its own) */
    gf__arena_hdr *h;
    /* When attached from a thread other than the main one, a helper thread holds the life
     * lock (a robust mutex belongs to a thread: it would read as dead when that thread
     * exits, while the process lives on). */
    int has_holder;
    pthread_t holder;
    uint32_t hold_state; /* futex word: 0 starting, 1 attached, 2 failed, 3 release asked */
    int hold_err;
    /* this process's trimming policy (GILFREE_ARENA_WARM_MS / GILFREE_ARENA_WARM_MB) */
    uint64_t warm_ms;
    uint64_t warm_budget;
    /* chained reference-ledger tables this process may add (GILFREE_ARENA_LEDGER_TABLES) */
    uint32_t ledger_tables;
};

_Static_assert(offsetof(struct gf_arena, base) == offsetof(struct gf__arena_head, base) &&
                   offsetof(struct gf_arena, size) == offsetof(struct gf__arena_head, size),
               "internal.h reads base and size inline");

/* ---------------------------------------------------------------- size classes */

/* Payload bytes of class c. */
static inline uint64_t gf__class_size(uint32_t c) {
    if (c < GF__NSMALL) return 64ull * (c + 1);
    uint32_t j = c - GF__NSMALL, e = 10 + j / 4, k = j % 4 + 1;
    return (1ull << e) + (uint64_t)k * (1ull << (e - 2));
}

/* The smallest class whose payload holds n bytes (1 <= n <= 2^62). */
static inline uint32_t gf__class_of(uint64_t n) {
    if (n <= 1024) return (uint32_t)((n + 63) / 64) - 1;
    uint32_t e = 63 - (uint32_t)__builtin_clzll(n - 1); /* 2^e < n <= 2^(e+1) */
    uint64_t step = 1ull << (e - 2);
    uint64_t k = (n - (1ull << e) + step - 1) / step; /* 1..4 */
    return GF__NSMALL + (e - 10) * 4 + (uint32_t)k - 1;
}

/* ---------------------------------------------------------------- block headers */

static inline gf__block *gf__blk(const gf_arena *a, uint64_t payload_off) {
    return (gf__block *)(a->base + payload_off - GF__HDR_SIZE);
}

/* 1 if `off` can be the payload offset of a block whose header is below top: in range and
 * aligned, so that reading its header stays inside the mapping. Never reads memory. */
static inline int gf__off_plausible(const gf_arena *a, uint64_t off, uint64_t top) {
    const gf__arena_hdr *h = a->h;
    return off >= h->data_start + GF__HDR_SIZE && off <= top && (off & 63) == 0;
}

/* The current bump pointer, bounded by the mapping (defends against a corrupt header). */
static inline uint64_t gf__top(const gf_arena *a) {
    /* acquire: pairs with the release-store of top in gf_alloc, so the header of every block
     * below it is visible. */
    uint64_t top = atomic_load_explicit(GF_A64(&a->h->top), memory_order_acquire);
    return top <= a->size ? top : a->size;
}

/* The header of the live block with payload `off`, or NULL (bad offset, not live). Safe for
 * any 64-bit input: the header is read only once `off` is known to lie inside the mapping. */
static inline const gf__block *gf__live_block(const gf_arena *a, gf_off off) {
    uint64_t top = gf__top(a);
    if (!gf__off_plausible(a, off, top)) return NULL;
    const gf__block *b = gf__blk(a, off);
    /* The header may be rewritten concurrently by a racing free/alloc of a block the caller
     * does not own; relaxed atomic loads make that a benign (if meaningless) race. */
    uint32_t magic = atomic_load_explicit(GF_A32(&b->magic), memory_order_acquire);
    if (magic != GF__BLK_LIVE) return NULL;
    if (b->self != off || b->cls >= GF__NCLASS) return NULL;
    uint64_t usable = b->usable;
    if (usable != gf__class_size(b->cls) || usable > top - off) return NULL;
    return b;
}

/* ---------------------------------------------------------------- statistics */

/* The counters this process updates: its slot's, or the header's when it has no slot. */
static inline uint64_t *gf__stats_of(gf_arena *a) {
    return a->slot < GF_ARENA_MAX_PROCS ? &a->h->slots[a->slot].in_use : &a->h->in_use;
}
/* Count an allocation (+1) or a free (-1) of `usable` bytes in the process's counters (shared
 * by its threads: atomic adds). Relaxed: statistics only. */
static inline void gf__stats_add(gf_arena *a, uint64_t usable, int dir) {
    uint64_t *s = gf__stats_of(a);
    atomic_fetch_add_explicit(GF_A64(&s[0]), dir > 0 ? usable : (uint64_t)0 - usable,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(GF_A64(&s[1]), dir > 0 ? 1 : UINT64_MAX, memory_order_relaxed);
}

/* ---------------------------------------------------------------- shared between the files */

/* arena_proc.c: take a process slot for the calling process (from the main thread directly,
 * from any other thread through a holder thread that lives until detach). Result 0. Fails:
 * GF_EAGAIN (table full), GF_ENOMEM. */
int gf__attach_process(gf_arena *a);
/* arena_proc.c: start a helper thread with a 64 KiB stack and every signal blocked. Result 0
 * or the pthread error number. */
int gf__helper_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* arena_alloc.c: lock a robust mutex, spinning up to gf__spin_ns() first. Result 1 if its
 * previous owner died holding it (the mutex is made consistent), else 0. */
int gf__robust_lock(pthread_mutex_t *m);
/* arena_big.c: repair the allocator after its lock was found "owner died" (see the top of this
 * file). Caller holds alloc_lock. Never fails. */
void gf__heal(gf_arena *a);
/* Lock the allocator; heal it if the previous holder died. */
static inline void gf__alloc_lock(gf_arena *a) {
    if (GF_UNLIKELY(gf__robust_lock(&a->h->alloc_lock))) gf__heal(a);
}
/* Test hook: called at numbered points inside the big-block allocator while it holds the
 * lock (tests kill the process there). */
void gf__alloc_crash_point(int where) __attribute__((weak));
#define GF__ALLOC_CRASH(n)                                                                     \
    do {                                                                                       \
        if (GF_UNLIKELY(gf__alloc_crash_point != NULL)) gf__alloc_crash_point(n);              \
    } while (0)
/* arena_big.c: the floor class of a free big block of `usable` bytes (its bin). */
uint32_t gf__bin_of(uint64_t usable);
/* arena_big.c: allocate a block of big class c (payload `usable`), caller holds alloc_lock:
 * a free big block (split), else bumped. Result 0, *out, *fresh_out = 1 if its pages are not
 * backed (bumped or punched). Fails: GF_ENOSPC. */
int gf__big_alloc_locked(gf_arena *a, uint32_t c, uint64_t usable, uint32_t flags, gf_off *out,
                         int *fresh_out);
/* arena_big.c: free the big block b (already marked FREE), caller holds alloc_lock: merge with
 * free neighbours, list it, punch what the policy says. Never fails. */
void gf__big_free_locked(gf_arena *a, gf__block *b);
/* arena_big.c: write a new block header at header offset `at` (>= top) with class c, payload
 * `usable`, magic, flags, the block below it `aprev`; caller holds alloc_lock and checked the
 * space. Result: its payload offset. The
 * caller publishes it with gf__bump_commit. */
gf_off gf__bump_hdr(gf_arena *a, uint64_t at, gf_off aprev, uint32_t c, uint64_t usable,
                    uint32_t magic, uint32_t flags);
/* arena_big.c: commit blocks written by gf__bump_hdr up to `newtop`, `last` the highest. */
void gf__bump_commit(gf_arena *a, uint64_t newtop, gf_off last);
/* arena_big.c: punch what the trimming policy says (over-budget oldest first, then everything
 * older than max_age_ms). Caller holds alloc_lock. Never fails. */
void gf__trim_locked(gf_arena *a, uint64_t budget, uint64_t max_age_ms);

/* arena_alloc.c: initialise a robust process-shared mutex. Result 0 or a pthread error number. */
int gf__robust_init(pthread_mutex_t *m);
/* arena_alloc.c: prefault the whole pages of [p, p + len) in one system call (errors
 * ignored). */
void gf__populate(void *p, size_t len);
/* arena_alloc.c: allocate a block of `size` bytes with header flags `flags`. Result 0, *out,
 * and *fresh = 1 if the block was just bumped (never touched). Fails: GF_EINVAL, GF_ENOSPC. */
int gf__alloc_raw(gf_arena *a, size_t size, uint32_t flags, gf_off *out, int *fresh_out);
/* arena_alloc.c: as gf__alloc_raw (plain block), recorded in the ledger while the allocator
 * lock is held: hmode 1 gf__block_hold (*hold its handle), 2 gf__block_hold_for_put. */
int gf__alloc_raw_held(gf_arena *a, size_t size, gf_off *out, int *fresh_out, int hmode,
                       int *hold);
/* arena_alloc.c: as gf__alloc_raw, prefaulting a fresh large plain block. Same failures. */
int gf__alloc(gf_arena *a, size_t size, uint32_t flags, gf_off *out);
/* arena_reclaim.c: release the holdings recorded in slot i (its ledger's blocks, its thread
 * caches' blocks and arrays); the caller holds the slot's life lock and its owner is gone.
 * Result: the number of blocks released. Never fails. */
int gf__slot_release(gf_arena *a, uint32_t i);
/* arena_ledger.c: drop the references recorded in slot i's ledger and free its chained
 * tables; the caller holds the slot's life lock and its owner is gone (or is the caller,
 * detaching). Result: the number of references dropped. Never fails. */
uint64_t gf__ledger_release(gf_arena *a, uint32_t i);
/* arena_proc.c: getpid(), cached (cleared in a forked child by a pthread_atfork handler). */
extern pid_t gf__pid_cache;
pid_t gf__pid_slow(void);
static inline pid_t gf__pid(void) {
    pid_t p = __atomic_load_n(&gf__pid_cache, __ATOMIC_RELAXED);
    return GF_LIKELY(p != 0) ? p : gf__pid_slow();
}

/* arena_alloc.c: detach -- flush every thread's cached blocks of arena a. Never fails. */
void gf__tc_detach(gf_arena *a);
/* arena_alloc.c: after gf_arena_after_fork_child -- give the calling thread's cache a
 * statistics cell. Never fails. */
void gf__tc_attached(gf_arena *a);
/* arena_alloc.c: register the thread caches' at-fork handlers now if they are not yet (so a
 * handler registered after this call runs after theirs in a forked child). Never fails. */
void gf__tc_ready(void);

#endif /* GF_ARENA_INTERNAL_H */
