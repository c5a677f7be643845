/*
 * arena_proc.c -- the arena's process table: one slot per attached process, holding its life
 * lock (a robust mutex the owner holds while attached, so that the kernel releases it when the
 * process dies, SIGKILL included), its identity (slot | generation << 12) and the check that
 * an identity is still alive; the holder thread for processes attached from a thread other than
 * the main one; cached kernel thread ids.
 */
#include "arena_internal.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---------------------------------------------------------------- thread ids */

static __thread uint32_t gf__tid_cache;
pid_t gf__pid_cache;
static pthread_once_t gf__atfork_once = PTHREAD_ONCE_INIT;

/* After fork the only thread of the child has a new tid, the process a new pid. */
static void gf__atfork_child(void) {
    gf__tid_cache = 0;
    __atomic_store_n(&gf__pid_cache, 0, __ATOMIC_RELAXED);
}
static int gf__atfork_done; /* the handler is registered: the pid may be cached */
static void gf__atfork_register(void) {
    if (pthread_atfork(NULL, NULL, gf__atfork_child) == 0)
        __atomic_store_n(&gf__atfork_done, 1, __ATOMIC_RELEASE);
}

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

/* gf__pid's slow path (arena_internal.h): getpid() without a system call on the hot paths
 * (glibc does not cache it). The at-fork handler that clears the cache is registered by the
 * first gf__tid(), which every attach calls; until then nothing is cached. Result: the pid. */
pid_t gf__pid_slow(void) {
    pid_t p = getpid();
    if (__atomic_load_n(&gf__atfork_done, __ATOMIC_ACQUIRE))
        __atomic_store_n(&gf__pid_cache, p, __ATOMIC_RELAXED);
    return p;
}

/* ---------------------------------------------------------------- fork hand-over */

/* The calling thread's armed fork (gf_arena_fork_arm). Thread-local: the only thread of a
 * forked child is a copy of the thread that forked, so the child reads what that thread
 * armed, and a fork from any other thread finds nothing armed. */
static __thread struct {
    gf_arena *a;
    void (*cb)(gf_arena *, void *);
    void *arg;
} gf__armed;
static pthread_once_t gf__fork_once = PTHREAD_ONCE_INIT;
static int gf__fork_ready;

static void gf__fork_parent(void) { gf__armed.a = NULL; }

/* In the child, inside fork(): attach, then let the armer record what it handed over. Runs
 * after the thread caches' and the pid cache's handlers (registered first, gf__fork_init);
 * the caches are cleared here too in case an earlier handler of the application forked. */
static void gf__fork_child(void) {
    gf_arena *a = gf__armed.a;
    if (!a) return;
    gf__armed.a = NULL;
    gf__atfork_child();
    if (gf_arena_after_fork_child(a) == 0 && gf__armed.cb) gf__armed.cb(a, gf__armed.arg);
}

static void gf__fork_init(void) {
    (void)gf__tid(); /* the pid/tid caches' handler first ... */
    gf__tc_ready();  /* ... and the thread caches' */
    if (pthread_atfork(NULL, gf__fork_parent, gf__fork_child) == 0) gf__fork_ready = 1;
}

/* Result 0. Fails: GF_ENOMEM (pthread_atfork could not register the handlers). */
int gf_arena_fork_arm(gf_arena *a, void (*child_cb)(gf_arena *, void *), void *arg) {
    pthread_once(&gf__fork_once, gf__fork_init);
    if (!gf__fork_ready) return GF_ENOMEM;
    gf__armed.cb = child_cb;
    gf__armed.arg = arg;
    gf__armed.a = a;
    return 0;
}

void gf_arena_fork_disarm(void) { gf__armed.a = NULL; }

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
        int dead = r == 0 && h->slots[i].state == GF__SLOT_DEAD;
        if (r == EOWNERDEAD) {
            /* Its owner died without detaching: the slot is ours now. */
            pthread_mutex_consistent(m);
            r = 0;
            dead = 1;
        }
        if (r == 0) {
            gf__slot_take(a, i);
            if (dead) gf__slot_release(a, i); /* what the dead owner held */
            return 0;
        }
    }
    /* Extend the table under the allocator lock. The new slot's mutex is initialised and
     * locked before hwm publishes it, so nobody else can take it first. */
    gf__alloc_lock(a);
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
        /* The owner died: its holdings wait for gf_arena_reclaim or the next attach. */
        s->state = GF__SLOT_DEAD;
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
int gf__helper_start(pthread_t *t, void *(*fn)(void *), void *arg) {
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
int gf__attach_process(gf_arena *a) {
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
