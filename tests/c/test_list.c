/*
 * test_list.c -- the shared list: every operation against a reference model, two processes,
 * the list lock, and crash consistency under repeated SIGKILLs.
 */
#include "gilfree.h"
#include "test.h"

#include <stdatomic.h>
#include <sys/mman.h>

static gf_arena *A;

/* reserve 0 = the default (64 GiB, sparse); valgrind cannot map that much: 1 GiB there. */
static void setup(size_t reserve) {
    if (reserve == 0 && getenv("GF_TEST_VALGRIND")) reserve = (size_t)1 << 30;
    ASSERT_OK(gf_arena_create(reserve, &A));
}

static void *shm(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    return p;
}

static pid_t spawn(void (*fn)(void *), void *arg) {
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        if (gf_arena_after_fork_child(A) != 0) _exit(99);
        fn(arg);
        fflush(NULL);
        _exit(0);
    }
    return pid;
}
static int reap(pid_t pid) {
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    return st;
}
static void reap_ok(pid_t pid) {
    int st = reap(pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("child %d failed: status %#x", pid, st);
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Items in these tests are u64 ids followed by a filler derived from the id. */
static size_t mkitem(uint64_t id, unsigned char *v) {
    size_t n = 8 + id % 100;
    memcpy(v, &id, 8);
    for (size_t i = 8; i < n; i++) v[i] = (unsigned char)(id * 13 + i);
    return n;
}
static uint64_t item_id(const void *p, size_t n) {
    uint64_t id;
    unsigned char tmp[128];
    if (n < 8) return UINT64_MAX;
    memcpy(&id, p, 8);
    if (mkitem(id, tmp) != n || memcmp(tmp, p, n) != 0) return UINT64_MAX;
    return id;
}

/* Compare the list with model[0..n) (ids). */
static void expect_list(gf_off l, const uint64_t *model, size_t n) {
    ASSERT_EQ(gf_list_len(A, l), (int64_t)n);
    gf_snap s;
    ASSERT_OK(gf_list_slice(A, l, 0, GF_LIST_END, &s));
    ASSERT_EQ(s.count, n);
    size_t pos = 0, i = 0;
    gf_snap_item it;
    while (gf_snap_next(&s, &pos, &it)) {
        ASSERT(it.key == NULL);
        ASSERT_EQ(item_id(it.val, it.vlen), model[i]);
        i++;
    }
    gf_snap_free(&s);
}

TEST(basic) {
    setup(0);
    gf_off l;
    ASSERT_OK(gf_list_create(A, 0, &l));
    ASSERT_EQ(gf_list_len(A, l), 0);
    ASSERT_OK(gf_list_append(A, l, "a", 1));
    ASSERT_OK(gf_list_append(A, l, "bb", 2));
    ASSERT_OK(gf_list_insert(A, l, 0, "z", 1));
    ASSERT_OK(gf_list_insert(A, l, 100, "end", 3));
    ASSERT_OK(gf_list_insert(A, l, -100, "first", 5));
    /* first z a bb end */
    char buf[16];
    gf_buf b;
    ASSERT_OK(gf_list_get(A, l, 0, buf, sizeof buf, &b));
    ASSERT(b.len == 5 && !memcmp(b.data, "first", 5));
    ASSERT_OK(gf_list_get(A, l, -1, buf, sizeof buf, &b));
    ASSERT(b.len == 3 && !memcmp(b.data, "end", 3));
    ASSERT_EQ(gf_list_get(A, l, 5, buf, sizeof buf, &b), GF_ENOENT);
    ASSERT_EQ(gf_list_get(A, l, -6, buf, sizeof buf, &b), GF_ENOENT);
    ASSERT_OK(gf_list_get(A, l, 2, NULL, 0, &b));
    ASSERT(b.heap && b.len == 1 && !memcmp(b.data, "a", 1));
    gf_buf_release(&b);
    ASSERT_EQ(gf_list_index(A, l, "a", 1, 0, GF_LIST_END), 2);
    ASSERT_EQ(gf_list_index(A, l, "a", 1, 3, GF_LIST_END), GF_ENOENT);
    ASSERT_EQ(gf_list_index(A, l, "nope", 4, 0, GF_LIST_END), GF_ENOENT);
    ASSERT_OK(gf_list_set(A, l, 1, "a", 1));
    ASSERT_EQ(gf_list_count(A, l, "a", 1), 2);
    ASSERT_EQ(gf_list_set(A, l, 9, "a", 1), GF_ENOENT);
    ASSERT_OK(gf_list_pop(A, l, -1, buf, sizeof buf, &b));
    ASSERT(b.len == 3 && !memcmp(b.data, "end", 3));
    ASSERT_OK(gf_list_pop(A, l, 0, buf, sizeof buf, &b));
    ASSERT(b.len == 5 && !memcmp(b.data, "first", 5));
    ASSERT_OK(gf_list_delete(A, l, 0));
    ASSERT_EQ(gf_list_len(A, l), 2); /* a bb */
    struct iovec iov[3] = {{"x", 1}, {"y", 1}, {"", 0}};
    ASSERT_OK(gf_list_extend(A, l, iov, 3)); /* a bb x y "" */
    ASSERT_OK(gf_list_splice(A, l, 1, 3, iov, 1)); /* a x y "" */
    ASSERT_EQ(gf_list_len(A, l), 4);
    gf_snap s;
    ASSERT_OK(gf_list_slice(A, l, -3, -1, &s)); /* x y */
    ASSERT_EQ(s.count, 2);
    gf_snap_free(&s);
    ASSERT_EQ(gf_list_check(A, l), 4);
    ASSERT_OK(gf_list_clear(A, l));
    ASSERT_EQ(gf_list_len(A, l), 0);
    ASSERT_EQ(gf_list_pop(A, l, -1, NULL, 0, NULL), GF_ENOENT);

    /* everything is freed with the last reference */
    gf_arena_stats st0, st1;
    ASSERT_OK(gf_arena_stats_get(A, &st0));
    gf_off l2;
    ASSERT_OK(gf_list_create(A, 0, &l2));
    for (int i = 0; i < 3000; i++) ASSERT_OK(gf_list_append(A, l2, &i, sizeof i));
    for (int i = 0; i < 100; i++) ASSERT_OK(gf_list_delete(A, l2, 7 * i));
    ASSERT_EQ(gf_obj_decref(A, l2), 0);
    ASSERT_OK(gf_arena_stats_get(A, &st1));
    ASSERT_EQ(st1.live_blocks, st0.live_blocks);
    ASSERT_EQ(gf_dict_set(A, l, "k", 1, "v", 1), GF_EINVAL); /* not a dict */
    ASSERT_EQ(gf_list_append(A, 0, "k", 1), GF_EINVAL);
}

TEST(too_big_is_enospc) {
    setup((size_t)16 << 20);
    gf_off l;
    ASSERT_OK(gf_list_create(A, 0, &l));
    ASSERT_OK(gf_list_append(A, l, "x", 1));
    size_t big = (size_t)32 << 20;
    char *v = calloc(1, big);
    ASSERT(v);
    ASSERT_EQ(gf_list_append(A, l, v, big), GF_ENOSPC);
    ASSERT_EQ(gf_list_set(A, l, 0, v, big), GF_ENOSPC);
    int r = 0, n = 0;
    for (; n < 100000; n++)
        if ((r = gf_list_append(A, l, v, 100000)) < 0) break;
    ASSERT_EQ(r, GF_ENOSPC);
    ASSERT_EQ(gf_list_check(A, l), n + 1);
    char buf[4];
    gf_buf b;
    ASSERT_OK(gf_list_get(A, l, 0, buf, sizeof buf, &b));
    ASSERT(b.len == 1 && *(char *)b.data == 'x');
    free(v);
}

#define MAXM 4096
TEST(model_random_ops) {
    setup(0);
    gf_off l;
    ASSERT_OK(gf_list_create(A, 0, &l));
    static uint64_t model[MAXM];
    size_t n = 0;
    uint64_t next_id = 1;
    unsigned char v[128];
    for (int op = 0; op < 10000; op++) {
        int64_t i = n ? (int64_t)(rnd() % (n + 4)) - 2 : 0; /* some out of range */
        if (rnd() & 1) i = -i;
        int in_range = n && i < (int64_t)n && i >= -(int64_t)n;
        size_t k = in_range ? (size_t)(i < 0 ? i + (int64_t)n : i) : 0;
        gf_buf b;
        int r;
        switch (rnd() % 11) {
        case 0: case 1: /* append */
            if (n >= MAXM - 8) break;
            ASSERT_OK(gf_list_append(A, l, v, mkitem(next_id, v)));
            model[n++] = next_id++;
            break;
        case 2: { /* insert (clamped) */
            if (n >= MAXM - 8) break;
            int64_t j = i;
            size_t pos = j < 0 ? (j + (int64_t)n < 0 ? 0 : (size_t)(j + (int64_t)n))
                               : ((size_t)j > n ? n : (size_t)j);
            ASSERT_OK(gf_list_insert(A, l, j, v, mkitem(next_id, v)));
            memmove(model + pos + 1, model + pos, (n - pos) * 8);
            model[pos] = next_id++;
            n++;
            break;
        }
        case 3: /* get */
            r = gf_list_get(A, l, i, v, 20, &b);
            if (!in_range) { ASSERT_EQ(r, GF_ENOENT); break; }
            ASSERT_OK(r);
            ASSERT_EQ(item_id(b.data, b.len), model[k]);
            gf_buf_release(&b);
            break;
        case 4: /* set */
            r = gf_list_set(A, l, i, v, mkitem(next_id, v));
            if (!in_range) { ASSERT_EQ(r, GF_ENOENT); break; }
            ASSERT_OK(r);
            model[k] = next_id++;
            break;
        case 5: /* pop */
            r = gf_list_pop(A, l, i, NULL, 0, &b);
            if (!in_range) { ASSERT_EQ(r, GF_ENOENT); break; }
            ASSERT_OK(r);
            ASSERT_EQ(item_id(b.data, b.len), model[k]);
            gf_buf_release(&b);
            memmove(model + k, model + k + 1, (n - k - 1) * 8);
            n--;
            break;
        case 6: /* delete, mostly at the end */
            if (rnd() & 1 && n) i = -1, in_range = 1, k = n - 1;
            r = gf_list_delete(A, l, i);
            if (!in_range) { ASSERT_EQ(r, GF_ENOENT); break; }
            ASSERT_OK(r);
            memmove(model + k, model + k + 1, (n - k - 1) * 8);
            n--;
            break;
        case 7: { /* splice: replace [s, e) by m new items */
            size_t s = n ? rnd() % (n + 1) : 0, e = s + (n > s ? rnd() % (n - s + 1) : 0);
            size_t m = rnd() % 5;
            if (n - (e - s) + m >= MAXM - 8) break;
            struct iovec iov[5];
            unsigned char vs[5][128];
            uint64_t ids[5];
            for (size_t j = 0; j < m; j++) {
                ids[j] = next_id++;
                iov[j].iov_base = vs[j];
                iov[j].iov_len = mkitem(ids[j], vs[j]);
            }
            ASSERT_OK(gf_list_splice(A, l, (int64_t)s, (int64_t)e, iov, m));
            memmove(model + s + m, model + e, (n - e) * 8);
            memcpy(model + s, ids, m * 8);
            n = n - (e - s) + m;
            break;
        }
        case 8: { /* extend */
            size_t m = rnd() % 6;
            if (n + m >= MAXM - 8) break;
            struct iovec iov[6];
            unsigned char vs[6][128];
            for (size_t j = 0; j < m; j++) {
                iov[j].iov_base = vs[j];
                iov[j].iov_len = mkitem(next_id, vs[j]);
                model[n++] = next_id++;
            }
            ASSERT_OK(gf_list_extend(A, l, iov, m));
            break;
        }
        case 9: { /* index / count */
            if (!in_range) break;
            size_t len = mkitem(model[k], v);
            ASSERT_EQ(gf_list_index(A, l, v, len, 0, GF_LIST_END), (int64_t)k);
            ASSERT_EQ(gf_list_count(A, l, v, len), 1);
            ASSERT_EQ(gf_list_index(A, l, v, len, (int64_t)k + 1, GF_LIST_END), GF_ENOENT);
            break;
        }
        case 10:
            if (rnd() % 30 == 0) {
                ASSERT_OK(gf_list_clear(A, l));
                n = 0;
            } else if (rnd() % 5 == 0) {
                expect_list(l, model, n);
                ASSERT_EQ(gf_list_check(A, l), (int64_t)n);
            }
            break;
        }
    }
    expect_list(l, model, n);
    ASSERT_EQ(gf_list_check(A, l), (int64_t)n);
}

struct app { gf_off l; int id; int n; };
static void append_fn(void *arg) {
    struct app *p = arg;
    unsigned char v[128];
    for (int i = 0; i < p->n; i++) {
        uint64_t id = (uint64_t)p->id << 32 | (uint64_t)i;
        ASSERT_OK(gf_list_append(A, p->l, v, mkitem(id, v)));
    }
}

TEST(two_procs_append) {
    setup(0);
    gf_off l;
    ASSERT_OK(gf_list_create(A, 0, &l));
    const int n = 20000;
    struct app a0 = {l, 1, n}, a1 = {l, 2, n};
    pid_t p0 = spawn(append_fn, &a0), p1 = spawn(append_fn, &a1);
    reap_ok(p0);
    reap_ok(p1);
    ASSERT_EQ(gf_list_check(A, l), 2 * n);
    /* each process's items appear in its order */
    gf_snap s;
    ASSERT_OK(gf_list_slice(A, l, 0, GF_LIST_END, &s));
    int64_t nexti[3] = {0, 0, 0};
    size_t pos = 0;
    gf_snap_item it;
    while (gf_snap_next(&s, &pos, &it)) {
        uint64_t id = item_id(it.val, it.vlen);
        ASSERT(id != UINT64_MAX);
        int who = (int)(id >> 32);
        ASSERT(who == 1 || who == 2);
        ASSERT_EQ((int64_t)(id & 0xffffffff), nexti[who]);
        nexti[who]++;
    }
    ASSERT(nexti[1] == n && nexti[2] == n);
    gf_snap_free(&s);
}

struct lk { gf_off l; _Atomic int stage; };
static void hold_and_die(void *arg) {
    struct lk *k = arg;
    ASSERT_OK(gf_list_lock(A, k->l, GF_FOREVER));
    ASSERT_OK(gf_list_append(A, k->l, "held", 4)); /* recursive: the holder can operate */
    atomic_store(&k->stage, 1);
    for (;;) pause();
}
static void hold_then_release(void *arg) {
    struct lk *k = arg;
    ASSERT_OK(gf_list_lock(A, k->l, GF_FOREVER));
    atomic_store(&k->stage, 1);
    usleep(100000);
    ASSERT_OK(gf_list_append(A, k->l, "c", 1));
    atomic_store(&k->stage, 2);
    ASSERT_OK(gf_list_unlock(A, k->l));
}

TEST(lock_blocks_others_and_survives_holder_death) {
    setup(0);
    struct lk *k = shm(sizeof *k);
    ASSERT_OK(gf_list_create(A, 0, &k->l));
    pid_t p = spawn(hold_then_release, k);
    while (atomic_load(&k->stage) < 1) usleep(100);
    ASSERT_OK(gf_list_append(A, k->l, "p", 1));
    ASSERT_EQ(atomic_load(&k->stage), 2);
    reap_ok(p);
    char buf[8];
    gf_buf b;
    ASSERT_OK(gf_list_get(A, k->l, 0, buf, sizeof buf, &b));
    ASSERT(b.len == 1 && *(char *)b.data == 'c');

    atomic_store(&k->stage, 0);
    p = spawn(hold_and_die, k);
    while (atomic_load(&k->stage) < 1) usleep(100);
    ASSERT_EQ(gf_list_lock(A, k->l, gf_deadline_after(20000000)), GF_ETIMEDOUT);
    kill(p, SIGKILL);
    reap(p);
    ASSERT_OK(gf_list_append(A, k->l, "after", 5));
    ASSERT_EQ(gf_list_check(A, k->l), 4);
    int r = gf_list_lock(A, k->l, GF_FOREVER);
    ASSERT(r == 0 || r == GF_EOWNERDEAD);
    ASSERT_OK(gf_list_unlock(A, k->l));
}

static void on_alarm(int sig) { (void)sig; }
static void hold_until_stage2(void *arg) {
    struct lk *k = arg;
    ASSERT_OK(gf_list_lock(A, k->l, GF_FOREVER));
    atomic_store(&k->stage, 1);
    while (atomic_load(&k->stage) < 2) usleep(1000);
    ASSERT_OK(gf_list_unlock(A, k->l));
}

TEST(eintr_while_waiting_for_lock) {
    setup(0);
    struct lk *k = shm(sizeof *k);
    ASSERT_OK(gf_list_create(A, 0, &k->l));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    pid_t p = spawn(hold_until_stage2, k);
    while (atomic_load(&k->stage) < 1) usleep(100);
    ualarm(30000, 0);
    ASSERT_EQ(gf_list_append(A, k->l, "x", 1), GF_EINTR);
    ualarm(30000, 0);
    ASSERT_EQ(gf_list_len(A, k->l), GF_EINTR);
    atomic_store(&k->stage, 2);
    ASSERT_OK(gf_list_append(A, k->l, "x", 1));
    reap_ok(p);
    ASSERT_EQ(gf_list_check(A, k->l), 1); /* the interrupted append did nothing */
}

/* ---- crash consistency: the child prepares the expected next state in the spare half of a
 * double-buffered model, logs "pending", runs the operation, flips the model, clears the log. ---- */
#define CM 2000
struct lcrash {
    gf_off l;
    uint64_t next_id;
    _Atomic int pending;
    _Atomic int cur;
    uint64_t n[2];
    uint64_t m[2][CM];
};

static void lcrash_child(void *arg) {
    struct lcrash *c = arg;
    rng_state ^= (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
    unsigned char v[128];
    for (;;) {
        int cur = atomic_load(&c->cur), nx = cur ^ 1;
        uint64_t n = c->n[cur], *om = c->m[cur], *nm = c->m[nx];
        uint64_t r = rnd() % 100;
        int rr;
        if (n == 0 || (r < 45 && n < CM - 10)) { /* append */
            uint64_t id = ++c->next_id;
            memcpy(nm, om, n * 8);
            nm[n] = id;
            c->n[nx] = n + 1;
            atomic_store(&c->pending, 1);
            rr = gf_list_append(A, c->l, v, mkitem(id, v));
        } else if (r < 60 && n < CM - 10) { /* insert */
            uint64_t id = ++c->next_id, k = rnd() % (n + 1);
            memcpy(nm, om, k * 8);
            nm[k] = id;
            memcpy(nm + k + 1, om + k, (n - k) * 8);
            c->n[nx] = n + 1;
            atomic_store(&c->pending, 1);
            rr = gf_list_insert(A, c->l, (int64_t)k, v, mkitem(id, v));
        } else if (r < 75) { /* set */
            uint64_t id = ++c->next_id, k = rnd() % n;
            memcpy(nm, om, n * 8);
            nm[k] = id;
            c->n[nx] = n;
            atomic_store(&c->pending, 1);
            rr = gf_list_set(A, c->l, (int64_t)k, v, mkitem(id, v));
        } else if (r < 97) { /* pop / delete anywhere (mostly the end) */
            uint64_t k = rnd() % 2 ? n - 1 : rnd() % n;
            memcpy(nm, om, k * 8);
            memcpy(nm + k, om + k + 1, (n - k - 1) * 8);
            c->n[nx] = n - 1;
            atomic_store(&c->pending, 1);
            gf_buf b;
            rr = gf_list_pop(A, c->l, (int64_t)k, NULL, 0, &b);
            if (rr == 0) gf_buf_release(&b);
        } else { /* clear */
            c->n[nx] = 0;
            atomic_store(&c->pending, 1);
            rr = gf_list_clear(A, c->l);
        }
        if (rr < 0) _exit(3);
        atomic_store(&c->cur, nx);
        atomic_store(&c->pending, 0);
    }
}

static int list_equals(gf_off l, const uint64_t *m, uint64_t n) {
    gf_snap s;
    ASSERT_OK(gf_list_slice(A, l, 0, GF_LIST_END, &s));
    int ok = s.count == n;
    size_t pos = 0, i = 0;
    gf_snap_item it;
    while (ok && gf_snap_next(&s, &pos, &it)) ok = item_id(it.val, it.vlen) == m[i++];
    gf_snap_free(&s);
    return ok;
}

TEST(sigkill_in_list_ops) {
    setup(0);
    struct lcrash *c = shm(sizeof *c);
    ASSERT_OK(gf_list_create(A, 0, &c->l));
    int rounds = getenv("GF_TEST_VALGRIND") ? 10 : 150;
    int saw_new = 0;
    for (int i = 0; i < rounds; i++) {
        pid_t p = spawn(lcrash_child, c);
        usleep((useconds_t)(500 + rnd() % 10000));
        kill(p, SIGKILL);
        int st = reap(p);
        if (!WIFSIGNALED(st)) FAIL("child exited by itself: %#x", st);
        int64_t n = gf_list_check(A, c->l);
        if (n < 0) FAIL("list corrupt after kill %d: %s", i, gf_strerror((int)n));
        int cur = atomic_load(&c->cur);
        if (list_equals(c->l, c->m[cur], c->n[cur])) {
            /* the old state (or no operation in flight) */
        } else if (atomic_load(&c->pending) && list_equals(c->l, c->m[cur ^ 1], c->n[cur ^ 1])) {
            atomic_store(&c->cur, cur ^ 1); /* the in-flight operation committed */
            saw_new++;
        } else {
            FAIL("kill %d: the list is neither the old nor the new state", i);
        }
        atomic_store(&c->pending, 0);
    }
    ASSERT_OK(gf_list_append(A, c->l, "end", 3));
    printf("  (%d kills landed between commit and model update)\n", saw_new);
}

TEST_MAIN()
