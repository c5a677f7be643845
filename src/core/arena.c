/*
 * arena.c -- the shared-memory arena: a memfd mapped MAP_SHARED, a crash-safe allocator,
 * reference-counted objects and the process table (see DESIGN.md "The arena").
 *
 * Layout of the memfd:
 *
 *   [ gf__arena_hdr: magic, allocator, free-list heads, stats, process slots ][ blocks ... ]
 *   0                                                                 data_start         top
 *
 * A block is a 64-byte gf__block header followed by its payload; gf_alloc returns the offset
 * of the payload (64-byte aligned). Blocks are laid out back to back from data_start to `top`
 * and never split or merged: a freed block goes (LIFO) to the free list of its size class.
 *
 * Crash safety. The allocator runs under a robust process-shared mutex. A process killed while
 * holding it leaves the lock "owner died"; the next locker marks it consistent and carries on.
 * That is only sound because every store the allocator makes keeps the structure valid:
 *   bump:  write the new block's header, then release-store `top`;
 *   pop:   read head->next, then release-store the list head (one store commits the pop);
 *   push:  write the header's FREE magic and `next`, then release-store the list head.
 * So a death between two stores can leak one block, never corrupt a list.
 */
#include "internal.h"

#include <fcntl.h>
#include <stddef.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define GF__ARENA_MAGIC 0x414e455245524647ull /* "GFRERENA" */
#define GF__ARENA_VERSION 1u

#define GF__BLK_LIVE 0x4556494cu /* "LIVE" */
#define GF__BLK_FREE 0x45455246u /* "FREE" */
#define GF__BLK_OBJ 1u           /* flags: the payload starts with a gf_obj */

#define GF__HDR_SIZE 64u /* block header */

/* Size classes (of the payload): 64..1024 by 64, then 4 classes per power of two
 * (1280, 1536, 1792, 2048, 2560, ...): at most 25% (on average ~11%) of a large request is
 * wasted, and that waste is address space, not memory, unless the bytes are touched. */
#define GF__NSMALL 16
#define GF__NCLASS (GF__NSMALL + 4 * 54)

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

enum { GF__SLOT_FREE = 0, GF__SLOT_ATTACHED = 1 };

#define GF__NCELLS 1024 /* statistics cells for caching threads (one cache line each) */

typedef struct gf__block {
    uint32_t magic;  /* GF__BLK_LIVE or GF__BLK_FREE */
    uint32_t cls;    /* size class */
    uint64_t self;   /* offset of the payload: a forged or stale header rarely matches it */
    uint64_t usable; /* payload bytes (the class size) */
    uint64_t next;   /* free list: payload offset of the next free block, 0 = end */
    uint32_t flags;  /* GF__BLK_OBJ */
    uint32_t owner;  /* ident of the allocating process (debugging aid) */
    uint64_t shares; /* plain blocks: holders beyond the first (gf_block_share); atomic */
    uint64_t pad[2];
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
    uint64_t heads[GF__NCLASS]; /* free-list heads (payload offsets) */

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
};

_Static_assert(offsetof(struct gf_arena, base) == offsetof(struct gf__arena_head, base) &&
                   offsetof(struct gf_arena, size) == offsetof(struct gf__arena_head, size),
               "internal.h reads base and size inline");

/* ---------------------------------------------------------------- thread ids */

static __thread uint32_t gf__tid_cache;
static pthread_once_t gf__atfork_once = PTHREAD_ONCE_INIT;

/* After fork the only thread of the child has a new tid. */
static void gf__atfork_child(void) { gf__tid_cache = 0; }
static void gf__atfork_register(void) { pthread_atfork(NULL, NULL, gf__atfork_child); }

/* The calling thread's kernel tid, cached per thread; the cache is cleared in a forked child.
 * Result: the tid (never 0). */
uint32_t gf__tid(void) {
    uint32_t t = gf__tid_cache;
    if (GF_LIKELY(t != 0)) return t;
    pthread_once(&gf__atfork_once, gf__atfork_register);
    t = (uint32_t)syscall(SYS_gettid);
    gf__tid_cache = t;
    return t;
}

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

/* ---------------------------------------------------------------- helpers */

static inline gf__block *gf__blk(const gf_arena *a, uint64_t payload_off) {
    return (gf__block *)(a->base + payload_off - GF__HDR_SIZE);
}

/* Lock a robust mutex; a dead previous owner is fine because every structure it guards is
 * valid at every store (see the top of this file). The allocator's critical sections are a few
 * hundred nanoseconds, while glibc's mutex sleeps at once on contention and a futex wake costs
 * ~45 µs on a VM whose idle CPUs halt: a held lock is retried for up to gf__spin_ns() first
 * (measured: two processes filling dicts spent a fifth of their time in futex sleeps/wakes on
 * this lock). */
static void gf__robust_lock(pthread_mutex_t *m) {
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
    if (GF_UNLIKELY(r == EOWNERDEAD)) pthread_mutex_consistent(m);
}

/* Initialise a robust process-shared mutex. Result 0 or a pthread error number. */
static int gf__robust_init(pthread_mutex_t *m) {
    pthread_mutexattr_t at;
    int r = pthread_mutexattr_init(&at);
    if (r) return r;
    r = pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
    if (!r) r = pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
    if (!r) r = pthread_mutex_init(m, &at);
    pthread_mutexattr_destroy(&at);
    return r;
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
static const gf__block *gf__live_block(const gf_arena *a, gf_off off) {
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

/* ---------------------------------------------------------------- process slots */

/* Become the owner of slot i, whose life lock the caller has just acquired. */
static void gf__slot_take(gf_arena *a, uint32_t i) {
    gf__slot *s = &a->h->slots[i];
    uint32_t gen = atomic_load_explicit(GF_A32(&s->gen), memory_order_relaxed);
    gen = gen >= GF__GEN_MAX ? 1 : gen + 1;
    s->pid = (uint32_t)getpid();
    s->state = GF__SLOT_ATTACHED;
    /* release: whoever reads the new generation also sees pid/state. */
    atomic_store_explicit(GF_A32(&s->gen), gen, memory_order_release);
    a->slot = i;
    a->ident = gen << GF__SLOT_BITS | i;
    a->pid = (pid_t)s->pid;
}

/* Take a process slot for the calling process: a free one, one whose owner died, or a new
 * one past the high-water mark. Result 0. Fails: GF_EAGAIN (table full), GF_ENOMEM. */
static int gf__slot_attach(gf_arena *a) {
    gf__arena_hdr *h = a->h;
    (void)gf__tid();
    /* acquire: the slots below hwm have initialised mutexes. */
    uint32_t hwm = atomic_load_explicit(GF_A32(&h->slots_hwm), memory_order_acquire);
    for (uint32_t i = 0; i < hwm; i++) {
        pthread_mutex_t *m = &h->slots[i].life;
        int r = pthread_mutex_trylock(m);
        if (r == EOWNERDEAD) {
            /* Its owner died without detaching: the slot is ours now. */
            pthread_mutex_consistent(m);
            r = 0;
        }
        if (r == 0) {
            gf__slot_take(a, i);
            return 0;
        }
    }
    /* Extend the table under the allocator lock. The new slot's mutex is initialised and
     * locked before hwm publishes it, so nobody else can take it first. */
    gf__robust_lock(&h->alloc_lock);
    int err = GF_EAGAIN;
    uint32_t i = h->slots_hwm;
    if (i < h->max_procs) {
        gf__slot *s = &h->slots[i];
        if (gf__robust_init(&s->life) == 0 && pthread_mutex_trylock(&s->life) == 0) {
            /* release: pairs with the acquire loads of slots_hwm. */
            atomic_store_explicit(GF_A32(&h->slots_hwm), i + 1, memory_order_release);
            gf__slot_take(a, i);
            err = 0;
        } else {
            err = GF_ENOMEM;
        }
    }
    pthread_mutex_unlock(&h->alloc_lock);
    return err;
}

/* This process's identity: slot | generation << 12, never 0, bit 31 clear. 0 if detached. */
uint32_t gf__self_ident(const gf_arena *a) { return a->ident; }

/* 1 if the process owning `ident` is attached and alive; 0 if it died, detached, or its slot
 * has a new owner. A dead owner's slot is made reclaimable on the way. A slot re-taken at
 * this very moment (its new owner holds the lock but has not bumped the generation yet) can
 * read as alive once; callers poll, so the next check sees the new generation. */
int gf__ident_alive(gf_arena *a, uint32_t ident) {
    gf__arena_hdr *h = a->h;
    uint32_t i = ident & ((1u << GF__SLOT_BITS) - 1), gen = ident >> GF__SLOT_BITS;
    if (gen == 0 || gen > GF__GEN_MAX) return 0;
    if (ident == a->ident && a->pid == getpid()) return 1;
    /* acquire: slot i's mutex is initialised if i < hwm. */
    if (i >= atomic_load_explicit(GF_A32(&h->slots_hwm), memory_order_acquire)) return 0;
    gf__slot *s = &h->slots[i];
    /* acquire: pairs with the release-store in gf__slot_take. */
    if (atomic_load_explicit(GF_A32(&s->gen), memory_order_acquire) != gen) return 0;
    int r = pthread_mutex_trylock(&s->life);
    if (r == EBUSY) {
        /* Held: alive, unless a new owner took it between the two reads. */
        return atomic_load_explicit(GF_A32(&s->gen), memory_order_acquire) == gen;
    }
    if (r == EOWNERDEAD) {
        /* The owner died: leave the slot free for the next attach. */
        s->state = GF__SLOT_FREE;
        pthread_mutex_consistent(&s->life);
        pthread_mutex_unlock(&s->life);
        return 0;
    }
    if (r == 0) pthread_mutex_unlock(&s->life); /* free: the owner detached */
    return 0;
}

/* The holder thread: takes the slot, reports, then sleeps until detach asks it to let go. */
static void *gf__holder_main(void *arg) {
    gf_arena *a = arg;
    int err = gf__slot_attach(a);
    a->hold_err = err;
    /* release: hold_err and the slot fields are written before the state says so. */
    atomic_store_explicit(GF_A32(&a->hold_state), err ? 2u : 1u, memory_order_release);
    gf__futex_wake(&a->hold_state, INT32_MAX);
    if (err) return NULL;
    /* acquire: pairs with the release-store of 3 in gf_arena_detach. */
    while (atomic_load_explicit(GF_A32(&a->hold_state), memory_order_acquire) != 3u)
        gf__futex_wait(&a->hold_state, 1u, GF_FOREVER);
    a->h->slots[a->slot].state = GF__SLOT_FREE;
    pthread_mutex_unlock(&a->h->slots[a->slot].life);
    return NULL;
}

/* Start a helper thread with a 64 KiB stack and every signal blocked (signals belong to the
 * application's threads). Result 0 or the pthread error number. */
static int gf__helper_start(pthread_t *t, void *(*fn)(void *), void *arg) {
    pthread_attr_t at;
    int r = pthread_attr_init(&at);
    if (r) return r;
    pthread_attr_setstacksize(&at, 64 * 1024);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(t, &at, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
    return r;
}

/* Take a slot for this process. From the main thread (tid == pid) directly; from any other
 * thread through a holder thread that lives until detach. Result 0. Fails: GF_EAGAIN,
 * GF_ENOMEM. */
static int gf__attach_process(gf_arena *a) {
    a->has_holder = 0;
    if (gf__tid() == (uint32_t)getpid()) return gf__slot_attach(a);
    a->hold_state = 0;
    a->hold_err = 0;
    int r = gf__helper_start(&a->holder, gf__holder_main, a);
    if (r) return r == EAGAIN ? GF_EAGAIN : GF_ENOMEM;
    uint32_t st;
    /* acquire: pairs with the holder's release-store of its state. */
    while ((st = atomic_load_explicit(GF_A32(&a->hold_state), memory_order_acquire)) == 0)
        gf__futex_wait(&a->hold_state, 0, GF_FOREVER);
    if (st == 2) {
        pthread_join(a->holder, NULL);
        return a->hold_err;
    }
    a->has_holder = 1;
    return 0;
}

/* ---------------------------------------------------------------- create / attach */

/* Map the memfd and fill a handle. Result 0. Fails: GF_ENOMEM. */
static int gf__map(int fd, size_t size, gf_arena **out) {
    gf_arena *a = calloc(1, sizeof *a);
    if (!a) return GF_ENOMEM;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
        /* EINVAL/EOVERFLOW here mean the size does not fit the address space. */
        int err = errno == ENFILE || errno == EMFILE ? GF_EMFILE : GF_ENOMEM;
        free(a);
        return err;
    }
    a->base = p;
    a->size = size;
    a->fd = fd;
    a->h = p;
    a->slot = GF_ARENA_MAX_PROCS;
    *out = a;
    return 0;
}

static void gf__unmap(gf_arena *a) {
    munmap(a->base, a->size);
    close(a->fd);
    free(a);
}

/* Create an arena of `reserve` bytes (0 = default) and attach to it. Result 0 and *out.
 * Fails: GF_EINVAL (reserve too small), GF_ENOMEM, GF_EMFILE, GF_ENOSYS. */
int gf_arena_create(size_t reserve, gf_arena **out) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_start = (sizeof(gf__arena_hdr) + page - 1) & ~(page - 1);
    if (reserve == 0) reserve = GF_ARENA_DEFAULT_RESERVE;
    if (reserve < data_start + ((size_t)1 << 20) || reserve > ((size_t)1 << 50))
        return GF_EINVAL;
    reserve = (reserve + page - 1) & ~(page - 1);

    /* MFD_NOEXEC_SEAL keeps newer kernels from warning about executable memfds; older
     * kernels reject the flag with EINVAL. */
    int fd = (int)syscall(SYS_memfd_create, "gilfree", MFD_CLOEXEC | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL) fd = (int)syscall(SYS_memfd_create, "gilfree", MFD_CLOEXEC);
    if (fd < 0) return errno == ENOSYS ? GF_ENOSYS : gf__errno_code(errno);
    if (ftruncate(fd, (off_t)reserve) < 0) {
        int err = errno == EFBIG || errno == EINVAL ? GF_EINVAL : gf__errno_code(errno);
        close(fd);
        return err == GF_EIO ? GF_ENOMEM : err;
    }
    gf_arena *a = NULL;
    int err = gf__map(fd, reserve, &a);
    if (err) {
        close(fd);
        return err;
    }
    /* Nobody else can see the memfd yet: plain stores. The fresh memfd reads as zeros. */
    gf__arena_hdr *h = a->h;
    h->version = GF__ARENA_VERSION;
    h->max_procs = GF_ARENA_MAX_PROCS;
    h->reserve = reserve;
    h->data_start = data_start;
    h->top = data_start;
    if (gf__robust_init(&h->alloc_lock) != 0) {
        gf__unmap(a);
        return GF_ENOMEM;
    }
    /* release: an attacher that sees the magic sees the initialised header. */
    atomic_store_explicit(GF_A64(&h->magic), GF__ARENA_MAGIC, memory_order_release);
    err = gf__attach_process(a);
    if (err) {
        gf__unmap(a);
        return err;
    }
    *out = a;
    return 0;
}

/* Attach to the arena behind `fd` (duplicated). Result 0 and *out. Fails: GF_EBADF,
 * GF_EINVAL (not an arena / other version), GF_ENOMEM, GF_EMFILE, GF_EAGAIN (table full). */
int gf_arena_attach(int fd, gf_arena **out) {
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) return GF_EBADF;
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size < sizeof(gf__arena_hdr)) return GF_EINVAL;
    int fd2 = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (fd2 < 0) return gf__errno_code(errno);
    gf_arena *a = NULL;
    int err = gf__map(fd2, (size_t)st.st_size, &a);
    if (err) {
        close(fd2);
        return err;
    }
    gf__arena_hdr *h = a->h;
    /* acquire: pairs with the release-store of the magic in gf_arena_create. */
    if (atomic_load_explicit(GF_A64(&h->magic), memory_order_acquire) != GF__ARENA_MAGIC ||
        h->version != GF__ARENA_VERSION || h->reserve != (uint64_t)st.st_size ||
        h->max_procs != GF_ARENA_MAX_PROCS || h->data_start < sizeof(gf__arena_hdr) ||
        h->data_start >= h->reserve) {
        gf__unmap(a);
        return GF_EINVAL;
    }
    err = gf__attach_process(a);
    if (err) {
        gf__unmap(a);
        return err;
    }
    *out = a;
    return 0;
}

static void gf__tc_detach(gf_arena *a);
static void gf__tc_attached(gf_arena *a);

/* In a forked child: take a slot of its own (the parent keeps its slot, whose life lock the
 * child does not hold: glibc empties a forked child's robust list). Result 0. Fails:
 * GF_EAGAIN (table full), GF_ENOMEM. */
int gf_arena_after_fork_child(gf_arena *a) {
    a->slot = GF_ARENA_MAX_PROCS;
    a->ident = 0;
    a->pid = 0;
    a->has_holder = 0; /* the parent's holder thread does not exist here */
    int err = gf__attach_process(a);
    if (!err) gf__tc_attached(a);
    return err;
}


/* Give the slot back, unmap and close. In a forked child that never called
 * gf_arena_after_fork_child, the slot is the parent's and is left alone. */
void gf_arena_detach(gf_arena *a) {
    if (!a) return;
    gf__tc_detach(a); /* every thread's cached blocks go back to the free lists */
    if (a->slot < GF_ARENA_MAX_PROCS && a->pid == getpid() && a->has_holder) {
        /* release: pairs with the holder's acquire load. */
        atomic_store_explicit(GF_A32(&a->hold_state), 3u, memory_order_release);
        gf__futex_wake(&a->hold_state, INT32_MAX);
        pthread_join(a->holder, NULL);
    } else if (a->slot < GF_ARENA_MAX_PROCS && a->pid == getpid()) {
        gf__slot *s = &a->h->slots[a->slot];
        s->state = GF__SLOT_FREE;
        /* The unlock must happen before munmap: the mutex is on this thread's robust list. */
        pthread_mutex_unlock(&s->life);
    }
    gf__unmap(a);
}

int gf_arena_fd(const gf_arena *a) { return a->fd; }
size_t gf_arena_size(const gf_arena *a) { return a->size; }
void *gf_arena_base(const gf_arena *a) { return a->base; }
uint32_t gf_arena_slot(const gf_arena *a) { return a->slot; }

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

#define GF__TC_NCLASS 24 /* classes 0..23: payloads up to 4096 bytes */
#define GF__TC_BATCH_MAX 64
#define GF__TC_CAP (2 * GF__TC_BATCH_MAX)
#define GF__TC_BATCH_BYTES ((uint64_t)8 << 10)

/* Blocks per refill or flush of class c: about GF__TC_BATCH_BYTES, 8..GF__TC_BATCH_MAX. */
static inline uint32_t gf__tc_batch(uint32_t c) {
    uint64_t n = GF__TC_BATCH_BYTES / (GF__HDR_SIZE + gf__class_size(c));
    return n < 8 ? 8 : n > GF__TC_BATCH_MAX ? GF__TC_BATCH_MAX : (uint32_t)n;
}

typedef struct gf__tcache {
    gf_arena *a; /* the arena its blocks belong to; NULL = unbound */
    int disabled;
    int cell; /* claimed statistics cell of a->h, or -1 (then the process's atomic counters) */
    struct gf__tcache *prev, *next; /* gf__tc_all, under gf__tc_lock */
    uint32_t n[GF__TC_NCLASS];
    gf_off blk[GF__TC_NCLASS][GF__TC_CAP];
} gf__tcache;

_Static_assert(GF__TC_NCLASS <= GF__NCLASS, "cached classes exist");

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
    if (tc->n[c] <= keep) return;
    gf__robust_lock(&h->alloc_lock);
    while (tc->n[c] > keep) {
        gf_off off = tc->blk[c][tc->n[c] - 1];
        gf__block *b = gf__blk(a, off);
        b->next = h->heads[c];
        /* release: `next` is stored before the block is published on the list. */
        atomic_store_explicit(GF_A64(&h->heads[c]), off, memory_order_release);
        tc->n[c]--;
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

static void gf__tc_unlink(gf__tcache *tc) {
    if (tc->a) gf__tc_release_cell(tc);
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
        memset(tc->n, 0, sizeof tc->n);
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
static void gf__tc_attached(gf_arena *a) {
    gf__tcache *tc = gf__tc;
    if (tc && tc->a == a && tc->cell < 0) {
        pthread_mutex_lock(&gf__tc_lock);
        gf__tc_claim_cell(tc);
        pthread_mutex_unlock(&gf__tc_lock);
    }
}

/* Detach: flush every thread's cache of arena a (the other threads must not be allocating
 * from a any more). */
static void gf__tc_detach(gf_arena *a) {
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
    gf__robust_lock(&h->alloc_lock);
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
        tc->blk[c][n++] = head;
    }
    if (n == 0) {
        uint64_t top = h->top, step = GF__HDR_SIZE + usable;
        while (n < batch && top + step * (n + 1) <= h->reserve) {
            gf__block *b = (gf__block *)(a->base + top + step * n);
            b->cls = c;
            b->self = top + step * n + GF__HDR_SIZE;
            b->usable = usable;
            b->next = 0;
            b->flags = 0;
            b->owner = a->ident;
            b->shares = 0;
            atomic_store_explicit(GF_A32(&b->magic), GF__BLK_FREE, memory_order_relaxed);
            /* cache in reverse so that the lowest address is handed out first */
            n++;
        }
        for (uint32_t i = 0; i < n; i++) tc->blk[c][i] = top + step * (n - 1 - i) + GF__HDR_SIZE;
        /* release: the headers are written before the blocks exist (below top); one store
         * commits the whole batch. */
        if (n) atomic_store_explicit(GF_A64(&h->top), top + step * n, memory_order_release);
    }
    pthread_mutex_unlock(&h->alloc_lock);
    tc->n[c] = n;
    return n;
}

/* ---------------------------------------------------------------- allocator */

/* Prefault the whole pages of [p, p + len) in one system call instead of one fault per page.
 * Errors (EINVAL before Linux 5.14, ENOMEM) are ignored: the pages then fault in on first
 * touch. */
static void gf__populate(void *p, size_t len) {
    uintptr_t page = 4096, start = (uintptr_t)p, end = start + len;
    start = (start + page - 1) & ~(page - 1);
    end &= ~(page - 1);
    if (end > start) (void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
}

/* Allocate a block of `size` bytes with header flags `flags`. Result 0, *out, and *fresh = 1
 * if the block was just bumped (its pages never touched: the caller may prefault them).
 * Fails: GF_EINVAL, GF_ENOSPC. */
static int gf__alloc_raw(gf_arena *a, size_t size, uint32_t flags, gf_off *out, int *fresh_out) {
    gf__arena_hdr *h = a->h;
    if (size == 0) return GF_EINVAL;
    if (size > h->reserve) return GF_ENOSPC;
    uint32_t c = gf__class_of(size);
    uint64_t usable = gf__class_size(c);
    gf_off off = 0;
    int fresh = 0;
    *fresh_out = 0;

    if (c < GF__TC_NCLASS) {
        gf__tcache *tc = gf__tc_get(a);
        if (tc && (tc->n[c] || gf__tc_refill(tc, c))) {
            off = tc->blk[c][--tc->n[c]];
            gf__block *b = gf__blk(a, off);
            b->next = 0;
            b->flags = flags;
            b->owner = a->ident;
            b->shares = 0;
            /* release: the header is complete before it says LIVE (readers check it
             * unlocked). */
            atomic_store_explicit(GF_A32(&b->magic), GF__BLK_LIVE, memory_order_release);
            gf__stats_add_tc(tc, usable, 1);
            *out = off;
            return 0;
        }
    }

    gf__robust_lock(&h->alloc_lock);
    for (uint32_t k = c; k < GF__NCLASS && !off; k++) {
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
            pthread_mutex_unlock(&h->alloc_lock);
            return GF_ENOSPC;
        }
        gf__block *b = (gf__block *)(a->base + top);
        b->cls = c;
        b->self = top + GF__HDR_SIZE;
        b->usable = usable;
        b->next = 0;
        b->flags = flags;
        b->owner = a->ident;
        b->shares = 0;
        atomic_store_explicit(GF_A32(&b->magic), GF__BLK_LIVE, memory_order_relaxed);
        /* release: the header is written before the block exists (below top). */
        atomic_store_explicit(GF_A64(&h->top), top + GF__HDR_SIZE + usable, memory_order_release);
        off = top + GF__HDR_SIZE;
        fresh = 1;
    }
    pthread_mutex_unlock(&h->alloc_lock);
    gf__stats_add(a, usable, 1);
    *fresh_out = fresh;
    *out = off;
    return 0;
}

/* As gf__alloc_raw; a fresh plain block of at least GF__POPULATE_MIN bytes is prefaulted
 * (plain blocks -- messages, buffers -- are written in full right away; objects such as a
 * SharedMemory buffer may be meant to stay sparse, so they are not). */
static int gf__alloc(gf_arena *a, size_t size, uint32_t flags, gf_off *out) {
    int fresh;
    int rc = gf__alloc_raw(a, size, flags, out, &fresh);
    if (rc == 0 && fresh && !(flags & GF__BLK_OBJ) && size >= GF__POPULATE_MIN)
        gf__populate(a->base + *out, size);
    return rc;
}

/* Allocate `size` bytes, 64-byte aligned. Result 0 and *out. Fails: GF_EINVAL (size 0),
 * GF_ENOSPC. */
int gf_alloc(gf_arena *a, size_t size, gf_off *out) { return gf__alloc(a, size, 0, out); }

/* ---------------------------------------------------------------- parallel copy-in
 *
 * Copying 100 MB into fresh arena pages costs one thread ~35 ms of page faults (the kernel
 * allocating and zeroing shmem pages) plus ~16 ms of memcpy; split over two threads that each
 * prefault and copy half, measured ~33 ms instead of ~51 ms. Short-lived threads: nothing
 * survives the call (so fork, signals and exit need no care); the part a thread cannot be
 * started for is copied by the caller. */

#define GF__PAR_MIN ((size_t)8 << 20)   /* smaller copies: one thread */
#define GF__PAR_PART ((size_t)4 << 20)  /* at least this much per thread */
#define GF__PAR_MAX 4                   /* beyond this memory bandwidth, not CPUs, limits */

typedef struct gf__copy_part {
    char *dst;
    const char *src;
    size_t n;
    int populate;
} gf__copy_part;

static void gf__copy_run(gf__copy_part *p) {
    if (p->populate) gf__populate(p->dst, p->n);
    memcpy(p->dst, p->src, p->n);
}

static void *gf__copy_thread(void *arg) {
    gf__copy_run(arg);
    return NULL;
}

/* Copy n bytes from src to dst (arena memory), prefaulting it first if populate, with up to
 * GF__PAR_MAX threads (parts split on page boundaries of dst). Never fails. */
static void gf__copy_in(char *dst, const char *src, size_t n, int populate) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t k = n >= GF__PAR_MIN && cpus > 1 ? n / GF__PAR_PART : 1;
    if (k > (size_t)cpus) k = (size_t)cpus;
    if (k > GF__PAR_MAX) k = GF__PAR_MAX;
    gf__copy_part parts[GF__PAR_MAX];
    pthread_t th[GF__PAR_MAX];
    int started[GF__PAR_MAX] = {0};
    size_t done = 0;
    for (size_t i = 0; i < k; i++) {
        size_t end = n;
        if (i + 1 < k) { /* a page boundary of dst near i+1 parts */
            uintptr_t cut = ((uintptr_t)dst + n / k * (i + 1)) & ~(uintptr_t)4095;
            end = cut > (uintptr_t)dst + done ? cut - (uintptr_t)dst : done;
        }
        parts[i] = (gf__copy_part){dst + done, src + done, end - done, populate};
        done = end;
    }
    for (size_t i = 1; i < k; i++)
        started[i] = gf__helper_start(&th[i], gf__copy_thread, &parts[i]) == 0;
    gf__copy_run(&parts[0]);
    for (size_t i = 1; i < k; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        else gf__copy_run(&parts[i]);
    }
}

/* Allocate a plain block and copy n bytes from src into it (see gilfree.h). Result 0 and *out.
 * Fails: GF_EINVAL (n 0), GF_ENOSPC. */
int gf_alloc_copy(gf_arena *a, const void *src, size_t n, gf_off *out) {
    if (!a || !out || (!src && n)) return GF_EINVAL;
    int fresh;
    int rc = gf__alloc_raw(a, n, 0, out, &fresh);
    if (rc < 0) return rc;
    gf__copy_in(a->base + *out, src, n, fresh && n >= GF__POPULATE_MIN);
    return 0;
}

/* Mark a live block FREE. Result 1 if this call did it, 0 if it was not live (a racing
 * double free). Acq_rel: a locked RMW, also a full barrier between the caller's earlier stores
 * (e.g. a dict stripe's seq bump) and any later reuse of the block by this thread, which is
 * what lock-free readers rely on (dict.c gf__get_fast); the locked path had the allocator
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

/* Free a live block (or drop one holder of a shared block). Result 0. Fails: GF_EINVAL (not a
 * live block: double free, bad offset). */
int gf_free(gf_arena *a, gf_off off) {
    gf__arena_hdr *h = a->h;
    gf__block *b = (gf__block *)gf__live_block(a, off);
    if (!b) return GF_EINVAL;
    /* acquire: the other holders' writes to the block happen before we free it (their
     * decrements are releases). */
    uint64_t sh = atomic_load_explicit(GF_A64(&b->shares), memory_order_acquire);
    while (GF_UNLIKELY(sh != 0)) {
        /* release: this holder's writes happen before the last holder frees the block. */
        if (atomic_compare_exchange_weak_explicit(GF_A64(&b->shares), &sh, sh - 1,
                                                  memory_order_acq_rel, memory_order_acquire))
            return 0;
    }
    uint32_t c = b->cls;
    uint64_t usable = b->usable;
    gf__tcache *tc;
    if (c < GF__TC_NCLASS && (tc = gf__tc_get(a)) != NULL) {
        if (!gf__mark_free(b)) return GF_EINVAL;
        b->flags = 0;
        uint32_t batch = gf__tc_batch(c);
        if (tc->n[c] == 2 * batch) gf__tc_flush(tc, c, batch);
        tc->blk[c][tc->n[c]++] = off;
        gf__stats_add_tc(tc, usable, -1);
        return 0;
    }
    gf__robust_lock(&h->alloc_lock);
    if (!gf__mark_free(b)) {
        pthread_mutex_unlock(&h->alloc_lock);
        return GF_EINVAL;
    }
    b->flags = 0;
    b->next = h->heads[c];
    /* release: FREE and `next` are stored before the block is published on the list. */
    atomic_store_explicit(GF_A64(&h->heads[c]), off, memory_order_release);
    pthread_mutex_unlock(&h->alloc_lock);
    gf__stats_add(a, usable, -1);
    return 0;
}

/* Usable bytes of the live block `off`, or 0 if it is not one. */
size_t gf_block_size(const gf_arena *a, gf_off off) {
    const gf__block *b = gf__live_block(a, off);
    return b ? (size_t)b->usable : 0;
}

/* Validate that [off, off+len) lies in one live block (any 64-bit input). Result 0. Fails:
 * GF_EBADMSG. */
int gf_arena_check_block(const gf_arena *a, gf_off off, size_t len) {
    const gf__block *b = gf__live_block(a, off);
    if (!b || len > b->usable) return GF_EBADMSG;
    return 0;
}

/* Fill *st. Result 0. Never fails. */
int gf_arena_stats_get(gf_arena *a, gf_arena_stats *st) {
    gf__arena_hdr *h = a->h;
    memset(st, 0, sizeof *st);
    st->reserved = h->reserve;
    st->top = gf__top(a) - h->data_start;
    /* relaxed: statistics only. The per-slot counters are wrapping deltas: their sum with
     * the header's is exact. */
    st->in_use = atomic_load_explicit(GF_A64(&h->in_use), memory_order_relaxed);
    st->live_blocks = atomic_load_explicit(GF_A64(&h->live_blocks), memory_order_relaxed);
    uint32_t hwm = atomic_load_explicit(GF_A32(&h->slots_hwm), memory_order_acquire);
    for (uint32_t i = 0; i < GF__NCELLS; i++) {
        st->in_use += atomic_load_explicit(GF_A64(&h->cells[i].in_use), memory_order_relaxed);
        st->live_blocks +=
            atomic_load_explicit(GF_A64(&h->cells[i].live_blocks), memory_order_relaxed);
    }
    for (uint32_t i = 0; i < hwm; i++) {
        st->in_use += atomic_load_explicit(GF_A64(&h->slots[i].in_use), memory_order_relaxed);
        st->live_blocks +=
            atomic_load_explicit(GF_A64(&h->slots[i].live_blocks), memory_order_relaxed);
    }
    for (uint32_t i = 0; i < hwm; i++) {
        uint32_t gen = atomic_load_explicit(GF_A32(&h->slots[i].gen), memory_order_acquire);
        if (gen && gf__ident_alive(a, gen << GF__SLOT_BITS | i)) st->live_procs++;
    }
    return 0;
}

/* Consistency walk (tests, debugging): every block between data_start and top has a valid
 * header, every free list holds only FREE blocks of its class, without cycles. Result: the
 * number of live blocks. Fails: GF_EBADMSG. */
int gf__arena_verify(gf_arena *a) {
    gf__arena_hdr *h = a->h;
    int err = 0;
    uint64_t live = 0, nfree = 0, listed = 0;
    gf__robust_lock(&h->alloc_lock);
    uint64_t top = h->top;
    if (top < h->data_start || top > h->reserve) err = GF_EBADMSG;
    for (uint64_t p = h->data_start; !err && p < top;) {
        gf__block *b = (gf__block *)(a->base + p);
        if ((b->magic != GF__BLK_LIVE && b->magic != GF__BLK_FREE) || b->cls >= GF__NCLASS ||
            b->usable != gf__class_size(b->cls) || b->self != p + GF__HDR_SIZE ||
            b->usable > top - p - GF__HDR_SIZE) {
            err = GF_EBADMSG;
            break;
        }
        if (b->magic == GF__BLK_LIVE) live++;
        else nfree++;
        p += GF__HDR_SIZE + b->usable;
    }
    for (uint32_t c = 0; !err && c < GF__NCLASS; c++) {
        for (uint64_t off = h->heads[c]; off; off = gf__blk(a, off)->next) {
            if (!gf__off_plausible(a, off, top) || ++listed > nfree) {
                err = GF_EBADMSG; /* out of range, or a cycle */
                break;
            }
            gf__block *b = gf__blk(a, off);
            if (b->magic != GF__BLK_FREE || b->cls != c || b->self != off) {
                err = GF_EBADMSG;
                break;
            }
        }
    }
    pthread_mutex_unlock(&h->alloc_lock);
    if (err) return err;
    return live > INT32_MAX ? INT32_MAX : (int)live;
}

/* ---------------------------------------------------------------- objects */

/* The gf_obj at `off` if it is a live object block, else NULL. */
static gf_obj *gf__obj(const gf_arena *a, gf_off off) {
    const gf__block *b = gf__live_block(a, off);
    if (!b || !(b->flags & GF__BLK_OBJ)) return NULL;
    return (gf_obj *)(a->base + off);
}

/* Allocate an object of `size` bytes (>= sizeof(gf_obj)) with refs = 1 and type `type`; the
 * rest of the payload is uninitialised. Result 0 and *out. Fails: GF_EINVAL (type, size 0),
 * GF_ENOSPC. */
int gf_obj_new(gf_arena *a, uint32_t type, size_t size, gf_off *out) {
    if (type == 0 || type >= GF_OBJ__MAX || size == 0) return GF_EINVAL;
    if (size < sizeof(gf_obj)) size = sizeof(gf_obj);
    gf_off off;
    int err = gf__alloc(a, size, GF__BLK_OBJ, &off);
    if (err) return err;
    gf_obj *o = (gf_obj *)(a->base + off);
    o->type = type;
    /* relaxed: the object is published to others later, by whatever sends its offset. */
    atomic_store_explicit(GF_A32(&o->refs), 1, memory_order_relaxed);
    *out = off;
    return 0;
}

/* Add a reference. Result 0. Fails: GF_EINVAL (not a live object, or its count is 0),
 * GF_EOVERFLOW (count saturated). */
int gf_obj_incref(gf_arena *a, gf_off off) {
    gf_obj *o = gf__obj(a, off);
    if (!o) return GF_EINVAL;
    /* relaxed: the caller already holds a reference, which orders everything that matters
     * (the same argument as std::shared_ptr). The CAS refuses to resurrect a dead object. */
    uint32_t r = atomic_load_explicit(GF_A32(&o->refs), memory_order_relaxed);
    do {
        if (r == 0) return GF_EINVAL;
        if (r == UINT32_MAX) return GF_EOVERFLOW;
    } while (!atomic_compare_exchange_weak_explicit(GF_A32(&o->refs), &r, r + 1,
                                                    memory_order_relaxed, memory_order_relaxed));
    return 0;
}

/* Destructors of the types that own other blocks; defined (later) by their modules. */
static void gf__obj_destroy(gf_arena *a, gf_off off, uint32_t type) {
    void (*fn)(gf_arena *, gf_off) = NULL;
    switch (type) {
    case GF_OBJ_RING: fn = gf__ring_destroy; break;
    case GF_OBJ_DICT: fn = gf__dict_destroy; break;
    case GF_OBJ_LIST: fn = gf__list_destroy; break;
    case GF_OBJ_POOL: fn = gf__pool_destroy; break;
    default: break;
    }
    if (fn) fn(a, off);
}

/* Drop a reference; at zero run the type's destructor and free the block. Result: the
 * remaining count (0 = freed). Fails: GF_EINVAL (not a live object, or count already 0). */
int gf_obj_decref(gf_arena *a, gf_off off) {
    gf_obj *o = gf__obj(a, off);
    if (!o) return GF_EINVAL;
    uint32_t r = atomic_load_explicit(GF_A32(&o->refs), memory_order_relaxed);
    do {
        if (r == 0) return GF_EINVAL;
        /* release: this process's writes to the object happen before the count drops, so the
         * process that frees it (acquire fence below) sees them. */
    } while (!atomic_compare_exchange_weak_explicit(GF_A32(&o->refs), &r, r - 1,
                                                    memory_order_release, memory_order_relaxed));
    if (r - 1 > 0) return (int)(r - 1 > INT32_MAX ? INT32_MAX : r - 1);
    atomic_thread_fence(memory_order_acquire);
    gf__obj_destroy(a, off, o->type);
    gf_free(a, off);
    return 0;
}

/* Check that `off` names a live object of `type` (any 64-bit input). Result 0. Fails:
 * GF_EBADMSG. */
int gf_obj_check(const gf_arena *a, gf_off off, uint32_t type) {
    gf_obj *o = gf__obj(a, off);
    if (!o || o->type != type ||
        atomic_load_explicit(GF_A32(&o->refs), memory_order_relaxed) == 0)
        return GF_EBADMSG;
    return 0;
}
