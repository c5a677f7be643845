/* test_proc.c -- child processes through pidfds. */
#include "gilfree.h"
#include "test.h"

#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/time.h>

#define MS 1000000LL

static void sleep_forever(void) {
    for (;;) pause();
}

TEST(fork_wait_exitcode) {
    gf_proc p;
    int r = gf_proc_fork(&p, 0);
    ASSERT(r >= 0);
    if (r == 1) {
        if (p.pid != 0 || p.pidfd != -1) _exit(99);
        _exit(7);
    }
    ASSERT(p.pid > 0);
    ASSERT(p.pidfd >= 0);
    ASSERT_EQ(p.reaped, 0);
    int code = 12345;
    ASSERT_EQ(gf_proc_exitcode(&p, &code), GF_EAGAIN);
    ASSERT_EQ(code, 12345);
    ASSERT_OK(gf_proc_wait(&p, GF_FOREVER));
    ASSERT_EQ(p.reaped, 1);
    ASSERT(WIFEXITED(p.status));
    ASSERT_OK(gf_proc_exitcode(&p, &code));
    ASSERT_EQ(code, 7);
    ASSERT_OK(gf_proc_wait(&p, 0)); /* again: at once */
    ASSERT_EQ(gf_proc_signal(&p, SIGTERM), GF_ESRCH);
    /* Really reaped: no zombie left. */
    ASSERT_EQ(waitpid(p.pid, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
    gf_proc_close(&p);
    ASSERT_EQ(p.pidfd, -1);
    gf_proc_close(&p); /* idempotent */
}

TEST(exit_codes) {
    int codes[] = {0, 1, 255};
    for (int i = 0; i < 3; i++) {
        gf_proc p;
        int r = gf_proc_fork(&p, 0);
        ASSERT(r >= 0);
        if (r == 1) _exit(codes[i]);
        ASSERT_OK(gf_proc_wait(&p, gf_deadline_after(10000 * MS)));
        int code;
        ASSERT_OK(gf_proc_exitcode(&p, &code));
        ASSERT_EQ(code, codes[i]);
        gf_proc_close(&p);
    }
    /* Killed by a signal it raised itself. */
    gf_proc p;
    int r = gf_proc_fork(&p, 0);
    ASSERT(r >= 0);
    if (r == 1) {
        signal(SIGTERM, SIG_DFL);
        raise(SIGTERM);
        _exit(0);
    }
    ASSERT_OK(gf_proc_wait(&p, GF_FOREVER));
    int code;
    ASSERT_OK(gf_proc_exitcode(&p, &code));
    ASSERT_EQ(code, -SIGTERM);
    gf_proc_close(&p);
}

TEST(wait_timeout_then_kill) {
    gf_proc p;
    int r = gf_proc_fork(&p, 0);
    ASSERT(r >= 0);
    if (r == 1) sleep_forever();
    ASSERT_EQ(gf_proc_wait(&p, 0), GF_ETIMEDOUT); /* never blocks */
    ASSERT_EQ(gf_proc_wait(&p, gf_now_ns() - 1000), GF_ETIMEDOUT);
    int64_t t0 = gf_now_ns();
    ASSERT_EQ(gf_proc_wait(&p, t0 + 50 * MS), GF_ETIMEDOUT);
    ASSERT(gf_now_ns() - t0 >= 50 * MS); /* not early */
    ASSERT_EQ(p.reaped, 0);
    ASSERT_OK(gf_proc_signal(&p, SIGKILL));
    ASSERT_OK(gf_proc_wait(&p, GF_FOREVER));
    int code;
    ASSERT_OK(gf_proc_exitcode(&p, &code));
    ASSERT_EQ(code, -9);
    gf_proc_close(&p);
}

TEST(signal_zombie_and_bad_signal) {
    gf_proc p;
    int r = gf_proc_fork(&p, 0);
    ASSERT(r >= 0);
    if (r == 1) _exit(3);
    /* Wait until it has exited without reaping it: the pidfd becomes readable. */
    struct pollfd pfd = {.fd = p.pidfd, .events = POLLIN};
    ASSERT_EQ(poll(&pfd, 1, 10000), 1);
    ASSERT_OK(gf_proc_signal(&p, SIGKILL)); /* a zombie: fine */
    ASSERT_EQ(gf_proc_signal(&p, 12345), GF_EINVAL);
    ASSERT_OK(gf_proc_wait(&p, GF_FOREVER));
    int code;
    ASSERT_OK(gf_proc_exitcode(&p, &code));
    ASSERT_EQ(code, 3); /* the SIGKILL to the zombie changed nothing */
    gf_proc_close(&p);
}

TEST(pidfd_is_a_sentinel) {
    gf_proc p;
    int r = gf_proc_fork(&p, 0);
    ASSERT(r >= 0);
    if (r == 1) {
        usleep(100000);
        _exit(0);
    }
    struct pollfd pfd = {.fd = p.pidfd, .events = POLLIN};
    ASSERT_EQ(poll(&pfd, 1, 0), 0); /* running: not readable */
    ASSERT_EQ(poll(&pfd, 1, 10000), 1);
    ASSERT(pfd.revents & POLLIN);
    ASSERT_OK(gf_proc_wait(&p, 0)); /* already exited: reaps without blocking */
    gf_proc_close(&p);
}

/* Parent of a DIE_WITH_PARENT grandchild: reports the grandchild's pid, then waits to die. */
TEST(die_with_parent) {
    /* Orphans are reparented to us, so we can reap and inspect the grandchild. */
    ASSERT(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    int fds[2];
    ASSERT(pipe(fds) == 0);
    gf_proc mid;
    int r = gf_proc_fork(&mid, 0);
    ASSERT(r >= 0);
    if (r == 1) {
        gf_proc gc;
        int r2 = gf_proc_fork(&gc, GF_PROC_DIE_WITH_PARENT);
        if (r2 < 0) _exit(20);
        if (r2 == 1) sleep_forever();
        if (write(fds[1], &gc.pid, sizeof gc.pid) != sizeof gc.pid) _exit(21);
        sleep_forever();
    }
    pid_t gpid;
    ASSERT_EQ(read(fds[0], &gpid, sizeof gpid), (ssize_t)sizeof gpid);
    gf_proc gc;
    ASSERT_OK(gf_proc_adopt(&gc, gpid));
    ASSERT_EQ(gf_proc_wait(&gc, gf_deadline_after(20 * MS)), GF_ECHILD); /* not ours yet */
    ASSERT_OK(gf_proc_signal(&mid, SIGKILL));
    ASSERT_OK(gf_proc_wait(&mid, GF_FOREVER));
    /* The grandchild was SIGKILLed when its parent died, and reparented to us. */
    ASSERT_OK(gf_proc_wait(&gc, gf_deadline_after(10000 * MS)));
    int code;
    ASSERT_OK(gf_proc_exitcode(&gc, &code));
    ASSERT_EQ(code, -SIGKILL);
    gf_proc_close(&gc);
    gf_proc_close(&mid);
}

/* Without the flag, the grandchild outlives its parent. */
TEST(no_die_with_parent) {
    ASSERT(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    int fds[2];
    ASSERT(pipe(fds) == 0);
    gf_proc mid;
    int r = gf_proc_fork(&mid, 0);
    ASSERT(r >= 0);
    if (r == 1) {
        gf_proc gc;
        int r2 = gf_proc_fork(&gc, 0);
        if (r2 < 0) _exit(20);
        if (r2 == 1) sleep_forever();
        if (write(fds[1], &gc.pid, sizeof gc.pid) != sizeof gc.pid) _exit(21);
        sleep_forever();
    }
    pid_t gpid;
    ASSERT_EQ(read(fds[0], &gpid, sizeof gpid), (ssize_t)sizeof gpid);
    ASSERT_OK(gf_proc_signal(&mid, SIGKILL));
    ASSERT_OK(gf_proc_wait(&mid, GF_FOREVER));
    gf_proc gc;
    ASSERT_OK(gf_proc_adopt(&gc, gpid));
    ASSERT_EQ(gf_proc_wait(&gc, gf_deadline_after(100 * MS)), GF_ETIMEDOUT);
    ASSERT_OK(gf_proc_signal(&gc, SIGKILL));
    ASSERT_OK(gf_proc_wait(&gc, GF_FOREVER));
    gf_proc_close(&gc);
    gf_proc_close(&mid);
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) {
    (void)sig;
    alarms++;
}

TEST(wait_eintr) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    ASSERT(sigaction(SIGALRM, &sa, NULL) == 0);
    gf_proc p;
    int r = gf_proc_fork(&p, 0);
    ASSERT(r >= 0);
    if (r == 1) sleep_forever();
    struct itimerval it = {.it_value = {.tv_sec = 0, .tv_usec = 50000}};
    ASSERT(setitimer(ITIMER_REAL, &it, NULL) == 0);
    ASSERT_EQ(gf_proc_wait(&p, GF_FOREVER), GF_EINTR);
    ASSERT_EQ(alarms, 1);
    /* Same with a finite deadline; then the caller retries with the same deadline. */
    int64_t deadline = gf_deadline_after(10000 * MS);
    ASSERT(setitimer(ITIMER_REAL, &it, NULL) == 0);
    ASSERT_EQ(gf_proc_wait(&p, deadline), GF_EINTR);
    ASSERT_EQ(alarms, 2);
    ASSERT_OK(gf_proc_signal(&p, SIGKILL));
    ASSERT_OK(gf_proc_wait(&p, deadline));
    int code;
    ASSERT_OK(gf_proc_exitcode(&p, &code));
    ASSERT_EQ(code, -9);
    gf_proc_close(&p);
}

TEST(adopt_and_errors) {
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) _exit(5);
    gf_proc p;
    ASSERT_OK(gf_proc_adopt(&p, pid));
    ASSERT_EQ(p.pid, pid);
    ASSERT_OK(gf_proc_wait(&p, GF_FOREVER));
    int code;
    ASSERT_OK(gf_proc_exitcode(&p, &code));
    ASSERT_EQ(code, 5);
    gf_proc_close(&p);

    ASSERT_EQ(gf_proc_adopt(&p, 0), GF_EINVAL);
    ASSERT_EQ(gf_proc_adopt(&p, -5), GF_EINVAL);
    ASSERT_EQ(gf_proc_adopt(&p, 0x3ffffff0), GF_ESRCH);
    /* Our parent is not our child. */
    ASSERT_OK(gf_proc_adopt(&p, getppid()));
    ASSERT_EQ(gf_proc_wait(&p, 0), GF_ECHILD);
    gf_proc_close(&p);
}

TEST(wait_after_close_falls_back_to_pid) {
    gf_proc p;
    int r = gf_proc_fork(&p, 0);
    ASSERT(r >= 0);
    if (r == 1) {
        usleep(30000);
        _exit(4);
    }
    gf_proc_close(&p);
    ASSERT_EQ(gf_proc_wait(&p, 0), GF_ETIMEDOUT);
    ASSERT_OK(gf_proc_wait(&p, gf_deadline_after(10000 * MS)));
    int code;
    ASSERT_OK(gf_proc_exitcode(&p, &code));
    ASSERT_EQ(code, 4);
}

TEST(many_children) {
    gf_proc ps[32];
    for (int i = 0; i < 32; i++) {
        int r = gf_proc_fork(&ps[i], GF_PROC_DIE_WITH_PARENT);
        ASSERT(r >= 0);
        if (r == 1) _exit(i);
    }
    for (int i = 31; i >= 0; i--) {
        ASSERT_OK(gf_proc_wait(&ps[i], GF_FOREVER));
        int code;
        ASSERT_OK(gf_proc_exitcode(&ps[i], &code));
        ASSERT_EQ(code, i);
        gf_proc_close(&ps[i]);
    }
}

/* Documents a Linux rule (see gilfree.h): PDEATHSIG follows the forking *thread*. */
static int armed[2];
static void *fork_in_thread(void *arg) {
    gf_proc *p = arg;
    int r = gf_proc_fork(p, GF_PROC_DIE_WITH_PARENT);
    if (r == 1) {
        char c = 1; /* PDEATHSIG is armed once gf_proc_fork returned in the child */
        if (write(armed[1], &c, 1) != 1) _exit(20);
        sleep_forever();
    }
    char c;
    if (r == 0 && read(armed[0], &c, 1) != 1) p->pid = -1;
    return NULL;
}

TEST(die_with_parent_follows_the_forking_thread) {
    gf_proc p;
    memset(&p, 0, sizeof p);
    ASSERT(pipe(armed) == 0);
    pthread_t th;
    ASSERT(pthread_create(&th, NULL, fork_in_thread, &p) == 0);
    ASSERT(pthread_join(th, NULL) == 0); /* the forking thread is gone */
    ASSERT(p.pid > 0);
    ASSERT_OK(gf_proc_wait(&p, gf_deadline_after(10000 * MS)));
    int code;
    ASSERT_OK(gf_proc_exitcode(&p, &code));
    ASSERT_EQ(code, -SIGKILL);
    gf_proc_close(&p);
}

TEST_MAIN()
