/*
 * ring_put.c -- the ring's producers: the producer mutex, space checks and the wait for space,
 * writing records (inline, or a block for a large message), the commit of `tail` and the
 * wake-up of consumers; gf_ring_putv / _frame, gf_ring_put, gf_ring_put_block,
 * gf_ring_put_many / _frame. Design and layout: ring.c, ring_internal.h.
 */
#include "ring_internal.h"

#include <limits.h>
#include <string.h>

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
    int rc = gf__alloc_held(a, total, blk, hold); /* recorded before its prefault */
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
    if (rc < 0) gf__free_held(a, blk, hold);
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
static int gf__put_many(gf_arena *a, gf_off ring, const struct iovec *msgs, size_t n,
                        int64_t deadline, uint32_t flag) {
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
            rc = gf__put_locked(r, &tw, &pending, GF__REC_DATA | flag, &msgs[done], 1, len,
                                deadline);
            if (rc == 0) gf__held_put(a);
        } else {
            gf_off blk;
            int hold;
            rc = gf__to_block(a, &msgs[done], 1, len, &blk, &hold);
            if (rc == 0) {
                gf__rec_block b = {blk, len};
                struct iovec v = {&b, sizeof b};
                rc = gf__put_locked(r, &tw, &pending, GF__REC_BLOCK | flag, &v, 1, sizeof b,
                                    deadline);
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

/* See gf__put_many and gilfree.h. */
int gf_ring_put_many(gf_arena *a, gf_off ring, const struct iovec *msgs, size_t n,
                     int64_t deadline) {
    return gf__put_many(a, ring, msgs, n, deadline, 0);
}

/* As gf_ring_put_many, for messages that are gf_frames (see gilfree.h). */
int gf_ring_put_many_frame(gf_arena *a, gf_off ring, const struct iovec *msgs, size_t n,
                           int64_t deadline) {
    return gf__put_many(a, ring, msgs, n, deadline, GF__REC_F_FRAME);
}
