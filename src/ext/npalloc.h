/*
 * npalloc.h -- NumPy array data in the arena (npalloc.c): in a pool worker, large arrays are
 * allocated in the shared-memory arena through NumPy's data-memory handler (NEP 49), so that a
 * returned array travels by reference instead of being copied.
 *
 * Used by transport.c (may an out-of-band buffer that is an arena block go by reference?) and
 * pool_worker.c (install the handler, lend the result's blocks, take them back when the worker
 * keeps the array). See DESIGN.md, "NumPy arrays made in a worker".
 */
#ifndef GF_NPALLOC_H
#define GF_NPALLOC_H

#include "transport.h"

/* In a pool worker, before each task: install the arena handler in this thread's context if
 * NumPy has been imported (never imports it) and GILFREE_NUMPY_ARENA is not "0". Cheap when
 * done already (one flag) or when NumPy is absent (one dict lookup). Never fails: a NumPy
 * without the handler API (< 1.22) or any error leaves NumPy's own allocator in place. */
void gf_npalloc_poll(gf_state *st);

/* May the arena block `blk` (the start of an out-of-band buffer) be sent by reference? No when
 * it holds the data of an array made here by the handler that is still alive in this process
 * (sharing it would let the receiver and this process write the same memory), unless the
 * calling thread lends (gf_npalloc_lend). Result 1 or 0. */
int gf_npalloc_may_share(gf_off blk);

/* Start (on = 1) / stop (on = 0) lending in this thread: while on, live handler blocks go by
 * reference; the caller must then drop the object and call gf_npalloc_unshare. */
void gf_npalloc_lend(int on);

/* After the lent object was dropped: every out-of-band buffer of `e` that still holds a live
 * array of this process (the worker kept it) is replaced by a copy, so that no memory is
 * shared with the receiver. Result 0, or -1 with MemoryError set (e is unchanged for the
 * buffers not yet replaced; gf_enc_done frees them all). */
int gf_npalloc_unshare(gf_state *st, gf_enc *e);

/* In a forked child, once its arena slot is its own (the fork hand-over's record step, inside
 * fork()): record the holders it took on the arrays it inherited in its reference ledger, so
 * that the survivors drop them if it is killed. Never fails (a full ledger leaves the rest
 * unrecorded, as before). */
void gf_npalloc_fork_record(void);

#endif
