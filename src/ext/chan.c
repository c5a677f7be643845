/*
 * chan.c -- the channel block of a Ring handle (a GF_OBJ_RAW object, `gf_chan`): what a ring
 * does not hold -- JoinableQueue's unfinished-task counter and the futex word join() sleeps
 * on; for pipes, the holders of each end ({process ident, handle count} words plus a count of
 * handles in transit), from which a receiver learns that its peer is gone.
 */
#include "ring_handle.h"

#include <string.h>


/* Create a channel block (refs = 1). Result 0 or a core error. */
int gf__chan_create(gf_state *st, gf_off *out) {
    int rc = gf_obj_new(st->arena, GF_OBJ_RAW, sizeof(gf_chan), out);
    if (rc < 0) return rc;
    gf_chan *c = gf__chan_of(st, *out);
    memset((char *)c + sizeof(gf_obj), 0, sizeof *c - sizeof(gf_obj));
    c->magic = CHAN_MAGIC;
    return 0;
}

/* Validate a channel offset received from another process. Result 0 or GF_EBADMSG. */
int gf__chan_check(gf_state *st, gf_off off) {
    if (gf_obj_check(st->arena, off, GF_OBJ_RAW) < 0 ||
        gf_arena_check_block(st->arena, off, sizeof(gf_chan)) < 0)
        return GF_EBADMSG;
    return gf__chan_of(st, off)->magic == CHAN_MAGIC ? 0 : GF_EBADMSG;
}

/* Holder words: all seq_cst -- rare operations (create, close, fork, pickling) whose
 * interleavings with the liveness check must be simple to reason about. */
#define HW_IDENT(w) ((uint32_t)((w) >> 32))
#define HW_COUNT(w) ((uint32_t)(w))

/* Count one more handle of `end` held by this process. If the table is full the handle is
 * counted as "in transit" forever (the end then never reads as abandoned: safe, not exact). */
void gf__chan_holders_add(gf_state *st, gf_chan *c, int end) {
    gf_chan_end *e = &c->ends[end];
    uint32_t me = gf__self_ident(st->arena);
    for (int i = 0; i < CHAN_HOLDERS; i++) {
        uint64_t w = atomic_load_explicit(GF_A64(&e->slot[i]), memory_order_seq_cst);
        while (HW_IDENT(w) == me && HW_COUNT(w) > 0) {
            if (atomic_compare_exchange_weak_explicit(GF_A64(&e->slot[i]), &w, w + 1,
                                                      memory_order_seq_cst,
                                                      memory_order_seq_cst))
                return;
        }
    }
    for (int i = 0; i < CHAN_HOLDERS; i++) {
        uint64_t w = atomic_load_explicit(GF_A64(&e->slot[i]), memory_order_seq_cst);
        if (w == 0 || HW_COUNT(w) == 0 || !gf__ident_alive(st->arena, HW_IDENT(w))) {
            uint64_t nw = (uint64_t)me << 32 | 1u;
            if (atomic_compare_exchange_strong_explicit(GF_A64(&e->slot[i]), &w, nw,
                                                        memory_order_seq_cst,
                                                        memory_order_seq_cst))
                return;
        }
    }
    atomic_fetch_add_explicit(GF_A64(&e->pending), 1, memory_order_seq_cst);
}

/* Count one handle of `end` less for this process. */
void gf__chan_holders_remove(gf_state *st, gf_chan *c, int end) {
    gf_chan_end *e = &c->ends[end];
    uint32_t me = gf__self_ident(st->arena);
    for (int i = 0; i < CHAN_HOLDERS; i++) {
        uint64_t w = atomic_load_explicit(GF_A64(&e->slot[i]), memory_order_seq_cst);
        while (HW_IDENT(w) == me && HW_COUNT(w) > 0) {
            uint64_t nw = HW_COUNT(w) == 1 ? 0 : w - 1;
            if (atomic_compare_exchange_weak_explicit(GF_A64(&e->slot[i]), &w, nw,
                                                      memory_order_seq_cst,
                                                      memory_order_seq_cst))
                return;
        }
    }
}

/* 1 if some live process holds (or is about to hold) a handle of `end`, else 0. */
int gf__chan_holders_alive(gf_state *st, gf_chan *c, int end) {
    gf_chan_end *e = &c->ends[end];
    if (atomic_load_explicit(GF_A64(&e->pending), memory_order_seq_cst) > 0) return 1;
    for (int i = 0; i < CHAN_HOLDERS; i++) {
        uint64_t w = atomic_load_explicit(GF_A64(&e->slot[i]), memory_order_seq_cst);
        if (HW_COUNT(w) > 0 && gf__ident_alive(st->arena, HW_IDENT(w))) return 1;
    }
    return 0;
}

void gf__chan_pending_add(gf_chan *c, int end, int64_t d) {
    /* seq_cst: see the holder words. */
    atomic_fetch_add_explicit(GF_A64(&c->ends[end].pending), (uint64_t)d, memory_order_seq_cst);
}

/* JoinableQueue: one task less; wakes join() at zero. Result 0, or -1 if already zero. */
int gf__chan_tasks_done(gf_chan *c, uint32_t n) {
    uint32_t v = atomic_load_explicit(GF_A32(&c->unfinished), memory_order_seq_cst);
    do {
        if (v < n) return -1;
        /* seq_cst: ordered before the tasks_seq bump that join() compares in the kernel. */
    } while (!atomic_compare_exchange_weak_explicit(GF_A32(&c->unfinished), &v, v - n,
                                                    memory_order_seq_cst, memory_order_seq_cst));
    if (v == n) {
        atomic_fetch_add_explicit(GF_A32(&c->tasks_seq), 1, memory_order_seq_cst);
        gf__futex_wake(&c->tasks_seq, INT32_MAX);
    }
    return 0;
}

void gf__chan_tasks_add(gf_chan *c, uint32_t n) {
    /* relaxed: the put that follows commits with a release store that the consumer acquires
     * before it can call task_done() for this item. */
    atomic_fetch_add_explicit(GF_A32(&c->unfinished), n, memory_order_relaxed);
}
