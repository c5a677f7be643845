/*
 * internal.h -- shared internals of the gilfree core. Not installed.
 *
 * Atomics are C11 <stdatomic.h> on plain uint32_t/uint64_t fields of shared structures (the
 * public header keeps them plain so that C++ and older compilers can include it); the GF_A*
 * macros cast. Every memory-order choice is commented at its use.
 */
#ifndef GF_INTERNAL_H
#define GF_INTERNAL_H

#include "gilfree.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define GF_LIKELY(x) __builtin_expect(!!(x), 1)
#define GF_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define GF_CACHELINE 64
#define GF_ALIGNED(n) __attribute__((aligned(n)))

/* Atomic views of plain shared fields. */
#define GF_A32(p) ((_Atomic uint32_t *)(p))
#define GF_A64(p) ((_Atomic uint64_t *)(p))

static inline void gf__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/* How long a waiter spins before it sleeps. On the VM we target a futex wake across CPUs
 * costs ~45 µs one way while a cache-line hand-off costs ~0.1 µs, so spinning for a few tens
 * of microseconds turns most short waits into hand-offs. Tunable by GILFREE_SPIN_NS. */
#define GF_SPIN_NS_DEFAULT 30000
/* A sleeping waiter wakes at least this often to check for a dead lock holder. */
#define GF_SLICE_NS 50000000 /* 50 ms */

int64_t gf__spin_ns(void);

/* futex on a 32-bit word in MAP_SHARED memory (so no FUTEX_PRIVATE_FLAG).
 * gf__futex_wait: sleep while *addr == expected, until `deadline` (absolute CLOCK_MONOTONIC
 * ns, GF_FOREVER = none). Result: 0 woken (or value changed), GF_ETIMEDOUT, GF_EINTR. */
int gf__futex_wait(uint32_t *addr, uint32_t expected, int64_t deadline);
/* When a sleep until `deadline` must end (sooner if an interrupt slice is set: *sliced). */
int64_t gf__sleep_until(int64_t deadline, bool *sliced);
/* The interrupt slice in ns (gf_set_interrupt_slice), 0 when none is set. */
int64_t gf__interrupt_slice(void);
/* True if an interrupt slice is set and `since` lies at least one slice in the past. */
bool gf__interrupt_due(int64_t since);
/* Wake up to n waiters (INT32_MAX: all). Result: number woken (>= 0). */
int gf__futex_wake(uint32_t *addr, int n);

/* Spin until `*addr != expected` or `spin_ns` elapses. Result: true if it changed. Reads with
 * acquire so that what the writer published before changing the word is visible. */
bool gf__spin_while_eq(uint32_t *addr, uint32_t expected, int64_t spin_ns);

/* errno -> table code (same as gf_from_errno, usable without the call). */
int gf__errno_code(int e);

/* Process identity inside an arena (arena_proc.c). A slot id with its generation, never 0. */
uint32_t gf__self_ident(const gf_arena *a);
/* 1 if the process that owns `ident` is still attached and alive, 0 if it died (its life lock
 * was released by the kernel) or detached. */
int gf__ident_alive(gf_arena *a, uint32_t ident);
/* The calling thread's kernel tid (cached per thread, reset after fork). */
uint32_t gf__tid(void);

/* --- arena_obj.c, arena_stats.c (h1-arena) --- */
/* Per-type destructors, called by gf_obj_decref when a count drops to 0, before the object's
 * block is freed: free the blocks the object owns (not the object itself). Weak: a type whose
 * module is not linked in (or not written yet) is simply freed. NB with the static library a
 * weak reference does not pull the module in: any program that creates such objects links it
 * anyway. */
void gf__ring_destroy(gf_arena *a, gf_off off) __attribute__((weak));
void gf__dict_destroy(gf_arena *a, gf_off off) __attribute__((weak));
void gf__list_destroy(gf_arena *a, gf_off off) __attribute__((weak));
void gf__pool_destroy(gf_arena *a, gf_off off) __attribute__((weak));
/* Consistency walk of the allocator (tests): every block header between the start and the
 * bump pointer is valid, free lists hold FREE blocks of their class, no cycles. Result: the
 * number of live blocks. Fails: GF_EBADMSG. */
int gf__arena_verify(gf_arena *a);

/* --- lock.c / sync.c (h2-lock) --- */
/* gf_mutex.word: bit 31 = somebody may sleep on the word (unlock must wake one); bits 0-30 =
 * the holder's gf__self_ident (never 0), or 0 when free. */
#define GF__MUTEX_WAITERS 0x80000000u

/* --- arena layout for hot paths (s-perf) --- */
/* The first members of struct gf_arena (arena_internal.h static-asserts this layout), so that hot
 * paths translate offsets without a call into the arena's files (gf_ptr calls gf_arena_base). */
struct gf__arena_head {
    char *base;
    size_t size;
};
static inline char *gf__abase(const gf_arena *a) {
    return ((const struct gf__arena_head *)(const void *)a)->base;
}
static inline size_t gf__asize(const gf_arena *a) {
    return ((const struct gf__arena_head *)(const void *)a)->size;
}
static inline void *gf__ptr(const gf_arena *a, gf_off off) {
    return off ? gf__abase(a) + off : (void *)0;
}

/* --- dict*.c / list.c (h8-dict) --- */
/* Copy n bytes out into buf if they fit in cap, else into a malloc'd block (out->heap). out NULL:
 * nothing. Result 0. Fails: GF_ENOMEM. */
int gf__copy_out(const void *src, size_t n, void *buf, size_t cap, gf_buf *out);
/* Append a {klen, vlen, key, value} record to a snapshot growing in *cap bytes. Result 0.
 * Fails: GF_ENOMEM. */
int gf__snap_put(gf_snap *s, size_t *cap, const void *k, uint64_t kl, const void *v,
                 uint64_t vl);
/* Test hook: tests that define it are called at numbered points inside dict mutations (see
 * dict_internal.h, GF__CP) and may SIGKILL themselves there. Absent (NULL) in every real
 * program. */
void gf__dict_crash_point(int where) __attribute__((weak));

/* arena_reclaim.c: the ledger of blocks a process allocated and has not handed on yet, so
 * that survivors free them if it dies (gf_arena_reclaim). gf__block_hold records `off` and
 * returns a handle (0: not recorded -- no slot of its own, or the ledger is full: the block
 * then leaks if the process dies before handing it on); gf__block_unhold(a, handle) drops
 * the record, just *before* the store that hands the block on (a kill between the two leaks
 * it, never frees a block someone else owns). Never fail. */
int gf__block_hold(gf_arena *a, gf_off off);
void gf__block_unhold(gf_arena *a, int handle);
/* As gf__block_hold, for a block the calling thread's next ring put hands on (an out-of-band
 * buffer of the message it is encoding): that put calls gf__held_put, which drops every such
 * record just before the put commits. gf__block_unhold_off drops those records of `off` (the
 * message was not sent: the caller frees the block). Never fail. */
int gf__block_hold_for_put(gf_arena *a, gf_off off);
extern __thread int gf__pend_n __attribute__((tls_model("initial-exec")));
void gf__held_put_slow(gf_arena *a);
static inline void gf__held_put(gf_arena *a) {
    if (__builtin_expect(gf__pend_n != 0, 0)) gf__held_put_slow(a);
}
void gf__block_unhold_off(gf_arena *a, gf_off off);
/* arena_alloc.c: gf_free of a block recorded in this process's ledger (handle `hold`, 0:
 * none), the record dropped at the last moment before the block is let go (for a big block
 * under the allocator lock: a kill while waiting for it keeps the block recorded). Use it
 * instead of gf__block_unhold + gf_free. Same results as gf_free. */
int gf__free_held(gf_arena *a, gf_off off, int hold);
/* arena_alloc.c: gf_alloc, the block recorded in the ledger (*hold, 0: not recorded) as soon
 * as it is live: before the allocator lock is released and before a fresh block's pages are
 * prefaulted. */
int gf__alloc_held(gf_arena *a, size_t size, gf_off *out, int *hold);
/* arena_alloc.c: gf_alloc, its reference recorded in this process's reference ledger
 * (gf_ref_hold; *recorded 1, or 0 when the ledger is full) right after the allocation returns
 * and before a fresh block's pages are prefaulted: for blocks the process keeps longer than
 * the block ledger's few entries should hold. Drop with gf_free_held. Same results. */
int gf__alloc_ref_held(gf_arena *a, size_t size, gf_off *out, int *recorded);
/* arena_copy.c: gf_alloc_copy; with `hold`, the block is held for the next ring put
 * (gf__block_hold_for_put) from before the copy. */
int gf__alloc_copy_held(gf_arena *a, const void *src, size_t n, gf_off *out, int hold);

/* frame.c: free the out-of-band buffer blocks of the frame in msg, a message dropped unread
 * (nothing if it is not a valid frame). Never fails. */
void gf__frame_drop(gf_arena *a, const void *msg, size_t len);

/* arena_big.c: punch the whole pages inside [off, off + len) out of the memfd (they read as
 * zeros afterwards); the caller owns that memory and nobody touches it meanwhile. */
void gf__arena_punch(gf_arena *a, gf_off off, size_t len);

/* arena_stats.c: a live block as gf__arena_live_list reports it (debugging and tests). */
typedef struct gf__live_blk {
    gf_off off;
    uint64_t usable;
    uint64_t shares; /* holders beyond the first (gf_block_share) */
    uint32_t owner;  /* ident of the process that allocated it (gf__ident_alive) */
    uint32_t slot;   /* ... its process slot */
    uint32_t gen;    /* ... and that slot's generation */
    uint32_t obj;    /* 1: a gf_obj (reference counted) */
} gf__live_blk;
int gf__arena_live_list(gf_arena *a, uint64_t min, gf__live_blk *out, size_t cap);

#endif /* GF_INTERNAL_H */
