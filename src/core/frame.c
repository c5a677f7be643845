/*
 * frame.c -- the encoding of one object in a message, and its validation.
 *
 * A frame is exactly: gf_frame_hdr (16 bytes), body_len bytes of body, nbufs x gf_frame_buf
 * (16 bytes each, possibly unaligned). Nothing may follow. The bytes come from another
 * process, so gf_frame_parse trusts none of them: every length is checked against the message
 * length with arithmetic that cannot overflow, and every out-of-band buffer against the arena.
 * Fields are in the host's byte order, which is little-endian on every supported target.
 */
#include "internal.h"

#include <string.h>

_Static_assert(sizeof(gf_frame_hdr) == 16, "frame header is 16 bytes");
_Static_assert(sizeof(gf_frame_buf) == 16, "frame buffer descriptor is 16 bytes");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "frames are little-endian");

/* Body length a kind requires, or -1 for any. */
static int64_t gf__frame_fixed_body(int kind) {
    switch (kind) {
    case GF_FRAME_INT:
    case GF_FRAME_FLOAT: return 8;
    case GF_FRAME_NONE: return 0;
    default: return -1;
    }
}

/* Kinds that may carry out-of-band buffers. */
static bool gf__frame_may_have_bufs(int kind) { return gf__frame_fixed_body(kind) < 0; }

/* Fill *hdr for a frame of `kind` with body_len bytes of body and nbufs buffers.
 * Result 0. Fails: GF_EINVAL (NULL hdr, unknown kind, nbufs > GF_FRAME_MAX_BUFS, a body length
 * the kind does not allow, buffers on a kind that cannot have them). */
int gf_frame_header(gf_frame_hdr *hdr, int kind, size_t body_len, uint32_t nbufs) {
    if (!hdr || kind < 0 || kind >= GF_FRAME__MAX) return GF_EINVAL;
    if (nbufs > GF_FRAME_MAX_BUFS) return GF_EINVAL;
    int64_t fixed = gf__frame_fixed_body(kind);
    if (fixed >= 0 && (uint64_t)body_len != (uint64_t)fixed) return GF_EINVAL;
    if (nbufs && !gf__frame_may_have_bufs(kind)) return GF_EINVAL;
    memset(hdr, 0, sizeof *hdr);
    hdr->magic = GF_FRAME_MAGIC;
    hdr->kind = (uint8_t)kind;
    hdr->flags = 0;
    hdr->nbufs = nbufs;
    hdr->body_len = (uint64_t)body_len;
    return 0;
}

/* Parse and validate the frame in msg[0..len). `a` may be NULL: then frames with buffers are
 * rejected. A buffer {block 0, len 0} is an empty buffer (no block); any other buffer must lie
 * inside one live arena block. Result 0 and *out (pointing into msg). Fails: GF_EBADMSG (any
 * inconsistency), GF_EINVAL (NULL out). Never reads outside msg[0..len). */
int gf_frame_parse(const gf_arena *a, const void *msg, size_t len, gf_frame *out) {
    if (!out) return GF_EINVAL;
    if (!msg || len < sizeof(gf_frame_hdr)) return GF_EBADMSG;
    gf_frame_hdr h;
    memcpy(&h, msg, sizeof h); /* msg may be unaligned */
    if (h.magic != GF_FRAME_MAGIC || h.kind >= GF_FRAME__MAX) return GF_EBADMSG;
    size_t rest = len - sizeof h;
    if (h.body_len > rest) return GF_EBADMSG;
    rest -= (size_t)h.body_len;
    if (h.nbufs > GF_FRAME_MAX_BUFS) return GF_EBADMSG;
    /* nbufs <= 65536, so nbufs * 16 cannot overflow. Exactly the buffer array must remain. */
    if ((uint64_t)h.nbufs * sizeof(gf_frame_buf) != rest) return GF_EBADMSG;
    int64_t fixed = gf__frame_fixed_body(h.kind);
    if (fixed >= 0 && h.body_len != (uint64_t)fixed) return GF_EBADMSG;
    if (h.nbufs && !gf__frame_may_have_bufs(h.kind)) return GF_EBADMSG;
    if (h.nbufs && !a) return GF_EBADMSG;
    const unsigned char *p = (const unsigned char *)msg;
    const unsigned char *bufs = p + sizeof h + h.body_len;
    for (uint32_t i = 0; i < h.nbufs; i++) {
        gf_frame_buf b;
        memcpy(&b, bufs + (size_t)i * sizeof b, sizeof b);
        if (b.block == 0 && b.len == 0) continue;
        if (b.len > SIZE_MAX || gf_arena_check_block(a, b.block, (size_t)b.len) != 0)
            return GF_EBADMSG;
    }
    out->kind = h.kind;
    out->flags = h.flags;
    out->body = p + sizeof h;
    out->body_len = (size_t)h.body_len;
    out->nbufs = h.nbufs;
    out->bufs = h.nbufs ? (const gf_frame_buf *)(const void *)bufs : NULL;
    return 0;
}

/* Free the out-of-band buffer blocks of the frame in msg (a message that is being dropped
 * unread: its buffers belong to its receiver, which will never take them). Nothing if msg is
 * not a valid frame. Never fails. */
void gf__frame_drop(gf_arena *a, const void *msg, size_t len) {
    gf_frame f;
    if (!a || gf_frame_parse(a, msg, len, &f) != 0) return;
    for (uint32_t i = 0; i < f.nbufs; i++) {
        gf_frame_buf b;
        memcpy(&b, &f.bufs[i], sizeof b);
        if (b.block) gf_free(a, b.block);
    }
}
