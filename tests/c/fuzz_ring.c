/*
 * fuzz_ring.c -- fuzz the ring consumer: the bytes of a ring (records, head and tail words)
 * are written by other processes, one of which may have died mid-write or scribbled on them.
 * gf_ring_get_many must return valid messages or GF_EBADMSG, never read outside the ring or
 * the arena, never hand out a block that is not live.
 *
 * The input overwrites a real ring: bytes 0-7 the tail word, 8-15 the head word, the rest the
 * data area (a 4 KiB ring; the remainder of the data area keeps the bytes of a few valid
 * messages, including block records pointing at live blocks). Byte 16, if odd, keeps the
 * original head/tail so the fuzzer explores record contents first.
 *
 * Built like fuzz_frame.c: libFuzzer entry point with -DGF_LIBFUZZER (clang), else a
 * standalone main that runs -runs=N random and mutated inputs from a fixed seed.
 * The ring's layout comes from src/core/ring_internal.h.
 */
#include "../../src/core/ring_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gf_arena *A;
static gf_off R;
static unsigned char pristine[4096 + 16];

static void fz_init(void) {
    if (A) return;
    if (gf_arena_create((size_t)1 << 30, &A) != 0) abort();
    if (gf_ring_create(A, 4096, 0, 0, &R) != 0) abort();
    /* some valid traffic: small records, a wrap, and two block records */
    char msg[600];
    memset(msg, 'x', sizeof msg);
    gf_msg m;
    static char buf[4096];
    for (int i = 0; i < 9; i++) {
        if (gf_ring_put(A, R, msg, (size_t)(37 * i + 1), 0) != 0) abort();
        if (i < 6 && gf_ring_get(A, R, &m, buf, sizeof buf, 0) != 1) abort();
    }
    if (gf_ring_put(A, R, msg, 100000 > sizeof msg ? sizeof msg : 0, 0) != 0) abort();
    static char big[200000];
    if (gf_ring_put(A, R, big, sizeof big, 0) != 0) abort(); /* a block record */
    gf_frame_hdr fh; /* a frame record (flagged) */
    if (gf_frame_header(&fh, GF_FRAME_BYTES, 5, 0) != 0) abort();
    struct iovec fv[2] = {{&fh, sizeof fh}, {"hello", 5}};
    if (gf_ring_putv_frame(A, R, fv, 2, 0) != 0) abort();
    gf__ring *r = gf__ring_ptr(A, R);
    memcpy(pristine, &r->tail, 8);
    memcpy(pristine + 8, &r->head, 8);
    memcpy(pristine + 16, r->data, 4096);
}

static void fz_one(const uint8_t *d, size_t n) {
    fz_init();
    gf__ring *r = gf__ring_ptr(A, R);
    unsigned char img[4096 + 16];
    memcpy(img, pristine, sizeof img);
    size_t k = n < sizeof img ? n : sizeof img;
    memcpy(img, d, k);
    if (n > 16 && (d[16] & 1)) memcpy(img, pristine, 16); /* keep head/tail */
    memcpy(&r->tail, img, 8);
    memcpy(&r->head, img + 8, 8);
    memcpy(r->data, img + 16, 4096);
    static char buf[4096];
    gf_msg msgs[8];
    for (int round = 0; round < 64; round++) {
        int got = gf_ring_get_many(A, R, msgs, 8, buf, sizeof buf, 0);
        if (got <= 0) break;
        for (int i = 0; i < got; i++) {
            if (msgs[i].block) {
                /* a block handed out must be live and large enough */
                if (gf_arena_check_block(A, msgs[i].block, msgs[i].len) != 0) abort();
                /* do not free: a corrupt ring may name the same block twice, and the
                 * pristine image is reused for the next input (keep: out of the ledger) */
                gf_msg_keep(A, &msgs[i]);
            } else if (msgs[i].len > gf_ring_inline_max(A, R) ||
                       (const char *)msgs[i].data < buf ||
                       (const char *)msgs[i].data + msgs[i].len > buf + sizeof buf) {
                abort();
            }
        }
    }
}

#ifdef GF_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    fz_one(d, n);
    return 0;
}
#else
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv) {
    long runs = 20000;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-runs=", 6) == 0) runs = atol(argv[i] + 6);
        if (strncmp(argv[i], "-seed=", 6) == 0) rng = strtoull(argv[i] + 6, NULL, 10) | 1;
    }
    fz_init();
    static unsigned char in[4096 + 16];
    for (long it = 0; it < runs; it++) {
        size_t n;
        switch (next() % 3) {
        case 0: /* random bytes */
            n = next() % sizeof in;
            for (size_t i = 0; i < n; i++) in[i] = (unsigned char)next();
            break;
        default: /* the valid image with a few bytes flipped, head/tail often kept */
            memcpy(in, pristine, sizeof in);
            n = sizeof in;
            for (int f = 0, nf = 1 + (int)(next() % 8); f < nf; f++)
                in[next() % n] ^= (unsigned char)(1u << (next() % 8));
            if (next() % 2) in[16] |= 1;
            break;
        }
        fz_one(in, n);
    }
    printf("%ld passed, 0 failed\n", runs);
    return 0;
}
#endif
