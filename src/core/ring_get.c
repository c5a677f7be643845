/*
 * ring_get.c -- the ring's consumers: waiting for records (eventcount), taking them under the
 * consumer mutex (copied out, or a block handed over and recorded in the ledger), the commit
 * of `head` and the wake-up of producers; gf_ring_get / _many, gf_msg_release, gf_msg_keep,
 * gf_ring_wait_readable. Design and layout: ring.c, ring_internal.h.
 */
#include "ring_internal.h"

#include <limits.h>
#include <string.h>

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

/* The blocks of the n messages just taken are ours from the get's commit on: recorded in the
 * ledger until gf_msg_release or gf_msg_keep, so that the survivors free them if we die first
 * (a kill between the commit and the record leaks one; recorded before the commit, a kill
 * would let the next consumer take a block the reclaim frees). */
static void gf__hold_taken(gf_arena *a, gf_msg *msgs, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (msgs[k].block) msgs[k]._hold = gf__block_hold(a, msgs[k].block);
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
    int nblk = 0; /* a block was taken */
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
            msgs[n]._hold = 0;
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
            msgs[n]._hold = 0;
            nblk = 1;
        } else {
            bad = 1;
            break;
        }
        hp = (hp + rs) & pm;
        n++;
    }
    if (n > 0) {
        gf__commit_get(r, gf__word(r, cnt + n, hp));
        if (nblk) gf__hold_taken(a, msgs, n);
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
    if (msg->block && a) gf__free_held(a, msg->block, msg->_hold);
    msg->block = 0;
    msg->_hold = 0;
    msg->data = NULL;
    msg->len = 0;
}

/* Keep the block of a message (see gilfree.h). Result: the block, or 0. */
gf_off gf_msg_keep(gf_arena *a, gf_msg *msg) {
    if (!msg) return 0;
    gf_off b = msg->block;
    if (b && a) gf__block_unhold(a, msg->_hold);
    msg->block = 0;
    msg->_hold = 0;
    msg->data = NULL;
    msg->len = 0;
    return b;
}

/* Wait until non-empty. Result 0. Fails: GF_ETIMEDOUT, GF_EINTR, GF_EPIPE. */
int gf_ring_wait_readable(gf_arena *a, gf_off ring, int64_t deadline) {
    if (!a || !ring) return GF_EINVAL;
    gf__ring *r = gf__ring_ptr(a, ring);
    return gf__wait_nonempty(r, &r->rd_waiters, deadline);
}
