/*
 * ring.c -- multi-producer multi-consumer ring of variable-length messages in the arena.
 *
 * Layout (one gf_obj of type GF_OBJ_RING):
 *
 *   line 0  read-mostly configuration: capacity, inline limit, maxitems, closed flag, eventfd
 *   line 1  producers: producer mutex, `tail`, `put_seq` (futex), the count of consumers
 *           sleeping on it, the producers' cached view of `head`, the eventfd "armed" flag
 *   line 2  consumers: consumer mutex, `head`, `get_seq` (futex), the space-waiter flag
 *   data    `cap` bytes (a power of two) of records
 *
 * Every word is placed on the line of the side that writes it on the fast path and reads it
 * most: a producer's put reads and writes only line 1 (plus line 2 when its cached head says
 * "full"); a consumer's get reads line 1 (`tail`, unavoidable) and writes line 2. A sleeping
 * consumer writes line 1 (its waiter count) and a sleeping producer line 2, which is the rare
 * path.
 *
 * Records are 8-byte aligned: {u32 len, u32 type} then the payload padded to 8. A record never
 * wraps: when it does not fit before the end of the buffer, a PAD record fills the end and the
 * record starts at 0. Messages larger than `inline_max` (cap/8) travel in an arena block; the
 * BLOCK record carries {offset, length} and the block's ownership.
 *
 * `tail` and `head` are commit words: (message count << pbits) | byte position, where the
 * position runs modulo 2^pbits = 2*cap (so full and empty differ). One release store of the
 * word publishes a put's record *and* the new message count (or a get's consumption), so a
 * process killed anywhere inside a put or a get has either committed all of it or none of it:
 * a producer killed before its store leaves garbage past `tail` that the next put overwrites;
 * a consumer killed before its store leaves the records for the next consumer. At most the
 * killed operation is lost (and a BLOCK it was carrying leaks). The count field has
 * 63 - log2(cap) bits, more than the cap/8 records that can be queued, so differences modulo
 * its width are exact.
 *
 * Sleeping is an eventcount: a consumer that finds the ring empty reads `put_seq`, spins a
 * little watching it, then announces itself in `data_waiters` (seq_cst RMW) and sleeps on
 * `put_seq` with the value it read. A producer, after its commit, bumps `put_seq` (seq_cst
 * RMW) and wakes only if it then sees a waiter (seq_cst load). By the single total order of
 * seq_cst operations, either the producer sees the waiter, or the waiter's futex_wait (after
 * its RMW; the system call is a full barrier) sees the new `put_seq` and does not sleep. No
 * system call is made when nobody sleeps. Producers waiting for space do the same on
 * `get_seq`/`space_waiters`, while holding the producer mutex (so at most one sleeps there and
 * the flag is 0/1; FIFO among producers is kept).
 *
 * Locks are gf_mutex; GF_EOWNERDEAD is not an error here: the ring is consistent at every
 * instant by construction (commit words), the only state a dead holder can leave behind is a
 * stale space_waiters flag, which the new holder clears.
 */
#include "internal.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

enum { GF__REC_DATA = 1, GF__REC_BLOCK = 2, GF__REC_PAD = 3 };
/* Record flag (hdr[1] = type | flags): the message is a gf_frame whose out-of-band blocks
 * travel with it; a ring destroyed with it unread frees them (gf_ring_putv_frame). */
#define GF__REC_F_FRAME 0x100u
#define GF__REC_TYPE(t) ((t) & ~GF__REC_F_FRAME)

#define GF__REC_HDR 8u
#define GF__RING_MIN_CAP ((uint64_t)4096)
#define GF__RING_MAX_CAP ((uint64_t)1 << 32)

typedef struct gf__rec_block {
    uint64_t off;
    uint64_t len;
} gf__rec_block;

typedef struct gf__ring {
    /* line 0: configuration, written at creation (and `closed`, once) */
    gf_obj obj;
    uint64_t cap;        /* bytes of data, a power of two */
    uint64_t inline_max; /* larger messages go to blocks */
    uint64_t maxitems;   /* 0 = unbounded */
    uint32_t pbits;      /* log2(cap) + 1: width of the position field of head/tail */
    uint32_t flags;      /* GF_RING_* */
    uint32_t closed;     /* 0 -> 1 once (atomic) */
    int32_t efd;         /* eventfd (GF_RING_EVENTFD) in the creator and its forked children */
    int32_t efd_pid;     /* the creator's pid */
    uint32_t pad0;
    /* line 1: producers */
    GF_ALIGNED(64) gf_mutex pmutex;
    uint64_t tail;          /* commit word (atomic; written under pmutex) */
    uint64_t head_cache;    /* producers' last view of head (under pmutex) */
    uint32_t put_seq;       /* futex word: bumped after every put commit and on close */
    uint32_t data_waiters;  /* consumers (get) sleeping on put_seq */
    uint32_t rd_waiters;    /* wait_readable callers sleeping on put_seq */
    uint32_t efd_armed;     /* 1 = the eventfd counter is (about to be) non-zero */
    /* line 2: consumers */
    GF_ALIGNED(64) gf_mutex cmutex;
    uint64_t head;          /* commit word (atomic; written under cmutex) */
    uint32_t get_seq;       /* futex word: bumped after every get commit and on close */
    uint32_t space_waiters; /* 1 while the pmutex holder sleeps on get_seq */
    /* line 3: cold */
    GF_ALIGNED(64) uint64_t efd_dev; /* identity of the eventfd (fstat) */
    uint64_t efd_ino;
    uint64_t nonce;                  /* distinguishes rings created at the same address */
    GF_ALIGNED(64) unsigned char data[];
} gf__ring;

_Static_assert(offsetof(gf__ring, pmutex) == 64, "producer line");
_Static_assert(offsetof(gf__ring, cmutex) == 128, "consumer line");
_Static_assert(offsetof(gf__ring, data) % 64 == 0, "data alignment");
_Static_assert(sizeof(gf__rec_block) == 16, "block record");

static inline gf__ring *gf__ring_ptr(gf_arena *a, gf_off off) {
    return (gf__ring *)((char *)gf_arena_base(a) + off); /* callers check off != 0 */
}

static inline uint64_t gf__pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }
static inline uint64_t gf__pmask(const gf__ring *r) { return ((uint64_t)1 << r->pbits) - 1; }
static inline uint64_t gf__cmask(const gf__ring *r) {
    return ((uint64_t)1 << (64 - r->pbits)) - 1;
}
static inline uint64_t gf__pos(const gf__ring *r, uint64_t w) { return w & gf__pmask(r); }
static inline uint64_t gf__cnt(const gf__ring *r, uint64_t w) { return w >> r->pbits; }
static inline uint64_t gf__word(const gf__ring *r, uint64_t cnt, uint64_t pos) {
    return (cnt << r->pbits) | (pos & gf__pmask(r));
}

/* Deadline already passed? 0 and negative deadlines never block (no clock read). */
static inline bool gf__expired(int64_t deadline) {
    if (deadline <= 0) return true;
    if (deadline == GF_FOREVER) return false;
    return gf_now_ns() >= deadline;
}

/* The spin budget for a wait ending at `deadline`. */
static inline int64_t gf__spin_budget(int64_t deadline) {
    int64_t s = gf__spin_ns();
    if (s > 0 && deadline != GF_FOREVER) {
        int64_t left = deadline - gf_now_ns();
        if (left < s) s = left;
    }
    return s;
}

/* acquire: `closed` is set before put_seq/get_seq are bumped; nothing else is published by it. */
static inline bool gf__closed(const gf__ring *r) {
    return atomic_load_explicit(GF_A32((uint32_t *)&r->closed), memory_order_acquire) != 0;
}

/* ------------------------------------------------------------------------------------------ */
/* eventfd                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Is the ring's eventfd number valid in this process? It is if this process created the ring
 * or was forked from one that had it. A process that attached by exec may hold an unrelated fd
 * with that number: writing 8 bytes into it would corrupt somebody's stream, so the fd is
 * checked (fstat identity) once per (thread, ring, nonce, fd, pid) and the verdict cached; the
 * nonce tells a new ring created at the address of a destroyed one. */
static bool gf__efd_usable(const gf__ring *r) {
    int fd = r->efd;
    if (fd < 0) return false;
    static __thread struct {
        const void *ring;
        uint64_t nonce;
        int fd;
        pid_t pid;
        bool ok;
    } cache[8];
    static __thread unsigned next;
    pid_t pid = getpid();
    for (unsigned i = 0; i < 8; i++)
        if (cache[i].ring == r && cache[i].nonce == r->nonce && cache[i].fd == fd &&
            cache[i].pid == pid)
            return cache[i].ok;
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && (uint64_t)st.st_dev == r->efd_dev &&
              (uint64_t)st.st_ino == r->efd_ino;
    unsigned i = next++ & 7;
    cache[i].ring = r;
    cache[i].nonce = r->nonce;
    cache[i].fd = fd;
    cache[i].pid = pid;
    cache[i].ok = ok;
    return ok;
}

/* Make the eventfd readable unless it already is (or is about to be). Called after a commit.
 * seq_cst load/CAS of efd_armed, after the seq_cst bump of put_seq in gf__commit_put: paired
 * with the consumer's seq_cst exchange to 0 and its re-check (gf__efd_drain): either we see 0
 * and arm, or the consumer's re-check sees our commit and arms. */
static void gf__efd_arm(gf__ring *r) {
    if (atomic_load_explicit(GF_A32(&r->efd_armed), memory_order_seq_cst) != 0) return;
    uint32_t zero = 0;
    if (!atomic_compare_exchange_strong_explicit(GF_A32(&r->efd_armed), &zero, 1,
                                                 memory_order_seq_cst, memory_order_seq_cst))
        return;
    if (gf__efd_usable(r)) {
        uint64_t one = 1;
        ssize_t n = write(r->efd, &one, sizeof one);
        (void)n; /* EAGAIN only if the counter is at 2^64-2: it is readable then anyway */
    }
}

/* Called by a consumer, under the consumer mutex, when its get emptied the ring: drain the
 * eventfd, then re-check and re-arm if a put (or close) raced with us. */
static void gf__efd_drain(gf__ring *r) {
    /* seq_cst: see gf__efd_arm. */
    if (atomic_load_explicit(GF_A32(&r->efd_armed), memory_order_seq_cst) == 0) return;
    if (gf__closed(r)) return; /* stays readable: EOF is a readable condition */
    if (gf__efd_usable(r)) {
        uint64_t v;
        ssize_t n = read(r->efd, &v, sizeof v); /* EFD_NONBLOCK: EAGAIN if already 0 */
        (void)n;
    }
    /* seq_cst RMW then seq_cst load of put_seq: if a producer's seq_cst load of efd_armed saw
     * the old 1, that load precedes our exchange in the single total order, so its seq_cst
     * bump of put_seq (before its load) precedes our load of put_seq: we read-from it (or a
     * later bump), which also makes its earlier release of `tail` visible (acquire). No
     * fence, so that ThreadSanitizer understands it. */
    atomic_exchange_explicit(GF_A32(&r->efd_armed), 0, memory_order_seq_cst);
    (void)atomic_load_explicit(GF_A32(&r->put_seq), memory_order_seq_cst);
    uint64_t t = atomic_load_explicit(GF_A64(&r->tail), memory_order_acquire);
    uint64_t h = atomic_load_explicit(GF_A64(&r->head), memory_order_relaxed);
    if (gf__pos(r, t) != gf__pos(r, h) || gf__closed(r)) gf__efd_arm(r);
}

/* ------------------------------------------------------------------------------------------ */
/* create / destroy                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* Create a ring. Result 0 and *out (refs = 1). Fails: GF_EINVAL (capacity above 4 GiB, unknown
 * flags), GF_ENOSPC, GF_EMFILE (eventfd). */
int gf_ring_create(gf_arena *a, size_t capacity, uint64_t maxitems, uint32_t flags,
                   gf_off *out) {
    if (!a || !out || (flags & ~GF_RING_EVENTFD)) return GF_EINVAL;
    if ((uint64_t)capacity > GF__RING_MAX_CAP) return GF_EINVAL;
    uint64_t cap = GF__RING_MIN_CAP;
    uint32_t lg = 12;
    while (cap < capacity) {
        cap <<= 1;
        lg++;
    }
    int efd = -1;
    struct stat st;
    if (flags & GF_RING_EVENTFD) {
        efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (efd < 0) return gf__errno_code(errno);
        if (fstat(efd, &st) != 0) {
            int e = gf__errno_code(errno);
            close(efd);
            return e;
        }
    }
    gf_off off;
    int err = gf_obj_new(a, GF_OBJ_RING, sizeof(gf__ring) + cap, &off);
    if (err) {
        if (efd >= 0) close(efd);
        return err;
    }
    gf__ring *r = gf__ring_ptr(a, off);
    /* Header only: the data area is written by puts before it is read. */
    memset((char *)r + sizeof(gf_obj), 0, sizeof(gf__ring) - sizeof(gf_obj));
    r->cap = cap;
    r->inline_max = cap / 8;
    r->maxitems = maxitems;
    r->pbits = lg + 1;
    r->flags = flags;
    r->efd = efd;
    r->efd_pid = (int32_t)getpid();
    if (efd >= 0) {
        static _Atomic uint64_t counter;
        r->efd_dev = (uint64_t)st.st_dev;
        r->efd_ino = (uint64_t)st.st_ino;
        /* relaxed: uniqueness only. pid, time and a per-process counter. */
        r->nonce = ((uint64_t)getpid() << 40) ^ (uint64_t)gf_now_ns() ^
                   (atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed) << 20);
    }
    gf_mutex_init(&r->pmutex, 0);
    gf_mutex_init(&r->cmutex, 0);
    /* Publication to other processes happens when the caller sends `off` (through a ring,
     * a pipe, fork): each of those is a release/acquire pair or a system call. */
    *out = off;
    return 0;
}

/* Destructor, called by gf_obj_decref when the last reference goes: free the blocks of BLOCK
 * records still queued (validated first: the ring may have been scribbled on), and close the
 * eventfd in the creating process. Not under the locks: nobody else holds a reference. */
void gf__ring_destroy(gf_arena *a, gf_off off) {
    gf__ring *r = gf__ring_ptr(a, off);
    uint64_t h = atomic_load_explicit(GF_A64(&r->head), memory_order_acquire);
    uint64_t t = atomic_load_explicit(GF_A64(&r->tail), memory_order_acquire);
    uint64_t hp = gf__pos(r, h), tp = gf__pos(r, t), pm = gf__pmask(r);
    uint64_t guard = r->cap / 8 + 1;
    while (hp != tp && guard--) {
        uint64_t i = hp & (r->cap - 1), avail = (tp - hp) & pm;
        if ((hp & 7) || avail > r->cap) break;
        uint32_t hdr[2];
        memcpy(hdr, r->data + i, 8);
        uint64_t rs;
        uint32_t type = GF__REC_TYPE(hdr[1]), frame = hdr[1] & GF__REC_F_FRAME;
        if (hdr[1] == GF__REC_PAD) {
            rs = r->cap - i;
        } else if (type == GF__REC_DATA) {
            rs = GF__REC_HDR + gf__pad8(hdr[0]);
            /* an unread frame: its out-of-band blocks were its receiver's */
            if (frame && rs <= r->cap - i && rs <= avail)
                gf__frame_drop(a, r->data + i + GF__REC_HDR, hdr[0]);
        } else if (type == GF__REC_BLOCK && hdr[0] == sizeof(gf__rec_block)) {
            rs = GF__REC_HDR + sizeof(gf__rec_block);
            gf__rec_block b;
            if (rs <= r->cap - i && rs <= avail) {
                memcpy(&b, r->data + i + 8, sizeof b);
                if (gf_arena_check_block(a, b.off, b.len) == 0) {
                    if (frame) gf__frame_drop(a, gf_ptr(a, b.off), b.len);
                    gf_free(a, b.off);
                }
            }
        } else {
            break;
        }
        if (rs > r->cap - i || rs > avail) break;
        hp = (hp + rs) & pm;
    }
    if (r->efd >= 0 && r->efd_pid == (int32_t)getpid() && gf__efd_usable(r)) close(r->efd);
}

/* ------------------------------------------------------------------------------------------ */
/* producers                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Take the producer mutex. Result 0. Fails: GF_ETIMEDOUT, GF_EINTR. */
static int gf__plock(gf_arena *a, gf__ring *r, int64_t deadline) {
    int rc = gf_mutex_lock(a, &r->pmutex, deadline);
    if (rc == GF_EOWNERDEAD) {
        /* The dead holder may have been sleeping for space: nobody sleeps now. relaxed: only
         * the pmutex holder writes it; consumers read it as a hint (a stale 1 costs a wake). */
        atomic_store_explicit(GF_A32(&r->space_waiters), 0, memory_order_relaxed);
        rc = 0;
    }
    return rc;
}

/* Bytes a record of rs bytes needs at position pos (itself, plus the PAD before it if it would
 * cross the end). */
static inline uint64_t gf__need(const gf__ring *r, uint64_t pos, uint64_t rs) {
    uint64_t room = r->cap - (pos & (r->cap - 1));
    return rs <= room ? rs : room + rs;
}

/* Does a record needing `need` bytes fit after tail word tw, given head word hw? */
static inline bool gf__fits(const gf__ring *r, uint64_t tw, uint64_t hw, uint64_t need) {
    uint64_t used = (gf__pos(r, tw) - gf__pos(r, hw)) & gf__pmask(r);
    if (used > r->cap || need > r->cap - used) return false;
    if (r->maxitems) {
        uint64_t items = (gf__cnt(r, tw) - gf__cnt(r, hw)) & gf__cmask(r);
        if (items >= r->maxitems) return false;
    }
    return true;
}

/* Publish the tail word tw (the commit point of every record written before it), then wake
 * consumers. n = records committed. */
static void gf__commit_put(gf__ring *r, uint64_t tw, uint32_t n) {
    /* release: the records written before are visible to whoever acquires `tail`. */
    atomic_store_explicit(GF_A64(&r->tail), tw, memory_order_release);
    /* seq_cst RMW, then seq_cst loads of the waiter counts: the producer half of the
     * eventcount (see the file comment). Also release for spinners that acquire put_seq. */
    atomic_fetch_add_explicit(GF_A32(&r->put_seq), 1, memory_order_seq_cst);
    uint32_t rw = atomic_load_explicit(GF_A32(&r->rd_waiters), memory_order_seq_cst);
    uint32_t dw = atomic_load_explicit(GF_A32(&r->data_waiters), memory_order_seq_cst);
    if (rw) gf__futex_wake(&r->put_seq, INT32_MAX); /* readiness waiters do not consume */
    else if (dw) gf__futex_wake(&r->put_seq, n > (uint32_t)INT32_MAX ? INT32_MAX : (int)n);
    if (r->flags & GF_RING_EVENTFD) gf__efd_arm(r);
}

/* Sleep (holding pmutex) until a consumer commits a get, the ring closes, or the deadline.
 * Result 0 (re-check). Fails: GF_EINTR. A timeout returns 0: the caller's loop re-checks the
 * space once more and then reports GF_ETIMEDOUT. */
static int gf__wait_space(gf__ring *r, uint64_t tw, uint64_t need, int64_t deadline) {
    /* acquire: pairs with the consumer's seq_cst bump after its head store. */
    uint32_t seen = atomic_load_explicit(GF_A32(&r->get_seq), memory_order_acquire);
    uint64_t hw = atomic_load_explicit(GF_A64(&r->head), memory_order_acquire);
    if (gf__fits(r, tw, hw, need) || gf__closed(r)) return 0;
    if (gf__spin_while_eq(&r->get_seq, seen, gf__spin_budget(deadline))) return 0;
    /* seq_cst: the waiter half of the eventcount (paired with gf__commit_get). */
    atomic_store_explicit(GF_A32(&r->space_waiters), 1, memory_order_seq_cst);
    int rc = gf__futex_wait(&r->get_seq, seen, deadline);
    /* relaxed: a stale 1 only costs the consumers a useless wake. */
    atomic_store_explicit(GF_A32(&r->space_waiters), 0, memory_order_relaxed);
    return rc == GF_EINTR ? GF_EINTR : 0;
}

/* Write one record (type, len payload bytes gathered from iov) at the local tail word *tw,
 * after a PAD if it would cross the end. The caller checked the space. */
static void gf__rec_write(gf__ring *r, uint64_t *tw, uint32_t type, const struct iovec *iov,
                          int iovcnt, uint64_t len) {
    uint64_t pos = gf__pos(r, *tw), cnt = gf__cnt(r, *tw);
    uint64_t i = pos & (r->cap - 1), rs = GF__REC_HDR + gf__pad8(len);
    if (rs > r->cap - i) {
        uint32_t pad[2] = {(uint32_t)(r->cap - i - GF__REC_HDR), GF__REC_PAD};
        memcpy(r->data + i, pad, sizeof pad);
        pos += r->cap - i;
        i = 0;
    }
    uint32_t hdr[2] = {(uint32_t)len, type};
    memcpy(r->data + i, hdr, sizeof hdr);
    unsigned char *p = r->data + i + GF__REC_HDR;
    for (int k = 0; k < iovcnt; k++) {
        if (iov[k].iov_len) memcpy(p, iov[k].iov_base, iov[k].iov_len);
        p += iov[k].iov_len;
    }
    *tw = gf__word(r, cnt + 1, pos + rs);
}

/* Under pmutex: wait for space for one record then write it at *tw (uncommitted; *pending
 * counts the uncommitted ones, committed here before any wait so that consumers can make
 * room). Result 0. Fails: GF_EPIPE, GF_ETIMEDOUT, GF_EINTR. */
static int gf__put_locked(gf__ring *r, uint64_t *tw, uint32_t *pending, uint32_t type,
                          const struct iovec *iov, int iovcnt, uint64_t len, int64_t deadline) {
    uint64_t rs = GF__REC_HDR + gf__pad8(len);
    for (;;) {
        if (gf__closed(r)) return GF_EPIPE;
        uint64_t need = gf__need(r, gf__pos(r, *tw), rs);
        /* relaxed: head_cache is only touched under pmutex. */
        uint64_t hw = atomic_load_explicit(GF_A64(&r->head_cache), memory_order_relaxed);
        if (!gf__fits(r, *tw, hw, need)) {
            /* acquire: the consumer copied the records out before its release of `head`, so
             * we may overwrite them now. */
            hw = atomic_load_explicit(GF_A64(&r->head), memory_order_acquire);
            atomic_store_explicit(GF_A64(&r->head_cache), hw, memory_order_relaxed);
        }
        if (gf__fits(r, *tw, hw, need)) break;
        if (gf__expired(deadline)) return GF_ETIMEDOUT;
        if (*pending) {
            gf__commit_put(r, *tw, *pending);
            *pending = 0;
        }
        int rc = gf__wait_space(r, *tw, need, deadline);
        if (rc < 0) return rc;
    }
    gf__rec_write(r, tw, type, iov, iovcnt, len);
    (*pending)++;
    return 0;
}

/* Put one record of `type` (DATA: the gathered payload; BLOCK: the block descriptor).
 * Fails: GF_EPIPE, GF_ETIMEDOUT, GF_EINTR. */
static int gf__put_one(gf_arena *a, gf__ring *r, uint32_t type, const struct iovec *iov,
                       int iovcnt, uint64_t len, int64_t deadline, int hold) {
    if (gf__closed(r)) return GF_EPIPE;
    int rc = gf__plock(a, r, deadline);
    if (rc < 0) return rc;
    /* relaxed: `tail` is only written under pmutex, which we hold (its acquire orders us
     * after the previous holder's store). */
    uint64_t tw = atomic_load_explicit(GF_A64(&r->tail), memory_order_relaxed);
    uint32_t pending = 0;
    rc = gf__put_locked(r, &tw, &pending, type, iov, iovcnt, len, deadline);
    /* the block and the message's out-of-band buffers leave this process's ledger just
     * before the record commits */
    if (rc == 0) {
        if (hold) gf__block_unhold(a, hold);
        gf__held_put(a);
    }
    if (pending) gf__commit_put(r, tw, pending);
    gf_mutex_unlock(a, &r->pmutex);
    return rc;
}

/* Put a block the caller filled. Result 0. Fails: GF_EINVAL (not a live block, len larger than
 * it), GF_EPIPE, GF_ETIMEDOUT, GF_EINTR. On failure the caller still owns the block. */
int gf_ring_put_block(gf_arena *a, gf_off ring, gf_off block, size_t len, int64_t deadline) {
    if (!a || !ring) return GF_EINVAL;
    size_t bs = gf_block_size(a, block);
    if (bs == 0 || len > bs) return GF_EINVAL;
    gf__ring *r = gf__ring_ptr(a, ring);
    gf__rec_block b = {block, len};
    struct iovec v = {&b, sizeof b};
    return gf__put_one(a, r, GF__REC_BLOCK, &v, 1, sizeof b, deadline, 0);
}

/* Copy a large message into a new block, recorded in this process's ledger (*hold: its
 * handle) so that the survivors free it if we die before it is committed. Result 0 and
 * *blk. Fails: GF_ENOSPC. */
static int gf__to_block(gf_arena *a, const struct iovec *iov, int iovcnt, size_t total,
                        gf_off *blk, int *hold) {
    int rc = gf__alloc_hold(a, total, blk, hold); /* held before its prefault */
    if (rc < 0) return rc;
    unsigned char *p = gf_ptr(a, *blk);
    for (int k = 0; k < iovcnt; k++) {
        if (iov[k].iov_len) memcpy(p, iov[k].iov_base, iov[k].iov_len);
        p += iov[k].iov_len;
    }
    return 0;
}

/* Put one message gathered from iov, its records flagged `flag`. As gf_ring_putv. (Inlined
 * whole into both callers: a partly inlined copy cost 10 instructions per put.) */
static inline __attribute__((always_inline)) int gf__putv(gf_arena *a, gf_off ring, const struct iovec *iov, int iovcnt,
                    int64_t deadline, uint32_t flag) {
    if (!a || !ring || iovcnt < 0 || (iovcnt > 0 && !iov)) return GF_EINVAL;
    size_t total = 0;
    for (int k = 0; k < iovcnt; k++) {
        if (iov[k].iov_len > GF_RING_MAX_MESSAGE - total) return GF_EMSGSIZE;
        if (iov[k].iov_len && !iov[k].iov_base) return GF_EINVAL;
        total += iov[k].iov_len;
    }
    gf__ring *r = gf__ring_ptr(a, ring);
    if (total <= r->inline_max)
        return gf__put_one(a, r, GF__REC_DATA | flag, iov, iovcnt, total, deadline, 0);
    if (gf__closed(r)) return GF_EPIPE;
    gf_off blk;
    int hold;
    int rc = gf__to_block(a, iov, iovcnt, total, &blk, &hold); /* the one copy, unlocked */
    if (rc < 0) return rc;
    gf__rec_block b = {blk, total};
    struct iovec v = {&b, sizeof b};
    rc = gf__put_one(a, r, GF__REC_BLOCK | flag, &v, 1, sizeof b, deadline, hold);
    if (rc < 0) {
        gf__block_unhold(a, hold);
        gf_free(a, blk);
    }
    return rc;
}

/* Put one message gathered from iov. Result 0. Fails: GF_EINVAL, GF_EMSGSIZE, GF_ENOSPC,
 * GF_EPIPE, GF_ETIMEDOUT, GF_EINTR. */
int gf_ring_putv(gf_arena *a, gf_off ring, const struct iovec *iov, int iovcnt,
                 int64_t deadline) {
    return gf__putv(a, ring, iov, iovcnt, deadline, 0);
}

/* As gf_ring_putv, for a message that is a gf_frame (see gilfree.h). */
int gf_ring_putv_frame(gf_arena *a, gf_off ring, const struct iovec *iov, int iovcnt,
                       int64_t deadline) {
    return gf__putv(a, ring, iov, iovcnt, deadline, GF__REC_F_FRAME);
}

/* Put one contiguous message. As gf_ring_putv. */
int gf_ring_put(gf_arena *a, gf_off ring, const void *data, size_t len, int64_t deadline) {
    struct iovec v = {(void *)data, len};
    return gf_ring_putv(a, ring, &v, 1, deadline);
}

/* Put n messages under one hold of the producer mutex, committed together (or in pieces when
 * the ring fills up and we must wait). Result: n, or the count put before an error if > 0.
 * Fails: as gf_ring_putv (nothing was put). */
int gf_ring_put_many(gf_arena *a, gf_off ring, const struct iovec *msgs, size_t n,
                     int64_t deadline) {
    if (!a || !ring || (n && !msgs) || n > INT_MAX) return GF_EINVAL;
    if (n == 0) return 0;
    gf__ring *r = gf__ring_ptr(a, ring);
    if (gf__closed(r)) return GF_EPIPE;
    int rc = gf__plock(a, r, deadline);
    if (rc < 0) return rc;
    /* relaxed: see gf__put_one. */
    uint64_t tw = atomic_load_explicit(GF_A64(&r->tail), memory_order_relaxed);
    uint32_t pending = 0;
    size_t done = 0;
    for (; done < n; done++) {
        size_t len = msgs[done].iov_len;
        if (len && !msgs[done].iov_base) {
            rc = GF_EINVAL;
            break;
        }
        if (len > GF_RING_MAX_MESSAGE) {
            rc = GF_EMSGSIZE;
            break;
        }
        if (len <= r->inline_max) {
            rc = gf__put_locked(r, &tw, &pending, GF__REC_DATA, &msgs[done], 1, len, deadline);
            if (rc == 0) gf__held_put(a);
        } else {
            gf_off blk;
            int hold;
            rc = gf__to_block(a, &msgs[done], 1, len, &blk, &hold);
            if (rc == 0) {
                gf__rec_block b = {blk, len};
                struct iovec v = {&b, sizeof b};
                rc = gf__put_locked(r, &tw, &pending, GF__REC_BLOCK, &v, 1, sizeof b, deadline);
                /* out of the ledger once its record is written (committed below or by the
                 * next wait for space: a kill in between leaks it) */
                gf__block_unhold(a, hold);
                if (rc == 0) gf__held_put(a);
                if (rc < 0) gf_free(a, blk);
            }
        }
        if (rc < 0) break;
    }
    if (pending) gf__commit_put(r, tw, pending);
    gf_mutex_unlock(a, &r->pmutex);
    if (done > 0) return (int)done;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* consumers                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Non-empty now? acquire on `tail`: records committed before it are visible. acquire on
 * `head` too (another consumer may have moved it; we read the records only under the mutex,
 * so this is a hint). */
static inline bool gf__nonempty(const gf__ring *r) {
    uint64_t t = atomic_load_explicit(GF_A64((uint64_t *)&r->tail), memory_order_acquire);
    uint64_t h = atomic_load_explicit(GF_A64((uint64_t *)&r->head), memory_order_acquire);
    return gf__pos(r, t) != gf__pos(r, h);
}

/* Wait until the ring is non-empty. `counter` is data_waiters (getters) or rd_waiters.
 * Result 0. Fails: GF_EPIPE (closed and empty), GF_ETIMEDOUT, GF_EINTR. */
static int gf__wait_nonempty(gf__ring *r, uint32_t *counter, int64_t deadline) {
    for (;;) {
        /* acquire: if we see a bumped put_seq, we see the commit that preceded the bump. Read
         * before the emptiness check so that a put between the two changes it. */
        uint32_t seen = atomic_load_explicit(GF_A32(&r->put_seq), memory_order_acquire);
        if (gf__nonempty(r)) return 0;
        if (gf__closed(r)) return gf__nonempty(r) ? 0 : GF_EPIPE;
        if (gf__expired(deadline)) return GF_ETIMEDOUT;
        if (gf__spin_while_eq(&r->put_seq, seen, gf__spin_budget(deadline))) continue;
        /* seq_cst RMW: the waiter half of the eventcount (paired with gf__commit_put). */
        atomic_fetch_add_explicit(GF_A32(counter), 1, memory_order_seq_cst);
        int rc = gf__futex_wait(&r->put_seq, seen, deadline);
        /* relaxed: the count is a hint for producers; an extra wake is harmless. */
        atomic_fetch_sub_explicit(GF_A32(counter), 1, memory_order_relaxed);
        if (rc == GF_EINTR) return rc;
        /* 0 or timed out: loop, re-check, and report the timeout from the top. */
    }
}

/* We were (perhaps) woken for a message we are not going to take: pass the wake to another
 * sleeping consumer so that it is not lost. */
static void gf__pass_wake(gf__ring *r) {
    /* seq_cst: as in gf__commit_put. */
    if (gf__nonempty(r) &&
        atomic_load_explicit(GF_A32(&r->data_waiters), memory_order_seq_cst) != 0)
        gf__futex_wake(&r->put_seq, 1);
}

/* Publish the head word hw (the commit point of a get), then wake a producer waiting for
 * space. */
static void gf__commit_get(gf__ring *r, uint64_t hw) {
    /* release: our copies out of the records happen before a producer reuses the bytes. */
    atomic_store_explicit(GF_A64(&r->head), hw, memory_order_release);
    /* seq_cst RMW + seq_cst load: the waker half of the producers' eventcount. */
    atomic_fetch_add_explicit(GF_A32(&r->get_seq), 1, memory_order_seq_cst);
    if (atomic_load_explicit(GF_A32(&r->space_waiters), memory_order_seq_cst) != 0)
        gf__futex_wake(&r->get_seq, INT32_MAX);
}

/* Under cmutex: take up to max records. Result: the count (0 = empty). Fails: GF_EBADMSG (the
 * first record is corrupt; records before a corrupt one are returned first). */
static int gf__take(gf_arena *a, gf__ring *r, gf_msg *msgs, size_t max, unsigned char *buf,
                    size_t bufcap) {
    /* relaxed: `head` is only written under cmutex, which we hold. acquire on `tail`: the
     * records before it are visible. */
    uint64_t hw = atomic_load_explicit(GF_A64(&r->head), memory_order_relaxed);
    uint64_t tw = atomic_load_explicit(GF_A64(&r->tail), memory_order_acquire);
    const uint64_t cap = r->cap, pm = gf__pmask(r);
    uint64_t hp = gf__pos(r, hw), tp = gf__pos(r, tw), cnt = gf__cnt(r, hw);
    if (hp == tp) return 0;
    int bad = 0;
    size_t n = 0, boff = 0;
    if (((hp | tp) & 7) || ((tp - hp) & pm) > cap) bad = 1;
    while (!bad && n < max && hp != tp) {
        uint64_t i = hp & (cap - 1), avail = (tp - hp) & pm;
        uint32_t hdr[2];
        memcpy(hdr, r->data + i, sizeof hdr);
        uint64_t rs;
        if (hdr[1] == GF__REC_PAD) {
            rs = cap - i;
            if (hdr[0] != rs - GF__REC_HDR || rs >= avail) { /* a PAD is always followed */
                bad = 1;
                break;
            }
            hp = (hp + rs) & pm;
            continue;
        }
        uint32_t type = GF__REC_TYPE(hdr[1]);
        if (type == GF__REC_DATA) {
            rs = GF__REC_HDR + gf__pad8(hdr[0]);
            if (hdr[0] > r->inline_max || rs > cap - i || rs > avail) {
                bad = 1;
                break;
            }
            if (hdr[0] > bufcap - boff) break; /* buffer full: the rest next time */
            memcpy(buf + boff, r->data + i + GF__REC_HDR, hdr[0]);
            msgs[n].data = buf + boff;
            msgs[n].len = hdr[0];
            msgs[n].block = 0;
            boff += hdr[0];
            boff = gf__pad8(boff) <= bufcap ? gf__pad8(boff) : bufcap; /* keep 8-aligned */
        } else if (type == GF__REC_BLOCK) {
            rs = GF__REC_HDR + sizeof(gf__rec_block);
            gf__rec_block b;
            if (hdr[0] != sizeof b || rs > cap - i || rs > avail) {
                bad = 1;
                break;
            }
            memcpy(&b, r->data + i + GF__REC_HDR, sizeof b);
            if (b.off == 0 || gf_arena_check_block(a, b.off, b.len) != 0) {
                bad = 1;
                break;
            }
            msgs[n].data = gf_ptr(a, b.off);
            msgs[n].len = b.len;
            msgs[n].block = b.off;
        } else {
            bad = 1;
            break;
        }
        hp = (hp + rs) & pm;
        n++;
    }
    if (n > 0) {
        gf__commit_get(r, gf__word(r, cnt + n, hp));
        if ((r->flags & GF_RING_EVENTFD) && hp == tp) gf__efd_drain(r);
        return (int)n;
    }
    return bad ? GF_EBADMSG : 0;
}

/* Take the consumer mutex. Result 0. Fails: GF_ETIMEDOUT, GF_EINTR. */
static int gf__clock(gf_arena *a, gf__ring *r, int64_t deadline) {
    int rc = gf_mutex_lock(a, &r->cmutex, deadline);
    return rc == GF_EOWNERDEAD ? 0 : rc;
}

/* Take 1..max messages. Result: the count. Fails: GF_EINVAL, GF_ETIMEDOUT, GF_EINTR, GF_EPIPE
 * (closed and empty), GF_EBADMSG. */
int gf_ring_get_many(gf_arena *a, gf_off ring, gf_msg *msgs, size_t max, void *buf,
                     size_t bufcap, int64_t deadline) {
    if (!a || !ring || !msgs || max == 0) return GF_EINVAL;
    gf__ring *r = gf__ring_ptr(a, ring);
    if (bufcap < r->inline_max || !buf) return GF_EINVAL;
    if (max > INT_MAX) max = INT_MAX;
    for (;;) {
        int rc = gf__wait_nonempty(r, &r->data_waiters, deadline);
        if (rc < 0) {
            gf__pass_wake(r);
            return rc;
        }
        rc = gf__clock(a, r, deadline);
        if (rc < 0) {
            gf__pass_wake(r);
            return rc;
        }
        rc = gf__take(a, r, msgs, max, buf, bufcap);
        gf_mutex_unlock(a, &r->cmutex);
        if (rc != 0) return rc;
        /* Another consumer took it first: wait again. */
    }
}

/* Take one message. Result 1. Fails: as gf_ring_get_many. */
int gf_ring_get(gf_arena *a, gf_off ring, gf_msg *msg, void *buf, size_t bufcap,
                int64_t deadline) {
    return gf_ring_get_many(a, ring, msg, 1, buf, bufcap, deadline);
}

/* Free the block of a message, if any; clears msg. */
void gf_msg_release(gf_arena *a, gf_msg *msg) {
    if (!msg) return;
    if (msg->block && a) gf_free(a, msg->block);
    msg->block = 0;
    msg->data = NULL;
    msg->len = 0;
}

/* Wait until non-empty. Result 0. Fails: GF_ETIMEDOUT, GF_EINTR, GF_EPIPE. */
int gf_ring_wait_readable(gf_arena *a, gf_off ring, int64_t deadline) {
    if (!a || !ring) return GF_EINVAL;
    gf__ring *r = gf__ring_ptr(a, ring);
    return gf__wait_nonempty(r, &r->rd_waiters, deadline);
}

/* ------------------------------------------------------------------------------------------ */
/* misc                                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* Close and wake everyone (idempotent). */
void gf_ring_close(gf_arena *a, gf_off ring) {
    if (!a || !ring) return;
    gf__ring *r = gf__ring_ptr(a, ring);
    /* seq_cst: ordered before the seq bumps below, which waiters compare in the kernel. */
    atomic_store_explicit(GF_A32(&r->closed), 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(GF_A32(&r->put_seq), 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(GF_A32(&r->get_seq), 1, memory_order_seq_cst);
    gf__futex_wake(&r->put_seq, INT32_MAX);
    gf__futex_wake(&r->get_seq, INT32_MAX);
    if (r->flags & GF_RING_EVENTFD) gf__efd_arm(r);
}

/* 1 if closed, else 0. */
int gf_ring_is_closed(gf_arena *a, gf_off ring) {
    return (a && ring && gf__closed(gf__ring_ptr(a, ring))) ? 1 : 0;
}

/* Messages queued (a snapshot). Head first: the tail read after it is at least as new. */
uint64_t gf_ring_count(gf_arena *a, gf_off ring) {
    if (!a || !ring) return 0;
    gf__ring *r = gf__ring_ptr(a, ring);
    /* acquire both: a consistent-enough snapshot (tail >= head as read). */
    uint64_t h = atomic_load_explicit(GF_A64(&r->head), memory_order_acquire);
    uint64_t t = atomic_load_explicit(GF_A64(&r->tail), memory_order_acquire);
    return (gf__cnt(r, t) - gf__cnt(r, h)) & gf__cmask(r);
}

/* The largest inline message. */
size_t gf_ring_inline_max(gf_arena *a, gf_off ring) {
    if (!a || !ring) return 0;
    return (size_t)gf__ring_ptr(a, ring)->inline_max;
}

/* The eventfd, or -1 (no GF_RING_EVENTFD, or not valid in this process). */
int gf_ring_fd(gf_arena *a, gf_off ring) {
    if (!a || !ring) return -1;
    gf__ring *r = gf__ring_ptr(a, ring);
    return gf__efd_usable(r) ? r->efd : -1;
}
