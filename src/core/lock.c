/*
 * lock.c -- gf_mutex: a process-shared futex mutex that survives the death of its holder
 * (see DESIGN.md "Locks and synchronisation").
 *
 * The lock word is 0 when free, else the holder's process identity (gf__self_ident: 31 bits,
 * never 0) plus GF__MUTEX_WAITERS when somebody may be asleep on the word. The protocol is
 * Drepper's mutex3 ("Futexes are tricky") with the holder's identity in place of the value 1:
 *
 *   lock:   CAS 0 -> ident. Failing that, spin for gf__spin_ns() re-trying the CAS (a cache-line
 *           hand-off is ~0.1 us, a futex wake ~45 us on our VM). Failing that, set the waiters
 *           bit and sleep while the word is unchanged. A thread that has slept acquires with
 *           the waiters bit set (it cannot know whether others still sleep), so no wake is
 *           ever lost.
 *   unlock: exchange 0; if the old word had the waiters bit, wake one sleeper.
 *
 * Sleeps are sliced (GF_SLICE_NS). Once before the first sleep and after every slice that
 * timed out, a waiter asks the arena whether the holder is still alive; if it died, the waiter
 * takes the lock over with a CAS from the word it saw (so that only one waiter wins, and a
 * word that changed meanwhile is left alone) and returns GF_EOWNERDEAD: it holds the lock.
 *
 * Plain mutexes may be released by any process (multiprocessing.Lock semantics). Recursive
 * ones (GF_MUTEX_RECURSIVE) also record the holding thread and a depth; those two fields are
 * only written by the holder, and read with relaxed loads by threads that compare them with
 * their own tid (a thread always sees its own latest store, so a stale value can never look
 * like "mine").
 */
#include "internal.h"

#define GF__W GF__MUTEX_WAITERS

static inline _Atomic uint32_t *gf__word(const gf_mutex *m) { return GF_A32(&m->word); }
static inline uint32_t gf__owner_of(uint32_t w) { return w & ~GF__W; }
static inline bool gf__recursive(const gf_mutex *m) { return m->flags & GF_MUTEX_RECURSIVE; }

/* Record the calling thread as the (first-level) holder of a recursive mutex it just acquired.
 * Relaxed: only the holder writes these, and the acquiring CAS already ordered us after the
 * previous holder's release. */
static inline void gf__mutex_took(gf_mutex *m) {
    if (gf__recursive(m)) {
        atomic_store_explicit(GF_A32(&m->owner_tid), gf__tid(), memory_order_relaxed);
        atomic_store_explicit(GF_A32(&m->depth), 1, memory_order_relaxed);
    }
}

/* 1 if the calling thread holds recursive mutex `m` (ident `self`). */
static inline bool gf__rec_mine(const gf_mutex *m, uint32_t self) {
    /* Relaxed: see the header comment; the word and owner_tid both name us only if we stored
     * them ourselves. */
    return gf__owner_of(atomic_load_explicit(gf__word(m), memory_order_relaxed)) == self &&
           atomic_load_explicit(GF_A32(&m->owner_tid), memory_order_relaxed) == gf__tid();
}

/* Initialise an unlocked mutex. Result 0. Fails: GF_EINVAL (unknown flags). */
int gf_mutex_init(gf_mutex *m, uint32_t flags) {
    if (flags & ~GF_MUTEX_RECURSIVE) return GF_EINVAL;
    m->flags = flags;
    atomic_store_explicit(GF_A32(&m->owner_tid), 0, memory_order_relaxed);
    atomic_store_explicit(GF_A32(&m->depth), 0, memory_order_relaxed);
    /* Release: whoever sees the word initialised also sees the other fields. */
    atomic_store_explicit(gf__word(m), 0, memory_order_release);
    return 0;
}

/* The contended path of gf_mutex_lock: spin, then sliced sleeps with dead-owner checks.
 * Result: 0 or GF_EOWNERDEAD (acquired). Fails: GF_ETIMEDOUT, GF_EINTR. */
static int gf__mutex_lock_slow(gf_arena *a, gf_mutex *m, uint32_t ident, int64_t deadline) {
    _Atomic uint32_t *wp = gf__word(m);
    int64_t now = deadline > 0 ? gf_now_ns() : 0;

    /* Spin: re-try the CAS whenever the word reads free. Relaxed loads (we only act on a
     * successful acquire CAS); the clock is read every 64 pauses. */
    int64_t spin = gf__spin_ns();
    if (spin > 0 && now < deadline) {
        int64_t end = deadline - now > spin ? now + spin : deadline;
        for (unsigned i = 1;; i++) {
            uint32_t w = atomic_load_explicit(wp, memory_order_relaxed);
            /* Acquire on success: pairs with the release exchange of the previous unlock. */
            if (w == 0 && atomic_compare_exchange_weak_explicit(wp, &w, ident, memory_order_acquire,
                                                                memory_order_relaxed)) {
                gf__mutex_took(m);
                return 0;
            }
            if ((i & 63) == 0 && gf_now_ns() >= end) break;
            gf__cpu_relax();
        }
    }

    bool check_owner = true; /* before the first sleep, and after each slice */
    bool slept = false;      /* once we have slept, acquire with the waiters bit set */
    int64_t since = now;     /* for the interrupt slice (gf_set_interrupt_slice) */
    for (;;) {
        uint32_t w = atomic_load_explicit(wp, memory_order_relaxed);
        if (w == 0) {
            /* Acquire: pairs with the release exchange of the previous unlock. */
            if (atomic_compare_exchange_strong_explicit(wp, &w, ident | (slept ? GF__W : 0),
                                                        memory_order_acquire,
                                                        memory_order_relaxed)) {
                gf__mutex_took(m);
                return 0;
            }
            continue;
        }
        if (check_owner) {
            check_owner = false;
            if (!gf__ident_alive(a, gf__owner_of(w))) {
                /* Take over from the dead holder. Keep the waiters bit if it was set: others
                 * may sleep. Acquire: pairs with whatever release the dead holder's writes
                 * reached (the data may be half-updated: that is what EOWNERDEAD says). A
                 * failed CAS means the word changed (unlocked, or another waiter took over):
                 * start again. */
                if (atomic_compare_exchange_strong_explicit(wp, &w, ident | (w & GF__W),
                                                            memory_order_acquire,
                                                            memory_order_relaxed)) {
                    gf__mutex_took(m);
                    return GF_EOWNERDEAD;
                }
                continue;
            }
        }
        if (deadline <= 0) return GF_ETIMEDOUT;
        now = gf_now_ns();
        if (now >= deadline) return GF_ETIMEDOUT;
        if (!(w & GF__W)) {
            /* Announce a sleeper. Relaxed: the futex syscall orders the sleep itself; a failed
             * CAS (unlocked or changed hands) re-reads. */
            if (!atomic_compare_exchange_strong_explicit(wp, &w, w | GF__W, memory_order_relaxed,
                                                         memory_order_relaxed))
                continue;
            w |= GF__W;
        }
        int64_t until = deadline - now > GF_SLICE_NS ? now + GF_SLICE_NS : deadline;
        int r = gf__futex_wait(&m->word, w, until);
        slept = true;
        if (r == GF_EINTR) return GF_EINTR;
        /* Our death-check slices are shorter than the interrupt slice: honour it here. */
        if (gf__interrupt_due(since)) return GF_EINTR;
        if (r == GF_ETIMEDOUT) {
            if (until == deadline) {
                /* One last try, so a lock freed right at the deadline is not missed. */
                uint32_t z = 0;
                if (atomic_compare_exchange_strong_explicit(wp, &z, ident | GF__W,
                                                            memory_order_acquire,
                                                            memory_order_relaxed)) {
                    gf__mutex_took(m);
                    return 0;
                }
                return GF_ETIMEDOUT;
            }
            check_owner = true;
        } else if (r < 0) {
            return r;
        }
    }
}

/* Acquire `m` by `deadline`. Result: 0; GF_EOWNERDEAD = acquired from a holder that died (the
 * caller holds the lock). Fails: GF_ETIMEDOUT, GF_EINTR (retry with the same deadline),
 * GF_EAGAIN (recursive depth overflow), GF_EINVAL (the arena handle is detached: no
 * identity to lock with). */
int gf_mutex_lock(gf_arena *a, gf_mutex *m, int64_t deadline) {
    uint32_t ident = gf__self_ident(a);
    if (GF_UNLIKELY(ident == 0)) return GF_EINVAL;
    uint32_t w = 0;
    /* Fast path. Acquire: pairs with the release exchange of the previous unlock. */
    if (GF_LIKELY(atomic_compare_exchange_strong_explicit(gf__word(m), &w, ident,
                                                          memory_order_acquire,
                                                          memory_order_relaxed))) {
        gf__mutex_took(m);
        return 0;
    }
    if (gf__recursive(m) && gf__owner_of(w) == ident &&
        atomic_load_explicit(GF_A32(&m->owner_tid), memory_order_relaxed) == gf__tid()) {
        /* Re-entry by the holder: only we write depth while we hold it (relaxed). */
        uint32_t d = atomic_load_explicit(GF_A32(&m->depth), memory_order_relaxed);
        if (d == UINT32_MAX) return GF_EAGAIN;
        atomic_store_explicit(GF_A32(&m->depth), d + 1, memory_order_relaxed);
        return 0;
    }
    return gf__mutex_lock_slow(a, m, ident, deadline);
}

/* Release the word and wake one sleeper if any. Result 0. Fails: GF_EOVERFLOW (was free). */
static int gf__mutex_release(gf_mutex *m) {
    /* Release: publishes the critical section to the next acquirer's acquire CAS. */
    uint32_t old = atomic_exchange_explicit(gf__word(m), 0, memory_order_release);
    if (old == 0) return GF_EOVERFLOW;
    if (old & GF__W) gf__futex_wake(&m->word, 1);
    return 0;
}

/* Release `m`. Result 0. Fails: GF_EOVERFLOW (plain and not locked), GF_EPERM (recursive and
 * not held by the calling thread). */
int gf_mutex_unlock(gf_arena *a, gf_mutex *m) {
    if (gf__recursive(m)) {
        if (!gf__rec_mine(m, gf__self_ident(a))) return GF_EPERM;
        uint32_t d = atomic_load_explicit(GF_A32(&m->depth), memory_order_relaxed);
        if (d > 1) {
            atomic_store_explicit(GF_A32(&m->depth), d - 1, memory_order_relaxed);
            return 0;
        }
        /* Relaxed: ordered before the release exchange below. */
        atomic_store_explicit(GF_A32(&m->owner_tid), 0, memory_order_relaxed);
        atomic_store_explicit(GF_A32(&m->depth), 0, memory_order_relaxed);
    }
    return gf__mutex_release(m);
}

/* 1 if locked (by anyone), 0 if not. A snapshot (relaxed load). */
int gf_mutex_is_locked(const gf_mutex *m) {
    return atomic_load_explicit(gf__word(m), memory_order_relaxed) != 0;
}

/* 1 if held by the calling thread (recursive) or by this process (plain), else 0. */
int gf_mutex_is_mine(gf_arena *a, const gf_mutex *m) {
    uint32_t self = gf__self_ident(a);
    if (gf__recursive(m)) return gf__rec_mine(m, self);
    return gf__owner_of(atomic_load_explicit(gf__word(m), memory_order_relaxed)) == self;
}

/* Release fully, for Condition.wait. *depth gets the depth to restore with
 * gf_mutex_lock_depth (1 for a plain mutex). Result 0. Fails as gf_mutex_unlock. */
int gf_mutex_unlock_all(gf_arena *a, gf_mutex *m, uint32_t *depth) {
    if (gf__recursive(m)) {
        if (!gf__rec_mine(m, gf__self_ident(a))) return GF_EPERM;
        *depth = atomic_load_explicit(GF_A32(&m->depth), memory_order_relaxed);
        atomic_store_explicit(GF_A32(&m->owner_tid), 0, memory_order_relaxed);
        atomic_store_explicit(GF_A32(&m->depth), 0, memory_order_relaxed);
        return gf__mutex_release(m);
    }
    *depth = 1;
    return gf__mutex_release(m);
}

/* Acquire and add `depth` levels (restores what gf_mutex_unlock_all saved; a plain mutex
 * ignores depth). Result: 0 or GF_EOWNERDEAD as gf_mutex_lock. Fails: GF_EINVAL (depth 0),
 * GF_ETIMEDOUT, GF_EINTR, GF_EAGAIN (depth overflow: then the lock is not taken). */
int gf_mutex_lock_depth(gf_arena *a, gf_mutex *m, uint32_t depth, int64_t deadline) {
    if (depth == 0) return GF_EINVAL;
    int r = gf_mutex_lock(a, m, deadline);
    if ((r < 0 && r != GF_EOWNERDEAD) || !gf__recursive(m) || depth == 1) return r;
    uint32_t d = atomic_load_explicit(GF_A32(&m->depth), memory_order_relaxed);
    if (d - 1 > UINT32_MAX - depth) {
        gf_mutex_unlock(a, m);
        return GF_EAGAIN;
    }
    atomic_store_explicit(GF_A32(&m->depth), d - 1 + depth, memory_order_relaxed);
    return r;
}
