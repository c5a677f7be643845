/*
 * sock.c -- messages on a stream file descriptor (a socket or a pipe) in the framing of
 * Python's multiprocessing.connection: a 4-byte big-endian signed length (or -1 and an 8-byte
 * big-endian length beyond 0x7fffffff bytes), then the payload.
 *
 * Owns: encoding and validating headers, the resumable writer (gf_sock_tx) and reader
 * (gf_sock_rx), and the deadline-aware wait on a fd. The bytes come from another process
 * (possibly another machine), so the reader trusts none of them: a length is checked against
 * the reader's limit before anything is allocated, and gf_sock_rx_next_cap grows a buffer
 * only as fast as bytes really arrive.
 *
 * Waiting for bytes: a reader first spins on recv(MSG_DONTWAIT) for the spin budget
 * (gf__spin_ns: a peer that answers within microseconds is caught without a sleep and a
 * cross-CPU wake-up). Then, when an interrupt slice is set (the Python extension sets one),
 * it sleeps in one blocking recv bounded by SO_RCVTIMEO = the slice (set on the socket the
 * first time it sleeps): one system call per sleep, and the socket timeout makes a signal
 * interrupt it with EINTR even under SA_RESTART (socket(7)); the slice's end is GF_EINTR
 * for the caller's signal check. Without a slice, for deadlines nearer than a slice, on
 * O_NONBLOCK sockets and for writers, waits go through ppoll. A fd that is not a socket
 * (ENOTSOCK) is read and written with read()/write() after poll().
 */
#include "internal.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define GF__SOCK_MAX_LIMIT ((uint64_t)INT64_MAX)

/* Big-endian 32-bit store / load (the wire's byte order). */
static void gf__put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t gf__get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Header bytes for a len-byte payload. Result 4 or 12; GF_EMSGSIZE for len >= 2^63. */
int gf_sock_header(uint8_t hdr[GF_SOCK_HDR_MAX], uint64_t len) {
    if (len <= GF_SOCK_SHORT_MAX) {
        gf__put_be32(hdr, (uint32_t)len);
        return 4;
    }
    if (len > GF__SOCK_MAX_LIMIT) return GF_EMSGSIZE;
    gf__put_be32(hdr, 0xffffffffu);
    gf__put_be32(hdr + 4, (uint32_t)(len >> 32));
    gf__put_be32(hdr + 8, (uint32_t)len);
    return 12;
}

/* Decode the header at p[0..n). Result: header length (4/12) and *len, 0 = need more bytes.
 * Fails: GF_EBADMSG (negative length other than -1, 8-byte length >= 2^63), GF_EMSGSIZE
 * (length > max, *len set). A 12-byte header with a small length is accepted (the standard
 * library's reader accepts it too). */
int gf_sock_header_parse(const uint8_t *p, size_t n, uint64_t max, uint64_t *len) {
    if (n < 4) return 0;
    uint32_t first = gf__get_be32(p);
    uint64_t v;
    int hl;
    if (first <= GF_SOCK_SHORT_MAX) {
        v = first;
        hl = 4;
    } else if (first == 0xffffffffu) {
        if (n < 12) return 0;
        v = (uint64_t)gf__get_be32(p + 4) << 32 | gf__get_be32(p + 8);
        if (v > GF__SOCK_MAX_LIMIT) return GF_EBADMSG;
        hl = 12;
    } else {
        return GF_EBADMSG;
    }
    *len = v;
    return v > max ? GF_EMSGSIZE : hl;
}

/* ppoll timeout for a sleep until `until` (GF_FOREVER: none). Result: tsp or NULL. */
static struct timespec *gf__rel_timeout(int64_t until, struct timespec *ts) {
    if (until == GF_FOREVER) return NULL;
    int64_t rel = until - gf_now_ns();
    if (rel < 0) rel = 0;
    ts->tv_sec = rel / 1000000000;
    ts->tv_nsec = rel % 1000000000;
    return ts;
}

/* Wait for events on fd until deadline (sliced by the interrupt slice). Result: revents > 0.
 * Fails: GF_ETIMEDOUT, GF_EINTR (signal, or the slice ended), GF_EBADF (POLLNVAL, fd < 0),
 * other errno codes from ppoll. */
int gf_sock_wait(int fd, int events, int64_t deadline) {
    if (fd < 0) return GF_EBADF;
    bool sliced;
    int64_t until = gf__sleep_until(deadline, &sliced);
    struct timespec ts;
    struct pollfd pfd = {.fd = fd, .events = (short)events, .revents = 0};
    int r = ppoll(&pfd, 1, gf__rel_timeout(until, &ts), NULL);
    if (r < 0) return errno == EINTR ? GF_EINTR : gf__errno_code(errno);
    if (r == 0) return sliced ? GF_EINTR : GF_ETIMEDOUT;
    if (pfd.revents & POLLNVAL) return GF_EBADF;
    return pfd.revents;
}

/* ------------------------------------------------------------------ writer */

/* Prepare tx for a len-byte message at data. Result 0. Fails: GF_EINVAL, GF_EMSGSIZE. */
int gf_sock_tx_init(gf_sock_tx *tx, const void *data, uint64_t len) {
    if (!tx || (!data && len)) return GF_EINVAL;
    int hl = gf_sock_header(tx->hdr, len);
    if (hl < 0) return hl;
    tx->hlen = (uint32_t)hl;
    tx->notsock = 0;
    tx->data = (const uint8_t *)data;
    tx->len = len;
    tx->done = 0;
    return 0;
}

/* One non-blocking gather write of what is left. Result: bytes written (> 0) or -1 with
 * errno set (EAGAIN: would block). Switches to writev for a fd that is not a socket. */
static ssize_t gf__tx_write(gf_sock_tx *tx, int fd) {
    struct iovec iov[2];
    int cnt = 0;
    uint64_t done = tx->done;
    if (done < tx->hlen) {
        iov[cnt++] = (struct iovec){tx->hdr + done, tx->hlen - (size_t)done};
        if (tx->len) iov[cnt++] = (struct iovec){(void *)tx->data, (size_t)tx->len};
    } else {
        uint64_t at = done - tx->hlen;
        iov[cnt++] = (struct iovec){(void *)(tx->data + at), (size_t)(tx->len - at)};
    }
    if (!tx->notsock) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        ssize_t n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0 || errno != ENOTSOCK) return n;
        tx->notsock = 1;
    }
    return writev(fd, iov, cnt);
}

/* Write the rest of the message. Result 0 when done. Fails: GF_EINTR, GF_ETIMEDOUT
 * (resumable), GF_EPIPE, GF_EBADF, other errno codes. */
int gf_sock_tx_send(gf_sock_tx *tx, int fd, int64_t deadline) {
    if (!tx) return GF_EINVAL;
    if (fd < 0) return GF_EBADF;
    uint64_t total = tx->hlen + tx->len;
    while (tx->done < total) {
        ssize_t n = gf__tx_write(tx, fd);
        if (n > 0) {
            tx->done += (uint64_t)n;
            continue;
        }
        if (n == 0) return GF_EIO; /* a write of > 0 bytes that wrote nothing */
        switch (errno) {
        case EINTR: return GF_EINTR;
        case EPIPE:
        case ECONNRESET: return GF_EPIPE;
        case EAGAIN: {
            int rc = gf_sock_wait(fd, POLLOUT, deadline);
            if (rc < 0) return rc;
            break;
        }
        default: return gf__errno_code(errno);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ reader */

/* Start a reader with limit max (0: default). */
void gf_sock_rx_init(gf_sock_rx *rx, uint64_t max) {
    memset(rx, 0, sizeof *rx);
    if (max == 0) max = GF_SOCK_DEFAULT_MAX;
    rx->max = max > GF__SOCK_MAX_LIMIT ? GF__SOCK_MAX_LIMIT : max;
}

/* 1 while a message is partly read. */
int gf_sock_rx_pending(const gf_sock_rx *rx) {
    if (rx->hlen) return rx->got < rx->len;
    return rx->hgot > 0;
}

/* rx->rcvmode: how a reader on this socket sleeps. */
enum { GF__RCV_UNSET = 0, GF__RCV_TIMEO = 1, GF__RCV_POLL = 2 };

/* Whether a read on socket fd may sleep in a blocking recv: an interrupt slice is set, the
 * deadline is at least a slice away and the socket is not known to be non-blocking; sets
 * SO_RCVTIMEO to the slice when it differs from the one set. Result 1, or 0 (wait in ppoll:
 * its timeout is exact, SO_RCVTIMEO's is rounded to the kernel's tick). */
static int gf__rcv_may_block(gf_sock_rx *rx, int fd, int64_t deadline, int64_t now) {
    int64_t slice = gf__interrupt_slice();
    if (rx->rcvmode == GF__RCV_POLL || slice <= 0) return 0;
    if (deadline != GF_FOREVER && deadline - now < slice) return 0;
    if (rx->rcvmode != GF__RCV_TIMEO || rx->timeo_ns != slice) {
        int64_t us = (slice + 999) / 1000;
        struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
            rx->rcvmode = GF__RCV_POLL;
            return 0;
        }
        rx->rcvmode = GF__RCV_TIMEO;
        rx->timeo_ns = slice;
    }
    return 1;
}

/* recv on a socket that had nothing: spin with MSG_DONTWAIT for the spin budget (not past
 * the deadline), then one blocking recv if gf__rcv_may_block. Result: recv's (-1 with errno;
 * EAGAIN after a blocking recv whose slice ended sets *slept). */
static ssize_t gf__recv_wait(gf_sock_rx *rx, int fd, void *buf, size_t n, int64_t deadline,
                             int *slept) {
    int64_t now = gf_now_ns(), end = now + gf__spin_ns();
    if (deadline != GF_FOREVER && deadline < end) end = deadline;
    ssize_t r;
    do {
        r = recv(fd, buf, n, MSG_DONTWAIT);
    } while (r < 0 && errno == EAGAIN && (now = gf_now_ns()) < end);
    if (r >= 0 || errno != EAGAIN || !gf__rcv_may_block(rx, fd, deadline, now)) return r;
    r = recv(fd, buf, n, 0);
    if (r < 0 && errno == EAGAIN) {
        if (gf_now_ns() - now >= rx->timeo_ns / 2) *slept = 1;
        else rx->rcvmode = GF__RCV_POLL; /* EAGAIN at once: an O_NONBLOCK socket */
    }
    return r;
}

/* Read up to n bytes (n > 0) when some are available, waiting until deadline. Result: bytes
 * read (> 0), 0 at end of file (ECONNRESET counts as end of file). Fails: GF_EINTR (a signal,
 * or the interrupt slice ended: call again), GF_ETIMEDOUT, GF_EBADF, other errno codes. */
static ssize_t gf__read_some(gf_sock_rx *rx, int fd, void *buf, size_t n, int64_t deadline) {
    if (fd < 0) return GF_EBADF;
    int waited = 0;
    for (;;) {
        ssize_t r;
        int slept = 0;
        if (rx->notsock) {
            int w = gf_sock_wait(fd, POLLIN, deadline);
            if (w < 0) return w;
            r = read(fd, buf, n);
        } else if (!waited && deadline != 0) {
            r = gf__recv_wait(rx, fd, buf, n, deadline, &slept);
            waited = 1;
        } else {
            r = recv(fd, buf, n, MSG_DONTWAIT);
        }
        if (r < 0 && errno == ENOTSOCK) {
            rx->notsock = 1;
            continue;
        }
        if (r >= 0) return r;
        switch (errno) {
        case EINTR: return GF_EINTR;
        case ECONNRESET: return 0;
        case EAGAIN: {
            if (slept) return GF_EINTR;
            if (deadline == 0) return GF_ETIMEDOUT;
            int w = gf_sock_wait(fd, POLLIN, deadline);
            if (w < 0) return w;
            break;
        }
        default: return gf__errno_code(errno);
        }
    }
}

/* Read the next header. Result 0 with rx->len. Fails: see gilfree.h. */
int gf_sock_rx_header(gf_sock_rx *rx, int fd, int64_t deadline) {
    if (!rx) return GF_EINVAL;
    if (rx->hlen && rx->got >= rx->len) { /* the previous message is complete: next one */
        rx->hlen = rx->hgot = 0;
        rx->len = rx->got = 0;
    }
    while (!rx->hlen) {
        size_t need = rx->hgot < 4 ? 4u - rx->hgot : (size_t)GF_SOCK_HDR_MAX - rx->hgot;
        ssize_t n = gf__read_some(rx, fd, rx->hdr + rx->hgot, need, deadline);
        if (n < 0) return (int)n;
        if (n == 0) return GF_EPIPE;
        rx->hgot = (uint8_t)(rx->hgot + n);
        int rc = gf_sock_header_parse(rx->hdr, rx->hgot, rx->max, &rx->len);
        if (rc < 0) return rc;
        if (rc > 0) rx->hlen = (uint8_t)rc;
    }
    return 0;
}

/* Read payload bytes rx->got .. min(len, cap) into buf. Result 0. Fails: see gilfree.h. */
int gf_sock_rx_body(gf_sock_rx *rx, int fd, void *buf, size_t cap, int64_t deadline) {
    if (!rx || !rx->hlen || (!buf && cap)) return GF_EINVAL;
    uint64_t want = rx->len < cap ? rx->len : cap;
    while (rx->got < want) {
        ssize_t n = gf__read_some(rx, fd, (uint8_t *)buf + rx->got, (size_t)(want - rx->got),
                                  deadline);
        if (n < 0) return (int)n;
        if (n == 0) return GF_EPIPE;
        rx->got += (uint64_t)n;
    }
    return 0;
}

/* Capacity to grow a payload buffer of cap bytes to (see gilfree.h). */
size_t gf_sock_rx_next_cap(const gf_sock_rx *rx, size_t cap) {
    if (!rx->hlen) return 0;
    uint64_t len = rx->len;
    if (len <= GF_SOCK_RX_CHUNK || cap >= len) return (size_t)len;
    uint64_t want = (uint64_t)cap * 2;
    if (want < GF_SOCK_RX_CHUNK) want = GF_SOCK_RX_CHUNK;
    return (size_t)(want < len ? want : len);
}

/* Read one whole message into a malloc'd, growing *buf. Result 0. Fails: see gilfree.h. */
int gf_sock_recv(gf_sock_rx *rx, int fd, void **buf, size_t *cap, int64_t deadline) {
    if (!rx || !buf || !cap) return GF_EINVAL;
    if (!rx->hlen || rx->got >= rx->len) {
        int rc = gf_sock_rx_header(rx, fd, deadline);
        if (rc < 0) return rc;
    }
    for (;;) {
        /* grow only a full buffer: a partial message must not double it on every call */
        size_t want = *buf && rx->got < *cap ? *cap : gf_sock_rx_next_cap(rx, *cap);
        if (want > *cap || !*buf) {
            void *nb = realloc(*buf, want ? want : 1);
            if (!nb) return GF_ENOMEM;
            *buf = nb;
            *cap = want ? want : 1;
        }
        int rc = gf_sock_rx_body(rx, fd, *buf, *cap, deadline);
        if (rc < 0) return rc;
        if (rx->got >= rx->len) return 0;
    }
}
