/*
 * npalloc.c -- NumPy array data in the arena (issue 11, item 3).
 *
 * In a pool worker, arrays of at least `threshold` bytes get their data from the shared-memory
 * arena through NumPy's data-memory handler (NEP 49: PyDataMem_SetHandler with a PyCapsule
 * named "mem_handler" holding a PyDataMem_Handler), so that a returned array is already an
 * arena block and travels by reference (transport.c) instead of being copied. Smaller arrays
 * and everything the arena cannot take go to the handler that was in place before (NumPy's
 * default: its small-block cache, hugepage advice), which also gets every heap pointer back.
 *
 * Robust across NumPy 1.22+ and 2.x without NumPy headers at build time: the handler struct
 * (version 1) is declared here; PyDataMem_SetHandler / PyDataMem_GetHandler are entries 304 /
 * 305 of NumPy's C-API table (the `_ARRAY_API` capsule of numpy._core._multiarray_umath, or
 * numpy.core._multiarray_umath on 1.x), both since C-API feature version 0x0f (1.22) and kept
 * at the same index in 2.x; the feature version (entry 211) is checked before they are used.
 * NumPy is never imported by us: the handler is installed before a task once `numpy` is in
 * sys.modules (the worker's context variable; arrays remember their handler, so arrays made
 * before keep NumPy's).
 *
 * Ownership: this process's live arena allocations are kept in a process-local set (not in
 * shared memory). free/realloc of an arena pointer act only on members; a forked child takes a
 * holder (gf_block_share) on each inherited block at fork, so parent and child each free once.
 * Sending: a member block (an array alive here) is copied, never shared, except for the pool
 * result that the worker lends: sent by reference, and after the worker dropped the result,
 * any block still alive here (the worker kept the array) is replaced by a copy before the
 * message leaves (gf_npalloc_unshare). So no memory is ever shared with the receiver.
 * At _exit (gf_release_before_exit) the live blocks are freed and the handler turns itself
 * off: later frees of arena pointers are ignored, allocations go to the previous handler.
 */
#include "npalloc.h"

#include "../core/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* NumPy's PyDataMemAllocator / PyDataMem_Handler, version 1 (numpy/ndarraytypes.h). */
typedef struct {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr, size_t size);
} np_allocator;
typedef struct {
    char name[127];
    uint8_t version;
    np_allocator allocator;
} np_handler;

#define NP_API_ABI 0           /* PyArray_GetNDArrayCVersion */
#define NP_API_FEATURE 211     /* PyArray_GetNDArrayCFeatureVersion */
#define NP_API_SET_HANDLER 304 /* PyDataMem_SetHandler (feature >= 0x0f) */
#define NP_API_GET_HANDLER 305 /* PyDataMem_GetHandler */
#define NP_FEATURE_1_22 0x0fu
#define NP_DEFAULT_MIN ((size_t)128 << 10) /* see DESIGN.md for the measurement */
/* Arrays recorded in this process's block ledger (gf__block_hold, made under the allocator
 * lock) at most at once: a worker SIGKILLed mid-task then leaks none of them (the survivors
 * free its holder). The block ledger has GF__HELD_N entries; the rest stay for the out-of-band
 * buffers of messages being sent. Further arrays, and a forked child's holders on the arrays
 * it inherited, are recorded in the reference ledger (gf_ref_hold: thousands of entries; the
 * record follows the allocation by a few instructions, no system call between). */
#define NP_LEDGER 8

static struct {
    gf_arena *arena;
    const char *base;
    size_t size;
    size_t min;        /* threshold in bytes */
    int installed;     /* the handler was set in this process (or inherited by fork) */
    int disabled;      /* GILFREE_NUMPY_ARENA=0, or NumPy cannot take a handler */
    volatile int on;   /* 0 after the exit release: allocate elsewhere, free nothing */
    np_handler *prev;  /* the handler we delegate to (its capsule kept alive in prev_cap) */
    PyObject *prev_cap;
    pthread_mutex_t mu; /* guards the set */
    int child_attached;   /* in a forked child: its arena slot is its own (fork record ran) */
    int child_unrecorded; /* in a forked child: the inherited arrays' holders not recorded */
    gf_off *tab;        /* open addressing, 0 = empty, capacity a power of two */
    size_t cap, n;
    uint64_t bytes;
    struct {
        gf_off off;
        int h; /* gf__block_hold handle; 0 = unused */
    } led[NP_LEDGER];   /* guarded by g.mu */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local int tl_lend;

/* ------------------------------------------------------------------ the set of live blocks */

static size_t set_slot(gf_off k) {
    return (size_t)((k >> 6) * 0x9E3779B97F4A7C15ull >> 17) & (g.cap - 1);
}

/* Index of k, or (size_t)-1. Caller holds g.mu. */
static size_t set_find(gf_off k) {
    if (!g.cap) return (size_t)-1;
    for (size_t i = set_slot(k);; i = (i + 1) & (g.cap - 1)) {
        if (g.tab[i] == k) return i;
        if (!g.tab[i]) return (size_t)-1;
    }
}

/* Insert k (not present). Result 0 or -1 (no memory). Caller holds g.mu. */
static int set_add(gf_off k) {
    if (2 * (g.n + 1) > g.cap) {
        size_t ncap = g.cap ? 2 * g.cap : 64;
        gf_off *nt = calloc(ncap, sizeof *nt), *old = g.tab;
        if (!nt) return -1;
        size_t ocap = g.cap;
        g.tab = nt;
        g.cap = ncap;
        for (size_t i = 0; i < ocap; i++) {
            if (!old[i]) continue;
            size_t j = set_slot(old[i]);
            while (nt[j]) j = (j + 1) & (ncap - 1);
            nt[j] = old[i];
        }
        free(old);
    }
    size_t i = set_slot(k);
    while (g.tab[i]) i = (i + 1) & (g.cap - 1);
    g.tab[i] = k;
    g.n++;
    return 0;
}

/* Remove k (backward-shift deletion). Result 1 if it was there. Caller holds g.mu. */
static int set_del(gf_off k) {
    size_t i = set_find(k), mask = g.cap - 1;
    if (i == (size_t)-1) return 0;
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (!g.tab[j]) break;
        size_t h = set_slot(g.tab[j]);
        /* move tab[j] into the hole at i unless its home h lies cyclically in (i, j] */
        int stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
        if (!stays) {
            g.tab[i] = g.tab[j];
            i = j;
        }
    }
    g.tab[i] = 0;
    g.n--;
    return 1;
}

static int is_member(gf_off k) {
    pthread_mutex_lock(&g.mu);
    int r = set_find(k) != (size_t)-1;
    pthread_mutex_unlock(&g.mu);
    return r;
}

/* ------------------------------------------------------------------ the handler */

static int in_arena(const void *p) {
    return g.base && (const char *)p >= g.base && (const char *)p < g.base + g.size;
}

/* Reserve a free entry of g.led for an allocation about to be made: its index, or -1 (all 8
 * in use: that array is not recorded). Caller holds g.mu. */
static int led_reserve(void) {
    for (int i = 0; i < NP_LEDGER; i++) {
        if (g.led[i].h) continue;
        g.led[i].h = -1; /* taken, not recorded yet */
        g.led[i].off = 0;
        return i;
    }
    return -1;
}

/* Take `off` out of this process's bookkeeping of the ledger: its handle, or 0 (caller holds
 * g.mu). The caller unholds before it frees: a death between the two then leaks the block
 * instead of freeing it twice. */
static int led_take(gf_off off) {
    for (int i = 0; i < NP_LEDGER; i++) {
        if (g.led[i].h > 0 && g.led[i].off == off) {
            int h = g.led[i].h;
            g.led[i].h = 0;
            return h;
        }
    }
    return 0;
}

/* A new arena block of n bytes recorded as live (and in the arena ledger while it has room:
 * recorded before its pages are prefaulted, the long part of a fresh block), or NULL. */
static void *arena_get(size_t n) {
    gf_off off = 0;
    if (!g.on) return NULL;
    pthread_mutex_lock(&g.mu);
    int li = led_reserve();
    pthread_mutex_unlock(&g.mu);
    int h = 0, ref = 0, made;
    if (li >= 0) {
        made = gf__alloc_held(g.arena, n, &off, &h) == 0;
    } else { /* the block ledger's share is in use: the reference ledger */
        made = gf__alloc_ref_held(g.arena, n, &off, &ref) == 0;
    }
    pthread_mutex_lock(&g.mu);
    int kept = made && g.on && set_add(off) == 0;
    if (li >= 0) {
        g.led[li].h = kept ? h : 0;
        g.led[li].off = kept ? off : 0;
    }
    if (kept) g.bytes += gf_block_size(g.arena, off);
    pthread_mutex_unlock(&g.mu);
    if (made && !kept) { /* not recordable here: give it back */
        if (ref) gf_ref_unhold(g.arena, off);
        gf__free_held(g.arena, off, h);
    }
    return kept ? gf_ptr(g.arena, off) : NULL;
}

/* Free the member block `off` whose block-ledger handle led_take gave (0: none). Without one it
 * may be recorded in the reference ledger (an array past the block ledger's room, an inherited
 * array's holder): forgotten first. Forgetting a record this process holds for another reason
 * on the same block would only leave that one unrecorded (a leak if it dies), never a double
 * free. */
static void member_free(gf_off off, int h) {
    if (!h) gf_ref_unhold(g.arena, off);
    gf__free_held(g.arena, off, h);
}

/* Free p (an arena pointer) if this process owns it. */
static void arena_put(void *p) {
    gf_off off = gf_off_of(g.arena, p);
    pthread_mutex_lock(&g.mu);
    int mine = set_del(off), h = 0;
    if (mine) {
        g.bytes -= gf_block_size(g.arena, off);
        h = led_take(off);
    }
    pthread_mutex_unlock(&g.mu);
    /* the record goes at the last moment: a kill while gf_free waits for the allocator lock
     * (it takes one for a big block) still has the array recorded */
    if (mine) member_free(off, h);
}

static void *np_malloc(void *ctx, size_t n) {
    (void)ctx;
    void *p = n >= g.min ? arena_get(n) : NULL;
    return p ? p : g.prev->allocator.malloc(g.prev->allocator.ctx, n);
}

/* Zeroed memory stays on the heap: NumPy asks for it for np.zeros and for every dtype that
 * holds object pointers (NPY_NEEDS_INIT: object, structured with object fields), and object
 * pointers must never be in shared memory (another process, or a forked child sharing the
 * block, would see this process's addresses). The heap's fresh pages are zero for free, too. */
static void *np_calloc(void *ctx, size_t k, size_t sz) {
    (void)ctx;
    return g.prev->allocator.calloc(g.prev->allocator.ctx, k, sz);
}

static void *np_realloc(void *ctx, void *p, size_t n) {
    if (!p) return np_malloc(ctx, n);
    if (!in_arena(p)) return g.prev->allocator.realloc(g.prev->allocator.ctx, p, n);
    gf_off off = gf_off_of(g.arena, p);
    int mine = is_member(off);
    size_t have = gf_block_size(g.arena, off);
    if (mine && n <= have && n >= g.min) return p; /* fits in place */
    /* A new home (the arena or the heap, by size); an inherited block is copied, not freed. */
    void *q = np_malloc(ctx, n ? n : 1);
    if (!q) return NULL;
    memcpy(q, p, n < have ? n : have);
    if (mine) arena_put(p);
    return q;
}

static void np_free(void *ctx, void *p, size_t n) {
    (void)ctx;
    if (!p) return;
    if (in_arena(p))
        arena_put(p);
    else
        g.prev->allocator.free(g.prev->allocator.ctx, p, n);
}

static np_handler arena_handler = {
    "gilfree_arena", 1, {NULL, np_malloc, np_calloc, np_realloc, np_free}};

/* ------------------------------------------------------------------ fork and exit */

static void at_fork_prepare(void) {
    pthread_mutex_lock(&g.mu);
    /* The child starts with neither (its own fork record and child handler set them, in
     * either order); a stale child_unrecorded would record its holders twice. */
    g.child_attached = 0;
    g.child_unrecorded = 0;
}
static void at_fork_parent(void) { pthread_mutex_unlock(&g.mu); }

/* Record every member's holder in this (forked, attached) process's reference ledger. */
static void record_members(void) {
    for (size_t i = 0; i < g.cap; i++)
        if (g.tab[i]) gf_ref_hold(g.arena, g.tab[i]);
    g.child_unrecorded = 0;
}

/* The child's arrays point into the parent's blocks: take a holder on each, so that both
 * processes free once (a block that cannot take one more holder is left to the parent), and
 * record the holders in the child's reference ledger, so that the survivors drop them if the
 * child is killed: here if the child's slot is attached already (the arena's fork handler ran
 * first), else from gf_npalloc_fork_record. */
static void at_fork_child(void) {
    for (size_t i = 0; i < g.cap; i++) {
        if (g.tab[i] && gf_block_share(g.arena, g.tab[i]) < 0) {
            set_del(g.tab[i]);
            i = (size_t)-1; /* the deletion moved entries: start over */
        }
    }
    /* The block ledger's records are the parent's (its slot): the child's holders are its own. */
    memset(g.led, 0, sizeof g.led);
    g.child_unrecorded = g.n > 0;
    if (g.child_attached && g.child_unrecorded) record_members();
    pthread_mutex_unlock(&g.mu);
}

/* See npalloc.h. */
void gf_npalloc_fork_record(void) {
    /* single-threaded (inside fork()), and g.mu may still be held by at_fork_prepare: no lock */
    g.child_attached = 1;
    if (g.installed && g.child_unrecorded) record_members();
}

/* gf_release_before_exit step: free every live block of this process, then turn off. */
static void npalloc_exit_release(gf_state *Py_UNUSED(st)) {
    if (!g.installed) return;
    pthread_mutex_lock(&g.mu);
    g.on = 0;
    for (size_t i = 0; i < g.cap; i++) {
        if (!g.tab[i]) continue;
        member_free(g.tab[i], led_take(g.tab[i]));
    }
    if (g.tab) memset(g.tab, 0, g.cap * sizeof *g.tab);
    g.n = 0;
    g.bytes = 0;
    pthread_mutex_unlock(&g.mu);
}

/* ------------------------------------------------------------------ installation */

/* NumPy's C-API table, or NULL (no exception: not loaded yet / not usable). */
static void **numpy_api(void) {
    static const char *const names[] = {"numpy._core._multiarray_umath",
                                        "numpy.core._multiarray_umath"};
    PyObject *mods = PyImport_GetModuleDict();
    for (int i = 0; i < 2; i++) {
        PyObject *m = PyDict_GetItemString(mods, names[i]);
        if (!m) continue;
        PyObject *cap = PyObject_GetAttrString(m, "_ARRAY_API");
        void **api = cap && PyCapsule_CheckExact(cap)
                         ? PyCapsule_GetPointer(cap, PyCapsule_GetName(cap))
                         : NULL;
        Py_XDECREF(cap); /* the module keeps the capsule (and the table) alive */
        PyErr_Clear();
        if (api) return api;
    }
    return NULL;
}

/* Install the handler in this thread's context. Result 1 installed, 0 not now (NumPy still
 * importing), -1 never (unusable NumPy or a failure). No exception left set. */
static int install(gf_state *st) {
    void **api = numpy_api();
    if (!api) return 0;
    unsigned abi = ((unsigned (*)(void))api[NP_API_ABI])();
    unsigned feature = ((unsigned (*)(void))api[NP_API_FEATURE])();
    if (abi < 0x01000009u || feature < NP_FEATURE_1_22) return -1;
    PyObject *(*set)(PyObject *) = (PyObject * (*)(PyObject *)) api[NP_API_SET_HANDLER];
    PyObject *(*get)(void) = (PyObject * (*)(void)) api[NP_API_GET_HANDLER];
    PyObject *prev = get();
    np_handler *ph = prev ? PyCapsule_GetPointer(prev, "mem_handler") : NULL;
    if (!ph || ph->version < 1 || !ph->allocator.malloc || !ph->allocator.free) {
        Py_XDECREF(prev);
        PyErr_Clear();
        return -1;
    }
    PyObject *cap = PyCapsule_New(&arena_handler, "mem_handler", NULL);
    if (!cap) {
        Py_DECREF(prev);
        PyErr_Clear();
        return -1;
    }
    g.prev = ph;
    g.prev_cap = prev; /* kept for the life of the process */
    g.arena = st->arena;
    g.base = gf_arena_base(st->arena);
    g.size = gf_arena_size(st->arena);
    g.on = 1;
    PyObject *old = set(cap);
    Py_DECREF(cap);
    if (!old) {
        PyErr_Clear();
        g.on = 0;
        return -1;
    }
    Py_DECREF(old);
    static int atfork_done;
    if (!atfork_done) atfork_done = pthread_atfork(at_fork_prepare, at_fork_parent,
                                                   at_fork_child) == 0;
    return 1;
}

/* See npalloc.h. */
void gf_npalloc_poll(gf_state *st) {
    if (g.installed || g.disabled) return;
    PyObject *np = PyDict_GetItemString(PyImport_GetModuleDict(), "numpy");
    if (!np) return;
    const char *env = getenv("GILFREE_NUMPY_ARENA");
    if (env && strcmp(env, "0") == 0) {
        g.disabled = 1;
        return;
    }
    const char *min = getenv("GILFREE_NUMPY_ARENA_MIN");
    g.min = min && *min ? (size_t)strtoull(min, NULL, 10) : NP_DEFAULT_MIN;
    if (g.min < (size_t)GF_OOB_MIN) g.min = (size_t)GF_OOB_MIN; /* smaller ones go in band */
    int r = install(st);
    if (r > 0) g.installed = 1;
    if (r < 0) g.disabled = 1;
}

/* See npalloc.h. */
int gf_npalloc_may_share(gf_off blk) { return !g.installed || tl_lend || !is_member(blk); }

/* See npalloc.h. */
void gf_npalloc_lend(int on) { tl_lend = on; }

/* See npalloc.h. */
int gf_npalloc_unshare(gf_state *st, gf_enc *e) {
    if (!g.installed) return 0;
    for (uint32_t i = 0; i < e->nbufs; i++) {
        gf_off blk = e->bufs[i].block;
        if (!blk || !is_member(blk)) continue;
        gf_off copy;
        int rc;
        const void *src = gf_ptr(st->arena, blk);
        size_t len = (size_t)e->bufs[i].len;
        /* held for the put (as every result buffer): a death before it frees the copy */
        Py_BEGIN_ALLOW_THREADS rc = gf__alloc_copy_held(st->arena, src, len, &copy, 1);
        Py_END_ALLOW_THREADS
        if (rc < 0) {
            gf_raise(st, rc, "result array");
            return -1;
        }
        /* the message's holder (its record for the put first: a death between the two
         * leaks it, never frees it twice); the live array keeps its own */
        gf__block_unhold_off(st->arena, blk);
        gf_free(st->arena, blk);
        e->bufs[i].block = copy;
    }
    return 0;
}

/* ------------------------------------------------------------------ module functions */

static PyObject *mod_in_arena(PyObject *m, PyObject *obj) {
    gf_state *st = PyModule_GetState(m);
    Py_buffer v;
    if (PyObject_GetBuffer(obj, &v, PyBUF_FULL_RO) < 0) return NULL;
    const char *base = gf_arena_base(st->arena);
    int r = (const char *)v.buf >= base && (const char *)v.buf < base + gf_arena_size(st->arena);
    PyBuffer_Release(&v);
    return PyBool_FromLong(r);
}

static PyObject *mod_numpy_arena_info(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a)) {
    pthread_mutex_lock(&g.mu);
    unsigned long long n = g.n, bytes = g.bytes;
    pthread_mutex_unlock(&g.mu);
    return Py_BuildValue("{sOsOsKsKsK}", "installed", g.installed && g.on ? Py_True : Py_False,
                         "disabled", g.disabled ? Py_True : Py_False, "threshold",
                         (unsigned long long)(g.min ? g.min : NP_DEFAULT_MIN), "live_blocks", n,
                         "live_bytes", bytes);
}

static PyMethodDef npalloc_functions[] = {
    {"in_arena", mod_in_arena, METH_O,
     "True if the buffer of `obj` (an array, memoryview, ...) starts inside the shared-memory "
     "arena."},
    {"numpy_arena_info", mod_numpy_arena_info, METH_NOARGS,
     "This process's NumPy arena allocator: installed, disabled, threshold (bytes), "
     "live_blocks and live_bytes (arrays made in the arena and alive here)."},
    {NULL, NULL, 0, NULL},
};

/* Module functions and the exit-release step. Result 0 or -1. */
int gf__npalloc_register(PyObject *m, gf_state *st) {
    if (PyModule_AddFunctions(m, npalloc_functions) < 0) return -1;
    return gf_on_release_before_exit(st, npalloc_exit_release);
}
