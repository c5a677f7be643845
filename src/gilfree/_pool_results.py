"""The results of gilfree.Pool: ApplyResult (AsyncResult), MapResult (filled in place by its
chunks, adaptive chunking through pool._Chunker), the sinks of batched calls and imap chunks,
and IMapIterator. Private: import these names from gilfree.pool, which re-exports them."""

import itertools
import threading
import time
import traceback
from multiprocessing import TimeoutError

from gilfree import _core
from gilfree._pool_errors import K_MAP, K_CALL, RUN, S_LOST, S_OK, _rebuild_error, _status_error

_evlock = threading.Lock()

_unpack_into = _core.Pool.unpack_into


def _unpack(value):
    """A map chunk's results: a list, or a packed list made by the worker (bytes: all
    int64, all str or all bytes; see src/ext/packed.c)."""
    if type(value) is bytes:
        return _core.Pool.unpack(value)
    return value


def _send(sink, index, status, value, worker, elapsed):
    """Deliver one result to its sink (map chunks also get the worker's time on it)."""
    if type(sink) is MapResult:
        sink._deliver_t(index, status, value, worker, elapsed)
    else:
        sink._deliver(index, status, value, worker)



# ---------------------------------------------------------------- results

class ApplyResult:
    """The stdlib's AsyncResult: get(timeout), wait(timeout), ready(), successful()."""

    _gf_into = None  # MapResult: its list (_core.Pool.results decodes packed chunks into it)

    def __init__(self, pool, callback=None, error_callback=None):
        self._pool = pool
        self._done = False
        self._ev = None  # threading.Event, made only when someone sleeps on this result
        self._callback = callback
        self._error_callback = error_callback
        self._success = None
        self._value = None
        self._ids = ()

    def ready(self):
        """True once the call has completed (multiprocessing.pool.AsyncResult.ready)."""
        return self._done

    is_set = ready

    def _evwait(self, timeout):
        ev = self._ev
        if ev is None:
            with _evlock:
                if self._ev is None:
                    self._ev = threading.Event()
                ev = self._ev
        if self._done:
            return True
        return ev.wait(timeout)

    def successful(self):
        """True if the call returned without raising; ValueError if it is not ready yet
        (as multiprocessing.pool.AsyncResult.successful)."""
        if not self._done:
            raise ValueError("{0!r} not ready".format(self))
        return self._success

    def wait(self, timeout=None):
        """Wait until the result is ready or ``timeout`` seconds pass (None: forever);
        returns None (as multiprocessing.pool.AsyncResult.wait)."""
        if not self._done:
            self._pool._wait_until(self, timeout)

    def get(self, timeout=None):
        """The result, waiting up to ``timeout`` seconds (None: forever); raises
        multiprocessing.TimeoutError if not ready by then, or re-raises the call's exception
        (with a RemoteTraceback cause), WorkerLostError or TaskTimeoutError
        (multiprocessing.pool.AsyncResult.get)."""
        if not self._done:
            self._pool._wait_until(self, timeout)
            if not self._done:
                raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _deliver(self, index, status, value, worker):
        if status == S_OK:
            self._set(True, value)
        else:
            self._set(False, _status_error(status, value, worker))

    def _set(self, success, value):
        if self._done:
            return
        self._success, self._value = success, value
        cb = self._callback if success else self._error_callback
        if cb is not None:
            try:
                cb(value)
            except BaseException:
                traceback.print_exc()
        self._done = True
        ev = self._ev
        if ev is not None:
            ev.set()

    __class_getitem__ = classmethod(lambda cls, item: cls)


AsyncResult = ApplyResult



class MapResult(ApplyResult):
    """The AsyncResult of map_async/starmap_async (multiprocessing.pool.MapResult): get()
    returns the list of results in input order; the first failing chunk fails the whole map.
    As with the standard library, the map's other chunks still run (their results are
    dropped): only an interrupted map() (Ctrl-C while it waits) cancels its queued chunks.
    Chunks are sent by its plan (pool._Chunker: adaptive, or _FixedChunks), as many as the
    mailboxes take, the rest as results free them."""

    def __init__(self, pool, length, nchunks, callback=None, error_callback=None, progress=None,
                 plan=None):
        super().__init__(pool, callback, error_callback)
        # n empty slots, filled in place by the chunks (calloc'd: no 8 MB of stores and page
        # faults before the first chunk goes out); nobody sees the list before it is full
        self._value = self._gf_into = _core.Pool.new_list(length)
        self._left = length       # items not yet delivered
        self._progress = progress
        self._plan = plan
        self._mlock = threading.Lock()
        self._kind = K_MAP
        self._fnb = b""
        self._task_timeout = None
        self._retries = 0
        self._nchunks = nchunks
        self._cancelled = False   # map() interrupted: send nothing more
        if length == 0:
            self._set(True, self._value)

    def _refill(self, block):
        """Send chunks until the plan's in-flight limit (adaptive: INFLIGHT per worker) is
        out. One thread at a time submits; another one finding it busy returns (the busy one
        re-checks under the lock before it lets go). block=False: when every mailbox is full,
        retry after the next results (pool._starved) instead of waiting. A failed map goes on
        sending (its work still runs, as the stdlib's); a cancelled one stops."""
        plan = self._plan
        pool = self._pool
        mine = False
        while True:
            with self._mlock:
                if plan.busy and not mine:
                    return
                if self._cancelled or plan.next >= plan.n or plan.inflight >= plan.max_inflight:
                    plan.busy = False
                    sent_all = plan.next >= plan.n
                    break
                plan.busy = mine = True
                start = plan.next
                size = plan.size()
                plan.next = start + size
                plan.inflight += 1
                plan.nchunks += 1
            try:
                tid = pool._submit(self._kind, self._fnb, plan.items[start:start + size], self,
                                   start, self._task_timeout, self._retries, block=block)
            except BaseException:
                with self._mlock:
                    plan.next = start
                    plan.inflight -= 1
                    plan.nchunks -= 1
                    plan.busy = False
                raise
            if tid is None:
                with self._mlock:
                    plan.next = start
                    plan.inflight -= 1
                    plan.nchunks -= 1
                    plan.busy = False
                with _evlock:
                    pool._starved.add(self)
                return
            self._ids.append(tid)
            self._nchunks = plan.nchunks
        if (sent_all or self._cancelled) and self._done:
            with _evlock:
                pool._adaptive.discard(self)

    def _deliver(self, start, status, value, worker):
        self._deliver_t(start, status, value, worker, 0)

    def _deliver_t(self, start, status, value, worker, elapsed):
        plan = self._plan
        if self._done:
            if plan is not None:  # a failed map's other chunks: keep its work going
                with self._mlock:
                    plan.inflight -= 1
                    more = plan.next < plan.n and not plan.busy
                if more:
                    try:
                        self._refill(False)
                    except BaseException:
                        self._cancelled = True  # (the pool stopped)
            return
        if status == S_OK:
            tv = type(value)
            # int: the chunk was decoded into our list already (_core.Pool.results(into=))
            k = value if tv is int else len(value) if tv is not bytes else None
            if plan is not None:
                if k is None:
                    k = _core.Pool.count(value)
                with self._mlock:
                    plan.inflight -= 1
                    plan.observe(k, elapsed)
                    more = plan.next < plan.n and not plan.busy
                if more:  # the workers get their next chunk before we decode this one
                    try:
                        self._refill(False)
                    except BaseException as e:
                        self._fail(e)
                        return
            if tv is int:
                pass
            elif tv is bytes:
                k = _unpack_into(self._value, start, value)
            else:
                k = len(value)
                self._value[start:start + k] = value
            if self._progress is not None:
                self._progress.update(k)
            with self._mlock:
                self._left -= k
                last = self._left == 0
            if last:
                if self._progress is not None:
                    self._progress.close()
                self._set(True, self._value)
        else:
            self._fail(_status_error(status, value, worker))

    def _set(self, success, value):
        plan = self._plan
        if plan is not None and (plan.next >= plan.n or self._cancelled):
            with _evlock:
                self._pool._adaptive.discard(self)
        super()._set(success, value)

    def _fail(self, exc):
        if self._done:
            return
        if self._progress is not None:
            self._progress.close()
        self._set(False, exc)

    def _cancel(self):
        """Send nothing more and cancel the chunks already sent (an interrupted map())."""
        self._cancelled = True
        with _evlock:
            self._pool._adaptive.discard(self)
            self._pool._starved.discard(self)
        self._pool._cancel_ids(self._ids)


class _BatchSink:
    """Receives the result of a batch of apply_async calls run as one pool task."""

    def __init__(self, pool, items):
        self._pool = pool
        self._items = items  # [(ApplyResult, fnb, args, kwds)]

    def _deliver(self, index, status, value, worker):
        items = self._items
        if status == S_OK:
            out, errs = value
            for i, it in enumerate(items):
                if errs and i in errs:
                    it[0]._set(False, _rebuild_error(errs[i]))
                else:
                    it[0]._set(True, out[i])
            return
        if status == S_LOST and len(items) > 1 and self._pool._state == RUN:
            # the worker died under the batch: run each call alone, so that only the call
            # that kills its worker fails (calls that had run before the crash run again)
            for res, fnb, args, kwds in items:
                self._pool._submit_or_hold(K_CALL, fnb, (args, kwds), res)
            return
        for it in items:
            it[0]._set(False, _status_error(status, value, worker))


class _ImapSink:
    """Receives chunk results for an IMapIterator."""

    def __init__(self, it, start):
        self._it = it
        self._start = start

    def _deliver(self, index, status, value, worker):
        self._it._arrived(index, status, value, worker)


_SOURCE_ERROR = object()  # an IMapIterator "chunk" that is the input iterable's exception


class IMapIterator:
    """Lazy imap/imap_unordered: reads the input as it goes, at most `inflight` chunks out."""

    def __init__(self, pool, kind, fn, iterable, chunksize, ordered, timeout_s, retries,
                 progress=None, inflight=None):
        self._pool = pool
        self._kind = kind
        self._fnb = pool._fnbytes(fn)
        self._src = iter(iterable)
        self._chunksize = chunksize
        self._ordered = ordered
        self._task_timeout = timeout_s
        self._retries = retries
        self._inflight_max = inflight or max(4, 4 * pool._processes)
        self._inflight = 0
        self._nsub = 0
        self._next = 0
        self._done = {}        # chunk index -> (status, value)
        self._ready = []       # unordered: list of values
        self._buf = []         # items ready to yield
        self._bufpos = 0
        self._exhausted = False
        self._event = threading.Event()
        self._ids = set()
        self._progress = progress
        self._closed = False

    def __iter__(self):
        return self

    def _arrived(self, index, status, value, worker):
        self._inflight -= 1
        if self._ordered:
            self._done[index] = (status, value, worker)
        else:
            self._ready.append((status, value, worker))
        self._event.set()

    def _fill(self):
        # bounded: chunks in flight plus chunks done but not yet consumed
        while not self._exhausted and (self._inflight + len(self._done) + len(self._ready)
                                       < self._inflight_max):
            try:
                chunk = list(itertools.islice(self._src, self._chunksize))
            except Exception as e:
                # the iterable raised: as with the stdlib, the results before it come out
                # first, then next() raises it in place of its chunk (items of that chunk
                # read before the error are dropped)
                self._exhausted = True
                idx = self._nsub
                self._nsub += 1
                if self._ordered:
                    self._done[idx] = (_SOURCE_ERROR, e, None)
                else:
                    self._ready.append((_SOURCE_ERROR, e, None))
                break
            if not chunk:
                self._exhausted = True
                break
            idx = self._nsub
            self._nsub += 1
            self._inflight += 1
            try:
                self._pool._submit(self._kind, self._fnb, chunk, _ImapSink(self, idx), idx,
                                   self._task_timeout, self._retries)
            except BaseException:
                self._inflight -= 1
                self._nsub -= 1
                raise

    def _take(self, status, value, worker):
        if status is _SOURCE_ERROR:
            self._close()
            raise value
        if status != S_OK:
            self._close()
            raise _status_error(status, value, worker)
        value = _unpack(value)
        if self._progress is not None:
            self._progress.update(len(value))
        self._buf = value
        self._bufpos = 0

    def _close(self):
        if not self._closed:
            self._closed = True
            if self._progress is not None:
                self._progress.close()

    def next(self, timeout=None):
        """The next result (in input order for imap); raises TimeoutError after `timeout`
        seconds, StopIteration at the end, or the task's exception in place of its result."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._bufpos < len(self._buf):
                v = self._buf[self._bufpos]
                self._bufpos += 1
                return v
            if self._ordered and self._next in self._done:
                st, val, w = self._done.pop(self._next)
                self._next += 1
                self._take(st, val, w)
                continue
            if not self._ordered and self._ready:
                self._take(*self._ready.pop(0))
                continue
            self._fill()
            if self._exhausted and self._inflight == 0 and not self._done and not self._ready:
                self._close()
                raise StopIteration
            self._event.clear()
            if (self._ordered and self._next in self._done) or (not self._ordered and
                                                                self._ready):
                continue
            rem = None if deadline is None else deadline - time.monotonic()
            if rem is not None and rem <= 0:
                raise TimeoutError
            self._pool._wait_until(self._event, rem)

    __next__ = next
