"""The adaptive chunker of gilfree.Pool.map(chunksize=None). Private: gilfree.pool re-exports
_Chunker."""

import math


class _Chunker:
    """Adaptive chunk sizes for map(chunksize=None) (issue 3).

    The first chunks hold one item each (probes); every result carries the worker's time on
    its chunk, and the next chunks are sized so that one takes about TARGET_NS, growing at
    most GROWTH-fold over the largest chunk measured so far (a probe does not tell much), and
    near the end no more than a 1/(2 x workers) share of what is left (so that the tail
    balances) unless that is under MIN_NS of work. Time per item: decaying average of the
    workers' reports (results carry each chunk's elapsed time, measured by the C core).
    Chunks out per worker: at least INFLIGHT (one running, one queued), more when chunks are
    short, so that each worker has about QUEUE_NS of work queued (at most MAX_INFLIGHT): on a
    busy machine the parent may be off the CPU for several ms, and the workers must not run
    dry meanwhile. Slow items stay at INFLIGHT (queued work cannot move between workers).
    """

    TARGET_NS = 4_000_000
    MIN_NS = 500_000
    GROWTH = 16
    INFLIGHT = 2
    MAX_INFLIGHT = 4
    QUEUE_NS = 8_000_000  # (deeper queues strand work behind a worker the OS preempts)

    def __init__(self, items, n, nworkers):
        self.items = items
        self.n = n
        self.nw = nworkers
        self.next = 0           # first item not yet sent
        self.inflight = 0       # chunks out
        self.max_inflight = self.INFLIGHT * nworkers  # raised by observe(); close() lifts it
        self.last = 1           # size of the last chunk planned
        self.ns = 0.0           # decaying sums of worker time and items measured
        self.nitems = 0.0
        self.biggest = 0        # largest chunk measured
        self.busy = False       # a thread is submitting
        self.nchunks = 0

    def size(self):
        rem = self.n - self.next
        if self.biggest == 0:
            return 1
        per = self.ns / self.nitems if self.nitems else 0.0
        if per <= 0:
            per = 1.0
        s = min(self.TARGET_NS / per, self.GROWTH * self.biggest)
        # the tail: a share of what is left, but not below MIN_NS worth of items (tiny
        # chunks at the end would cost more round trips than the imbalance they save)
        tail = max(-(-rem // (2 * self.nw)), self.MIN_NS / per)
        self.last = max(1, min(rem, int(min(s, tail))))
        return self.last

    def observe(self, k, elapsed):
        if k <= 0:
            return
        self.ns = 0.5 * self.ns + elapsed
        self.nitems = 0.5 * self.nitems + k
        if k > self.biggest:
            self.biggest = k
        if self.max_inflight < (1 << 62):
            # the next chunks' duration; while still ramping up (until a chunk of the current
            # scale took MIN_NS) stay at INFLIGHT, or many chunks of a stale small size go out
            per = self.ns / self.nitems
            chunk_ns = per * max(1.0, min(self.TARGET_NS / per if per > 0 else 1e18,
                                          self.GROWTH * self.biggest))
            per_worker = self.INFLIGHT
            if chunk_ns >= self.MIN_NS and k * 16 >= self.biggest and elapsed >= self.MIN_NS:
                per_worker = min(max(1 + math.ceil(self.QUEUE_NS / chunk_ns), self.INFLIGHT),
                                 self.MAX_INFLIGHT)
            self.max_inflight = self.nw * per_worker
