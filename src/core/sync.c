/*
 * sync.c -- semaphores, events, condition variables and barriers on futex words
 * (see DESIGN.md "Locks and synchronisation").
 *
 * None of these has an owner, so no dead-holder detection: every wait spins briefly
 * (gf__spin_ns) and then sleeps on the futex word until the caller's deadline, returning
 * GF_EINTR when a signal interrupts the sleep.
 *
 * Lost wake-ups. A waiter announces itself (waiters++, seq_cst RMW) and then sleeps in
 * FUTEX_WAIT, which re-reads the word inside the kernel; a waker changes the word (seq_cst
 * RMW) and then reads the waiter count (seq_cst load). Either the waker sees the count, or the
 * waiter's kernel-side read sees the new word: the Dekker pattern, made sound by the seq_cst
 * operations on both sides.
 */
#include "internal.h"

#include <limits.h>

/* The spin budget for a wait ending at `deadline` (0 when it must not block). */
static int64_t gf__spin_budget(int64_t deadline, int64_t now) {
    if (deadline <= now) return 0;
    int64_t spin = gf__spin_ns();
    return deadline - now < spin ? deadline - now : spin;
}

/* ------------------------------------------------------------------------------------------ */
/* Semaphore                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Initialise. Result 0. Fails: GF_EINVAL (value > maxvalue on a bounded semaphore). */
int gf_sem_init(gf_sem *s, uint32_t value, uint32_t maxvalue) {
    if (maxvalue && value > maxvalue) return GF_EINVAL;
    s->maxvalue = maxvalue;
    s->pad = 0;
    atomic_store_explicit(GF_A32(&s->waiters), 0, memory_order_relaxed);
    /* Release: publishes maxvalue with the value. */
    atomic_store_explicit(GF_A32(&s->value), value, memory_order_release);
    return 0;
}

/* Take one unit if there is one. Acquire on success: pairs with the post's RMW, so what the
 * poster wrote before posting is visible. */
static bool gf__sem_trydown(gf_sem *s) {
    uint32_t v = atomic_load_explicit(GF_A32(&s->value), memory_order_relaxed);
    while (v > 0)
        if (atomic_compare_exchange_weak_explicit(GF_A32(&s->value), &v, v - 1,
                                                  memory_order_acquire, memory_order_relaxed))
            return true;
    return false;
}

/* Decrement, waiting while the value is zero. Result 0. Fails: GF_ETIMEDOUT, GF_EINTR. */
int gf_sem_wait(gf_sem *s, int64_t deadline) {
    if (gf__sem_trydown(s)) return 0;
    if (deadline <= 0) return GF_ETIMEDOUT;
    int64_t now = gf_now_ns();
    if (now >= deadline) return GF_ETIMEDOUT;
    if (gf__spin_while_eq(&s->value, 0, gf__spin_budget(deadline, now)) && gf__sem_trydown(s))
        return 0;

    /* seq_cst: the Dekker half of the waiter (see the top of the file). */
    atomic_fetch_add_explicit(GF_A32(&s->waiters), 1, memory_order_seq_cst);
    int r;
    for (;;) {
        if (gf__sem_trydown(s)) { r = 0; break; }
        r = gf__futex_wait(&s->value, 0, deadline);
        if (r == GF_ETIMEDOUT) {
            if (gf__sem_trydown(s)) r = 0;
            break;
        }
        if (r < 0) break; /* GF_EINTR, or an unexpected futex error */
    }
    atomic_fetch_sub_explicit(GF_A32(&s->waiters), 1, memory_order_seq_cst);
    /* A post may have woken us just as a signal or the deadline did: then pass the wake on,
     * or another sleeper could sleep through a positive value. */
    if (r < 0 && atomic_load_explicit(GF_A32(&s->value), memory_order_seq_cst) > 0 &&
        atomic_load_explicit(GF_A32(&s->waiters), memory_order_seq_cst) > 0)
        gf__futex_wake(&s->value, 1);
    return r;
}

/* Increment and wake one waiter. Result 0. Fails: GF_EOVERFLOW (bounded and already at
 * maxvalue, or at UINT32_MAX). */
int gf_sem_post(gf_sem *s) {
    uint32_t max = s->maxvalue ? s->maxvalue : UINT32_MAX;
    uint32_t v = atomic_load_explicit(GF_A32(&s->value), memory_order_relaxed);
    do {
        if (v >= max) return GF_EOVERFLOW;
        /* seq_cst: release for the data the poster publishes, and the Dekker half of the
         * waker (ordered before the load of `waiters`). */
    } while (!atomic_compare_exchange_weak_explicit(GF_A32(&s->value), &v, v + 1,
                                                    memory_order_seq_cst, memory_order_relaxed));
    if (atomic_load_explicit(GF_A32(&s->waiters), memory_order_seq_cst) > 0)
        gf__futex_wake(&s->value, 1);
    return 0;
}

/* The current value (a snapshot). */
uint32_t gf_sem_value(const gf_sem *s) {
    return atomic_load_explicit(GF_A32(&s->value), memory_order_relaxed);
}

/* ------------------------------------------------------------------------------------------ */
/* Event                                                                                       */
/* ------------------------------------------------------------------------------------------ */
/* state: bit 0 = set; bits 1-31 count the set() calls that changed it. From a clear state only
 * a set() changes the word, so a waiter that saw the word clear returns as soon as the word
 * differs: a set() immediately followed by clear() still releases every waiter that was
 * waiting (threading.Event semantics). */

/* Initialise a clear event. Result 0. */
int gf_event_init(gf_event *e) {
    atomic_store_explicit(GF_A32(&e->waiters), 0, memory_order_relaxed);
    atomic_store_explicit(GF_A32(&e->state), 0, memory_order_release);
    return 0;
}

/* Set the flag and wake every waiter. */
void gf_event_set(gf_event *e) {
    uint32_t s = atomic_load_explicit(GF_A32(&e->state), memory_order_relaxed);
    do {
        if (s & 1) return; /* already set: nobody can be asleep on a set word */
        /* seq_cst: release for what the setter wrote before, and the Dekker half of the waker
         * (before the load of `waiters`). */
    } while (!atomic_compare_exchange_weak_explicit(GF_A32(&e->state), &s, (s + 2) | 1,
                                                    memory_order_seq_cst, memory_order_relaxed));
    if (atomic_load_explicit(GF_A32(&e->waiters), memory_order_seq_cst) > 0)
        gf__futex_wake(&e->state, INT32_MAX);
}

/* Clear the flag. */
void gf_event_clear(gf_event *e) {
    /* Release: orders the caller's earlier writes before the clear. */
    atomic_fetch_and_explicit(GF_A32(&e->state), ~1u, memory_order_release);
}

/* 1 if set, 0 if not. Acquire: a caller that sees it set sees what the setter wrote before. */
int gf_event_is_set(const gf_event *e) {
    return atomic_load_explicit(GF_A32(&e->state), memory_order_acquire) & 1;
}

/* Wait until set (or set since the call began). Result 0. Fails: GF_ETIMEDOUT, GF_EINTR. */
int gf_event_wait(gf_event *e, int64_t deadline) {
    /* Acquire: pairs with the set's RMW. */
    uint32_t s = atomic_load_explicit(GF_A32(&e->state), memory_order_acquire);
    if (s & 1) return 0;
    if (deadline <= 0) return GF_ETIMEDOUT;
    int64_t now = gf_now_ns();
    if (now >= deadline) return GF_ETIMEDOUT;
    if (gf__spin_while_eq(&e->state, s, gf__spin_budget(deadline, now))) return 0;

    /* seq_cst: the Dekker half of the waiter. */
    atomic_fetch_add_explicit(GF_A32(&e->waiters), 1, memory_order_seq_cst);
    int r;
    for (;;) {
        if (atomic_load_explicit(GF_A32(&e->state), memory_order_seq_cst) != s) { r = 0; break; }
        r = gf__futex_wait(&e->state, s, deadline);
        if (r == GF_ETIMEDOUT) {
            if (atomic_load_explicit(GF_A32(&e->state), memory_order_acquire) != s) r = 0;
            break;
        }
        if (r < 0) break;
    }
    atomic_fetch_sub_explicit(GF_A32(&e->waiters), 1, memory_order_relaxed);
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Condition variable                                                                          */
/* ------------------------------------------------------------------------------------------ */
/* threading.Condition's algorithm in shared memory: every waiter links a node of its own (an
 * arena block) at the end of the condition's FIFO list and sleeps on the node's own futex word;
 * notify(n) unlinks the n oldest nodes, marks each notified and wakes its sleeper. So exactly
 * min(n, waiting) waiters are released, the oldest first, and a waiter that starts waiting after
 * a notify never takes a wake-up meant for an earlier one.
 *
 * Every change to the list (and to `waiters`) is made holding the mutex the condition is used
 * with: a waiter links its node before it unlocks and unlinks it (after a timeout or a signal)
 * after it has re-locked; a notifier must hold the mutex. So the mutex orders all of them, and
 * a notified waiter frees its node only after it has the mutex back, i.e. after the notifier is
 * done with the node. No lost wake-up: the notifier stores state = 1 before its futex wake, and
 * the waiter's FUTEX_WAIT re-reads the word in the kernel.
 *
 * Crash-safety: each change of the list is one store (append: the last `next` or `head`;
 * unlink: the predecessor's link), so a process killed anywhere, holding the mutex or not,
 * leaves a well-formed list (the mutex's next holder gets GF_EOWNERDEAD). A node whose waiter
 * died is unlinked and freed by the next notify that reaches it, without counting it as woken;
 * `waiters` may then stay off by one (it is only a snapshot for repr). There is no tail
 * pointer (it could not be kept right across a kill with single stores): an append walks the
 * list, O(waiters), which is a handful in practice. */

typedef struct gf__cond_node {
    uint32_t state; /* futex word: 0 waiting, 1 notified (set by the notifier, under the mutex) */
    uint32_t ident; /* the waiter's gf__self_ident, to detect a dead waiter */
    gf_off next;    /* the next (younger) waiter's node, 0 at the end */
} gf__cond_node;

/* Initialise. Result 0. */
int gf_cond_init(gf_cond *c) {
    c->head = 0;
    c->pad = 0;
    atomic_store_explicit(GF_A32(&c->waiters), 0, memory_order_release);
    return 0;
}

/* The link (c->head or a node's next) that points at `off`, or NULL if `off` is not listed.
 * Called holding the mutex. */
static gf_off *gf__cond_link_of(gf_arena *a, gf_cond *c, gf_off off) {
    gf_off *link = &c->head;
    while (*link && *link != off) link = &((gf__cond_node *)gf__ptr(a, *link))->next;
    return *link ? link : NULL;
}

/* Link node `off` at the end of the list (one store commits it). Called holding the mutex. */
static void gf__cond_append(gf_arena *a, gf_cond *c, gf_off off) {
    gf_off *link = &c->head;
    while (*link) link = &((gf__cond_node *)gf__ptr(a, *link))->next;
    /* Relaxed: readers of the list hold the mutex, whose release publishes the node. */
    atomic_store_explicit(GF_A64(link), off, memory_order_relaxed);
    atomic_fetch_add_explicit(GF_A32(&c->waiters), 1, memory_order_relaxed);
}

/* Unlink node `off` if it is listed (one store). Called holding the mutex. */
static void gf__cond_unlink(gf_arena *a, gf_cond *c, gf_off off) {
    gf_off *link = gf__cond_link_of(a, c, off);
    if (!link) return;
    *link = ((gf__cond_node *)gf__ptr(a, off))->next;
    atomic_fetch_sub_explicit(GF_A32(&c->waiters), 1, memory_order_relaxed);
}

/* Sleep until node `n` is notified or `deadline`. Result 0 (notified), GF_ETIMEDOUT, GF_EINTR
 * (the caller re-checks the node under the mutex: a notify that arrived meanwhile counts). */
static int gf__cond_sleep(gf__cond_node *n, int64_t deadline) {
    int64_t now = deadline > 0 ? gf_now_ns() : 0;
    if (now >= deadline) return GF_ETIMEDOUT;
    if (gf__spin_while_eq(&n->state, 0, gf__spin_budget(deadline, now))) return 0;
    for (;;) {
        int r = gf__futex_wait(&n->state, 0, deadline);
        /* Acquire: pairs with the notifier's release store. */
        if (atomic_load_explicit(GF_A32(&n->state), memory_order_acquire) != 0) return 0;
        if (r < 0) return r; /* GF_ETIMEDOUT, GF_EINTR */
    }
}

/* Release `m` (fully, if recursive), wait for a notify, re-acquire `m` at its old depth --
 * always, even after a timeout or a signal. Result 0; GF_EOWNERDEAD when re-acquiring found
 * the mutex's holder dead. Fails: GF_ETIMEDOUT and GF_EINTR (both with `m` held again),
 * GF_EPERM (m not held by the caller), GF_ENOSPC (no memory for the wait node); after those
 * two nothing was done. */
int gf_cond_wait(gf_arena *a, gf_cond *c, gf_mutex *m, int64_t deadline) {
    if (!gf_mutex_is_mine(a, m)) return GF_EPERM;
    gf_off off;
    int r = gf_alloc(a, sizeof(gf__cond_node), &off);
    if (r < 0) return r;
    gf__cond_node *n = gf__ptr(a, off);
    n->state = 0;
    n->ident = gf__self_ident(a);
    n->next = 0;
    gf__cond_append(a, c, off);
    uint32_t depth;
    r = gf_mutex_unlock_all(a, m, &depth);
    if (r < 0) { /* cannot happen: we hold m */
        gf__cond_unlink(a, c, off);
        gf_free(a, off);
        return r;
    }
    r = gf__cond_sleep(n, deadline);

    /* Re-acquire, whatever happened. A signal during the re-acquire is not reported (the
     * caller must get the mutex back, and a notify we consumed must not be lost): CPython
     * handles the pending signal at its next check anyway. */
    int r2;
    do r2 = gf_mutex_lock_depth(a, m, depth, GF_FOREVER);
    while (r2 == GF_EINTR);
    /* Holding m: the node's state is final. Not notified (timeout, signal): unlink it. */
    if (atomic_load_explicit(GF_A32(&n->state), memory_order_acquire) != 0) {
        r = 0;
    } else {
        gf__cond_unlink(a, c, off);
        if (r == 0) r = GF_ETIMEDOUT; /* cannot happen: sleep returns 0 only when notified */
    }
    gf_free(a, off);
    if (r2 == GF_EOWNERDEAD) return GF_EOWNERDEAD;
    return r2 < 0 ? r2 : r; /* r2 < 0 cannot happen: FOREVER, depth from unlock_all */
}

/* Wake up the n oldest waiters (UINT32_MAX: all); the caller holds `m`, the mutex the waiters
 * use. Nodes of waiters that died are unlinked and freed on the way, not counted. Result: the
 * number of waiters released (0..n). Fails: GF_EPERM (m not held by the caller). */
int gf_cond_notify(gf_arena *a, gf_cond *c, gf_mutex *m, uint32_t n) {
    if (!gf_mutex_is_mine(a, m)) return GF_EPERM;
    uint32_t woken = 0;
    while (woken < n && c->head) {
        gf_off off = c->head;
        gf__cond_node *node = gf__ptr(a, off);
        c->head = node->next; /* unlinked: one store */
        atomic_fetch_sub_explicit(GF_A32(&c->waiters), 1, memory_order_relaxed);
        if (!gf__ident_alive(a, node->ident)) {
            gf_free(a, off); /* its waiter died: nobody will */
            continue;
        }
        /* Release: the notifier's writes before notify are visible to the woken waiter. */
        atomic_store_explicit(GF_A32(&node->state), 1, memory_order_release);
        gf__futex_wake(&node->state, 1);
        woken++;
    }
    return (int)woken;
}

/* ------------------------------------------------------------------------------------------ */
/* Barrier                                                                                     */
/* ------------------------------------------------------------------------------------------ */
/* All of the barrier's state is one futex word, so that an arrival is bound atomically to its
 * generation:
 *   bits 0-15   arrivals in the current generation
 *   bits 16-29  generation (wraps; changes only when a generation completes)
 *   bit 30      RESETTING: reset() while waiters were present; they leave with GF_EPIPE, new
 *               arrivals wait; the last one to leave returns the barrier to fresh
 *   bit 31      BROKEN: timeout or abort(); every wait fails with GF_EPIPE until reset()
 * (threading.Barrier's states: filling, resetting, broken.) A waiter leaving without
 * completing (GF_EPIPE, GF_ETIMEDOUT, GF_EINTR) takes its arrival back. */
#define GF__B_COUNT 0x0000ffffu
#define GF__B_GEN 0x3fff0000u
#define GF__B_GEN_ONE 0x00010000u
#define GF__B_RESETTING 0x40000000u
#define GF__B_BROKEN 0x80000000u
#define GF__B_MAX_PARTIES 0xffffu

static inline _Atomic uint32_t *gf__bstate(const gf_barrier *b) { return GF_A32(&b->state); }

/* Initialise for `parties` arrivals. Result 0. Fails: GF_EINVAL (0 or more than 65535). */
int gf_barrier_init(gf_barrier *b, uint32_t parties) {
    if (parties == 0 || parties > GF__B_MAX_PARTIES) return GF_EINVAL;
    b->parties = parties;
    b->pad[0] = b->pad[1] = 0;
    atomic_store_explicit(gf__bstate(b), 0, memory_order_release);
    return 0;
}

/* Take back the arrival of a waiter of generation `gen` that gives up because of `why`
 * (GF_ETIMEDOUT breaks the barrier). Result: `idx` if the generation completed meanwhile
 * (success wins), else GF_EPIPE if the barrier is broken or resetting, else `why`. */
static int gf__barrier_leave(gf_barrier *b, uint32_t gen, int idx, int why) {
    _Atomic uint32_t *sp = gf__bstate(b);
    uint32_t cur = atomic_load_explicit(sp, memory_order_acquire);
    for (;;) {
        if ((cur & GF__B_GEN) != gen) return idx;
        uint32_t ns = cur - 1; /* our arrival is counted: the count is >= 1 */
        int res = why;
        if (cur & (GF__B_BROKEN | GF__B_RESETTING)) {
            if (why != GF_ETIMEDOUT) res = GF_EPIPE;
        } else if (why == GF_ETIMEDOUT) {
            ns |= GF__B_BROKEN;
        }
        if ((ns & GF__B_RESETTING) && (ns & GF__B_COUNT) == 0) ns &= GF__B_GEN; /* reset done */
        /* acq_rel: acquire the completer's state if it raced us; release our withdrawal. */
        if (atomic_compare_exchange_weak_explicit(sp, &cur, ns, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            if (ns != cur - 1) gf__futex_wake(&b->state, INT32_MAX); /* broke it / reset done */
            return res;
        }
    }
}

/* Wait for `parties` arrivals. Result: the arrival index 0..parties-1. Fails: GF_ETIMEDOUT (the
 * barrier is now broken), GF_EINTR (the caller's arrival is withdrawn; call again), GF_EPIPE
 * (broken, or reset while waiting). */
int gf_barrier_wait(gf_barrier *b, int64_t deadline) {
    _Atomic uint32_t *sp = gf__bstate(b);
    uint32_t parties = b->parties;
    /* Acquire (here and on the CASes): a completing generation publishes every arrival's
     * writes to every waiter (each arrival's CAS is acq_rel, forming a release sequence). */
    uint32_t s = atomic_load_explicit(sp, memory_order_acquire);
    uint32_t gen;
    int idx;
    for (;;) {
        if (s & GF__B_BROKEN) return GF_EPIPE;
        if (s & GF__B_RESETTING) { /* wait for the old waiters to drain */
            int r = gf__futex_wait(&b->state, s, deadline);
            if (r == GF_EINTR || r == GF_ETIMEDOUT) return r;
            s = atomic_load_explicit(sp, memory_order_acquire);
            continue;
        }
        idx = (int)(s & GF__B_COUNT);
        if ((uint32_t)idx + 1 >= parties) {
            uint32_t ns = (s + GF__B_GEN_ONE) & GF__B_GEN; /* next generation, nobody arrived */
            if (atomic_compare_exchange_weak_explicit(sp, &s, ns, memory_order_acq_rel,
                                                      memory_order_acquire)) {
                if (parties > 1) gf__futex_wake(&b->state, INT32_MAX);
                return idx;
            }
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(sp, &s, s + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            gen = s & GF__B_GEN;
            break;
        }
    }

    /* Waiting: done when the generation moves on; give up when broken or resetting. Other
     * arrivals change the word too: they only make us re-check. */
    const uint32_t watch = GF__B_GEN | GF__B_BROKEN | GF__B_RESETTING;
    int64_t now = deadline > 0 ? gf_now_ns() : 0;
    int64_t spin = gf__spin_budget(deadline, now), end = 0;
    for (unsigned i = 1; spin > 0; i++) {
        uint32_t cur = atomic_load_explicit(sp, memory_order_acquire);
        if ((cur & watch) != gen) break;
        if ((i & 63) == 0) {
            int64_t t = gf_now_ns();
            if (!end) end = t + spin;
            else if (t >= end) break;
        }
        gf__cpu_relax();
    }
    for (;;) {
        uint32_t cur = atomic_load_explicit(sp, memory_order_acquire);
        if ((cur & GF__B_GEN) != gen) return idx;
        if (cur & (GF__B_BROKEN | GF__B_RESETTING)) return gf__barrier_leave(b, gen, idx, GF_EPIPE);
        int r = gf__futex_wait(&b->state, cur, deadline);
        if (r == GF_EINTR || r == GF_ETIMEDOUT) return gf__barrier_leave(b, gen, idx, r);
        if (r < 0) return gf__barrier_leave(b, gen, idx, r);
    }
}

/* Break the barrier: current and future waits fail with GF_EPIPE until gf_barrier_reset. */
void gf_barrier_abort(gf_barrier *b) {
    _Atomic uint32_t *sp = gf__bstate(b);
    uint32_t cur = atomic_load_explicit(sp, memory_order_relaxed);
    /* acq_rel: an ordinary state change like any other. Clearing RESETTING keeps the barrier
     * broken when the last old waiter leaves (threading.Barrier does the same). */
    while (!atomic_compare_exchange_weak_explicit(sp, &cur,
                                                  (cur | GF__B_BROKEN) & ~GF__B_RESETTING,
                                                  memory_order_acq_rel, memory_order_relaxed)) {
    }
    gf__futex_wake(&b->state, INT32_MAX);
}

/* Return to the empty, unbroken state. Current waiters fail with GF_EPIPE; arrivals that come
 * before they have all left wait for them. */
void gf_barrier_reset(gf_barrier *b) {
    _Atomic uint32_t *sp = gf__bstate(b);
    uint32_t cur = atomic_load_explicit(sp, memory_order_relaxed), ns;
    do {
        ns = (cur & GF__B_COUNT) ? (cur & (GF__B_GEN | GF__B_COUNT)) | GF__B_RESETTING
                                 : (cur & GF__B_GEN);
    } while (!atomic_compare_exchange_weak_explicit(sp, &cur, ns, memory_order_acq_rel,
                                                    memory_order_relaxed));
    gf__futex_wake(&b->state, INT32_MAX);
}

/* Arrivals waiting in the current generation (0 while broken or resetting). */
uint32_t gf_barrier_n_waiting(const gf_barrier *b) {
    uint32_t s = atomic_load_explicit(gf__bstate(b), memory_order_relaxed);
    return (s & (GF__B_BROKEN | GF__B_RESETTING)) ? 0 : (s & GF__B_COUNT);
}
