/*
 * gilfree.h -- public API of the gilfree engine.
 *
 * A C11 library for parallel programs made of processes on Linux: a shared-memory arena that
 * dies with its last user, process-shared locks that survive the death of their holder, a
 * multi-producer multi-consumer message ring, message frames, and process management.
 * It does not depend on Python.
 *
 * Conventions
 *   - Every function returns 0 (or a non-negative count) on success and a negative error code
 *     from GF_ERRNO_MAP on failure. gf_strerror() describes a code.
 *   - Blocking functions take an absolute deadline in CLOCK_MONOTONIC nanoseconds:
 *     GF_FOREVER never times out, 0 (or any time in the past) never blocks.
 *     They return GF_ETIMEDOUT when the deadline passes and GF_EINTR when a signal arrived while
 *     they slept: handle the signal and call again with the same deadline.
 *   - Shared objects live in a gf_arena and are named by their offset (gf_off) in it, so the
 *     same name is valid in every process attached to the arena.
 */
#ifndef GILFREE_H
#define GILFREE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GF_VERSION_MAJOR 0
#define GF_VERSION_MINOR 1
#define GF_VERSION_PATCH 0

#if defined(__GNUC__)
#define GF_EXTERN __attribute__((visibility("default")))
#else
#define GF_EXTERN
#endif

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* One table of every code the library returns: XX(name, errno value, message). */
#define GF_ERRNO_MAP(XX)                                                                       \
    XX(EINVAL, 22, "invalid argument")                                                         \
    XX(ENOMEM, 12, "out of memory")                                                            \
    XX(ENOSPC, 28, "shared-memory arena is full")                                              \
    XX(ETIMEDOUT, 110, "timed out")                                                            \
    XX(EAGAIN, 11, "resource temporarily unavailable")                                         \
    XX(EINTR, 4, "interrupted by a signal")                                                    \
    XX(EPIPE, 32, "closed")                                                                    \
    XX(EOWNERDEAD, 130, "previous owner died while holding it")                                \
    XX(EMSGSIZE, 90, "message too long")                                                       \
    XX(EBADMSG, 74, "malformed message")                                                       \
    XX(EPERM, 1, "operation not permitted: not the owner")                                     \
    XX(EOVERFLOW, 75, "released too many times")                                               \
    XX(ESRCH, 3, "no such process")                                                            \
    XX(ECHILD, 10, "not a child of this process")                                              \
    XX(EBUSY, 16, "busy")                                                                      \
    XX(ECANCELED, 125, "cancelled")                                                            \
    XX(ENOSYS, 38, "not supported by this kernel")                                             \
    XX(EMFILE, 24, "too many open files")                                                      \
    XX(EBADF, 9, "bad file descriptor")                                                        \
    XX(EIO, 5, "input/output error")                                                           \
    XX(ENOENT, 2, "not found (no such key or index)")

enum {
#define GF__XX(name, val, msg) GF_##name = -(val),
    GF_ERRNO_MAP(GF__XX)
#undef GF__XX
};

/* The message for an error code ("unknown error" for codes outside the table). Never NULL. */
GF_EXTERN const char *gf_strerror(int err);
/* The symbolic name of an error code ("EINVAL"), or "UNKNOWN". Never NULL. */
GF_EXTERN const char *gf_err_name(int err);
/* Map a positive errno from a failed system call to a code from the table (EIO if unknown). */
GF_EXTERN int gf_from_errno(int errnum);

/* ------------------------------------------------------------------------------------------ */
/* Time                                                                                        */
/* ------------------------------------------------------------------------------------------ */

#define GF_FOREVER INT64_MAX

/* CLOCK_MONOTONIC now, in nanoseconds. */
GF_EXTERN int64_t gf_now_ns(void);
/* Deadline for a relative timeout: timeout_ns < 0 means GF_FOREVER; saturates instead of
 * overflowing. */
GF_EXTERN int64_t gf_deadline_after(int64_t timeout_ns);

/* Make every blocking call return GF_EINTR at least every `ns` nanoseconds while it sleeps
 * (0, the default: only when a signal interrupts the sleep). For runtimes that handle signals
 * with a flag checked later (CPython): a signal that lands while a call is spinning, just
 * before it sleeps, is then noticed within one slice. Process-wide. */
GF_EXTERN void gf_set_interrupt_slice(int64_t ns);

/* ------------------------------------------------------------------------------------------ */
/* Arena: one shared-memory region per process tree                                            */
/* ------------------------------------------------------------------------------------------ */

typedef uint64_t gf_off;          /* offset of a shared object inside the arena; 0 = none */
typedef struct gf_arena gf_arena; /* a process's handle to an arena (not shared) */

#define GF_ARENA_DEFAULT_RESERVE ((size_t)64 << 30) /* sparse: pages cost only when touched */
#define GF_ARENA_MAX_PROCS 4096                     /* processes attached at one time */

/* Create an arena backed by a memfd of `reserve` bytes (0 = GF_ARENA_DEFAULT_RESERVE) and attach
 * this process to it. Result: 0 and *out set. Fails: GF_EINVAL (reserve too small),
 * GF_ENOMEM, GF_EMFILE, GF_ENOSYS (no memfd). */
GF_EXTERN int gf_arena_create(size_t reserve, gf_arena **out);

/* Attach to the arena behind `fd` (inherited across fork/exec or received over a socket); takes
 * a process slot. The fd is duplicated; the caller keeps its own. Fails: GF_EBADF, GF_EINVAL
 * (not a gilfree arena or a different version), GF_ENOMEM, GF_EAGAIN (process table full). */
GF_EXTERN int gf_arena_attach(int fd, gf_arena **out);

/* Call in the child right after fork(): gives the child its own process slot (the parent's
 * slot stays the parent's); at once 0 if it has one already. Fails: GF_EAGAIN (process
 * table full). */
GF_EXTERN int gf_arena_after_fork_child(gf_arena *a);

/* Fork hand-over: references a parent takes for a child it is about to fork are recorded in
 * the child's ledger before any code of the child runs, so a child killed at its first
 * instruction has them dropped by the survivors. gf_arena_fork_arm arms the calling thread's
 * next fork(): in the child, inside fork() itself (a pthread_atfork child handler, after the
 * core's own), `a` is attached as by gf_arena_after_fork_child and then child_cb(a, arg) runs
 * (NULL: nothing more) -- it may call gf_ref_hold and other async-signal-safe code only (no
 * malloc, no locks other threads of the parent could have held). The arming ends with that
 * fork, in parent and child, or with gf_arena_fork_disarm(). Arming again replaces it. A
 * child that attached this way needs no gf_arena_after_fork_child (a call returns 0 at once).
 * Result 0. Fails: GF_ENOMEM (the at-fork handlers could not be registered). */
GF_EXTERN int gf_arena_fork_arm(gf_arena *a, void (*child_cb)(gf_arena *a, void *arg),
                                void *arg);
GF_EXTERN void gf_arena_fork_disarm(void);

/* Detach: unmap, close the fd and give the process slot back. Objects stay alive for other
 * processes; the memory is freed by the kernel when the last process detaches or exits. */
GF_EXTERN void gf_arena_detach(gf_arena *a);

/* The memfd, to pass to a process started with exec (it is O_CLOEXEC: clear it, or use
 * posix_spawn file actions). */
GF_EXTERN int gf_arena_fd(const gf_arena *a);
/* Size of the mapping, in bytes. */
GF_EXTERN size_t gf_arena_size(const gf_arena *a);
/* Base address of this process's mapping (differs between processes; use offsets). */
GF_EXTERN void *gf_arena_base(const gf_arena *a);
/* This process's slot id (a small integer, unique among live attached processes). */
GF_EXTERN uint32_t gf_arena_slot(const gf_arena *a);

/* Translate between offsets and this process's pointers. No checks: validate offsets that came
 * from another process with gf_arena_check_block() first. */
static inline void *gf_ptr(const gf_arena *a, gf_off off) {
    return off ? (char *)gf_arena_base(a) + off : (void *)0;
}
static inline gf_off gf_off_of(const gf_arena *a, const void *p) {
    return p ? (gf_off)((const char *)p - (const char *)gf_arena_base(a)) : 0;
}

/* Allocate `size` bytes (64-byte aligned, uninitialised). Result: 0 and *out. Fails:
 * GF_EINVAL (size 0), GF_ENOSPC (arena exhausted), GF_EINTR is never returned (the allocator
 * lock is held only for a few instructions). */
GF_EXTERN int gf_alloc(gf_arena *a, size_t size, gf_off *out);
/* Allocate a block as gf_alloc and copy `n` bytes from `src` into it. A large copy (>= 8 MiB)
 * is split over up to 4 short-lived threads (one per CPU), each of which also takes the first-
 * touch page faults of its part: on fresh arena memory those cost one thread twice the copy.
 * Result: 0 and *out. Fails: GF_EINVAL (n 0, NULL src), GF_ENOSPC. */
GF_EXTERN int gf_alloc_copy(gf_arena *a, const void *src, size_t n, gf_off *out);
/* Free a block from gf_alloc. Fails: GF_EINVAL (not a live block: double free, bad offset). */
GF_EXTERN int gf_free(gf_arena *a, gf_off off);
/* Usable size of a live block (>= the size asked for), or 0 if `off` is not a live block. */
GF_EXTERN size_t gf_block_size(const gf_arena *a, gf_off off);
/* Return the calling thread's cached free blocks (see DESIGN.md, per-thread block cache) to
 * the shared free lists. A process that ends with _exit() without gf_arena_detach should call
 * it first, else those blocks leak (at most 32 per small class). Result 0. */
GF_EXTERN int gf_arena_flush(gf_arena *a);
/* Add a holder to a live plain block (not an object): each holder calls gf_free once, the last
 * call frees it. Sends a block by reference. Result 0. Fails: GF_EINVAL, GF_EOVERFLOW. */
GF_EXTERN int gf_block_share(gf_arena *a, gf_off off);
/* Validate that [off, off+len) lies inside one live block. For offsets received from another
 * process. Fails: GF_EBADMSG. */
GF_EXTERN int gf_arena_check_block(const gf_arena *a, gf_off off, size_t len);

typedef struct gf_arena_stats {
    uint64_t reserved;    /* bytes mapped */
    uint64_t top;         /* bytes ever handed out by the bump pointer */
    uint64_t in_use;      /* bytes in live blocks */
    uint64_t live_blocks; /* number of live blocks */
    uint32_t live_procs;  /* processes attached and alive */
    uint32_t pad;
    uint64_t backing;     /* bytes of memory the memfd really holds (fstat st_blocks * 512) */
    uint64_t free;        /* payload bytes in free big blocks (> 4 KiB; split and merged) */
    uint64_t warm;        /* ... of those, freed recently and possibly still backed */
    uint64_t punched;     /* bytes handed back to the kernel so far (cumulative) */
    uint64_t reclaimed_blocks; /* blocks released on behalf of dead processes (cumulative) */
    uint64_t reclaimed_bytes;  /* their payload bytes */
    uint64_t heals;       /* allocator repairs after a process died holding its lock */
    uint64_t refs_reclaimed;  /* references dropped for dead processes (cumulative) */
    uint64_t refs_unrecorded; /* references no ledger had room for (cumulative; see below) */
} gf_arena_stats;
/* Fill *st. Result 0. Never fails. */
GF_EXTERN int gf_arena_stats_get(gf_arena *a, gf_arena_stats *st);
/* Return free arena memory to the kernel. Free big blocks (payload > 4 KiB) are coalesced
 * with free neighbours; their whole pages are handed back (fallocate PUNCH_HOLE on the memfd)
 * once free for the warm delay (GILFREE_ARENA_WARM_MS, default 1000) or, oldest first, while
 * more than the warm budget (GILFREE_ARENA_WARM_MB, default 64) of freed memory is backed.
 * Frees apply that policy as they go; gf_arena_trim(a, 0) applies it now (for a periodic
 * caller: nothing freed recently is cheap), gf_arena_trim(a, 1) hands back every free big
 * block's pages. Result 0. Fails: GF_EINVAL (a is NULL). */
GF_EXTERN int gf_arena_trim(gf_arena *a, int all);
/* Release what a dead process held: the blocks it had allocated and not handed on yet (a
 * large ring message being put, ...) and the blocks in its thread caches. `slot` is its
 * process slot (gf_arena_slot), or GF_ARENA_RECLAIM_DEAD for every process that died. The
 * pool calls it when a worker dies or retires, and an attach that re-takes a dead process's
 * slot does it first; so do the Python layer's Process.join, a lock acquire that reports
 * its holder dead, and _core.arena_stats(). It also drops the references the process held,
 * as recorded in its reference ledger (gf_ref_hold, below). Result: the number of blocks and
 * references released. Fails: GF_EINVAL (no such slot), GF_EBUSY (that process is alive, or
 * it is the caller). gf_arena_detach drops the caller's own recorded references. */
#define GF_ARENA_RECLAIM_DEAD UINT32_MAX
GF_EXTERN int gf_arena_reclaim(gf_arena *a, uint32_t slot);

/* Reference-counted shared objects. Every shared structure below starts with gf_obj.
 * gf_obj_new allocates `size` bytes with refs = 1 and the given type tag; gf_obj_decref frees
 * the block when the count drops to zero, after calling the type's destructor (which frees any
 * blocks the object owns). */
typedef struct gf_obj {
    uint32_t type;  /* GF_OBJ_* */
    uint32_t refs;  /* accessed atomically */
} gf_obj;

enum {
    GF_OBJ_RAW = 1,
    GF_OBJ_MUTEX,
    GF_OBJ_SEM,
    GF_OBJ_EVENT,
    GF_OBJ_COND,
    GF_OBJ_BARRIER,
    GF_OBJ_RING,
    GF_OBJ_BUFFER,  /* Value/Array/SharedMemory storage */
    GF_OBJ_DICT,
    GF_OBJ_LIST,
    GF_OBJ_POOL,
    GF_OBJ__MAX
};

GF_EXTERN int gf_obj_new(gf_arena *a, uint32_t type, size_t size, gf_off *out);
/* Add a reference. Fails: GF_EINVAL if `off` is not a live object. */
GF_EXTERN int gf_obj_incref(gf_arena *a, gf_off off);
/* Drop a reference; frees the object at zero. Result: the remaining count (0 = freed). */
GF_EXTERN int gf_obj_decref(gf_arena *a, gf_off off);
/* Check that `off` names a live object of `type` (for offsets received from another process).
 * Fails: GF_EBADMSG. */
GF_EXTERN int gf_obj_check(const gf_arena *a, gf_off off, uint32_t type);

/* The reference ledger: the references a process holds on shared objects (gf_obj counts) and
 * on plain blocks (gf_block_share holders), recorded in its process slot so that the
 * survivors drop them when it dies (gf_arena_reclaim). gf_obj_incref / gf_obj_decref /
 * gf_free record nothing: use them for references owned by another shared structure or in
 * transit to another process (the receiver records the one it adopts). A process records a
 * reference after taking it and forgets it before dropping or handing it on, so a kill in
 * between leaks it, never drops it twice; a ledger must never record a reference its process
 * does not hold.
 * gf_ref_hold records one reference already held on the live block `off` (made with
 * gf_obj_new, received, or inherited across fork: the child records in its own slot, after
 * gf_arena_after_fork_child). Result 1 recorded, 0 not recorded: no slot of its own, or the
 * ledger is full -- about 43,000 distinct offsets, GILFREE_ARENA_LEDGER_TABLES (0..4, default
 * 4) chained tables after 32 inline entries; counted in refs_unrecorded, and that reference
 * leaks if its holder dies without dropping it. Never fails.
 * gf_ref_unhold forgets one recorded reference on `off`. Result 1, or 0 (none recorded).
 * gf_obj_incref_held = gf_obj_incref then gf_ref_hold; gf_obj_decref_held = gf_ref_unhold
 * then gf_obj_decref; gf_free_held = gf_ref_unhold then gf_free (results and failures: those
 * of gf_obj_incref / gf_obj_decref / gf_free). */
#define GF_REF_LEDGER 1 /* these five functions exist */
GF_EXTERN int gf_ref_hold(gf_arena *a, gf_off off);
GF_EXTERN int gf_ref_unhold(gf_arena *a, gf_off off);
GF_EXTERN int gf_obj_incref_held(gf_arena *a, gf_off off);
GF_EXTERN int gf_obj_decref_held(gf_arena *a, gf_off off);
GF_EXTERN int gf_free_held(gf_arena *a, gf_off off);

/* ------------------------------------------------------------------------------------------ */
/* Locks: process-shared, survive the death of their holder                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct gf_mutex {
    uint32_t word;      /* 0 = free; else owner slot+generation | GF__MUTEX_WAITERS */
    uint32_t owner_tid; /* recursive mode: owning thread */
    uint32_t depth;     /* recursive mode: recursion depth */
    uint32_t flags;     /* GF_MUTEX_RECURSIVE */
} gf_mutex;

#define GF_MUTEX_RECURSIVE 1u

/* Initialise an unlocked mutex (in shared memory). Fails: GF_EINVAL (unknown flags). */
GF_EXTERN int gf_mutex_init(gf_mutex *m, uint32_t flags);
/* Acquire. Result: 0; GF_EOWNERDEAD = acquired, but the previous holder died holding it (the
 * data it guards may be inconsistent). Fails: GF_ETIMEDOUT, GF_EINTR, GF_EAGAIN (recursive
 * depth overflow). A plain mutex already held by the caller blocks like any other (the standard
 * Lock semantics). */
GF_EXTERN int gf_mutex_lock(gf_arena *a, gf_mutex *m, int64_t deadline);
/* Release. A non-recursive mutex may be released by any process (multiprocessing.Lock
 * semantics). Fails: GF_EOVERFLOW (not locked), GF_EPERM (recursive and not held by this
 * thread). */
GF_EXTERN int gf_mutex_unlock(gf_arena *a, gf_mutex *m);
/* 1 if locked, 0 if not. */
GF_EXTERN int gf_mutex_is_locked(const gf_mutex *m);
/* 1 if held by the calling thread (recursive) / this process (plain), else 0. */
GF_EXTERN int gf_mutex_is_mine(gf_arena *a, const gf_mutex *m);
/* Recursive mutexes: release fully (for Condition.wait); *depth gets the depth to restore with
 * gf_mutex_lock_depth. Fails as gf_mutex_unlock. */
GF_EXTERN int gf_mutex_unlock_all(gf_arena *a, gf_mutex *m, uint32_t *depth);
GF_EXTERN int gf_mutex_lock_depth(gf_arena *a, gf_mutex *m, uint32_t depth, int64_t deadline);

/* Counting semaphore; maxvalue 0 = unbounded. */
typedef struct gf_sem {
    uint32_t value;
    uint32_t waiters;
    uint32_t maxvalue;
    uint32_t pad;
} gf_sem;
GF_EXTERN int gf_sem_init(gf_sem *s, uint32_t value, uint32_t maxvalue);
/* Decrement, waiting while zero. Fails: GF_ETIMEDOUT, GF_EINTR. */
GF_EXTERN int gf_sem_wait(gf_sem *s, int64_t deadline);
/* Increment and wake one waiter. Fails: GF_EOVERFLOW (bounded and already at maxvalue). */
GF_EXTERN int gf_sem_post(gf_sem *s);
GF_EXTERN uint32_t gf_sem_value(const gf_sem *s);

typedef struct gf_event {
    uint32_t state; /* bit 0: set; bits 1-31: number of set() calls (so waiters see a set) */
    uint32_t waiters;
} gf_event;
GF_EXTERN int gf_event_init(gf_event *e);
GF_EXTERN void gf_event_set(gf_event *e);
GF_EXTERN void gf_event_clear(gf_event *e);
GF_EXTERN int gf_event_is_set(const gf_event *e);
/* Wait until set. Result 0. Fails: GF_ETIMEDOUT, GF_EINTR. */
GF_EXTERN int gf_event_wait(gf_event *e, int64_t deadline);

typedef struct gf_cond {
    gf_off head;       /* the oldest waiter's node (an arena block), 0 when nobody waits */
    uint32_t waiters;  /* nodes in the list (a snapshot, for repr) */
    uint32_t pad;
} gf_cond;
GF_EXTERN int gf_cond_init(gf_cond *c);
/* Release `m` (fully, if recursive), wait for a notify, reacquire `m` at its old depth.
 * Result 0; GF_EOWNERDEAD from reacquiring. Fails: GF_ETIMEDOUT and GF_EINTR (both with `m`
 * held again), GF_EPERM (m not held by the caller), GF_ENOSPC (no memory for the wait node). */
GF_EXTERN int gf_cond_wait(gf_arena *a, gf_cond *c, gf_mutex *m, int64_t deadline);
/* Wake up the n oldest waiters (n = UINT32_MAX: all); exactly min(n, waiting) are released.
 * The caller must hold `m`, the mutex the waiters use. Result: the number released.
 * Fails: GF_EPERM (m not held by the caller). */
GF_EXTERN int gf_cond_notify(gf_arena *a, gf_cond *c, gf_mutex *m, uint32_t n);

typedef struct gf_barrier {
    uint32_t parties;
    uint32_t state;  /* futex word: arrivals (bits 0-15) | generation (16-29) | resetting (30) |
                        broken (31); parties <= 65535 */
    uint32_t pad[2];
} gf_barrier;
GF_EXTERN int gf_barrier_init(gf_barrier *b, uint32_t parties);
/* Wait for `parties` arrivals. Result: the arrival index 0..parties-1. Fails: GF_ETIMEDOUT
 * (and the barrier is broken), GF_EINTR (the caller's arrival is withdrawn; call again),
 * GF_EPIPE (broken or reset while waiting). */
GF_EXTERN int gf_barrier_wait(gf_barrier *b, int64_t deadline);
GF_EXTERN void gf_barrier_abort(gf_barrier *b);
GF_EXTERN void gf_barrier_reset(gf_barrier *b);
GF_EXTERN uint32_t gf_barrier_n_waiting(const gf_barrier *b);

/* ------------------------------------------------------------------------------------------ */
/* Ring: multi-producer multi-consumer queue of variable-length messages                       */
/* ------------------------------------------------------------------------------------------ */

/* Create a ring object (gf_obj type GF_OBJ_RING, refs = 1).
 *   capacity:  bytes for inline records (rounded up to a power of two, >= 4096).
 *   maxitems:  0 = unbounded count (only bytes limit puts); else puts wait while this many
 *              messages are queued (Queue(maxsize)).
 *   flags:     GF_RING_EVENTFD: also signal an eventfd when the ring goes non-empty, so that
 *              consumers can select()/poll() on gf_ring_fd().
 * Messages larger than capacity/8 are copied once to an arena block; the record refers to it.
 * Fails: GF_EINVAL, GF_ENOSPC, GF_EMFILE. */
#define GF_RING_EVENTFD 1u
GF_EXTERN int gf_ring_create(gf_arena *a, size_t capacity, uint64_t maxitems, uint32_t flags,
                             gf_off *out);

/* Put one message made of `iovcnt` pieces (gathered, copied once). Fails: GF_ETIMEDOUT (full
 * until the deadline), GF_EINTR, GF_EPIPE (closed), GF_EMSGSIZE (larger than
 * GF_RING_MAX_MESSAGE), GF_ENOSPC (no arena space for a large message). */
#define GF_RING_MAX_MESSAGE ((size_t)1 << 40)
GF_EXTERN int gf_ring_putv(gf_arena *a, gf_off ring, const struct iovec *iov, int iovcnt,
                           int64_t deadline);
/* As gf_ring_putv, for a message that is one gf_frame (header, body, buffer table): its
 * out-of-band blocks travel with it, so a ring destroyed with the message unread frees them
 * (and the message's own block). Same results. */
GF_EXTERN int gf_ring_putv_frame(gf_arena *a, gf_off ring, const struct iovec *iov, int iovcnt,
                                 int64_t deadline);
GF_EXTERN int gf_ring_put(gf_arena *a, gf_off ring, const void *data, size_t len,
                          int64_t deadline);

/* Put an arena block the caller already filled (no copy): ownership passes to the consumer.
 * `len` <= gf_block_size(block). Fails as gf_ring_putv. */
GF_EXTERN int gf_ring_put_block(gf_arena *a, gf_off ring, gf_off block, size_t len,
                                int64_t deadline);

/* A message taken from a ring. */
typedef struct gf_msg {
    const void *data; /* the bytes: in the caller's buffer, or in `block` */
    size_t len;
    gf_off block;     /* != 0: data lives in this arena block, now owned by the caller; free it
                         with gf_msg_release (or keep it, zero-copy: gf_msg_keep, then gf_free
                         it later) */
    int _hold;        /* private: the block's record in this process's ledger, so that the
                         survivors free it if the caller dies before releasing it; 0 = none */
} gf_msg;

/* The largest message that gf_ring_get may copy into the caller's buffer (larger ones arrive
 * as blocks): size the buffer with this. */
GF_EXTERN size_t gf_ring_inline_max(gf_arena *a, gf_off ring);

/* Take up to `max` messages (at least one; waits while empty). Inline messages are copied into
 * buf (bufcap >= gf_ring_inline_max); msgs[i].data points into buf or into msgs[i].block.
 * Result: the number of messages taken (>= 1). Fails: GF_ETIMEDOUT, GF_EINTR, GF_EPIPE (closed
 * and empty), GF_EINVAL (bufcap too small), GF_EBADMSG (a corrupt record: the ring is
 * unusable). */
GF_EXTERN int gf_ring_get_many(gf_arena *a, gf_off ring, gf_msg *msgs, size_t max, void *buf,
                               size_t bufcap, int64_t deadline);
GF_EXTERN int gf_ring_get(gf_arena *a, gf_off ring, gf_msg *msg, void *buf, size_t bufcap,
                          int64_t deadline);
/* Free the block of a message taken from a ring, if it has one. */
GF_EXTERN void gf_msg_release(gf_arena *a, gf_msg *msg);
/* Keep the block of a message taken from a ring (zero-copy): the caller frees it later with
 * gf_free. Result: the block (0 if the message has none); msg is cleared. A process killed
 * before gf_msg_release / gf_msg_keep has its message block freed by the survivors
 * (gf_arena_reclaim); after gf_msg_keep the block is the caller's alone. */
GF_EXTERN gf_off gf_msg_keep(gf_arena *a, gf_msg *msg);

/* Hand back to the kernel the data pages of a ring that hold no message: if neither its
 * producers' nor its consumers' lock is held (neither is waited for), the whole pages between
 * the write position and the read position are punched out of the arena's memfd (the next
 * records fault them in again) -- of a ring that moved since the last trim, only the 1 MiB
 * just behind the read position (bounding the time both locks are held); of one that stood
 * still since then, all of them (the whole data area of an empty ring). Meant to be called now
 * and then (the pool does, once a second): a ring that went round keeps about the pages of the
 * messages it holds. Result 1 (trimmed), 0 (busy, full, or nothing left to punch). Fails:
 * GF_EINVAL. */
GF_EXTERN int gf_ring_trim(gf_arena *a, gf_off ring);

/* Put several messages at once (one lock round trip); waits for space as gf_ring_putv.
 * Result: the number put (all of them, unless an error after some: then the count so far is
 * returned if > 0). */
GF_EXTERN int gf_ring_put_many(gf_arena *a, gf_off ring, const struct iovec *msgs, size_t n,
                               int64_t deadline);
/* As gf_ring_put_many, for messages that are each one gf_frame (see gf_ring_putv_frame): a
 * ring destroyed with them unread frees their out-of-band blocks. Same results. */
GF_EXTERN int gf_ring_put_many_frame(gf_arena *a, gf_off ring, const struct iovec *msgs,
                                     size_t n, int64_t deadline);

/* Wait until the ring is non-empty (without taking anything). Result 0. Fails: GF_ETIMEDOUT,
 * GF_EINTR, GF_EPIPE (closed and empty). */
GF_EXTERN int gf_ring_wait_readable(gf_arena *a, gf_off ring, int64_t deadline);

/* Close: further puts fail with GF_EPIPE, gets drain what is left then fail with GF_EPIPE;
 * every waiter is woken. */
GF_EXTERN void gf_ring_close(gf_arena *a, gf_off ring);
GF_EXTERN int gf_ring_is_closed(gf_arena *a, gf_off ring);
/* Messages queued now (a snapshot). */
GF_EXTERN uint64_t gf_ring_count(gf_arena *a, gf_off ring);
/* The eventfd (GF_RING_EVENTFD rings): readable while the ring is non-empty (level
 * triggered), -1 otherwise. The fd belongs to the process that created the ring and its
 * forked children. */
GF_EXTERN int gf_ring_fd(gf_arena *a, gf_off ring);

/* ------------------------------------------------------------------------------------------ */
/* Frames: the encoding of one object in a message                                             */
/* ------------------------------------------------------------------------------------------ */

enum {
    GF_FRAME_RAW = 0,    /* opaque bytes for C users */
    GF_FRAME_BYTES = 1,  /* body: the bytes */
    GF_FRAME_STR = 2,    /* body: UTF-8 */
    GF_FRAME_INT = 3,    /* body: 8 bytes, little-endian two's complement */
    GF_FRAME_FLOAT = 4,  /* body: 8 bytes, IEEE 754 binary64 little-endian */
    GF_FRAME_PICKLE = 5, /* body: pickle protocol 5 stream; nbufs out-of-band buffers */
    GF_FRAME_NONE = 6,   /* body empty */
    GF_FRAME_BYTEARRAY = 7,
    GF_FRAME_ERROR = 8,  /* body: pickled exception (pool results) */
    GF_FRAME__MAX
};

#define GF_FRAME_MAGIC 0x4647u /* "GF" */

typedef struct gf_frame_hdr {
    uint16_t magic;
    uint8_t kind;
    uint8_t flags;
    uint32_t nbufs;    /* out-of-band buffers following the body */
    uint64_t body_len;
} gf_frame_hdr;        /* 16 bytes, then body, then nbufs x gf_frame_buf */

typedef struct gf_frame_buf {
    gf_off block;      /* arena block holding the buffer */
    uint64_t len;
} gf_frame_buf;

#define GF_FRAME_MAX_BUFS 65536u

typedef struct gf_frame {
    int kind;
    int flags;
    const void *body;
    size_t body_len;
    uint32_t nbufs;
    const gf_frame_buf *bufs; /* points into the message: copy before using if unaligned */
} gf_frame;

/* Parse and validate a frame received from another process. `a` may be NULL (then frames with
 * buffers are rejected). Checks the magic, the kind, every length against `len`, and every
 * buffer against the arena (gf_arena_check_block). Result 0 and *out. Fails: GF_EBADMSG. */
GF_EXTERN int gf_frame_parse(const gf_arena *a, const void *msg, size_t len, gf_frame *out);
/* Write a frame header into hdr. Result 0. Fails: GF_EINVAL (kind, nbufs). */
GF_EXTERN int gf_frame_header(gf_frame_hdr *hdr, int kind, size_t body_len, uint32_t nbufs);

/* ------------------------------------------------------------------------------------------ */
/* Stream messages: Python's multiprocessing.connection framing on a socket or pipe fd         */
/* ------------------------------------------------------------------------------------------ */

/* A message on a stream fd is a 4-byte big-endian signed length, then the payload. A payload
 * longer than 0x7fffffff bytes is announced by the length -1 followed by an 8-byte big-endian
 * unsigned length. (The same bytes as the standard library's Connection, so either side may
 * be Python's own.) Writers and readers are resumable state machines: a call that returns
 * GF_EINTR or GF_ETIMEDOUT keeps what it has done and continues when called again. They never
 * block in the kernel past the deadline on a socket (MSG_DONTWAIT + ppoll; a signal or the
 * interrupt slice gives GF_EINTR); on a fd that is not a socket they read and write with
 * read()/write() after poll(), so a write to a blocking pipe may block until it is done.
 * Writes never raise SIGPIPE on a socket (MSG_NOSIGNAL); on a pipe the caller ignores it. */

#define GF_SOCK_HDR_MAX 12                        /* longest header */
#define GF_SOCK_SHORT_MAX 0x7fffffffu              /* longest payload with a 4-byte header */
#define GF_SOCK_DEFAULT_MAX ((uint64_t)1 << 36)    /* default limit on a received payload */
#define GF_SOCK_RX_CHUNK ((size_t)16 << 20)        /* gf_sock_rx_next_cap: first allocation */

/* Encode the header for a payload of `len` bytes into hdr. Result: its length (4 or 12).
 * Fails: GF_EMSGSIZE (len >= 2^63). */
GF_EXTERN int gf_sock_header(uint8_t hdr[GF_SOCK_HDR_MAX], uint64_t len);
/* Decode a header from the first n bytes of a message. Result: the header's length (4 or 12)
 * with *len set; 0 if more bytes are needed. Fails: GF_EBADMSG (a negative length other than
 * -1, or an 8-byte length >= 2^63), GF_EMSGSIZE (length > max; *len is set, to report it). */
GF_EXTERN int gf_sock_header_parse(const uint8_t *p, size_t n, uint64_t max, uint64_t *len);

/* Waits until fd is ready for `events` (POLLIN / POLLOUT). Result: the revents (> 0; POLLHUP
 * and POLLERR count as ready). Fails: GF_ETIMEDOUT, GF_EINTR, GF_EBADF (not an open fd). */
GF_EXTERN int gf_sock_wait(int fd, int events, int64_t deadline);

/* Sending one message. Fields are private; `done` may be read (bytes written so far). */
typedef struct gf_sock_tx {
    uint8_t hdr[GF_SOCK_HDR_MAX];
    uint32_t hlen;
    uint32_t notsock; /* fd is not a socket: write() */
    const uint8_t *data;
    uint64_t len;
    uint64_t done; /* header + payload bytes written */
} gf_sock_tx;

/* Prepare to send `len` bytes at `data` (kept by reference until the send completes).
 * Result 0. Fails: GF_EMSGSIZE, GF_EINVAL (NULL tx, NULL data with len > 0). */
GF_EXTERN int gf_sock_tx_init(gf_sock_tx *tx, const void *data, uint64_t len);
/* Write the rest of the message (partial writes are continued). Result 0 when all of it has
 * been written. Fails: GF_EINTR, GF_ETIMEDOUT (call again: nothing is written twice),
 * GF_EPIPE (the peer closed: EPIPE or ECONNRESET), GF_EBADF, GF_EIO and other errno codes. */
GF_EXTERN int gf_sock_tx_send(gf_sock_tx *tx, int fd, int64_t deadline);

/* Receiving messages. Fields are private except `len` (payload length once the header is
 * complete) and `got` (payload bytes read so far). */
typedef struct gf_sock_rx {
    uint64_t max;  /* largest payload accepted */
    uint64_t len;
    uint64_t got;
    uint8_t hdr[GF_SOCK_HDR_MAX];
    uint8_t hgot;  /* header bytes read */
    uint8_t hlen;  /* header length once known (4 or 12); 0 before */
    uint8_t notsock;
    uint8_t rcvmode;  /* how a wait sleeps: unset / SO_RCVTIMEO / ppoll (sock.c) */
    int64_t timeo_ns; /* the SO_RCVTIMEO this reader set on its socket (0: none) */
} gf_sock_rx;

/* Start a reader that accepts payloads of at most `max` bytes (0: GF_SOCK_DEFAULT_MAX;
 * clamped to 2^63 - 1). */
GF_EXTERN void gf_sock_rx_init(gf_sock_rx *rx, uint64_t max);
/* 1 while a message is partly read (header or payload bytes consumed, message unfinished). */
GF_EXTERN int gf_sock_rx_pending(const gf_sock_rx *rx);
/* Read the header of the next message (after a complete message the reader moves on to the
 * next one by itself). Reads exactly the header's bytes, never into the payload. Result 0
 * with rx->len set. Fails: GF_EPIPE (end of file: before the first byte when
 * !gf_sock_rx_pending(rx), else inside the header), GF_EBADMSG, GF_EMSGSIZE (rx->len = the
 * announced length; the payload is not read: the stream cannot be resynchronised),
 * GF_EINTR, GF_ETIMEDOUT (call again), GF_EBADF, GF_EIO. */
GF_EXTERN int gf_sock_rx_header(gf_sock_rx *rx, int fd, int64_t deadline);
/* Read payload bytes into buf, which holds the payload from its first byte and has room for
 * `cap` bytes; bytes rx->got.. are read. Result 0 when rx->got == min(rx->len, cap): the
 * message is complete if cap >= rx->len, else grow buf (see gf_sock_rx_next_cap) and call
 * again. Fails: GF_EPIPE (end of file inside the payload), GF_EINTR, GF_ETIMEDOUT (call
 * again), GF_EINVAL (header not read, NULL buf with cap > 0), GF_EBADF, GF_EIO. */
GF_EXTERN int gf_sock_rx_body(gf_sock_rx *rx, int fd, void *buf, size_t cap, int64_t deadline);
/* The capacity a payload buffer of `cap` bytes should grow to: the whole payload if it is at
 * most GF_SOCK_RX_CHUNK bytes, else the larger of GF_SOCK_RX_CHUNK and twice cap, at most the
 * payload. A header that lies about a huge length therefore costs memory only for the bytes
 * that really arrive (at most twice them). 0 if the header is not read. */
GF_EXTERN size_t gf_sock_rx_next_cap(const gf_sock_rx *rx, size_t cap);
/* Read one whole message into *buf (malloc'd, grown with realloc as bytes arrive; *cap is its
 * size; start with *buf = NULL, *cap = 0; free it when done). Result 0: the payload is
 * (*buf)[0 .. rx->len). Fails: as gf_sock_rx_header and gf_sock_rx_body, GF_ENOMEM. On
 * GF_EINTR / GF_ETIMEDOUT call again with the same rx, buf and cap. */
GF_EXTERN int gf_sock_recv(gf_sock_rx *rx, int fd, void **buf, size_t *cap, int64_t deadline);

/* ------------------------------------------------------------------------------------------ */
/* Processes                                                                                   */
/* ------------------------------------------------------------------------------------------ */

typedef struct gf_proc {
    pid_t pid;
    int pidfd;     /* -1 after close */
    int status;    /* wait status once reaped */
    int reaped;    /* 1 once reaped */
} gf_proc;

#define GF_PROC_DIE_WITH_PARENT 1u /* PR_SET_PDEATHSIG SIGKILL in the child */
/* NB (Linux): the "parent" of PR_SET_PDEATHSIG is the *thread* that forked: a child forked from
 * a thread that later exits is killed although the process lives on. Fork from a thread that
 * lives as long as the child should (e.g. the main thread or a long-lived manager thread). */

/* fork(). In the parent: result 0, *p filled (pid, pidfd). In the child: result 1, *p zeroed,
 * PDEATHSIG set if asked (and the child exits at once if the parent is already gone).
 * Fails: GF_EAGAIN, GF_ENOMEM, GF_ENOSYS (no pidfd support). The caller is responsible for
 * gf_arena_after_fork_child() in the child. */
GF_EXTERN int gf_proc_fork(gf_proc *p, uint32_t flags);
/* Adopt an existing child by pid (opens a pidfd). Fails: GF_ESRCH, GF_ENOSYS. */
GF_EXTERN int gf_proc_adopt(gf_proc *p, pid_t pid);
/* Wait for the child to exit and reap it. Result 0 (p->status, p->reaped set). Fails:
 * GF_ETIMEDOUT, GF_EINTR, GF_ECHILD. Calling again after reaping returns 0 at once. */
GF_EXTERN int gf_proc_wait(gf_proc *p, int64_t deadline);
/* Send a signal (race-free through the pidfd). Result 0 (also if it has exited but is not yet
 * reaped). Fails: GF_ESRCH (already reaped), GF_EINVAL. */
GF_EXTERN int gf_proc_signal(gf_proc *p, int sig);
/* Python-style exit code once reaped: the exit status, or -signal. Fails: GF_EAGAIN (not yet
 * reaped). */
GF_EXTERN int gf_proc_exitcode(const gf_proc *p, int *code);
/* Close the pidfd (does not kill or reap). */
GF_EXTERN void gf_proc_close(gf_proc *p);

/* ------------------------------------------------------------------------------------------ */
/* Shared dict and list                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* Keys and values are opaque byte strings (the Python layer encodes keys canonically, so equal
 * keys have equal bytes, and pickles values). Every mutation commits with one release store, so
 * a process killed at any point leaves the structure consistent: at most its own operation is
 * lost and at most a few blocks leak. Operations never run caller code while holding a shared
 * lock (except gf_dict_get_cb, by request): values are copied out.
 *
 * Missing key / index out of range / value not in list: GF_ENOENT. No arena space: GF_ENOSPC.
 * GF_EINTR: a signal arrived while waiting for a `with d.lock:` holder; nothing was done, call
 * again. */

/* A value copied out of a shared container: into the caller's buffer when it fits (heap NULL),
 * else into a malloc'd block (heap == data) that gf_buf_release() frees. */
typedef struct gf_buf {
    void *data;
    size_t len;
    void *heap;
} gf_buf;
GF_EXTERN void gf_buf_release(gf_buf *b);

/* A private (malloc'd) copy of many items: records {u64 klen, u64 vlen, key, value, pad to 8}.
 * Walk it with gf_snap_next; free it with gf_snap_free. */
typedef struct gf_snap {
    void *buf;
    size_t len;   /* bytes used in buf */
    size_t count; /* records */
} gf_snap;
typedef struct gf_snap_item {
    const void *key; /* NULL when keys were not asked for (and for list items) */
    size_t klen;
    const void *val; /* NULL when values were not asked for */
    size_t vlen;
} gf_snap_item;
/* Next record at *pos (start with *pos = 0). Result: 1 and *it filled, 0 at the end. */
GF_EXTERN int gf_snap_next(const gf_snap *s, size_t *pos, gf_snap_item *it);
GF_EXTERN void gf_snap_free(gf_snap *s);

#define GF_SNAP_KEYS 1u
#define GF_SNAP_VALUES 2u

/* -- dict: 64 stripes, each a chained hash table under its own lock, grown by one swap ---- */
#define GF_DICT_STRIPES 64

/* Create an empty dict (gf_obj GF_OBJ_DICT, refs = 1) sized for `capacity` entries.
 * Fails: GF_ENOSPC. */
GF_EXTERN int gf_dict_create(gf_arena *a, size_t capacity, gf_off *out);
/* d[key] = val. Result: 0 inserted, 1 replaced. Fails: GF_ENOSPC, GF_EINTR, GF_EINVAL (not a
 * dict). */
GF_EXTERN int gf_dict_set(gf_arena *a, gf_off d, const void *key, size_t klen, const void *val,
                          size_t vlen);
/* Copy d[key] out (into buf if it fits in cap, else malloc'd; see gf_buf). Result: 0.
 * Fails: GF_ENOENT, GF_ENOMEM, GF_EINTR. With a buffer (buf != NULL) the lookup is lock-free
 * (validated optimistic read; a value larger than cap falls back to the locked path): pass a
 * stack buffer of a few KiB. Iteration/snapshot order is table order, not insertion order. */
GF_EXTERN int gf_dict_get(gf_arena *a, gf_off d, const void *key, size_t klen, void *buf,
                          size_t cap, gf_buf *out);
/* Call cb(ctx, value, vlen) while the key's stripe lock is held (cb must be short and must not
 * touch this dict). Result: cb's result. Fails: GF_ENOENT, GF_EINTR. */
GF_EXTERN int gf_dict_get_cb(gf_arena *a, gf_off d, const void *key, size_t klen,
                             int (*cb)(void *ctx, const void *val, size_t vlen), void *ctx);
/* Result: 1 if key is present, 0 if not. Fails: GF_EINTR. */
GF_EXTERN int gf_dict_contains(gf_arena *a, gf_off d, const void *key, size_t klen);
/* del d[key]. Result 0. Fails: GF_ENOENT, GF_EINTR. */
GF_EXTERN int gf_dict_delete(gf_arena *a, gf_off d, const void *key, size_t klen);
/* Remove d[key] and copy its value out (as gf_dict_get). Result 0. Fails: GF_ENOENT,
 * GF_ENOMEM (nothing removed), GF_EINTR. */
GF_EXTERN int gf_dict_pop(gf_arena *a, gf_off d, const void *key, size_t klen, void *buf,
                          size_t cap, gf_buf *out);
/* Remove some entry and copy its key and value out. Result 0. Fails: GF_ENOENT (empty),
 * GF_ENOMEM, GF_EINTR. */
GF_EXTERN int gf_dict_popitem(gf_arena *a, gf_off d, gf_buf *key, gf_buf *val);
/* Atomically: if key is absent insert (key, val). Either way copy the stored value out into
 * *out (if out != NULL; as gf_dict_get). Result: 1 inserted, 0 was present. Fails: GF_ENOSPC,
 * GF_ENOMEM, GF_EINTR. */
GF_EXTERN int gf_dict_setdefault(gf_arena *a, gf_off d, const void *key, size_t klen,
                                 const void *val, size_t vlen, void *buf, size_t cap,
                                 gf_buf *out);
/* Atomic compare-and-set. `expected` NULL: the key must be absent; else its value must equal
 * expected[0..elen). If so, store `newv` (newv NULL: delete the key). Result: 1 done, 0 the
 * current value differs (nothing changed). Fails: GF_ENOSPC, GF_EINTR. */
GF_EXTERN int gf_dict_cas(gf_arena *a, gf_off d, const void *key, size_t klen,
                          const void *expected, size_t elen, const void *newv, size_t nlen);
/* Number of entries (>= 0). Fails: GF_EINTR. */
GF_EXTERN int64_t gf_dict_len(gf_arena *a, gf_off d);
/* Remove everything. Result 0. Fails: GF_ENOSPC (no room for the new empty table), GF_EINTR. */
GF_EXTERN int gf_dict_clear(gf_arena *a, gf_off d);
/* Consistent copy of all keys and/or values (what: GF_SNAP_KEYS | GF_SNAP_VALUES), in table
 * order. Result 0. Fails: GF_ENOMEM, GF_EINTR. */
GF_EXTERN int gf_dict_snapshot(gf_arena *a, gf_off d, unsigned what, gf_snap *out);
/* `with d.lock:` -- recursive; while one thread holds it, other threads' and processes' dict
 * operations wait. Result: 0; GF_EOWNERDEAD = acquired, the previous holder died (the dict is
 * consistent anyway). Fails: GF_ETIMEDOUT, GF_EINTR, GF_EAGAIN. */
GF_EXTERN int gf_dict_lock(gf_arena *a, gf_off d, int64_t deadline);
/* Fails: GF_EPERM (not held by this thread). */
GF_EXTERN int gf_dict_unlock(gf_arena *a, gf_off d);
/* Non-waiting variants for callers that hold a lock of their own (the Python layer keeps the
 * GIL): like gf_dict_set / gf_dict_get (buf required; out->heap stays NULL) /
 * gf_dict_contains, but GF_EAGAIN, with nothing done, where those would wait: the key's stripe
 * is held, another thread holds `with d.lock:`, the lock-free read kept racing or the value
 * is larger than cap, or (set) the insert would grow its stripe's table. Retry with the
 * waiting call. */
GF_EXTERN int gf_dict_try_set(gf_arena *a, gf_off d, const void *key, size_t klen,
                              const void *val, size_t vlen);
GF_EXTERN int gf_dict_try_get(gf_arena *a, gf_off d, const void *key, size_t klen, void *buf,
                              size_t cap, gf_buf *out);
GF_EXTERN int gf_dict_try_contains(gf_arena *a, gf_off d, const void *key, size_t klen);
/* Walk the whole dict and check it (blocks live, hashes in their buckets, no cycles, counts).
 * Result: the number of entries. Fails: GF_EBADMSG (corrupt), GF_EINVAL. For tests. */
GF_EXTERN int64_t gf_dict_check(gf_arena *a, gf_off d);

/* -- list: a vector of offsets to item blocks, one recursive lock ------------------------- */
/* Indices follow Python: negative counts from the end; slices are clamped. */

/* Create an empty list (gf_obj GF_OBJ_LIST, refs = 1). Fails: GF_ENOSPC. */
GF_EXTERN int gf_list_create(gf_arena *a, size_t capacity, gf_off *out);
/* Number of items (>= 0). */
GF_EXTERN int64_t gf_list_len(gf_arena *a, gf_off l);
/* Result 0. Fails: GF_ENOSPC, GF_EINTR, GF_EINVAL (not a list). */
GF_EXTERN int gf_list_append(gf_arena *a, gf_off l, const void *val, size_t vlen);
GF_EXTERN int gf_list_extend(gf_arena *a, gf_off l, const struct iovec *items, size_t n);
/* list.insert(i, val) (i clamped like Python). Result 0. Fails: GF_ENOSPC, GF_EINTR. */
GF_EXTERN int gf_list_insert(gf_arena *a, gf_off l, int64_t i, const void *val, size_t vlen);
/* Copy item i out (as gf_dict_get). Fails: GF_ENOENT (out of range), GF_ENOMEM, GF_EINTR. */
GF_EXTERN int gf_list_get(gf_arena *a, gf_off l, int64_t i, void *buf, size_t cap,
                          gf_buf *out);
/* l[i] = val. Fails: GF_ENOENT, GF_ENOSPC, GF_EINTR. */
GF_EXTERN int gf_list_set(gf_arena *a, gf_off l, int64_t i, const void *val, size_t vlen);
/* del l[i]. Fails: GF_ENOENT, GF_EINTR, GF_ENOSPC (middle deletes copy the index array). */
GF_EXTERN int gf_list_delete(gf_arena *a, gf_off l, int64_t i);
/* l.pop(i): remove item i and copy it out. Fails: GF_ENOENT, GF_ENOMEM, GF_ENOSPC, GF_EINTR. */
GF_EXTERN int gf_list_pop(gf_arena *a, gf_off l, int64_t i, void *buf, size_t cap,
                          gf_buf *out);
/* l[start:stop] = items (step 1; start/stop clamped like Python; n = 0 deletes the slice).
 * Result 0. Fails: GF_ENOSPC, GF_EINTR. */
GF_EXTERN int gf_list_splice(gf_arena *a, gf_off l, int64_t start, int64_t stop,
                             const struct iovec *items, size_t n);
/* Copy l[start:stop] (clamped; GF_LIST_END = to the end) into *out. Fails: GF_ENOMEM,
 * GF_EINTR. */
#define GF_LIST_END INT64_MAX
GF_EXTERN int gf_list_slice(gf_arena *a, gf_off l, int64_t start, int64_t stop, gf_snap *out);
/* Remove everything. Fails: GF_ENOSPC, GF_EINTR. */
GF_EXTERN int gf_list_clear(gf_arena *a, gf_off l);
/* First index in [start, stop) whose bytes equal val. Fails: GF_ENOENT, GF_EINTR. */
GF_EXTERN int64_t gf_list_index(gf_arena *a, gf_off l, const void *val, size_t vlen,
                                int64_t start, int64_t stop);
/* Number of items whose bytes equal val. Fails: GF_EINTR. */
GF_EXTERN int64_t gf_list_count(gf_arena *a, gf_off l, const void *val, size_t vlen);
/* `with l.lock:` -- the list's own recursive lock (other threads and processes wait).
 * Result: 0 or GF_EOWNERDEAD (acquired; the list is consistent). Fails: GF_ETIMEDOUT,
 * GF_EINTR, GF_EAGAIN. */
GF_EXTERN int gf_list_lock(gf_arena *a, gf_off l, int64_t deadline);
GF_EXTERN int gf_list_unlock(gf_arena *a, gf_off l);
/* Check the list (blocks live, no item twice). Result: its length. Fails: GF_EBADMSG. */
GF_EXTERN int64_t gf_list_check(gf_arena *a, gf_off l);

/* ------------------------------------------------------------------------------------------ */
/* Pool: a supervised pool of worker processes (src/core/pool*.c)                              */
/* ------------------------------------------------------------------------------------------ */
/*
 * The parent dispatches each task to one worker's own mailbox (a ring); workers publish
 * results, tagged with the task id and a status, into one shared result ring. Each queued task
 * has a claim word in shared memory that the worker flips to "started" just before running it
 * (or the parent flips to "cancelled"), so when a worker dies the parent knows exactly which
 * task it was running (reported GF_TASK_LOST, or retried) and which were still queued behind it
 * (dispatched again to other workers: never lost, never run twice).
 *
 * Supervision (dead workers, per-task timeouts, replacements, maxtasksperchild) runs inside
 * gf_pool_submit, gf_pool_next_results, gf_pool_cancel and gf_pool_join -- there is no thread.
 * A thread blocked in gf_pool_next_results wakes every `supervise_ns` to do it while something
 * happens, backing off to 10 x supervise_ns while passes find nothing (tasks with a timeout
 * keep it at supervise_ns).
 *
 * Threads: every gf_pool_* function may be called from any thread; gf_pool_next_results from
 * one thread at a time. No gf_pool_* function holds the pool's lock while calling `spawn`.
 */
typedef struct gf_pool gf_pool;

enum {
    GF_TASK_OK = 0,        /* payload: the handler's result */
    GF_TASK_ERROR = 1,     /* payload: the error (the handler's bytes; a pickled exception) */
    GF_TASK_LOST = 2,      /* its worker died while running it (no payload) */
    GF_TASK_TIMEOUT = 3,   /* ran past its timeout: its worker was killed (no payload) */
    GF_TASK_CANCELLED = 4, /* gf_pool_cancel, or gf_pool_terminate (no payload) */
};

/* Start worker `index` of `pool`: create the process and fill *out (pid, pidfd) in the parent.
 * The new process must call gf_worker_attach(arena, gf_pool_shared(pool), index, ...) and
 * serve tasks (gf_worker_next / gf_worker_result) until gf_worker_next fails with GF_EPIPE,
 * then exit. Result 0. Any negative code is a failure (retried later by the pool). */
typedef int (*gf_pool_spawn_fn)(void *ctx, gf_pool *pool, uint32_t index, struct gf_proc *out);

/* What a C handler fills in. `data`/`len` are the result (or the error, when the handler
 * returns non-zero). The handler may write up to `cap` bytes into `buf` (then data = buf), or
 * point `data` at its own memory that stays valid until the handler is called again. */
typedef struct gf_pool_out {
    const void *data;
    size_t len;
    void *buf;
    size_t cap;
} gf_pool_out;

/* A C task handler, run in a worker process: 0 = GF_TASK_OK, non-zero = GF_TASK_ERROR. */
typedef int (*gf_pool_handler)(void *ctx, const void *in, size_t inlen, gf_pool_out *out);

typedef struct gf_pool_options {
    uint32_t nworkers;          /* live workers kept (0 = number of online CPUs) */
    uint32_t max_workers;       /* upper bound for gf_pool_resize (0 = nworkers) */
    uint32_t mailbox_tasks;     /* tasks queued per worker beyond the running one (0 = 64) */
    size_t mailbox_bytes;       /* ring capacity per worker (0 = 256 KiB) */
    size_t result_bytes;        /* result ring capacity (0 = 1 MiB) */
    uint64_t maxtasksperchild;  /* a worker exits after this many tasks (0 = never) */
    int64_t supervise_ns;       /* longest sleep between supervision passes (0 = 10 ms) */
    gf_pool_spawn_fn spawn;     /* NULL = fork (GF_PROC_DIE_WITH_PARENT) and run `handler` */
    void *spawn_ctx;
    gf_pool_handler handler;    /* for the default spawn */
    void *handler_ctx;
    size_t handler_out_cap;     /* size of gf_pool_out.buf (0 = 64 KiB) */
    /* Called for the payload of a task that no worker started and that the pool drops
     * (cancelled while queued, gf_pool_terminate, gf_pool_destroy, undeliverable): a payload
     * owning arena blocks (a frame's out-of-band buffers) frees them here; a worker that
     * starts a task owns them from then on. Runs under the pool's lock: must not call the
     * pool. NULL: nothing. */
    void (*drop)(void *ctx, const void *payload, size_t len);
    void *drop_ctx;
} gf_pool_options;

/* Create a pool in arena `a` and start its workers. Result 0 and *out. Fails: GF_EINVAL (no
 * handler nor spawn, sizes), GF_ENOMEM, GF_ENOSPC, and the spawn's errors (GF_EAGAIN, ...). */
GF_EXTERN int gf_pool_create(gf_arena *a, const gf_pool_options *opt, gf_pool **out);

/* Queue a task: `iovcnt` pieces gathered into one payload (copied). It goes to the worker with
 * the fewest outstanding tasks; while every mailbox is full this waits (backpressure) -- keep
 * taking results meanwhile (another thread, or deadline 0 and gf_pool_next_results).
 *   *id:        in: the caller's task id, or 0 to get one from the pool (1, 2, ...); out: the
 *               id. Ids of outstanding tasks must be unique (not checked).
 *   timeout_ns: run time limit (0 = none): the worker is killed, the task is GF_TASK_TIMEOUT.
 *   retries:    times the task is run again when its worker dies under it.
 * Result 0. Fails: GF_ETIMEDOUT (full until the deadline), GF_EINTR, GF_EPIPE (closed),
 * GF_ENOMEM, GF_EMSGSIZE (larger than the mailbox ring's capacity allows), GF_EINVAL. */
GF_EXTERN int gf_pool_submit(gf_pool *p, const struct iovec *iov, int iovcnt, int64_t timeout_ns,
                             uint32_t retries, uint64_t *id, int64_t deadline);

/* One result. `data`/`len` stay valid until the next gf_pool_next_results call,
 * gf_pool_results_done or gf_pool_destroy: copy what you keep. */
typedef struct gf_pool_result {
    uint64_t id;
    int status;         /* GF_TASK_* */
    int worker;         /* index of the worker that ran it, -1 if none */
    const void *data;
    size_t len;
    uint64_t elapsed_ns; /* OK / ERROR: the worker's time on the task (from taking it to
                          * publishing its result; saturates near 4.29 s); else 0 */
} gf_pool_result;

/* Take up to `max` results (at least one; waits while none), supervising while it waits.
 * Every submitted task yields exactly one result. Result: the count. Fails: GF_ETIMEDOUT,
 * GF_EINTR, GF_EPIPE (the pool is closed or terminated and every result was taken). */
GF_EXTERN int gf_pool_next_results(gf_pool *p, gf_pool_result *out, size_t max,
                                   int64_t deadline);
/* Done with the results the last gf_pool_next_results handed out: their payloads (arena
 * blocks, for large results) are freed now rather than at the next call, which may be much
 * later (a consumer that takes results only when it waits). Call it from the thread that took
 * them. Result 0. Fails: GF_EINVAL. */
GF_EXTERN int gf_pool_results_done(gf_pool *p);
/* Make the thread blocked in gf_pool_next_results (if any) return GF_ETIMEDOUT now, without
 * results, so that it can hand its place to another thread; a call that finds no result and no
 * sleeper keeps the wake-up for the next one. Result 0. Fails: GF_EINVAL. */
GF_EXTERN int gf_pool_wake(gf_pool *p);

/* Cancel a task. Result 0: it was still queued; it will not run and yields GF_TASK_CANCELLED.
 * Result 1: it is running; its worker is killed (and replaced) and it yields
 * GF_TASK_CANCELLED -- unless it finished first, then its own result. Fails: GF_ESRCH (no such
 * outstanding task: finished or unknown). */
GF_EXTERN int gf_pool_cancel(gf_pool *p, uint64_t id);
/* Cancel a task only if it has not started (never kills). Result 0: it was queued (yields
 * GF_TASK_CANCELLED). Result 1: it is running and is left to finish. Fails: GF_ESRCH. */
GF_EXTERN int gf_pool_cancel_queued(gf_pool *p, uint64_t id);

/* Change the number of live workers (<= max_workers). Extra workers finish their queued tasks
 * and exit. Result 0. Fails: GF_EINVAL, GF_EPIPE (closed). */
GF_EXTERN int gf_pool_resize(gf_pool *p, uint32_t nworkers);

/* No more submits; workers exit once every queued task has run. Idempotent. */
GF_EXTERN void gf_pool_close(gf_pool *p);
/* Kill every worker now; unfinished tasks yield GF_TASK_CANCELLED. Implies close. */
GF_EXTERN void gf_pool_terminate(gf_pool *p);
/* After close or terminate: wait for every worker to exit and reap it. Results not yet taken
 * stay available to gf_pool_next_results. Result 0. Fails: GF_EINVAL (not closed),
 * GF_ETIMEDOUT, GF_EINTR. */
GF_EXTERN int gf_pool_join(gf_pool *p, int64_t deadline);
/* Kill and reap what is left, free everything. */
GF_EXTERN void gf_pool_destroy(gf_pool *p);

typedef struct gf_pool_stats {
    uint32_t live_workers;   /* running worker processes (not counting retiring ones) */
    uint64_t outstanding;    /* submitted, result not yet produced */
    uint64_t spawned;        /* worker processes started, ever */
    uint64_t deaths;         /* workers that died unexpectedly (crash, kill, timeout, cancel) */
} gf_pool_stats;
GF_EXTERN void gf_pool_stats_get(gf_pool *p, gf_pool_stats *st);
/* Process id of worker `index`, 0 if none. */
GF_EXTERN pid_t gf_pool_worker_pid(gf_pool *p, uint32_t index);
/* The shared pool object (pass it to gf_worker_attach in a custom spawn) and its arena. */
GF_EXTERN gf_off gf_pool_shared(const gf_pool *p);
GF_EXTERN gf_arena *gf_pool_arena(const gf_pool *p);

/* C convenience: run the pool's handler over n inputs (ids 1..n), filling every item.
 * items[i].out is malloc'd (free() it), NULL when empty or the status carries no payload.
 * Result 0 (each item has its status). Fails: GF_ETIMEDOUT, GF_EINTR (items already done keep
 * their results, call again to finish: items with status < 0 are still to do), GF_ENOMEM. */
typedef struct gf_pool_item {
    const void *in;
    size_t inlen;
    int status;     /* GF_TASK_*; -1 = not done yet (set by the caller before the first call) */
    void *out;
    size_t outlen;
} gf_pool_item;
GF_EXTERN int gf_pool_map(gf_pool *p, gf_pool_item *items, size_t n, int64_t timeout_ns,
                          int64_t deadline);

/* Worker side (in the worker process). */
typedef struct gf_worker gf_worker;
typedef struct gf_task {
    uint64_t id;
    const void *data;   /* valid until the next gf_worker_next */
    size_t len;
    int64_t deadline;   /* when the parent kills this task (GF_FOREVER: no timeout) */
    uint64_t _token;    /* private */
    uint64_t _seq;      /* private */
} gf_task;

/* Attach the calling process as worker `index` of the pool `pool` (from gf_pool_shared). The
 * process must be attached to the arena (gf_arena_after_fork_child after fork). Result 0.
 * Fails: GF_EBADMSG (not a pool), GF_EINVAL (index), GF_ENOMEM. */
GF_EXTERN int gf_worker_attach(gf_arena *a, gf_off pool, uint32_t index, gf_worker **out);
/* Take the next task and mark it started. Waits while the mailbox is empty (spins first).
 * Result 0 and *t. Fails: GF_EPIPE (the pool closed this mailbox, maxtasksperchild reached,
 * or the parent died: exit), GF_ETIMEDOUT, GF_EINTR. */
GF_EXTERN int gf_worker_next(gf_worker *w, gf_task *t, int64_t deadline);
/* Publish the result of t: status GF_TASK_OK or GF_TASK_ERROR, payload gathered from iov.
 * Waits while the result ring is full. Result 0. Fails: GF_EPIPE (pool gone: exit),
 * GF_EINTR (call again), GF_EMSGSIZE, GF_ENOSPC, GF_EINVAL. */
GF_EXTERN int gf_worker_result(gf_worker *w, const gf_task *t, int status,
                               const struct iovec *iov, int iovcnt);
/* Serve tasks with a C handler until GF_EPIPE. Result 0 (clean end) or a failure. */
GF_EXTERN int gf_worker_run(gf_worker *w, gf_pool_handler fn, void *ctx, size_t out_cap);
GF_EXTERN void gf_worker_detach(gf_worker *w);

#ifdef __cplusplus
}
#endif
#endif /* GILFREE_H */
