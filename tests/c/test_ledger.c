/* test_ledger.c -- the reference ledger (src/core/arena_ledger.c): the references a process
 * holds on shared objects and plain blocks are dropped by the survivors when it dies (by
 * gf_arena_reclaim, an attach that re-takes its slot, its own detach); a child records what
 * it inherits in its own slot; a full ledger says so and leaks only what it did not record;
 * children killed at random moments (and a reclaimer killed half-way) never make a reference
 * drop twice. */
#include "test_reclaimutil.h"

#include "../../src/core/internal.h"

#include <pthread.h>

#define NOBJ 5000

struct shared {
    _Atomic int stage;
    _Atomic int recorded;
    gf_off offs[NOBJ];
};

static struct shared *shm(void) { return shm_map(sizeof(struct shared)); }

static uint32_t refs_of(gf_arena *a, gf_off off) {
    gf_obj *o = (gf_obj *)((char *)gf_arena_base(a) + off); /* not gf_ptr: never NULL here */
    return atomic_load((_Atomic uint32_t *)&o->refs);
}

/* Flush this thread's cache, then count live blocks (the consistency walk). */
static int live(gf_arena *a) {
    ASSERT_OK(gf_arena_flush(a));
    int n = gf__arena_verify(a);
    ASSERT(n >= 0);
    return n;
}

/* A child creates objects and plain blocks, takes and drops references on them and on the
 * parent's objects, then is killed: everything it held is dropped exactly once. */
TEST(killed_holder_references_dropped) {
    SKIP_UNDER_TSAN(); /* forks */
    gf_arena *a = mk();
    struct shared *s = shm();
    gf_off mine; /* the parent's object: the child takes 3 references, drops 1 */
    ASSERT_OK(gf_obj_new(a, GF_OBJ_RAW, 64, &mine));
    ASSERT_EQ(gf_ref_hold(a, mine), 1);
    gf_off blk; /* the parent's plain block: the child becomes a second holder */
    ASSERT_OK(gf_alloc(a, 1000, &blk));
    int base = live(a);
    uint64_t r0 = stats(a).refs_reclaimed;
    pid_t p = fork();
    ASSERT(p >= 0);
    if (p == 0) {
        ASSERT_OK(gf_arena_after_fork_child(a));
        for (int i = 0; i < 100; i++) {
            gf_off o;
            ASSERT_OK(gf_obj_new(a, GF_OBJ_RAW, 64 + (size_t)i, &o));
            ASSERT_EQ(gf_ref_hold(a, o), 1);
            if (i % 3 == 0) ASSERT_OK(gf_obj_incref_held(a, o)); /* count 2 */
            if (i % 5 == 0) { /* dropped again: not reclaimed twice */
                ASSERT_EQ(gf_obj_decref_held(a, o), i % 3 == 0 ? 1 : 0);
            }
        }
        for (int i = 0; i < 3; i++) ASSERT_OK(gf_obj_incref_held(a, mine));
        ASSERT_OK(gf_obj_decref_held(a, mine));
        ASSERT_OK(gf_block_share(a, blk));
        ASSERT_EQ(gf_ref_hold(a, blk), 1);
        atomic_store(&s->stage, 1);
        pause();
        _exit(0);
    }
    wait_for(&s->stage, 1);
    ASSERT_EQ(refs_of(a, mine), 3);
    kill_reap(p);
    ASSERT(gf_arena_reclaim(a, GF_ARENA_RECLAIM_DEAD) >= 100);
    ASSERT_EQ(refs_of(a, mine), 1);
    /* 100 objects: 80 alive, of which 27 (i % 3 == 0, i % 5 != 0) with 2 references; the 20
     * dropped ones: 7 had a second reference left (dropped now); plus 2 on `mine`, 1 on blk */
    ASSERT_EQ(stats(a).refs_reclaimed - r0, 80 + 27 + 7 + 2 + 1);
    ASSERT_EQ(live(a), base);
    ASSERT_EQ(gf_arena_reclaim(a, GF_ARENA_RECLAIM_DEAD), 0); /* nothing twice */
    ASSERT_OK(gf_free(a, blk)); /* the parent's holder is still there: now freed */
    ASSERT_EQ(gf_block_size(a, blk), 0);
    ASSERT_EQ(gf_obj_decref_held(a, mine), 0);
    ASSERT_EQ(live(a), base - 2);
    gf_arena_detach(a);
}

/* A forked child records the references it inherits (taken for it by the parent before the
 * fork, unrecorded) in its own slot: killed, only those are dropped; the parent's stay. */
TEST(fork_child_records_inherited_references) {
    SKIP_UNDER_TSAN(); /* forks */
    gf_arena *a = mk();
    struct shared *s = shm();
    gf_off o;
    ASSERT_OK(gf_obj_new(a, GF_OBJ_RAW, 64, &o));
    ASSERT_EQ(gf_ref_hold(a, o), 1);
    int base = live(a);
    ASSERT_OK(gf_obj_incref(a, o)); /* for the child, in transit: not recorded */
    pid_t p = fork();
    ASSERT(p >= 0);
    if (p == 0) {
        ASSERT_OK(gf_arena_after_fork_child(a));
        ASSERT_EQ(gf_ref_hold(a, o), 1); /* the child's own slot */
        atomic_store(&s->stage, 1);
        pause();
        _exit(0);
    }
    wait_for(&s->stage, 1);
    kill_reap(p);
    ASSERT_EQ(refs_of(a, o), 2);
    uint64_t r0 = stats(a).refs_reclaimed;
    ASSERT(gf_arena_reclaim(a, GF_ARENA_RECLAIM_DEAD) >= 1);
    ASSERT_EQ(stats(a).refs_reclaimed - r0, 1);
    ASSERT_EQ(refs_of(a, o), 1);
    ASSERT_EQ(gf_obj_decref_held(a, o), 0);
    ASSERT_EQ(live(a), base - 1);
    gf_arena_detach(a);
}

/* gf_arena_fork_arm: the child-side callback of the fork hand-over. */
static void record_handed_over(gf_arena *a, void *arg) { (void)gf_ref_hold(a, *(gf_off *)arg); }

/* The fork hand-over records the inherited reference inside fork(): a child that dies at its
 * first instruction after fork() (no gf_arena_after_fork_child, nothing of its own run)
 * still has it dropped by the survivors; the arming ends with that fork. (A kill that lands
 * before the child is first scheduled, inside fork(), still leaks: the parent here does not
 * kill, the child does.) */
TEST(fork_handover_records_before_the_child_runs) {
    SKIP_UNDER_TSAN(); /* forks */
    gf_arena *a = mk();
    struct shared *s = shm();
    gf_off o;
    ASSERT_OK(gf_obj_new(a, GF_OBJ_RAW, 64, &o));
    ASSERT_EQ(gf_ref_hold(a, o), 1);
    uint32_t parent_slot = gf_arena_slot(a);
    ASSERT_OK(gf_obj_incref(a, o)); /* for the child */
    ASSERT_OK(gf_arena_fork_arm(a, record_handed_over, &o));
    pid_t p = fork();
    ASSERT(p >= 0);
    if (p == 0) raise(SIGKILL); /* before anything else */
    int st = 0;
    ASSERT_EQ(waitpid(p, &st, 0), p);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ASSERT_EQ(refs_of(a, o), 2);
    uint64_t r0 = stats(a).refs_reclaimed;
    ASSERT(gf_arena_reclaim(a, GF_ARENA_RECLAIM_DEAD) >= 1);
    ASSERT_EQ(stats(a).refs_reclaimed - r0, 1);
    ASSERT_EQ(refs_of(a, o), 1);

    /* Armed again: the child is attached with a slot of its own before it runs, and a later
     * call attaches nothing more; the next fork is not armed (its child has no slot). */
    ASSERT_OK(gf_obj_incref(a, o));
    ASSERT_OK(gf_arena_fork_arm(a, record_handed_over, &o));
    p = fork();
    ASSERT(p >= 0);
    if (p == 0) {
        uint32_t mine = gf_arena_slot(a);
        ASSERT(mine != parent_slot && mine < GF_ARENA_MAX_PROCS);
        ASSERT_OK(gf_arena_after_fork_child(a));
        ASSERT_EQ(gf_arena_slot(a), mine);
        pid_t q = fork();
        ASSERT(q >= 0);
        if (q == 0) _exit(gf_ref_hold(a, o) == 0 ? 0 : 1); /* not armed: no slot here */
        ASSERT_EQ(waitpid(q, &st, 0), q);
        ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        atomic_store(&s->stage, 1);
        pause();
        _exit(0);
    }
    wait_for(&s->stage, 1);
    kill_reap(p);
    ASSERT(gf_arena_reclaim(a, GF_ARENA_RECLAIM_DEAD) >= 1);
    ASSERT_EQ(refs_of(a, o), 1);
    gf_arena_fork_disarm(); /* nothing armed: a no-op */
    ASSERT_EQ(gf_obj_decref_held(a, o), 0);
    gf_arena_detach(a);
}

/* A process that detaches drops the references still recorded for it; an attach that
 * re-takes a dead process's slot drops the dead one's first. */
TEST(detach_and_reattach_drop_references) {
    SKIP_UNDER_TSAN(); /* forks */
    gf_arena *a = mk();
    int base = live(a);
    gf_arena *b = NULL;
    ASSERT_OK(gf_arena_attach(gf_arena_fd(a), &b));
    gf_off o;
    ASSERT_OK(gf_obj_new(b, GF_OBJ_RAW, 64, &o));
    ASSERT_EQ(gf_ref_hold(b, o), 1);
    gf_arena_detach(b);
    ASSERT_EQ(gf_obj_check(a, o, GF_OBJ_RAW), GF_EBADMSG); /* freed */

    struct shared *s = shm();
    pid_t p = fork();
    ASSERT(p >= 0);
    if (p == 0) {
        ASSERT_OK(gf_arena_after_fork_child(a));
        gf_off c;
        ASSERT_OK(gf_obj_new(a, GF_OBJ_RAW, 64, &c));
        ASSERT_EQ(gf_ref_hold(a, c), 1);
        s->offs[0] = c;
        atomic_store(&s->stage, 1);
        pause();
        _exit(0);
    }
    wait_for(&s->stage, 1);
    kill_reap(p);
    ASSERT_OK(gf_obj_check(a, s->offs[0], GF_OBJ_RAW)); /* nobody reclaimed yet */
    gf_arena *c = NULL;
    ASSERT_OK(gf_arena_attach(gf_arena_fd(a), &c)); /* re-takes the dead slot: drops it */
    ASSERT_EQ(gf_obj_check(a, s->offs[0], GF_OBJ_RAW), GF_EBADMSG);
    gf_arena_detach(c);
    ASSERT_EQ(live(a), base);
    gf_arena_detach(a);
}

/* Many distinct objects: the chained tables hold them all (the inline table holds 32); the
 * tables are freed with the references. With GILFREE_ARENA_LEDGER_TABLES=0 (inline only) the
 * ledger fills: gf_ref_hold says 0, refs_unrecorded counts each miss, and exactly the
 * unrecorded objects leak (still live, freed here by hand: never freed twice). */
static void many_objects(int tables) {
    SKIP_UNDER_TSAN(); /* forks */
    char v[16];
    snprintf(v, sizeof v, "%d", tables);
    setenv("GILFREE_ARENA_LEDGER_TABLES", v, 1);
    gf_arena *a = mk();
    struct shared *s = shm();
    int base = live(a);
    uint64_t u0 = stats(a).refs_unrecorded;
    pid_t p = fork();
    ASSERT(p >= 0);
    if (p == 0) {
        ASSERT_OK(gf_arena_after_fork_child(a));
        int rec = 0;
        for (int i = 0; i < NOBJ; i++) {
            ASSERT_OK(gf_obj_new(a, GF_OBJ_RAW, 64, &s->offs[i]));
            rec += gf_ref_hold(a, s->offs[i]);
        }
        atomic_store(&s->recorded, rec);
        atomic_store(&s->stage, 1);
        pause();
        _exit(0);
    }
    wait_for(&s->stage, 1);
    kill_reap(p);
    int rec = atomic_load(&s->recorded);
    printf("# tables %d: %d of %d references recorded\n", tables, rec, NOBJ);
    ASSERT_EQ(stats(a).refs_unrecorded - u0, (uint64_t)(NOBJ - rec));
    ASSERT(gf_arena_reclaim(a, GF_ARENA_RECLAIM_DEAD) >= rec);
    int leaked = 0;
    for (int i = 0; i < NOBJ; i++)
        if (gf_obj_check(a, s->offs[i], GF_OBJ_RAW) == 0) {
            ASSERT_EQ(refs_of(a, s->offs[i]), 1);
            ASSERT_EQ(gf_obj_decref(a, s->offs[i]), 0);
            leaked++;
        }
    ASSERT_EQ(leaked, NOBJ - rec);
    ASSERT_EQ(live(a), base);
    if (tables == 0) {
        ASSERT(rec >= 16 && rec <= 32);
    } else {
        ASSERT_EQ(rec, NOBJ);
    }
    gf_arena_detach(a);
}

TEST(chained_tables_hold_many) { many_objects(4); }
TEST(full_ledger_is_counted_and_leaks_only_the_unrecorded) { many_objects(0); }

/* Children killed at random moments while taking and dropping references on the parent's
 * objects and blocks and on objects of their own: after reclaim every parent object still
 * has its reference (none dropped twice), and at most one reference per kill leaks (a kill
 * between an incref and its record). */
TEST(random_kills_never_drop_twice) {
    SKIP_UNDER_VALGRIND();
    SKIP_UNDER_TSAN();
    gf_arena *a = mk();
    enum { K = 16 };
    gf_off objs[K], blks[K];
    for (int i = 0; i < K; i++) {
        ASSERT_OK(gf_obj_new(a, GF_OBJ_RAW, 64, &objs[i]));
        ASSERT_OK(gf_alloc(a, 200, &blks[i]));
    }
    int base = live(a);
    unsigned seed = 12;
    int rounds = 40;
    for (int round = 0; round < rounds; round++) {
        pid_t p = fork();
        ASSERT(p >= 0);
        if (p == 0) {
            ASSERT_OK(gf_arena_after_fork_child(a));
            unsigned r = (unsigned)round * 7919u + 1;
            gf_off own[8] = {0};
            for (;;) {
                int i = (int)(rand_r(&r) % K), k = (int)(rand_r(&r) % 8);
                ASSERT_OK(gf_obj_incref_held(a, objs[i]));
                ASSERT_OK(gf_block_share(a, blks[i]));
                gf_ref_hold(a, blks[i]);
                if (own[k]) {
                    ASSERT_EQ(gf_obj_decref_held(a, own[k]), 0);
                    own[k] = 0;
                } else if (gf_obj_new(a, GF_OBJ_RAW, 64, &own[k]) == 0) {
                    gf_ref_hold(a, own[k]);
                }
                ASSERT_OK(gf_free_held(a, blks[i]));
                ASSERT(gf_obj_decref_held(a, objs[i]) >= 1);
            }
        }
        usleep((useconds_t)(200 + rand_r(&seed) % 3000));
        kill_reap(p);
        gf_arena_reclaim(a, GF_ARENA_RECLAIM_DEAD);
    }
    int leaked_refs = 0;
    for (int i = 0; i < K; i++) {
        ASSERT_OK(gf_obj_check(a, objs[i], GF_OBJ_RAW)); /* never dropped twice */
        ASSERT(gf_block_size(a, blks[i]) > 0);
        leaked_refs += (int)refs_of(a, objs[i]) - 1;
    }
    int left = live(a) - base;
    printf("# after %d kills: %d object references and %d blocks leaked\n", rounds,
           leaked_refs, left);
    ASSERT(leaked_refs <= rounds);
    ASSERT(left >= 0 && left <= rounds);
    for (int i = 0; i < K; i++) {
        while (refs_of(a, objs[i]) > 1) gf_obj_decref(a, objs[i]);
        ASSERT_EQ(gf_obj_decref(a, objs[i]), 0);
    }
    gf_arena_detach(a);
}

/* A reclaimer killed half-way through a dead process's ledger: the next reclaim finishes it;
 * nothing is dropped twice, at most the word in hand leaks. */
TEST(reclaimer_killed_midway) {
    SKIP_UNDER_VALGRIND();
    SKIP_UNDER_TSAN();
    gf_arena *a = mk();
    int base = live(a);
    unsigned seed = 5;
    int leaks = 0;
    for (int round = 0; round < 10; round++) {
        struct shared *s = shm();
        pid_t p = fork();
        ASSERT(p >= 0);
        if (p == 0) {
            ASSERT_OK(gf_arena_after_fork_child(a));
            for (int i = 0; i < 2000; i++) {
                ASSERT_OK(gf_obj_new(a, GF_OBJ_RAW, 64, &s->offs[i]));
                ASSERT_EQ(gf_ref_hold(a, s->offs[i]), 1);
            }
            atomic_store(&s->stage, 1);
            pause();
            _exit(0);
        }
        wait_for(&s->stage, 1);
        kill_reap(p);
        pid_t q = fork();
        ASSERT(q >= 0);
        if (q == 0) {
            ASSERT_OK(gf_arena_after_fork_child(a));
            gf_arena_reclaim(a, GF_ARENA_RECLAIM_DEAD);
            pause();
            _exit(0);
        }
        usleep((useconds_t)(rand_r(&seed) % 2000));
        kill_reap(q);
        gf_arena_reclaim(a, GF_ARENA_RECLAIM_DEAD);
        for (int i = 0; i < 2000; i++)
            if (gf_obj_check(a, s->offs[i], GF_OBJ_RAW) == 0) {
                ASSERT_EQ(gf_obj_decref(a, s->offs[i]), 0);
                leaks++;
            }
        munmap(s, sizeof *s);
    }
    printf("# references leaked by 10 killed reclaimers: %d\n", leaks);
    ASSERT(leaks <= 10);
    /* blocks a killed reclaimer was freeing (its thread cache, a block in hand) */
    int left = live(a) - base;
    ASSERT(left >= 0 && left <= 20);
    gf_arena_detach(a);
}

/* Threads of one process share its ledger: concurrent records and drops (and the race to
 * link the first chained table: 256 objects do not fit the inline table) keep every count
 * exact; the process's detach then drops exactly what its threads still hold. (Run under
 * TSan too: scripts/ctests.sh tsan.) */
enum { TOBJ = 256, TTHREADS = 4 };
static gf_arena *t_b;
static gf_off t_objs[TOBJ];

static void *ledger_thread(void *arg) {
    unsigned r = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    int t = (int)(uintptr_t)arg;
    for (int k = 0; k < 20000; k++) {
        gf_off o = t_objs[rand_r(&r) % TOBJ];
        ASSERT_OK(gf_obj_incref_held(t_b, o));
        ASSERT(gf_obj_decref_held(t_b, o) >= 1);
    }
    for (int i = t; i < TOBJ; i += TTHREADS) ASSERT_OK(gf_obj_incref_held(t_b, t_objs[i]));
    return NULL;
}

TEST(threads_share_a_ledger) {
    gf_arena *a = mk();
    for (int i = 0; i < TOBJ; i++) ASSERT_OK(gf_obj_new(a, GF_OBJ_RAW, 64, &t_objs[i]));
    ASSERT_OK(gf_arena_attach(gf_arena_fd(a), &t_b));
    pthread_t th[TTHREADS];
    for (int t = 0; t < TTHREADS; t++)
        ASSERT(pthread_create(&th[t], NULL, ledger_thread, (void *)(uintptr_t)t) == 0);
    for (int t = 0; t < TTHREADS; t++) ASSERT(pthread_join(th[t], NULL) == 0);
    for (int i = 0; i < TOBJ; i++) ASSERT_EQ(refs_of(a, t_objs[i]), 2);
    ASSERT_EQ(stats(a).refs_unrecorded, 0);
    gf_arena_detach(t_b); /* drops what the threads still hold: one reference each */
    for (int i = 0; i < TOBJ; i++) ASSERT_EQ(gf_obj_decref(a, t_objs[i]), 0);
    gf_arena_detach(a);
}

TEST_MAIN()
