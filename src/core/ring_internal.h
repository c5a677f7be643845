/*
 * ring_internal.h -- the ring's layout in the arena and the helpers its files share: ring.c
 * (layout rationale, eventfd, create / destroy, close and queries), ring_put.c (producers),
 * ring_get.c (consumers). Not installed; nothing outside src/core/ring*.c includes it.
 */
#ifndef GF_RING_INTERNAL_H
#define GF_RING_INTERNAL_H

#include "internal.h"

#include <stddef.h>

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
    uint64_t trim_tail;              /* `tail` and `head` when gf_ring_trim last punched */
    uint64_t trim_head;
    uint32_t trim_partial;           /* 1: that trim left free pages (the ring was moving) */
    GF_ALIGNED(64) unsigned char data[];
} gf__ring;

_Static_assert(offsetof(gf__ring, pmutex) == 64, "producer line");
_Static_assert(offsetof(gf__ring, cmutex) == 128, "consumer line");
_Static_assert(offsetof(gf__ring, data) % 64 == 0, "data alignment");
_Static_assert(offsetof(gf__ring, data) == 256, "four lines before the data");
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

/* ring.c: the eventfd (GF_RING_EVENTFD rings). gf__efd_usable: is the ring's eventfd number
 * valid in this process (checked once per thread, ring and fd). gf__efd_arm: make it readable
 * after a commit unless it already is. gf__efd_drain: a consumer that emptied the ring (under
 * the consumer mutex) drains it, then re-arms if a put or close raced. */
bool gf__efd_usable(const gf__ring *r);
void gf__efd_arm(gf__ring *r);
void gf__efd_drain(gf__ring *r);

#endif /* GF_RING_INTERNAL_H */
