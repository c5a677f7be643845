/* test_reclaim.c -- what a dead process held is released by the survivors: its ledger (a
 * large ring message being put), its thread caches' blocks; by gf_arena_reclaim, by an
 * attach that re-takes its slot, and at detach. */
#include "test_reclaimutil.h"

#include "../../src/core/internal.h"

#define MiB ((size_t)1 << 20)

struct shared {
    _Atomic int stage;
    uint32_t slot;
};

static struct shared *shm(void) { return shm_map(4096); }

/* A child blocked putting a 1 MiB message into a full ring holds the message's block in its
 * ledger; killed there, the block is released by gf_arena_reclaim (today it leaked). */
TEST(ring_message_block_released) {
    gf_arena *a = mk();
    struct shared *s = shm();
    gf_off ring;
    ASSERT_OK(gf_ring_create(a, 64 * 1024, 1, 0, &ring));
    ASSERT_OK(gf_ring_put(a, ring, "x", 1, GF_FOREVER)); /* full: maxitems 1 */
    uint64_t in_use0 = stats(a).in_use;
    pid_t p = fork();
    ASSERT(p >= 0);
    if (p == 0) {
        ASSERT_OK(gf_arena_after_fork_child(a));
        s->slot = gf_arena_slot(a);
        static char big[MiB];
        memset(big, 7, sizeof big);
        atomic_store(&s->stage, 1);
        gf_ring_put(a, ring, big, sizeof big, GF_FOREVER); /* waits for space */
        _exit(3);
    }
    wait_for(&s->stage, 1);
    while (stats(a).in_use < in_use0 + MiB) usleep(1000); /* its block exists */
    usleep(20000);
    kill_reap(p);
    ASSERT_EQ(gf_arena_reclaim(a, s->slot) >= 1, 1);
    gf_arena_stats st = stats(a);
    ASSERT(st.reclaimed_blocks >= 1);
    ASSERT(st.reclaimed_bytes >= MiB);
    ASSERT(st.in_use < in_use0 + MiB); /* the block is free again */
    ASSERT_EQ(gf_arena_reclaim(a, s->slot), 0); /* nothing twice */
    ASSERT_EQ(gf_ring_count(a, ring), 1);
    ASSERT(gf__arena_verify(a) >= 0);
    gf_arena_detach(a);
}

/* A killed child's cached free blocks go back to the free lists: the parent's next
 * allocations reuse them instead of bumping. */
TEST(thread_cache_released) {
    gf_arena *a = mk();
    struct shared *s = shm();
    gf_off w;
    ASSERT_OK(gf_alloc(a, 300, &w)); /* the parent's own cache exists */
    ASSERT_OK(gf_free(a, w));
    pid_t p = fork();
    ASSERT(p >= 0);
    if (p == 0) {
        ASSERT_OK(gf_arena_after_fork_child(a));
        s->slot = gf_arena_slot(a);
        gf_off o[40];
        for (int i = 0; i < 40; i++) ASSERT_OK(gf_alloc(a, 300, &o[i]));
        for (int i = 0; i < 40; i++) ASSERT_OK(gf_free(a, o[i]));
        atomic_store(&s->stage, 1);
        pause();
        _exit(3);
    }
    wait_for(&s->stage, 1);
    ASSERT_EQ(gf_arena_reclaim(a, s->slot), GF_EBUSY); /* alive */
    ASSERT_EQ(gf_arena_reclaim(a, gf_arena_slot(a)), GF_EBUSY); /* the caller */
    kill_reap(p);
    int n = gf_arena_reclaim(a, GF_ARENA_RECLAIM_DEAD);
    ASSERT(n >= 40);
    uint64_t top0 = stats(a).top;
    gf_off o[40];
    for (int i = 0; i < 40; i++) ASSERT_OK(gf_alloc(a, 300, &o[i]));
    ASSERT_EQ(stats(a).top, top0);
    for (int i = 0; i < 40; i++) ASSERT_OK(gf_free(a, o[i]));
    ASSERT_OK(gf_arena_flush(a));
    ASSERT_EQ(gf__arena_verify(a), 0);
    gf_arena_detach(a);
}

/* The next attach that takes a dead process's slot releases its holdings first. */
TEST(attach_releases_dead_slot) {
    gf_arena *a = mk();
    struct shared *s = shm();
    pid_t p = fork();
    ASSERT(p >= 0);
    if (p == 0) {
        ASSERT_OK(gf_arena_after_fork_child(a));
        s->slot = gf_arena_slot(a);
        gf_off b;
        ASSERT_OK(gf_alloc(a, 100000, &b));
        ASSERT(gf__block_hold(a, b) > 0);
        atomic_store(&s->stage, 1);
        pause();
        _exit(3);
    }
    wait_for(&s->stage, 1);
    kill_reap(p);
    ASSERT_EQ(gf__arena_verify(a), 1);
    gf_arena *b = NULL;
    ASSERT_OK(gf_arena_attach(gf_arena_fd(a), &b)); /* takes the dead slot (the lowest) */
    ASSERT_EQ(gf_arena_slot(b), s->slot);
    ASSERT_EQ(gf__arena_verify(a), 0);
    ASSERT(stats(a).reclaimed_blocks >= 1);
    gf_arena_detach(b);
    gf_arena_detach(a);
}

/* A block still in the ledger at detach is freed; an unheld one is the caller's. */
TEST(detach_releases_ledger) {
    gf_arena *a = mk();
    gf_arena *b = NULL;
    ASSERT_OK(gf_arena_attach(gf_arena_fd(a), &b));
    gf_off x, y;
    ASSERT_OK(gf_alloc(b, 100000, &x));
    ASSERT_OK(gf_alloc(b, 100000, &y));
    int h = gf__block_hold(b, x);
    ASSERT(h > 0);
    gf__block_unhold(b, gf__block_hold(b, y)); /* handed on */
    gf_arena_detach(b);
    ASSERT_EQ(gf__arena_verify(a), 1); /* y only */
    ASSERT_OK(gf_free(a, y));
    gf_arena_detach(a);
}

/* Children killed at random moments while putting large messages and caching small blocks:
 * after reclaim, no block is left but the ring's own and the messages it holds. */
TEST(random_kills_reclaimed) {
    SKIP_UNDER_VALGRIND();
    gf_arena *a = mk();
    gf_off ring;
    ASSERT_OK(gf_ring_create(a, 1 << 20, 4, 0, &ring));
    int base = gf__arena_verify(a);
    for (int round = 0; round < 30; round++) {
        pid_t p = fork();
        ASSERT(p >= 0);
        if (p == 0) {
            ASSERT_OK(gf_arena_after_fork_child(a));
            static char big[300000], buf[1 << 20];
            for (;;) {
                for (int i = 0; i < 8; i++) { /* one at a time: at most one in hand */
                    gf_off o;
                    if (gf_alloc(a, 64 + (size_t)i * 100, &o) == 0) gf_free(a, o);
                }
                gf_msg m;
                if (gf_ring_put(a, ring, big, sizeof big, gf_deadline_after(1000000)) == 0 &&
                    gf_ring_get(a, ring, &m, buf, sizeof buf, 0) == 1)
                    gf_msg_release(a, &m);
            }
        }
        usleep((useconds_t)(300 + (round * 7919) % 4000));
        kill_reap(p);
        gf_arena_reclaim(a, GF_ARENA_RECLAIM_DEAD);
    }
    /* drain what the children left in the ring */
    gf_msg m;
    static char buf[1 << 20];
    int left = 0;
    while (gf_ring_get(a, ring, &m, buf, sizeof buf, 0) == 1) {
        gf_msg_release(a, &m);
        left++;
    }
    ASSERT(left <= 4);
    ASSERT_OK(gf_arena_flush(a));
    int live = gf__arena_verify(a);
    /* at most one block per kill may leak: the small block in hand, or a message block
     * between the ledger drop and the commit, or between a get and its release */
    ASSERT(live >= base);
    ASSERT(live <= base + 30);
    printf("# blocks left after 30 kills: %d\n", live - base);
    gf_arena_detach(a);
}

/* A frame put with gf_ring_putv_frame and never read: destroying the ring frees its
 * out-of-band blocks (inline record and block record); a plain putv leaves them alone. */
static void put_frame_with_buf(gf_arena *a, gf_off ring, gf_off buf, size_t body_len, int flag) {
    gf_frame_hdr hdr;
    ASSERT_OK(gf_frame_header(&hdr, GF_FRAME_PICKLE, body_len, 1));
    static char body[200000];
    gf_frame_buf fb = {buf, 1000};
    struct iovec iov[3] = {{&hdr, sizeof hdr}, {body, body_len}, {&fb, sizeof fb}};
    if (flag) ASSERT_OK(gf_ring_putv_frame(a, ring, iov, 3, GF_FOREVER));
    else ASSERT_OK(gf_ring_putv(a, ring, iov, 3, GF_FOREVER));
}

TEST(unread_frames_dropped_with_their_blocks) {
    gf_arena *a = mk();
    int base = gf__arena_verify(a);
    gf_off ring, b1, b2, b3;
    ASSERT_OK(gf_ring_create(a, 64 * 1024, 0, 0, &ring));
    ASSERT_OK(gf_alloc(a, 1000, &b1));
    ASSERT_OK(gf_alloc(a, 1000, &b2));
    ASSERT_OK(gf_alloc(a, 1000, &b3));
    put_frame_with_buf(a, ring, b1, 10, 1);     /* inline record */
    put_frame_with_buf(a, ring, b2, 100000, 1); /* block record */
    put_frame_with_buf(a, ring, b3, 10, 0);     /* not flagged: b3 stays the caller's */
    ASSERT_EQ(gf_ring_count(a, ring), 3);
    ASSERT_EQ(gf_obj_decref(a, ring), 0);
    ASSERT_EQ(gf_block_size(a, b1), 0);
    ASSERT_EQ(gf_block_size(a, b2), 0);
    ASSERT(gf_block_size(a, b3) >= 1000);
    ASSERT_OK(gf_free(a, b3));
    ASSERT_OK(gf_arena_flush(a));
    ASSERT_EQ(gf__arena_verify(a), base);
    gf_arena_detach(a);
}

/* A consumer killed between taking a large message (a block record) and releasing it: the
 * block is in its ledger from the get's commit, so the survivors free it (it leaked). */
TEST(consumer_killed_holding_message_block) {
    gf_arena *a = mk();
    struct shared *s = shm();
    gf_off ring;
    ASSERT_OK(gf_ring_create(a, 64 * 1024, 0, 0, &ring));
    int base = gf__arena_verify(a);
    static char big[MiB];
    memset(big, 5, sizeof big);
    ASSERT_OK(gf_ring_put(a, ring, big, sizeof big, GF_FOREVER));
    ASSERT_EQ(gf__arena_verify(a), base + 1);
    pid_t p = fork();
    ASSERT(p >= 0);
    if (p == 0) {
        ASSERT_OK(gf_arena_after_fork_child(a));
        s->slot = gf_arena_slot(a);
        static char buf[64 * 1024];
        gf_msg m;
        ASSERT_EQ(gf_ring_get(a, ring, &m, buf, sizeof buf, GF_FOREVER), 1);
        ASSERT(m.block != 0 && m._hold > 0);
        atomic_store(&s->stage, 1);
        pause(); /* killed here, the message in hand */
        _exit(3);
    }
    wait_for(&s->stage, 1);
    kill_reap(p);
    ASSERT_EQ(gf_ring_count(a, ring), 0);
    ASSERT_EQ(gf__arena_verify(a), base + 1); /* the block, owned by nobody alive */
    ASSERT_EQ(gf_arena_reclaim(a, s->slot), 1);
    ASSERT_EQ(gf__arena_verify(a), base);
    gf_arena_detach(a);
}

/* The records of a consumer's message blocks are dropped by gf_msg_release and gf_msg_keep:
 * after both, the consumer's detach (which frees what is left in its ledger) frees nothing. */
TEST(message_block_record_dropped_on_release_and_keep) {
    gf_arena *a = mk();
    gf_arena *b = NULL;
    ASSERT_OK(gf_arena_attach(gf_arena_fd(a), &b));
    gf_off ring;
    ASSERT_OK(gf_ring_create(a, 4096, 0, 0, &ring));
    int base = gf__arena_verify(a);
    static char big[100000], buf[4096];
    ASSERT_OK(gf_ring_put(a, ring, big, sizeof big, GF_FOREVER));
    ASSERT_OK(gf_ring_put(a, ring, big, sizeof big, GF_FOREVER));
    ASSERT_OK(gf_ring_put(a, ring, "small", 5, GF_FOREVER));
    gf_msg m[3];
    ASSERT_EQ(gf_ring_get_many(b, ring, m, 3, buf, sizeof buf, 0), 3);
    ASSERT(m[0]._hold > 0 && m[1]._hold > 0 && m[0]._hold != m[1]._hold);
    ASSERT_EQ(m[2].block, 0);
    ASSERT_EQ(m[2]._hold, 0);
    gf_msg_release(b, &m[0]);
    gf_off kept = m[1].block;
    ASSERT_EQ(gf_msg_keep(b, &m[1]), kept);
    ASSERT_EQ(m[1].block, 0);
    ASSERT_EQ(gf_msg_keep(b, &m[2]), 0);
    gf_arena_detach(b);
    ASSERT_EQ(gf_block_size(a, kept) >= sizeof big, 1); /* still the keeper's */
    ASSERT_EQ(gf__arena_verify(a), base + 1);
    ASSERT_OK(gf_free(a, kept));
    ASSERT_EQ(gf__arena_verify(a), base);
    gf_arena_detach(a);
}

/* Frames put with gf_ring_put_many_frame and never read are dropped with their out-of-band
 * blocks (small ones inline, a large one as a block record); gf_ring_put_many leaves them. */
TEST(unread_put_many_frames_dropped_with_their_blocks) {
    gf_arena *a = mk();
    int base = gf__arena_verify(a);
    gf_off ring, bl[4];
    ASSERT_OK(gf_ring_create(a, 64 * 1024, 0, 0, &ring));
    static char body[100000], flat[4][100100];
    gf_frame_hdr hdr[4];
    gf_frame_buf fb[4];
    struct iovec msgs[4];
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(gf_alloc(a, 1000, &bl[i]));
        size_t body_len = i == 1 ? 100000 : 10; /* [1]: larger than inline_max */
        ASSERT_OK(gf_frame_header(&hdr[i], GF_FRAME_PICKLE, body_len, 1));
        fb[i] = (gf_frame_buf){bl[i], 1000};
        memcpy(flat[i], &hdr[i], sizeof hdr[i]);
        memcpy(flat[i] + sizeof hdr[i], body, body_len);
        memcpy(flat[i] + sizeof hdr[i] + body_len, &fb[i], sizeof fb[i]);
        msgs[i] = (struct iovec){flat[i], sizeof hdr[i] + body_len + sizeof fb[i]};
    }
    ASSERT_EQ(gf_ring_put_many_frame(a, ring, msgs, 3, GF_FOREVER), 3);
    ASSERT_EQ(gf_ring_put_many(a, ring, msgs + 3, 1, GF_FOREVER), 1); /* not flagged */
    ASSERT_EQ(gf_ring_count(a, ring), 4);
    ASSERT_EQ(gf_obj_decref(a, ring), 0);
    for (int i = 0; i < 3; i++) ASSERT_EQ(gf_block_size(a, bl[i]), 0);
    ASSERT(gf_block_size(a, bl[3]) >= 1000);
    ASSERT_OK(gf_free(a, bl[3]));
    ASSERT_OK(gf_arena_flush(a));
    ASSERT_EQ(gf__arena_verify(a), base);
    gf_arena_detach(a);
}

TEST_MAIN()
