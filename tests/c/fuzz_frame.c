/*
 * fuzz_frame.c -- fuzz gf_frame_parse.
 *
 * Two ways to run it:
 *   - libFuzzer (clang): cc -DGF_LIBFUZZER -fsanitize=fuzzer,address,undefined ... ; libFuzzer
 *     provides main() and calls LLVMFuzzerTestOneInput.
 *   - standalone (gcc, the default build): ./fuzz_frame -runs=N [-seed=S] generates random
 *     byte strings, mutated valid frames and truncated valid frames from a fixed seed.
 *
 * Each input is copied to a buffer of exactly its size (so that ASan catches any over-read)
 * and parsed against a real arena holding some live blocks (and some freed ones). When the
 * parser accepts, the result is checked: the body and the buffer list lie inside the input,
 * the lengths add up, and every buffer lies inside a live block.
 *
 * Input byte 0 selects a mode: even = the rest is the frame as is; odd = the rest is a frame
 * whose buffer descriptors are first rewritten to point near live blocks (so that the fuzzer
 * reaches the arena checks instead of stopping at random offsets).
 */
#include "gilfree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NLIVE 16
static gf_arena *A;
static gf_off live[NLIVE], dead[4];

static void fz_init(void) {
    if (A) return;
    if (gf_arena_create((size_t)1 << 30, &A) != 0) abort();
    static const size_t sizes[NLIVE] = {1,   8,    64,   100,   1000,  4096,   5000,    65536,
                                        200, 3000, 9000, 12345, 70000, 1 << 20, 100000, 7};
    for (int i = 0; i < NLIVE; i++)
        if (gf_alloc(A, sizes[i], &live[i]) != 0) abort();
    for (int i = 0; i < 4; i++) {
        if (gf_alloc(A, 64 << i, &dead[i]) != 0) abort();
    }
    for (int i = 0; i < 4; i++) gf_free(A, dead[i]);
}

/* Abort if an accepted frame violates what gf_frame_parse promises. */
static void fz_check(const unsigned char *p, size_t len, const gf_frame *f) {
    if (f->kind < 0 || f->kind >= GF_FRAME__MAX) abort();
    const unsigned char *body = f->body;
    if (body != p + sizeof(gf_frame_hdr)) abort();
    if (f->body_len > len - sizeof(gf_frame_hdr)) abort();
    if (sizeof(gf_frame_hdr) + f->body_len + (size_t)f->nbufs * sizeof(gf_frame_buf) != len)
        abort();
    if (f->nbufs > GF_FRAME_MAX_BUFS) abort();
    for (uint32_t i = 0; i < f->nbufs; i++) {
        gf_frame_buf b;
        memcpy(&b, (const unsigned char *)f->bufs + i * sizeof b, sizeof b);
        if (b.block == 0 && b.len == 0) continue;
        size_t bs = gf_block_size(A, b.block);
        if (bs == 0 || b.len > bs) abort();
    }
}

static void fz_point_bufs(unsigned char *p, size_t len) {
    if (len < sizeof(gf_frame_hdr)) return;
    gf_frame_hdr h;
    memcpy(&h, p, sizeof h);
    if (h.body_len > len - sizeof h) return;
    size_t at = sizeof h + (size_t)h.body_len;
    for (uint32_t i = 0; at + sizeof(gf_frame_buf) <= len && i < 64; i++) {
        gf_frame_buf b;
        memcpy(&b, p + at, sizeof b);
        gf_off base = (b.block & 16) ? dead[b.block % 4] : live[b.block % NLIVE];
        b.block = base + (gf_off)((int64_t)(int8_t)(b.block >> 8)) * ((b.block & 32) ? 64 : 1);
        b.len %= (b.len & 1) ? ((uint64_t)1 << 21) : 200000;
        memcpy(p + at, &b, sizeof b);
        at += sizeof b;
    }
}

static unsigned long fz_accepted, fz_rejected;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_init();
    if (size == 0) return 0;
    size_t len = size - 1;
    unsigned char *p = malloc(len ? len : 1);
    if (!p) return 0;
    if (len) memcpy(p, data + 1, len);
    if (data[0] & 1) fz_point_bufs(p, len);
    gf_frame f;
    int rc = gf_frame_parse(A, p, len, &f);
    if (rc == 0) {
        fz_check(p, len, &f);
        fz_accepted++;
    } else if (rc == GF_EBADMSG) {
        fz_rejected++;
    } else {
        abort(); /* nothing else is allowed */
    }
    /* the same bytes without an arena: must not accept buffers */
    rc = gf_frame_parse(NULL, p, len, &f);
    if (rc == 0 && f.nbufs != 0) abort();
    free(p);
    return 0;
}

#ifndef GF_LIBFUZZER
#include "fuzz_rng.h"

/* A valid frame (mode byte first) into out; result: its size. */
static size_t valid_frame(unsigned char *out, size_t cap) {
    int kind = (int)rndn(GF_FRAME__MAX);
    size_t blen = kind == GF_FRAME_INT || kind == GF_FRAME_FLOAT ? 8
                  : kind == GF_FRAME_NONE                        ? 0
                                                                 : (size_t)rndn(300);
    uint32_t nbufs = (kind == GF_FRAME_INT || kind == GF_FRAME_FLOAT || kind == GF_FRAME_NONE)
                         ? 0
                         : (uint32_t)(rndn(4) ? rndn(4) : rndn(40));
    if (1 + 16 + blen + (size_t)nbufs * 16 > cap) nbufs = 0;
    gf_frame_hdr h;
    if (gf_frame_header(&h, kind, blen, nbufs) != 0) abort();
    out[0] = 0; /* descriptors below already point at live blocks */
    memcpy(out + 1, &h, 16);
    for (size_t i = 0; i < blen; i++) out[17 + i] = (unsigned char)rnd();
    for (uint32_t i = 0; i < nbufs; i++) {
        gf_frame_buf b = {0, 0};
        if (rndn(8)) {
            int k = (int)rndn(NLIVE);
            b.block = live[k];
            b.len = rndn(gf_block_size(A, live[k]) + 1);
        }
        memcpy(out + 17 + blen + i * 16, &b, 16);
    }
    return 1 + 16 + blen + (size_t)nbufs * 16;
}

static size_t mutate(unsigned char *p, size_t len, size_t cap) {
    int n = 1 + (int)rndn(4);
    for (int k = 0; k < n; k++) {
        switch (rndn(8)) {
        case 0: /* flip a bit */
            if (len > 1) p[1 + rndn(len - 1)] ^= (unsigned char)(1u << rndn(8));
            break;
        case 1: /* set a byte */
            if (len > 1) p[1 + rndn(len - 1)] = (unsigned char)rnd();
            break;
        case 2: /* boundary value into a header field */
            if (len >= 17) {
                static const uint64_t vals[] = {0, 1, 7, 8, 15, 16, 0x7fffffff, 0xffffffff,
                                                GF_FRAME_MAX_BUFS, GF_FRAME_MAX_BUFS + 1,
                                                UINT64_MAX, UINT64_MAX - 15, 1ull << 60};
                uint64_t v = vals[rndn(sizeof vals / sizeof vals[0])];
                size_t at = 1 + (rndn(2) ? 4 : 8), w = at == 5 ? 4 : 8;
                memcpy(p + at, &v, w);
            }
            break;
        case 3: /* truncate */
            len = 1 + rndn(len);
            break;
        case 4: /* extend */
            if (len < cap) {
                size_t add = 1 + rndn(cap - len < 32 ? cap - len : 32);
                for (size_t i = 0; i < add; i++) p[len + i] = (unsigned char)rnd();
                len += add;
            }
            break;
        case 5: /* delete a byte */
            if (len > 2) {
                size_t at = 1 + rndn(len - 1);
                memmove(p + at, p + at + 1, len - at - 1);
                len--;
            }
            break;
        case 6: /* re-point buffers near live/dead blocks */
            p[0] |= 1;
            break;
        default: /* the kind byte */
            if (len > 3) p[3] = (unsigned char)rndn(12);
            break;
        }
    }
    return len;
}

int main(int argc, char **argv) {
    long runs = fz_args(argc, argv, 100000);
    fz_init();
    static unsigned char buf[4096];
    unsigned long modes[3] = {0, 0, 0};
    for (long r = 0; r < runs; r++) {
        size_t len;
        int mode = (int)rndn(3);
        modes[mode]++;
        if (mode == 0) { /* random bytes, sometimes starting with the magic */
            len = 1 + rndn(rndn(2) ? 40 : 400);
            for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)rnd();
            if (len >= 3 && rndn(2)) {
                uint16_t m = GF_FRAME_MAGIC;
                memcpy(buf + 1, &m, 2);
            }
        } else if (mode == 1) { /* mutated valid frame */
            len = valid_frame(buf, sizeof buf);
            len = mutate(buf, len, sizeof buf);
        } else { /* valid frame, truncated (or whole) */
            len = valid_frame(buf, sizeof buf);
            if (rndn(4)) len = 1 + rndn(len);
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("fuzz_frame: %ld runs (random %lu, mutated %lu, truncated %lu): %lu accepted, "
           "%lu rejected\n",
           runs, modes[0], modes[1], modes[2], fz_accepted, fz_rejected);
    return 0;
}
#endif
