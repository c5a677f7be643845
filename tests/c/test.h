/*
 * test.h -- a tiny test runner for the C core (libuv-style: every test in its own process).
 *
 *   TEST(name) { ... ASSERT(cond); ASSERT_EQ(a, b); ... }
 *   TEST_MAIN()
 *
 * Each test runs in a forked child with a timeout (GF_TEST_TIMEOUT seconds, default 60); a
 * crash, a failed assertion or a hang fails that test only. `./test_x name` runs one test in
 * this process (for gdb). The last line is "N passed, N failed".
 */
#ifndef GF_TEST_H
#define GF_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef void (*gf_test_fn)(void);
struct gf_test_case { const char *name; gf_test_fn fn; };

#define GF_TEST_MAX 256
static struct gf_test_case gf_tests[GF_TEST_MAX];
static int gf_ntests;

#define TEST(name)                                                                 \
    static void test_##name(void);                                                 \
    __attribute__((constructor)) static void register_##name(void) {               \
        if (gf_ntests < GF_TEST_MAX) gf_tests[gf_ntests++] =                       \
            (struct gf_test_case){#name, test_##name};                             \
    }                                                                              \
    static void test_##name(void)

#define FAIL(...)                                                                  \
    do {                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                            \
        fprintf(stderr, __VA_ARGS__);                                              \
        fputc('\n', stderr);                                                       \
        abort();                                                                   \
    } while (0)

#define ASSERT(c)                                                                  \
    do { if (!(c)) FAIL("assertion failed: %s", #c); } while (0)

#define ASSERT_EQ(a, b)                                                            \
    do {                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                        \
        if (_a != _b) FAIL("%s == %s: %lld != %lld", #a, #b, _a, _b);              \
    } while (0)

/* For calls returning 0 or a gf error code. */
#define ASSERT_OK(call)                                                            \
    do {                                                                           \
        int _r = (call);                                                           \
        if (_r < 0) FAIL("%s failed: %d (%s)", #call, _r, gf_strerror(_r));        \
    } while (0)

/* The sanitizer/valgrind runs (scripts/ctests.sh) set these: tests that fork workers and
 * rely on them (TSan does not follow fork()ed children; valgrind is slow) return early. */
#define SKIP_UNDER_TSAN()                                                          \
    do { if (getenv("GF_TEST_TSAN")) { printf("  (skipped under tsan)\n"); return; } } while (0)
#define SKIP_UNDER_VALGRIND()                                                      \
    do { if (getenv("GF_TEST_VALGRIND")) { printf("  (skipped under valgrind)\n"); return; } } while (0)

static inline double gf_test_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int gf_test_run_one(const struct gf_test_case *t, int timeout) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 0; }
    if (pid == 0) {
        setpgid(0, 0); /* so that a hang kills the test's own children too */
        t->fn();
        fflush(NULL);
        _exit(0);
    }
    double t0 = gf_test_now();
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (gf_test_now() - t0 > timeout) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "not ok - %s (timed out after %ds)\n", t->name, timeout);
            return 0;
        }
        usleep(2000);
    }
    kill(-pid, SIGKILL); /* leftovers of the test's process group */
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("ok - %s (%.3fs)\n", t->name, gf_test_now() - t0);
        return 1;
    }
    if (WIFSIGNALED(status))
        fprintf(stderr, "not ok - %s (signal %d)\n", t->name, WTERMSIG(status));
    else
        fprintf(stderr, "not ok - %s (exit %d)\n", t->name, WEXITSTATUS(status));
    return 0;
}

#define TEST_MAIN()                                                                \
    int main(int argc, char **argv) {                                              \
        const char *to = getenv("GF_TEST_TIMEOUT");                                \
        int timeout = to ? atoi(to) : 60;                                          \
        int passed = 0, failed = 0;                                                \
        for (int i = 0; i < gf_ntests; i++) {                                      \
            if (argc > 1) {                                                        \
                int hit = 0;                                                       \
                for (int j = 1; j < argc; j++)                                     \
                    if (strcmp(argv[j], gf_tests[i].name) == 0) hit = 1;           \
                if (!hit) continue;                                                \
                if (argc == 2 && getenv("GF_TEST_INPROC")) {                       \
                    gf_tests[i].fn(); printf("ok - %s\n", gf_tests[i].name);       \
                    passed++; continue;                                            \
                }                                                                  \
            }                                                                      \
            if (gf_test_run_one(&gf_tests[i], timeout)) passed++; else failed++;   \
        }                                                                          \
        printf("%d passed, %d failed\n", passed, failed);                          \
        return failed ? 1 : 0;                                                     \
    }

#endif
