/*
 * ring.c -- multi-producer multi-consumer ring of variable-length messages in the arena: the
 * design (below), the eventfd, create / destroy, close and queries. Producers are in
 * ring_put.c, consumers in ring_get.c, the layout in ring_internal.h.
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
#include "ring_internal.h"

#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* eventfd                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Is the ring's eventfd number valid in this process? It is if this process created the ring
 * or was forked from one that had it. A process that attached by exec may hold an unrelated fd
 * with that number: writing 8 bytes into it would corrupt somebody's stream, so the fd is
 * checked (fstat identity) once per (thread, ring, nonce, fd, pid) and the verdict cached; the
 * nonce tells a new ring created at the address of a destroyed one. */
bool gf__efd_usable(const gf__ring *r) {
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
void gf__efd_arm(gf__ring *r) {
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
void gf__efd_drain(gf__ring *r) {
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

/* Punch the whole pages of the data bytes [i, i + len) (i < cap; the range may wrap). */
static void gf__punch_data(gf_arena *a, gf_off ring, const gf__ring *r, uint64_t i,
                           uint64_t len) {
    gf_off d = ring + offsetof(gf__ring, data);
    uint64_t first = len < r->cap - i ? len : r->cap - i;
    gf__arena_punch(a, d + i, first);
    if (len > first) gf__arena_punch(a, d, len - first);
}

/* Of a moving ring, one trim punches at most this much: the free bytes just behind the read
 * position (the last to be written again). It bounds how long the trim holds both locks
 * (~0.2 ms per MiB punched here) and what a ring that laps every second faults in again. */
#define GF__RING_TRIM_BUSY ((uint64_t)1 << 20)

/* Hand the data pages that hold no record back to the kernel (see gilfree.h). Result 1
 * (punched), 0 (a lock held, full, or nothing left to punch). Fails: GF_EINVAL. */
int gf_ring_trim(gf_arena *a, gf_off ring) {
    if (!a || !ring) return GF_EINVAL;
    gf__ring *r = gf__ring_ptr(a, ring);
    /* relaxed: hints; the decision is made under both locks below. */
    uint64_t t = atomic_load_explicit(GF_A64(&r->tail), memory_order_relaxed);
    uint64_t h = atomic_load_explicit(GF_A64(&r->head), memory_order_relaxed);
    if (t == atomic_load_explicit(GF_A64(&r->trim_tail), memory_order_relaxed) &&
        h == atomic_load_explicit(GF_A64(&r->trim_head), memory_order_relaxed) &&
        !atomic_load_explicit(GF_A32(&r->trim_partial), memory_order_relaxed))
        return 0;
    int rc = gf_mutex_lock(a, &r->pmutex, 0); /* deadline 0: never waits */
    if (rc < 0 && rc != GF_EOWNERDEAD) return 0;
    if (rc == GF_EOWNERDEAD) /* as gf__plock: a dead holder may have left the flag set */
        atomic_store_explicit(GF_A32(&r->space_waiters), 0, memory_order_relaxed);
    rc = gf_mutex_lock(a, &r->cmutex, 0);
    if (rc < 0 && rc != GF_EOWNERDEAD) {
        gf_mutex_unlock(a, &r->pmutex);
        return 0;
    }
    /* relaxed: each word is written only under the lock we hold (the trim words under both). */
    t = atomic_load_explicit(GF_A64(&r->tail), memory_order_relaxed);
    h = atomic_load_explicit(GF_A64(&r->head), memory_order_relaxed);
    uint64_t used = (gf__pos(r, t) - gf__pos(r, h)) & gf__pmask(r), free = r->cap - used;
    int moved = t != r->trim_tail || h != r->trim_head;
    int done = free > 0 && (moved || r->trim_partial);
    if (done) {
        /* No put or get can run: the bytes from the write position up to the read position
         * (all of them when empty) hold no record -- garbage, and a record is always written
         * before it is read (zeros are fine). Only whole pages go: the partial pages at
         * either end may hold the records next to them. A ring that moved since the last
         * trim gives the GF__RING_TRIM_BUSY bytes behind its read position; one that stood
         * still since then, all its free bytes. */
        uint64_t len = moved && free > GF__RING_TRIM_BUSY ? GF__RING_TRIM_BUSY : free;
        uint64_t hi = gf__pos(r, h) & (r->cap - 1);
        gf__punch_data(a, ring, r, (hi + r->cap - len) & (r->cap - 1), len);
        atomic_store_explicit(GF_A64(&r->trim_tail), t, memory_order_relaxed);
        atomic_store_explicit(GF_A64(&r->trim_head), h, memory_order_relaxed);
        atomic_store_explicit(GF_A32(&r->trim_partial), len < free, memory_order_relaxed);
    }
    gf_mutex_unlock(a, &r->cmutex);
    gf_mutex_unlock(a, &r->pmutex);
    return done;
}
