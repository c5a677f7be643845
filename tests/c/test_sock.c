/* test_sock.c -- stream messages (sock.c): header encoding and every validation rule, the
 * standard library's exact bytes, partial writes, resuming after timeouts and signals, end of
 * file at every point, oversized and malformed headers, bounded allocation, pipes, bad fds.
 * (Random inputs: fuzz_sock.c.) */
#include "gilfree.h"
#include "test.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

static void pair(int fds[2]) { ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0); }

static void write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        ASSERT(w > 0);
        c += w;
        n -= (size_t)w;
    }
}

static uint64_t sum_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

TEST(header_encode_decode) {
    uint8_t h[GF_SOCK_HDR_MAX];
    uint64_t len = 0;
    static const uint64_t lens[] = {0, 1, 255, 65536, 0x7fffffff, 0x80000000ull,
                                    (uint64_t)1 << 40, (uint64_t)1 << 62, (uint64_t)INT64_MAX};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        int hl = gf_sock_header(h, lens[i]);
        ASSERT_EQ(hl, lens[i] <= 0x7fffffff ? 4 : 12);
        for (int n = 0; n < hl; n++) ASSERT_EQ(gf_sock_header_parse(h, (size_t)n, UINT64_MAX, &len), 0);
        ASSERT_EQ(gf_sock_header_parse(h, (size_t)hl, UINT64_MAX, &len), hl);
        ASSERT(len == lens[i]);
    }
    ASSERT_EQ(gf_sock_header(h, (uint64_t)1 << 63), GF_EMSGSIZE);
    /* the standard library's bytes: struct.pack("!i", 3) and "!i" -1 + "!Q" n */
    ASSERT_EQ(gf_sock_header(h, 3), 4);
    ASSERT(memcmp(h, "\0\0\0\3", 4) == 0);
    ASSERT_EQ(gf_sock_header(h, 0x80000000ull), 12);
    ASSERT(memcmp(h, "\xff\xff\xff\xff\0\0\0\0\x80\0\0\0", 12) == 0);
    /* a 12-byte header with a small length is accepted, as by the standard library */
    ASSERT_EQ(gf_sock_header_parse((const uint8_t *)"\xff\xff\xff\xff\0\0\0\0\0\0\0\5", 12,
                                   100, &len), 12);
    ASSERT_EQ(len, 5);
}

TEST(header_rejects) {
    uint64_t len = 0;
    /* negative lengths other than -1 */
    ASSERT_EQ(gf_sock_header_parse((const uint8_t *)"\x80\0\0\0", 4, UINT64_MAX, &len), GF_EBADMSG);
    ASSERT_EQ(gf_sock_header_parse((const uint8_t *)"\xff\xff\xff\xfe", 4, UINT64_MAX, &len), GF_EBADMSG);
    /* an 8-byte length >= 2^63 */
    ASSERT_EQ(gf_sock_header_parse((const uint8_t *)"\xff\xff\xff\xff\x80\0\0\0\0\0\0\0", 12,
                                   UINT64_MAX, &len), GF_EBADMSG);
    /* beyond the limit: the length is reported */
    ASSERT_EQ(gf_sock_header_parse((const uint8_t *)"\0\0\4\1", 4, 1024, &len), GF_EMSGSIZE);
    ASSERT_EQ(len, 1025);
    ASSERT_EQ(gf_sock_header_parse((const uint8_t *)"\0\0\4\0", 4, 1024, &len), 4);
    ASSERT_EQ(len, 1024);
    gf_sock_tx tx;
    ASSERT_EQ(gf_sock_tx_init(NULL, "x", 1), GF_EINVAL);
    ASSERT_EQ(gf_sock_tx_init(&tx, NULL, 1), GF_EINVAL);
    ASSERT_OK(gf_sock_tx_init(&tx, NULL, 0));
    /* no 2 GiB buffer needed to check the long header a writer builds */
    ASSERT_OK(gf_sock_tx_init(&tx, (void *)&tx, 0x80000001ull));
    ASSERT_EQ(tx.hlen, 12);
    ASSERT(memcmp(tx.hdr, "\xff\xff\xff\xff\0\0\0\0\x80\0\0\1", 12) == 0);
}

TEST(roundtrip_small_and_wire_bytes) {
    int fd[2];
    pair(fd);
    const char *msgs[] = {"hello", "", "a", "0123456789abcdef"};
    for (int i = 0; i < 4; i++) {
        gf_sock_tx tx;
        ASSERT_OK(gf_sock_tx_init(&tx, msgs[i], strlen(msgs[i])));
        ASSERT_OK(gf_sock_tx_send(&tx, fd[0], GF_FOREVER));
        ASSERT_EQ(tx.done, 4 + strlen(msgs[i]));
    }
    /* the first message exactly as struct.pack("!i", 5) + b"hello" */
    unsigned char raw[9];
    ASSERT_EQ(read(fd[1], raw, 9), 9);
    ASSERT(memcmp(raw, "\0\0\0\5hello", 9) == 0);
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, 0);
    void *buf = NULL;
    size_t cap = 0;
    for (int i = 1; i < 4; i++) {
        ASSERT_OK(gf_sock_recv(&rx, fd[1], &buf, &cap, GF_FOREVER));
        ASSERT_EQ(rx.len, strlen(msgs[i]));
        ASSERT(memcmp(buf, msgs[i], rx.len) == 0);
        ASSERT_EQ(gf_sock_rx_pending(&rx), 0);
    }
    ASSERT_EQ(gf_sock_recv(&rx, fd[1], &buf, &cap, 0), GF_ETIMEDOUT); /* nothing queued */
    free(buf);
    close(fd[0]);
    close(fd[1]);
}

/* A child reads one message from fd slowly and exits with 0 if its checksum is `want`. */
static pid_t slow_reader(int fd, uint64_t want, size_t len) {
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid) return pid;
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, 0);
    void *buf = NULL;
    size_t cap = 0;
    usleep(20000);
    int rc = gf_sock_recv(&rx, fd, &buf, &cap, gf_deadline_after(30000000000));
    _exit(rc == 0 && rx.len == len && sum_bytes(buf, len) == want ? 0 : 1);
}

TEST(large_message_partial_writes) {
    int fd[2];
    pair(fd);
    int small = 4096;
    ASSERT_EQ(setsockopt(fd[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    size_t len = (size_t)8 << 20;
    unsigned char *p = malloc(len);
    for (size_t i = 0; i < len; i++) p[i] = (unsigned char)(i * 7 + (i >> 13));
    pid_t pid = slow_reader(fd[1], sum_bytes(p, len), len);
    gf_sock_tx tx;
    ASSERT_OK(gf_sock_tx_init(&tx, p, len));
    ASSERT_OK(gf_sock_tx_send(&tx, fd[0], gf_deadline_after(30000000000)));
    ASSERT_EQ(tx.done, len + 4);
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(p);
}

TEST(writer_timeout_resumes) {
    int fd[2];
    pair(fd);
    size_t len = (size_t)4 << 20; /* more than the socket buffers hold */
    unsigned char *p = malloc(len);
    for (size_t i = 0; i < len; i++) p[i] = (unsigned char)(i ^ (i >> 9));
    gf_sock_tx tx;
    ASSERT_OK(gf_sock_tx_init(&tx, p, len));
    ASSERT_EQ(gf_sock_tx_send(&tx, fd[0], gf_deadline_after(20000000)), GF_ETIMEDOUT);
    ASSERT(tx.done > 0 && tx.done < len + 4);
    uint64_t before = tx.done;
    ASSERT_EQ(gf_sock_tx_send(&tx, fd[0], 0), GF_ETIMEDOUT); /* deadline 0: never blocks */
    ASSERT_EQ(tx.done, before);
    pid_t pid = slow_reader(fd[1], sum_bytes(p, len), len);
    ASSERT_OK(gf_sock_tx_send(&tx, fd[0], gf_deadline_after(30000000000)));
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(p);
}

TEST(reader_resumes_across_timeouts) {
    int fd[2];
    pair(fd);
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, 0);
    void *buf = NULL;
    size_t cap = 0;
    ASSERT_EQ(gf_sock_recv(&rx, fd[1], &buf, &cap, 0), GF_ETIMEDOUT);
    ASSERT_EQ(gf_sock_rx_pending(&rx), 0);
    const char msg[] = "\0\0\0\x0apayload!!!";
    size_t steps[] = {1, 2, 1, 3, 7}; /* split inside the header and inside the payload */
    size_t at = 0;
    for (int i = 0; i < 5; i++) {
        write_all(fd[0], msg + at, steps[i]);
        at += steps[i];
        int rc = gf_sock_recv(&rx, fd[1], &buf, &cap, gf_deadline_after(1000000));
        if (i < 4) {
            ASSERT_EQ(rc, GF_ETIMEDOUT);
            ASSERT_EQ(gf_sock_rx_pending(&rx), 1);
        } else {
            ASSERT_OK(rc);
        }
    }
    ASSERT_EQ(rx.len, 10);
    ASSERT(memcmp(buf, "payload!!!", 10) == 0);
    ASSERT_EQ(gf_sock_rx_pending(&rx), 0);
    free(buf);
}

static void on_alarm(int sig) { (void)sig; }

TEST(signal_gives_eintr_then_resumes) {
    int fd[2];
    pair(fd);
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    ASSERT_EQ(sigaction(SIGALRM, &sa, NULL), 0);
    struct itimerval it = {{0, 0}, {0, 50000}};
    ASSERT_EQ(setitimer(ITIMER_REAL, &it, NULL), 0);
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, 0);
    write_all(fd[0], "\0\0", 2);
    ASSERT_EQ(gf_sock_rx_header(&rx, fd[1], GF_FOREVER), GF_EINTR);
    ASSERT_EQ(gf_sock_rx_pending(&rx), 1);
    write_all(fd[0], "\0\1x", 3);
    ASSERT_OK(gf_sock_rx_header(&rx, fd[1], GF_FOREVER));
    char c = 0;
    ASSERT_OK(gf_sock_rx_body(&rx, fd[1], &c, 1, GF_FOREVER));
    ASSERT_EQ(c, 'x');
}

TEST(interrupt_slice_wakes_forever_waits) {
    int fd[2];
    pair(fd);
    gf_set_interrupt_slice(20000000);
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, 0);
    double t0 = gf_test_now();
    ASSERT_EQ(gf_sock_rx_header(&rx, fd[1], GF_FOREVER), GF_EINTR);
    ASSERT(gf_test_now() - t0 < 5.0);
    ASSERT_EQ(gf_sock_wait(fd[1], POLLIN, GF_FOREVER), GF_EINTR);
    gf_set_interrupt_slice(0);
    ASSERT_EQ(gf_sock_wait(fd[1], POLLIN, gf_deadline_after(1000000)), GF_ETIMEDOUT);
    ASSERT(gf_sock_wait(fd[0], POLLOUT, 0) & POLLOUT);
}

/* The sleeping reader: with an interrupt slice set, a wait on an empty socket sleeps in one
 * blocking recv bounded by SO_RCVTIMEO = the slice (set once), and ends as GF_EINTR. */
TEST(sleeping_reader_sets_rcvtimeo) {
    int fd[2];
    pair(fd);
    gf_set_interrupt_slice(20000000);
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, 0);
    double t0 = gf_test_now();
    ASSERT_EQ(gf_sock_rx_header(&rx, fd[1], GF_FOREVER), GF_EINTR);
    ASSERT(gf_test_now() - t0 >= 0.010);
    struct timeval tv = {0, 0};
    socklen_t tl = sizeof tv;
    ASSERT_EQ(getsockopt(fd[1], SOL_SOCKET, SO_RCVTIMEO, &tv, &tl), 0);
    ASSERT_EQ(tv.tv_sec, 0);
    ASSERT(tv.tv_usec >= 19000 && tv.tv_usec <= 21000);
    ASSERT_EQ(rx.timeo_ns, 20000000);
    write_all(fd[0], "\0\0\0\2hi", 6);
    void *buf = NULL;
    size_t cap = 0;
    ASSERT_OK(gf_sock_recv(&rx, fd[1], &buf, &cap, GF_FOREVER));
    ASSERT(rx.len == 2 && memcmp(buf, "hi", 2) == 0);
    free(buf);
    gf_set_interrupt_slice(0);
}

/* A socket the caller made O_NONBLOCK cannot sleep in recv: the reader notices (EAGAIN at
 * once) and waits in ppoll from then on, still receiving what a slow writer sends. */
TEST(nonblocking_socket_waits_in_poll) {
    int fd[2];
    pair(fd);
    ASSERT_EQ(fcntl(fd[1], F_SETFL, fcntl(fd[1], F_GETFL) | O_NONBLOCK), 0);
    gf_set_interrupt_slice(20000000);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        usleep(60000);
        write_all(fd[0], "\0\0\0\3abc", 7);
        _exit(0);
    }
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, 0);
    void *buf = NULL;
    size_t cap = 0;
    int rc, slices = 0;
    while ((rc = gf_sock_recv(&rx, fd[1], &buf, &cap, GF_FOREVER)) == GF_EINTR) slices++;
    ASSERT_OK(rc);
    ASSERT(slices >= 1);
    ASSERT(rx.len == 3 && memcmp(buf, "abc", 3) == 0);
    ASSERT_EQ(rx.rcvmode, 2); /* ppoll */
    free(buf);
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    gf_set_interrupt_slice(0);
}

/* A handler installed with SA_RESTART still interrupts the sleeping recv (a socket with a
 * receive timeout never restarts recv, socket(7)): GF_EINTR long before the slice ends. */
TEST(restarting_signal_interrupts_sleeping_recv) {
    int fd[2];
    pair(fd);
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    ASSERT_EQ(sigaction(SIGALRM, &sa, NULL), 0);
    gf_set_interrupt_slice(5000000000);
    struct itimerval it = {{0, 0}, {0, 30000}};
    ASSERT_EQ(setitimer(ITIMER_REAL, &it, NULL), 0);
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, 0);
    double t0 = gf_test_now();
    ASSERT_EQ(gf_sock_rx_header(&rx, fd[1], GF_FOREVER), GF_EINTR);
    ASSERT(gf_test_now() - t0 < 2.0);
    gf_set_interrupt_slice(0);
}

/* A deadline nearer than the slice is kept exactly (ppoll, not the socket's tick-rounded
 * timeout): GF_ETIMEDOUT, neither early nor a slice late. */
TEST(deadline_nearer_than_slice) {
    int fd[2];
    pair(fd);
    gf_set_interrupt_slice(2000000000);
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, 0);
    double t0 = gf_test_now();
    ASSERT_EQ(gf_sock_rx_header(&rx, fd[1], gf_deadline_after(30000000)), GF_ETIMEDOUT);
    double dt = gf_test_now() - t0;
    ASSERT(dt >= 0.029 && dt < 1.0);
    ASSERT(rx.rcvmode != 1);
    gf_set_interrupt_slice(0);
}

/* Write `bytes`, close the writer, and return what gf_sock_recv says. */
static int recv_after_close(const void *bytes, size_t n, uint64_t max, gf_sock_rx *rx,
                            void **buf, size_t *cap) {
    int fd[2];
    pair(fd);
    if (n) write_all(fd[0], bytes, n);
    close(fd[0]);
    gf_sock_rx_init(rx, max);
    int rc = gf_sock_recv(rx, fd[1], buf, cap, gf_deadline_after(5000000000));
    close(fd[1]);
    return rc;
}

TEST(end_of_file_everywhere) {
    gf_sock_rx rx;
    void *buf = NULL;
    size_t cap = 0;
    ASSERT_EQ(recv_after_close("", 0, 0, &rx, &buf, &cap), GF_EPIPE); /* clean */
    ASSERT_EQ(gf_sock_rx_pending(&rx), 0);
    ASSERT_EQ(recv_after_close("\0\0", 2, 0, &rx, &buf, &cap), GF_EPIPE); /* in the header */
    ASSERT_EQ(gf_sock_rx_pending(&rx), 1);
    ASSERT_EQ(recv_after_close("\xff\xff\xff\xff\0\0", 6, 0, &rx, &buf, &cap), GF_EPIPE);
    ASSERT_EQ(gf_sock_rx_pending(&rx), 1);
    ASSERT_EQ(recv_after_close("\0\0\0\x64" "0123456789", 14, 0, &rx, &buf, &cap), GF_EPIPE);
    ASSERT_EQ(gf_sock_rx_pending(&rx), 1); /* in the payload */
    ASSERT_EQ(rx.got, 10);
    /* a complete message, then end of file: the message, then a clean end */
    int fd[2];
    pair(fd);
    write_all(fd[0], "\0\0\0\2ok", 6);
    close(fd[0]);
    gf_sock_rx_init(&rx, 0);
    ASSERT_OK(gf_sock_recv(&rx, fd[1], &buf, &cap, GF_FOREVER));
    ASSERT_EQ(gf_sock_recv(&rx, fd[1], &buf, &cap, GF_FOREVER), GF_EPIPE);
    ASSERT_EQ(gf_sock_rx_pending(&rx), 0);
    free(buf);
}

TEST(oversized_and_malformed_headers) {
    gf_sock_rx rx;
    void *buf = NULL;
    size_t cap = 0;
    /* a header claiming 2^62 bytes: refused before any allocation */
    ASSERT_EQ(recv_after_close("\xff\xff\xff\xff\x40\0\0\0\0\0\0\0", 12, 0, &rx, &buf, &cap),
              GF_EMSGSIZE);
    ASSERT(rx.len == (uint64_t)1 << 62);
    ASSERT(buf == NULL && cap == 0);
    ASSERT_EQ(recv_after_close("\0\0\4\1", 4, 1024, &rx, &buf, &cap), GF_EMSGSIZE);
    ASSERT_EQ(rx.len, 1025);
    ASSERT(buf == NULL);
    ASSERT_EQ(recv_after_close("\xff\xff\xff\xfe", 4, 0, &rx, &buf, &cap), GF_EBADMSG);
    ASSERT_EQ(recv_after_close("\x80\0\0\0", 4, 0, &rx, &buf, &cap), GF_EBADMSG);
    ASSERT(buf == NULL);
}

TEST(allocation_follows_arriving_bytes) {
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, 0);
    ASSERT_EQ(gf_sock_rx_next_cap(&rx, 0), 0); /* no header yet */
    rx.hlen = 4;
    rx.len = 100;
    ASSERT_EQ(gf_sock_rx_next_cap(&rx, 0), 100);
    rx.len = (uint64_t)100 << 20;
    ASSERT_EQ(gf_sock_rx_next_cap(&rx, 0), GF_SOCK_RX_CHUNK);
    ASSERT_EQ(gf_sock_rx_next_cap(&rx, GF_SOCK_RX_CHUNK), 2 * GF_SOCK_RX_CHUNK);
    ASSERT_EQ(gf_sock_rx_next_cap(&rx, (size_t)64 << 20), (size_t)100 << 20);
    ASSERT_EQ(gf_sock_rx_next_cap(&rx, (size_t)200 << 20), (size_t)100 << 20);
    /* calls that find no new bytes do not grow the buffer */
    int fd[2];
    pair(fd);
    write_all(fd[0], "\x40\0\0\0abc", 7);
    void *b0 = NULL;
    size_t c0 = 0;
    gf_sock_rx_init(&rx, 0);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(gf_sock_recv(&rx, fd[1], &b0, &c0, 0), GF_ETIMEDOUT);
    ASSERT_EQ(c0, GF_SOCK_RX_CHUNK);
    ASSERT_EQ(rx.got, 3);
    free(b0);
    close(fd[0]);
    close(fd[1]);
    /* a peer announces 1 GiB, sends 1 MiB and closes: the buffer stays at one chunk */
    pair(fd);
    size_t sent = (size_t)1 << 20;
    unsigned char *p = calloc(1, sent + 4);
    memcpy(p, "\x40\0\0\0", 4);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[1]);
        write_all(fd[0], p, sent + 4);
        _exit(0);
    }
    close(fd[0]);
    void *buf = NULL;
    size_t cap = 0;
    gf_sock_rx_init(&rx, 0);
    ASSERT_EQ(gf_sock_recv(&rx, fd[1], &buf, &cap, gf_deadline_after(30000000000)), GF_EPIPE);
    ASSERT_EQ(rx.got, sent);
    ASSERT(cap <= GF_SOCK_RX_CHUNK);
    waitpid(pid, NULL, 0);
    free(buf);
    free(p);
}

TEST(pipe_fds) {
    int pf[2];
    ASSERT_EQ(pipe(pf), 0);
    gf_sock_tx tx;
    ASSERT_OK(gf_sock_tx_init(&tx, "through a pipe", 14));
    ASSERT_OK(gf_sock_tx_send(&tx, pf[1], GF_FOREVER));
    ASSERT_EQ(tx.notsock, 1);
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, 0);
    void *buf = NULL;
    size_t cap = 0;
    ASSERT_OK(gf_sock_recv(&rx, pf[0], &buf, &cap, GF_FOREVER));
    ASSERT(rx.len == 14 && memcmp(buf, "through a pipe", 14) == 0);
    ASSERT_EQ(gf_sock_recv(&rx, pf[0], &buf, &cap, gf_deadline_after(1000000)), GF_ETIMEDOUT);
    close(pf[1]);
    ASSERT_EQ(gf_sock_recv(&rx, pf[0], &buf, &cap, GF_FOREVER), GF_EPIPE);
    free(buf);
}

TEST(closed_peer_and_bad_fds) {
    int fd[2];
    pair(fd);
    close(fd[1]);
    gf_sock_tx tx;
    ASSERT_OK(gf_sock_tx_init(&tx, "x", 1));
    /* SIGPIPE keeps its default action (terminate) here: MSG_NOSIGNAL must avoid it */
    ASSERT_EQ(gf_sock_tx_send(&tx, fd[0], GF_FOREVER), GF_EPIPE);
    ASSERT_EQ(gf_sock_tx_send(&tx, -1, GF_FOREVER), GF_EBADF);
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, 0);
    ASSERT_EQ(gf_sock_rx_header(&rx, -1, GF_FOREVER), GF_EBADF);
    ASSERT_EQ(gf_sock_wait(-1, POLLIN, 0), GF_EBADF);
    int dead = fd[0];
    close(dead);
    ASSERT_EQ(gf_sock_wait(dead, POLLIN, GF_FOREVER), GF_EBADF);
    ASSERT_EQ(gf_sock_rx_header(&rx, dead, GF_FOREVER), GF_EBADF);
    ASSERT_EQ(gf_sock_rx_body(&rx, dead, NULL, 0, 0), GF_EINVAL); /* no header read */
}

TEST_MAIN()
