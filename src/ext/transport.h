/*
 * transport.h -- Python object <-> gilfree frame (see DESIGN.md "Frames").
 *
 * Encoding: exact bytes, str, int (int64), float, None and bytearray skip pickle; everything
 * else is pickled (protocol 5). PickleBuffers of at least GF_OOB_MIN bytes are copied once
 * into arena blocks referenced by the frame -- or, when the buffer already is a whole arena
 * block (received out of band earlier), sent by reference (gf_block_share: no copy, both
 * sides share the memory); smaller ones stay in the pickle stream.
 * Decoding: the frame is validated (gf_frame_parse); out-of-band buffers are handed to
 * pickle.loads as memoryviews of BlockView objects (zero-copy; the block is freed when the
 * last view goes away).
 */
#ifndef GF_TRANSPORT_H
#define GF_TRANSPORT_H

#include "ext.h"

/* Out-of-band threshold: buffers this large go to their own arena block. */
#define GF_OOB_MIN ((Py_ssize_t)64 << 10)

typedef struct gf_enc {
    gf_frame_hdr hdr;
    struct iovec iov[3]; /* header, body, buffer table */
    int iovcnt;
    size_t total;        /* bytes in iov */
    char scalar[8];      /* body of INT / FLOAT frames */
    PyObject *keep;      /* owned: the object holding the body (pickle bytes, utf-8 bytes) */
    Py_buffer view;      /* bytearray body, exported (so it cannot be resized meanwhile) */
    int has_view;
    gf_frame_buf *bufs;  /* out-of-band buffers (arena blocks owned until sent) */
    uint32_t nbufs;
    gf_frame_buf bufs_small[4];
    PyObject *undo;      /* owned: list of (callable, args, refs) run if the message is not
                          * sent (refs: the offsets whose references the action drops) */
    int kept;            /* gf_enc_keep took the undo list and the blocks */
} gf_enc;

/* Encode `obj` (kind: GF_FRAME_RAW to send a bytes-like object's bytes as RAW, else -1 for
 * "choose"). Result 0 with *e filled (call gf_enc_done after the put), or -1 with an exception
 * set (pickling failed; nothing to undo). */
int gf_encode(gf_state *st, PyObject *obj, int raw, gf_enc *e);

/* Release what gf_encode holds. `sent` 0: the message never made it into a ring: free the
 * out-of-band blocks and run the undo actions (references taken for a receiver). Never fails
 * (an undo error is written as unraisable). */
void gf_enc_done(gf_state *st, gf_enc *e, int sent);
/* As gf_encode, for a message this thread puts into a ring next: its out-of-band blocks are
 * recorded in this process's ledger from their allocation until that put commits (the ring
 * drops them just before), so that the survivors free them if the process dies first. Only
 * for a message put right away: a block freed while still recorded would be freed again. */
int gf_encode_for_put(gf_state *st, PyObject *obj, int raw, gf_enc *e);

/* A pool task's message (sent once or more, see pool_submit.c) keeps the references and
 * out-of-band blocks its encode took until the task's final outcome: gf_enc_keep takes them
 * from `e` into *kept (a new object; NULL when there are none: plain arguments) and records
 * each one in this process's reference ledger, so that the survivors drop them if this process
 * dies first. Then call gf_enc_done(st, e, 1) whether or not the message is sent, and
 * gf_enc_release_kept(st, *kept) exactly once when the task is finished (or was never sent).
 * Result 0, or -1 with an exception set (nothing taken). */
int gf_enc_keep(gf_state *st, gf_enc *e, PyObject **kept);
/* Drop what gf_enc_keep kept: forget each ledger record, then free the blocks (this holder)
 * and run the undo actions (the references). Never fails (errors written as unraisable). */
void gf_enc_release_kept(gf_state *st, PyObject *kept);

/* Copy the whole frame of `e` into dst (e->total bytes). */
void gf_enc_flatten(const gf_enc *e, char *dst);

/* Decode a message taken from a ring. Takes ownership of msg->block and of the frame's
 * out-of-band blocks (freed here or by BlockView). `raw_as` says what a RAW frame becomes:
 * 0 -> bytes, 1 -> pickle.loads(bytes) (Connection.recv on a send_bytes message).
 * Result: a new reference, or NULL with an exception set (the message is consumed anyway). */
PyObject *gf_decode(gf_state *st, gf_msg *msg, int raw_as);

/* Decode a pool task's argument frame, whose references and out-of-band blocks stay the
 * message's (gf_enc_keep): what is rebuilt from it takes references and block holders of its
 * own, recorded in this process's ledger (gf_adopt_own_refs, ext.h); nothing of the message's
 * is freed. Result as gf_decode. */
PyObject *gf_decode_shared(gf_state *st, gf_msg *msg);

/* Parse a message as a frame; raises ProtocolError on failure. Result 0 or -1. Does not
 * release anything. */
int gf_decode_frame(gf_state *st, const gf_msg *msg, gf_frame *fr);

/* Free a message that will not be decoded: its block and any out-of-band blocks it names
 * (if it parses). */
void gf_msg_discard(gf_state *st, gf_msg *msg);

/* Re-encode an object as the bytes Connection.recv_bytes returns for it (pickle). */
PyObject *gf_pickle_bytes(gf_state *st, PyObject *obj);

/* Reducers of shared handles call this to register an undo action (callable(*args)) with the
 * encode running in this thread, if any; refs[0..nrefs) are the offsets whose references the
 * action drops (gf_enc_keep records them). Result 0, or -1 with an exception set. */
int gf_transport_on_abort(PyObject *callable, PyObject *args, const gf_off *refs, int nrefs);

/* BlockView (blockview.c): a buffer exporter over an arena block; frees the block at dealloc.
 * Steals `block` (one holder of it: len bytes are exposed) and records it in this process's
 * ledger. Result: new reference or NULL (the block -- this holder -- is freed on failure). */
PyObject *gf_blockview_new(gf_state *st, gf_off block, size_t len);

#endif /* GF_TRANSPORT_H */
