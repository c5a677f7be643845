/* test_frame.c -- gf_frame_header / gf_frame_parse: round trips, every validation rule,
 * unaligned input, overflow attempts. (Random inputs: fuzz_frame.c.) */
#include "gilfree.h"
#include "test.h"

static gf_arena *A;

/* 1 GiB (sparse): small enough for valgrind, which cannot map the 64 GiB default. */
static void setup(void) { ASSERT_OK(gf_arena_create((size_t)1 << 30, &A)); }

/* Build hdr + body + bufs into out (at offset `shift`, to test unaligned input). Result: the
 * frame length. */
static size_t build(unsigned char *out, size_t shift, int kind, const void *body, size_t blen,
                    const gf_frame_buf *bufs, uint32_t nbufs) {
    gf_frame_hdr h;
    ASSERT_OK(gf_frame_header(&h, kind, blen, nbufs));
    unsigned char *p = out + shift;
    memcpy(p, &h, sizeof h);
    if (blen) memcpy(p + sizeof h, body, blen);
    if (nbufs) memcpy(p + sizeof h + blen, bufs, nbufs * sizeof *bufs);
    return sizeof h + blen + nbufs * sizeof *bufs;
}

TEST(header_args) {
    gf_frame_hdr h;
    ASSERT_EQ(gf_frame_header(NULL, GF_FRAME_RAW, 0, 0), GF_EINVAL);
    ASSERT_EQ(gf_frame_header(&h, -1, 0, 0), GF_EINVAL);
    ASSERT_EQ(gf_frame_header(&h, GF_FRAME__MAX, 0, 0), GF_EINVAL);
    ASSERT_EQ(gf_frame_header(&h, GF_FRAME_PICKLE, 0, GF_FRAME_MAX_BUFS + 1), GF_EINVAL);
    ASSERT_EQ(gf_frame_header(&h, GF_FRAME_INT, 4, 0), GF_EINVAL);
    ASSERT_EQ(gf_frame_header(&h, GF_FRAME_FLOAT, 9, 0), GF_EINVAL);
    ASSERT_EQ(gf_frame_header(&h, GF_FRAME_NONE, 1, 0), GF_EINVAL);
    ASSERT_EQ(gf_frame_header(&h, GF_FRAME_INT, 8, 1), GF_EINVAL);
    ASSERT_OK(gf_frame_header(&h, GF_FRAME_PICKLE, 123, GF_FRAME_MAX_BUFS));
    ASSERT_EQ(h.magic, GF_FRAME_MAGIC);
    ASSERT_EQ(h.kind, GF_FRAME_PICKLE);
    ASSERT_EQ(h.flags, 0);
    ASSERT_EQ(h.nbufs, GF_FRAME_MAX_BUFS);
    ASSERT_EQ(h.body_len, 123);
    ASSERT_EQ(sizeof h, 16);
}

TEST(roundtrip_every_kind) {
    setup();
    unsigned char out[4096];
    const char *text = "hello, frames";
    for (int kind = 0; kind < GF_FRAME__MAX; kind++) {
        for (size_t shift = 0; shift < 8; shift++) {
            size_t blen = kind == GF_FRAME_INT || kind == GF_FRAME_FLOAT ? 8
                          : kind == GF_FRAME_NONE                        ? 0
                                                                         : strlen(text);
            size_t len = build(out, shift, kind, text, blen, NULL, 0);
            gf_frame f;
            ASSERT_OK(gf_frame_parse(A, out + shift, len, &f));
            ASSERT_EQ(f.kind, kind);
            ASSERT_EQ(f.body_len, blen);
            ASSERT(f.body == out + shift + 16);
            ASSERT_EQ(f.nbufs, 0);
            ASSERT_OK(gf_frame_parse(NULL, out + shift, len, &f)); /* no arena needed */
        }
    }
}

TEST(buffers_checked_against_arena) {
    setup();
    gf_off b1, b2;
    ASSERT_OK(gf_alloc(A, 1000, &b1));
    ASSERT_OK(gf_alloc(A, 50, &b2));
    gf_frame_buf bufs[3] = {{b1, 1000}, {b2, 50}, {0, 0}};
    unsigned char out[4096];
    for (size_t shift = 0; shift < 8; shift++) {
        size_t len = build(out, shift, GF_FRAME_PICKLE, "pk", 2, bufs, 3);
        gf_frame f;
        ASSERT_OK(gf_frame_parse(A, out + shift, len, &f));
        ASSERT_EQ(f.nbufs, 3);
        gf_frame_buf b;
        memcpy(&b, &f.bufs[1], sizeof b);
        ASSERT_EQ(b.block, b2);
        ASSERT_EQ(b.len, 50);
        /* no arena: buffers rejected */
        ASSERT_EQ(gf_frame_parse(NULL, out + shift, len, &f), GF_EBADMSG);
    }
    gf_frame f;
    gf_frame_buf bad[][1] = {
        {{b1, gf_block_size(A, b1) + 1}}, /* longer than the block */
        {{b1 + 64, 10}},                  /* not a block start */
        {{b1 + 8, 10}},
        {{0, 1}},                          /* no block but a length */
        {{1ull << 62, 1}},                 /* outside the arena */
        {{UINT64_MAX, UINT64_MAX}},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        size_t len = build(out, 0, GF_FRAME_PICKLE, "x", 1, bad[k], 1);
        ASSERT_EQ(gf_frame_parse(A, out, len, &f), GF_EBADMSG);
    }
    /* a freed block is no longer valid */
    size_t len = build(out, 0, GF_FRAME_PICKLE, "x", 1, bufs, 1);
    ASSERT_OK(gf_frame_parse(A, out, len, &f));
    ASSERT_OK(gf_free(A, b1));
    ASSERT_EQ(gf_frame_parse(A, out, len, &f), GF_EBADMSG);
}

TEST(malformed_headers) {
    setup();
    unsigned char out[256];
    gf_frame f;
    size_t len = build(out, 0, GF_FRAME_BYTES, "abcdef", 6, NULL, 0);
    ASSERT_OK(gf_frame_parse(A, out, len, &f));
    /* every truncation and every extension is rejected */
    for (size_t l = 0; l < len; l++) ASSERT_EQ(gf_frame_parse(A, out, l, &f), GF_EBADMSG);
    ASSERT_EQ(gf_frame_parse(A, out, len + 1, &f), GF_EBADMSG);
    ASSERT_EQ(gf_frame_parse(A, NULL, 0, &f), GF_EBADMSG);
    ASSERT_EQ(gf_frame_parse(A, out, len, NULL), GF_EINVAL);
    gf_frame_hdr h;
    memcpy(&h, out, sizeof h);
#define MUTATE(field, value)                                                                  \
    do {                                                                                      \
        gf_frame_hdr m = h;                                                                   \
        m.field = value;                                                                      \
        memcpy(out, &m, sizeof m);                                                            \
        ASSERT_EQ(gf_frame_parse(A, out, len, &f), GF_EBADMSG);                               \
        memcpy(out, &h, sizeof h);                                                            \
    } while (0)
    MUTATE(magic, 0x4746);
    MUTATE(kind, GF_FRAME__MAX);
    MUTATE(kind, 255);
    MUTATE(body_len, 7);
    MUTATE(body_len, 5);
    MUTATE(body_len, UINT64_MAX);
    MUTATE(body_len, UINT64_MAX - 15); /* 16 + body_len overflows */
    MUTATE(nbufs, 1);
    MUTATE(nbufs, UINT32_MAX);
    MUTATE(nbufs, GF_FRAME_MAX_BUFS + 1);
    MUTATE(kind, GF_FRAME_INT);  /* INT needs 8 bytes of body */
    MUTATE(kind, GF_FRAME_NONE); /* NONE needs none */
    ASSERT_OK(gf_frame_parse(A, out, len, &f));
    /* nbufs * 16 that wraps 32 bits: 2^28 * 16 = 2^32 */
    gf_frame_hdr m = h;
    m.nbufs = 1u << 28;
    m.body_len = 0;
    memcpy(out, &m, sizeof m);
    ASSERT_EQ(gf_frame_parse(A, out, 16, &f), GF_EBADMSG);
    /* a buffer list on a kind that cannot carry one */
    gf_frame_buf nb = {0, 0};
    unsigned char o2[64];
    gf_frame_hdr hi;
    ASSERT_OK(gf_frame_header(&hi, GF_FRAME_INT, 8, 0));
    hi.nbufs = 1;
    memcpy(o2, &hi, 16);
    memset(o2 + 16, 0, 8);
    memcpy(o2 + 24, &nb, 16);
    ASSERT_EQ(gf_frame_parse(A, o2, 40, &f), GF_EBADMSG);
}

/* Frames travel through a ring: parse what comes out. */
TEST(frames_through_ring) {
    setup();
    gf_off r, blk;
    ASSERT_OK(gf_ring_create(A, 4096, 0, 0, &r));
    ASSERT_OK(gf_alloc(A, 4096, &blk));
    gf_frame_hdr h;
    ASSERT_OK(gf_frame_header(&h, GF_FRAME_PICKLE, 5, 1));
    gf_frame_buf b = {blk, 4096};
    struct iovec v[3] = {{&h, sizeof h}, {"\x80\x05N.\x00", 5}, {&b, sizeof b}};
    ASSERT_OK(gf_ring_putv(A, r, v, 3, 0));
    char buf[512];
    gf_msg m;
    ASSERT_EQ(gf_ring_get(A, r, &m, buf, sizeof buf, 0), 1);
    gf_frame f;
    ASSERT_OK(gf_frame_parse(A, m.data, m.len, &f));
    ASSERT_EQ(f.kind, GF_FRAME_PICKLE);
    ASSERT_EQ(f.nbufs, 1);
    ASSERT_EQ(memcmp(f.body, "\x80\x05N.", 4), 0);
}

TEST_MAIN()
