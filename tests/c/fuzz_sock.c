/*
 * fuzz_sock.c -- fuzz the stream-message reader (sock.c): the bytes a socket peer sends.
 *
 * Two ways to run it, as fuzz_frame.c:
 *   - libFuzzer (clang): cc -DGF_LIBFUZZER -fsanitize=fuzzer,address,undefined ...
 *   - standalone (the default build): ./fuzz_sock -runs=N [-seed=S] generates streams of valid
 *     messages (short and long headers), mutates and truncates them, and random bytes.
 *
 * Input: byte 0 seeds how the stream is cut into writes, byte 1 picks the reader's limit, the
 * rest is the stream. It is written into a socketpair piece by piece, and after each piece the
 * reader (gf_sock_recv with deadline 0) is run until it wants more bytes, so every split of a
 * header and of a payload is exercised; then the writer is shut down. Checked: every message
 * accepted is exactly the bytes of the stream at that place and within the limit; the reader
 * ends with a clean end of file, a truncated message (consuming exactly the whole stream), or
 * a rejected header that really is malformed or over the limit; it never allocates more than
 * gf_sock_rx_next_cap allows; no other result.
 */
#include "gilfree.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint64_t cut_state;
static size_t next_cut(size_t left) {
    cut_state = cut_state * 6364136223846793005ull + 1442695040888963407ull;
    size_t c = (size_t)(cut_state >> 59) + 1; /* 1..32 bytes */
    if ((cut_state >> 40 & 7) == 0) c = left; /* sometimes the rest at once */
    return c < left ? c : left;
}

static const uint64_t limits[] = {0, 1, 16, 100, 1000, 4096, 65536, GF_SOCK_DEFAULT_MAX};
static unsigned long fz_msgs, fz_eof, fz_trunc, fz_rejected;

/* Check the header parser on every prefix of p[0..n). */
static void check_parse(const uint8_t *p, size_t n, uint64_t max) {
    for (size_t k = 0; k <= n && k <= GF_SOCK_HDR_MAX; k++) {
        uint64_t len = 0;
        int rc = gf_sock_header_parse(p, k, max, &len);
        if (rc > 0) {
            if ((rc != 4 && rc != 12) || (size_t)rc > k || len > max) abort();
            uint8_t h[GF_SOCK_HDR_MAX];
            if (rc == 4 && (gf_sock_header(h, len) != 4 || memcmp(h, p, 4))) abort();
        } else if (rc != 0 && rc != GF_EBADMSG && rc != GF_EMSGSIZE) {
            abort();
        } else if (rc == GF_EMSGSIZE && len <= max) {
            abort();
        }
    }
}

/* Feed s[0..n) to a reader with limit max through a socketpair; check what it returns. */
static void run_stream(const uint8_t *s, size_t n, uint64_t max) {
    int fd[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fd) != 0) abort();
    int big = 1 << 20;
    setsockopt(fd[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    gf_sock_rx rx;
    gf_sock_rx_init(&rx, max);
    void *buf = NULL;
    size_t cap = 0, written = 0, pos = 0; /* pos: stream offset of the current message */
    int shut = 0;
    for (;;) {
        int rc = gf_sock_recv(&rx, fd[1], &buf, &cap, 0);
        if (cap > GF_SOCK_RX_CHUNK && cap > 2 * rx.got) abort(); /* bounded allocation */
        if (rc == 0) {
            if (rx.len > rx.max || pos + rx.hlen + rx.len > written) abort();
            if (memcmp(buf, s + pos + rx.hlen, (size_t)rx.len)) abort();
            pos += rx.hlen + (size_t)rx.len;
            fz_msgs++;
            continue;
        }
        if (rc == GF_ETIMEDOUT) {
            if (shut) abort(); /* after the shutdown, EOF must be seen */
            if (written < n) {
                size_t c = next_cut(n - written);
                if (write(fd[0], s + written, c) != (ssize_t)c) abort();
                written += c;
            } else {
                shutdown(fd[0], SHUT_WR);
                shut = 1;
            }
            continue;
        }
        if (rc == GF_EPIPE) {
            if (!shut) abort();
            if (gf_sock_rx_pending(&rx)) { /* truncated: everything was consumed */
                if (pos + rx.hgot + rx.got != n) abort();
                fz_trunc++;
            } else {
                if (pos != n) abort();
                fz_eof++;
            }
            break;
        }
        if (rc == GF_EBADMSG || rc == GF_EMSGSIZE) {
            uint64_t len = 0;
            if (gf_sock_header_parse(s + pos, n - pos, max ? max : GF_SOCK_DEFAULT_MAX, &len) != rc)
                abort();
            fz_rejected++;
            break;
        }
        abort(); /* nothing else is allowed */
    }
    free(buf);
    close(fd[0]);
    close(fd[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    cut_state = data[0] | 1;
    uint64_t max = limits[data[1] % (sizeof limits / sizeof limits[0])];
    const uint8_t *s = data + 2;
    size_t n = size - 2;
    uint8_t *copy = malloc(n ? n : 1); /* exactly sized: ASan catches over-reads */
    if (!copy) return 0;
    memcpy(copy, s, n);
    check_parse(copy, n, max ? max : GF_SOCK_DEFAULT_MAX);
    run_stream(copy, n, max);
    free(copy);
    return 0;
}

#ifndef GF_LIBFUZZER
#include "fuzz_rng.h"

/* A stream of valid messages after the two control bytes. Result: its size. */
static size_t valid_stream(uint8_t *out, size_t cap) {
    out[0] = (uint8_t)rnd();
    out[1] = (uint8_t)rnd();
    size_t at = 2;
    int msgs = 1 + (int)rndn(5);
    for (int m = 0; m < msgs; m++) {
        size_t len = rndn(4) ? rndn(40) : rndn(3000);
        int longhdr = rndn(6) == 0; /* the -1 + 8-byte form with a small length */
        size_t need = (longhdr ? 12 : 4) + len;
        if (at + need > cap) break;
        if (longhdr) {
            memcpy(out + at, "\xff\xff\xff\xff\0\0\0\0", 8);
            out[at + 8] = (uint8_t)(len >> 24);
            out[at + 9] = (uint8_t)(len >> 16);
            out[at + 10] = (uint8_t)(len >> 8);
            out[at + 11] = (uint8_t)len;
        } else {
            gf_sock_header(out + at, len);
        }
        at += longhdr ? 12 : 4;
        for (size_t i = 0; i < len; i++) out[at + i] = (uint8_t)rnd();
        at += len;
    }
    return at;
}

static size_t mutate(uint8_t *p, size_t len, size_t cap) {
    int n = 1 + (int)rndn(3);
    for (int k = 0; k < n && len > 2; k++) {
        size_t at = 2 + rndn(len - 2);
        switch (rndn(5)) {
        case 0: p[at] ^= (uint8_t)(1u << rndn(8)); break;
        case 1: p[at] = (uint8_t)rnd(); break;
        case 2: len = 2 + rndn(len - 1); break; /* truncate */
        case 3: { /* a boundary length at a random place */
            static const uint8_t vals[][4] = {{0x7f, 0xff, 0xff, 0xff}, {0x80, 0, 0, 0},
                                              {0xff, 0xff, 0xff, 0xff}, {0xff, 0xff, 0xff, 0xfe},
                                              {0x40, 0, 0, 0}, {0, 0, 0x10, 0}};
            if (at + 4 <= len) memcpy(p + at, vals[rndn(6)], 4);
            break;
        }
        default:
            if (len < cap) p[len++] = (uint8_t)rnd(); /* extend */
        }
    }
    return len;
}

int main(int argc, char **argv) {
    long runs = fz_args(argc, argv, 100000);
    static uint8_t buf[16384];
    for (long r = 0; r < runs; r++) {
        size_t len;
        switch (rndn(4)) {
        case 0: /* random bytes */
            len = 2 + rndn(rndn(2) ? 16 : 200);
            for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)rnd();
            break;
        case 1: len = valid_stream(buf, sizeof buf); break;
        case 2: len = mutate(buf, valid_stream(buf, sizeof buf), sizeof buf); break;
        default: /* valid, truncated */
            len = valid_stream(buf, sizeof buf);
            len = 2 + rndn(len - 1);
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("fuzz_sock: %ld runs: %lu messages, %lu clean ends, %lu truncated, %lu rejected\n",
           runs, fz_msgs, fz_eof, fz_trunc, fz_rejected);
    return 0;
}
#endif
