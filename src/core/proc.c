/*
 * proc.c -- child processes through pidfds: fork with an optional parent-death signal, a
 * pollable sentinel per child, race-free signalling, and a deadline-aware wait (see DESIGN.md
 * "Processes").
 */
#include "internal.h"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int gf__pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

/* 1 if this kernel has pidfd_open (Linux 5.3), probed once. Racy first calls agree. */
static int gf__have_pidfd(void) {
    static _Atomic int have = -1;
    /* relaxed: an idempotent cached probe. */
    int h = atomic_load_explicit(&have, memory_order_relaxed);
    if (GF_LIKELY(h >= 0)) return h;
    int fd = gf__pidfd_open(getpid());
    h = fd >= 0 || errno != ENOSYS;
    if (fd >= 0) close(fd);
    atomic_store_explicit(&have, h, memory_order_relaxed);
    return h;
}

/* fork(). Parent: result 0 and *p (pid, pidfd). Child: result 1, *p zeroed (pidfd -1); with
 * GF_PROC_DIE_WITH_PARENT it gets SIGKILL when the parent dies, and kills itself at once if
 * the parent died before the signal was armed. Fails: GF_EAGAIN, GF_ENOMEM, GF_ENOSYS (no
 * pidfd: checked before forking, so no untracked child is left behind), GF_EMFILE (no fd for
 * the pidfd: the child is then killed and reaped). */
int gf_proc_fork(gf_proc *p, uint32_t flags) {
    if (!gf__have_pidfd()) return GF_ENOSYS;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return gf__errno_code(errno);
    if (pid == 0) {
        memset(p, 0, sizeof *p);
        p->pidfd = -1;
        if (flags & GF_PROC_DIE_WITH_PARENT) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            /* The parent may have died before prctl: then we were reparented already. Die the
             * way PDEATHSIG would have killed us. */
            if (getppid() != parent) {
                raise(SIGKILL);
                _exit(137);
            }
        }
        return 1;
    }
    int fd = gf__pidfd_open(pid);
    if (fd < 0) {
        int err = gf__errno_code(errno);
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
        return err;
    }
    p->pid = pid;
    p->pidfd = fd;
    p->status = 0;
    p->reaped = 0;
    return 0;
}

/* Track an existing child by pid. Result 0. Fails: GF_ESRCH, GF_ENOSYS, GF_EINVAL, GF_EMFILE. */
int gf_proc_adopt(gf_proc *p, pid_t pid) {
    if (pid <= 0) return GF_EINVAL;
    int fd = gf__pidfd_open(pid);
    if (fd < 0) return gf__errno_code(errno);
    p->pid = pid;
    p->pidfd = fd;
    p->status = 0;
    p->reaped = 0;
    return 0;
}

/* Reap without blocking. Result 1 reaped (p->status set), 0 still running. Fails: GF_ECHILD
 * (not our child, or someone else reaped it). */
static int gf__try_reap(gf_proc *p) {
    if (p->pidfd >= 0) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) == 0) {
            if (si.si_pid == 0) return 0;
            /* Rebuild a wait(2) status so that WIFEXITED & co. work on p->status. */
            if (si.si_code == CLD_EXITED) p->status = (si.si_status & 0xff) << 8;
            else if (si.si_code == CLD_DUMPED) p->status = (si.si_status & 0x7f) | 0x80;
            else p->status = si.si_status & 0x7f;
            p->reaped = 1;
            return 1;
        }
        if (errno != EINVAL) return errno == EINTR ? 0 : gf__errno_code(errno);
        /* EINVAL: P_PIDFD needs Linux 5.4; fall back to the pid (still our unreaped child). */
    }
    int status;
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == 0) return 0;
    if (r < 0) return errno == EINTR ? 0 : gf__errno_code(errno);
    p->status = status;
    p->reaped = 1;
    return 1;
}

/* Wait for the child to exit, until `deadline`, and reap it. Result 0 (p->status, p->reaped).
 * Fails: GF_ETIMEDOUT, GF_EINTR (a signal handler ran: call again with the same deadline),
 * GF_ECHILD (not our child / reaped elsewhere). */
int gf_proc_wait(gf_proc *p, int64_t deadline) {
    if (p->reaped) return 0;
    for (;;) {
        int r = gf__try_reap(p);
        if (r) return r < 0 ? r : 0;
        int64_t now = gf_now_ns();
        if (deadline <= now) return GF_ETIMEDOUT;
        bool sliced;
        int64_t until = gf__sleep_until(deadline, &sliced);
        if (sliced && until <= now) return GF_EINTR;
        struct timespec ts, *tsp = NULL;
        int64_t left = until - now;
        if (p->pidfd < 0 && left > 10000000) left = 10000000; /* no pidfd: poll every 10 ms */
        if (until != GF_FOREVER || p->pidfd < 0) {
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
            tsp = &ts;
        }
        struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
        /* A negative fd is ignored by ppoll: then this is a plain interruptible sleep. */
        int pr = ppoll(&pfd, 1, tsp, NULL);
        if (pr < 0) {
            if (errno == EINTR) return GF_EINTR;
            return gf__errno_code(errno);
        }
        if (pr == 0 && sliced) return GF_EINTR; /* the next call reaps it if it exited */
    }
}

/* Send `sig` through the pidfd (no pid-reuse race). Result 0, also for an exited child that
 * is not reaped yet. Fails: GF_ESRCH (already reaped), GF_EINVAL (bad signal), GF_EPERM. */
int gf_proc_signal(gf_proc *p, int sig) {
    if (p->reaped) return GF_ESRCH;
    long r;
    if (p->pidfd >= 0) r = syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0);
    else r = kill(p->pid, sig);
    /* An exited, unreaped child (a zombie) still accepts signals (result 0), so ESRCH means
     * it was reaped (elsewhere). */
    return r == 0 ? 0 : gf__errno_code(errno);
}

/* The Python-style exit code: the exit status, or -signal. Result 0 and *code. Fails:
 * GF_EAGAIN (not reaped yet). */
int gf_proc_exitcode(const gf_proc *p, int *code) {
    if (!p->reaped) return GF_EAGAIN;
    if (WIFEXITED(p->status)) *code = WEXITSTATUS(p->status);
    else if (WIFSIGNALED(p->status)) *code = -WTERMSIG(p->status);
    else *code = p->status;
    return 0;
}

/* Close the pidfd; the child is neither killed nor reaped (gf_proc_wait then falls back to
 * waitpid on the pid). */
void gf_proc_close(gf_proc *p) {
    if (p->pidfd >= 0) close(p->pidfd);
    p->pidfd = -1;
}
