/*
 * futex.c -- time, futex sleep/wake, and the bounded spin that precedes every sleep.
 */
#include "internal.h"

#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <sched.h>
#include <unistd.h>

int64_t gf_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Deadline for a relative timeout; negative = forever; saturates at GF_FOREVER. */
int64_t gf_deadline_after(int64_t timeout_ns) {
    if (timeout_ns < 0) return GF_FOREVER;
    int64_t now = gf_now_ns();
    if (timeout_ns > GF_FOREVER - now) return GF_FOREVER;
    return now + timeout_ns;
}

/* The spin budget: GILFREE_SPIN_NS if set (0 disables spinning), else the default. Read once;
 * a benign race between threads computing the same value. */
int64_t gf__spin_ns(void) {
    static _Atomic int64_t cached = -1;
    int64_t v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (GF_LIKELY(v >= 0)) return v;
    const char *s = getenv("GILFREE_SPIN_NS");
    v = s ? strtoll(s, NULL, 10) : GF_SPIN_NS_DEFAULT;
    if (v < 0) v = 0;
    if (v > 10000000) v = 10000000;
    atomic_store_explicit(&cached, v, memory_order_relaxed);
    return v;
}

/* The interrupt slice (gf_set_interrupt_slice): 0 = blocking calls return GF_EINTR only for
 * real signals. Relaxed: a plain configuration value. */
static _Atomic int64_t gf__islice;

void gf_set_interrupt_slice(int64_t ns) {
    atomic_store_explicit(&gf__islice, ns > 0 ? ns : 0, memory_order_relaxed);
}

/* See internal.h. */
int64_t gf__interrupt_slice(void) {
    return atomic_load_explicit(&gf__islice, memory_order_relaxed);
}

/* The time a sleep may last: `deadline`, or sooner when an interrupt slice is set (then
 * *sliced = true: waking at that time must be reported as GF_EINTR, not as a timeout). */
int64_t gf__sleep_until(int64_t deadline, bool *sliced) {
    int64_t slice = atomic_load_explicit(&gf__islice, memory_order_relaxed);
    *sliced = false;
    if (slice > 0) {
        int64_t now = gf_now_ns();
        if (now < deadline && deadline - now > slice) {
            *sliced = true;
            return now + slice;
        }
    }
    return deadline;
}

/* True when an interrupt slice is set and `since` is at least one slice ago. */
bool gf__interrupt_due(int64_t since) {
    int64_t slice = atomic_load_explicit(&gf__islice, memory_order_relaxed);
    return slice > 0 && gf_now_ns() - since >= slice;
}

/* Sleep while *addr == expected. FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, so
 * a retry after EINTR keeps the caller's deadline exactly. Result: 0 (woken, or the word had
 * already changed: EAGAIN), GF_ETIMEDOUT, GF_EINTR (a signal, or the interrupt slice ended). */
int gf__futex_wait(uint32_t *addr, uint32_t expected, int64_t deadline) {
    bool sliced;
    deadline = gf__sleep_until(deadline, &sliced);
    struct timespec ts, *tsp = NULL;
    if (deadline != GF_FOREVER) {
        if (deadline <= gf_now_ns()) return sliced ? GF_EINTR : GF_ETIMEDOUT;
        ts.tv_sec = deadline / 1000000000;
        ts.tv_nsec = deadline % 1000000000;
        tsp = &ts;
    }
    long r = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, expected, tsp, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    if (r == 0) return 0;
    switch (errno) {
    case EAGAIN: return 0;
    case ETIMEDOUT: return sliced ? GF_EINTR : GF_ETIMEDOUT;
    case EINTR: return GF_EINTR;
    default: return gf__errno_code(errno);
    }
}

/* Wake up to n sleepers on addr. Result: how many were woken. */
int gf__futex_wake(uint32_t *addr, int n) {
    long r = syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
    return r < 0 ? 0 : (int)r;
}

/* Spin while *addr == expected, for at most spin_ns. The clock is read every 64 pauses
 * only (a vDSO call is ~20 ns, a pause ~10-40 ns). Acquire load: a writer's release store of
 * the word publishes what it wrote before. */
bool gf__spin_while_eq(uint32_t *addr, uint32_t expected, int64_t spin_ns) {
    if (spin_ns <= 0) return atomic_load_explicit(GF_A32(addr), memory_order_acquire) != expected;
    int64_t end = 0;
    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(GF_A32(addr), memory_order_acquire) != expected) return true;
        if ((i & 63) == 0) {
            int64_t now = gf_now_ns();
            if (end == 0) end = now + spin_ns;
            else if (now >= end) return false;
            /* The waited-for process may be waiting for this CPU (more runnable processes
             * than CPUs): yield now and then instead of burning the whole budget. Measured by
             * h7 under load: one-at-a-time pool round trip 64 us -> 8 us median. */
            if ((i & 255) == 0 && i) sched_yield();
        }
        gf__cpu_relax();
    }
}
