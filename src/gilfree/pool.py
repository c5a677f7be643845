"""gilfree.Pool: a drop-in for :class:`multiprocessing.pool.Pool` on the C worker pool.

Workers are forked by one long-lived thread of the pool (so that they die with the parent,
SIGKILL included), run a C loop (take task -> call -> publish result) and only call Python for
the user's function. A dead worker fails only the task it was running (WorkerLostError) and is
replaced; per-task ``timeout=`` kills and replaces the worker (TaskTimeoutError).

Results are collected by whichever thread waits for one (leader/follower: no thread hop on the
fast path); a background thread collects only when nobody else does (callbacks, supervision).
"""

import io
import itertools
import math
import os
import pickle
import sys
import threading
import time
import traceback
import weakref
from concurrent.futures import CancelledError
from multiprocessing import TimeoutError
from multiprocessing.pool import MaybeEncodingError, ThreadPool

from gilfree import _core


def _discard_buffer(buf):
    """pickle buffer_callback: keep the buffer out of band and drop it (a picklability check)."""
    return None


__all__ = ["Pool", "ThreadPool", "AsyncResult", "ApplyResult", "MapResult", "WorkerLostError",
           "TaskTimeoutError", "RemoteTraceback", "TimeoutError"]

K_CALL, K_MAP, K_STARMAP, K_BATCH = 0, 1, 2, 3
BATCH_MAX = 256
_SIMPLE = frozenset((int, float, str, bytes, bool, type(None)))
_evlock = threading.Lock()
S_OK, S_ERROR, S_LOST, S_TIMEOUT, S_CANCELLED, S_DECODE = 0, 1, 2, 3, 4, 5
RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"


class WorkerLostError(RuntimeError):
    """The worker process running this task died (killed, crashed, os._exit)."""


class TaskTimeoutError(TimeoutError):
    """The task ran past its ``timeout=``: its worker was killed and replaced."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (attached as ``__cause__``)."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


# ---------------------------------------------------------------- worker-side helpers

def _errfn(exc, where):
    """In the worker: the bytes reporting `exc` (pickled (exception, traceback text))."""
    try:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:
        tb = repr(exc)
    tb = '\n"""\n' + tb + '"""'
    if where == "result":
        exc = MaybeEncodingError(exc, "<result>")
    try:
        return pickle.dumps((exc, tb))
    except Exception as e:
        return pickle.dumps((MaybeEncodingError(e, repr(exc)), tb))


def _lines_chunk(fn, path, start, end, encoding, errors):
    """In the worker: fn(line) for every line of path[start:end] (file-iteration lines)."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    return [fn(line) for line in io.TextIOWrapper(io.BytesIO(data), encoding=encoding,
                                                   errors=errors)]


def _rebuild_error(value):
    if isinstance(value, BaseException):
        return value
    if not value:
        return RuntimeError("gilfree: the task failed and its error could not be reported")
    try:
        exc, tb = pickle.loads(value)
    except Exception as e:
        return RuntimeError("gilfree: the task failed and its exception could not be "
                            "unpickled in the parent: %r" % (e,))
    if isinstance(exc, BaseException):
        try:
            exc.__cause__ = RemoteTraceback(tb)
        except Exception:
            pass
        return exc
    return RuntimeError(repr(exc))


_unpack_into = _core.Pool.unpack_into


def _unpack(value):
    """A map chunk's results: a list, or a packed list made by the worker (bytes: all
    int64, all str or all bytes; see src/ext/pool.c "packed lists")."""
    if type(value) is bytes:
        return _core.Pool.unpack(value)
    return value


def _send(sink, index, status, value, worker, elapsed):
    """Deliver one result to its sink (map chunks also get the worker's time on it)."""
    if type(sink) is MapResult:
        sink._deliver_t(index, status, value, worker, elapsed)
    else:
        sink._deliver(index, status, value, worker)


def _status_error(status, value, worker):
    if status == S_ERROR:
        return _rebuild_error(value)
    if status == S_LOST:
        return WorkerLostError("the worker process running this task died unexpectedly")
    if status == S_TIMEOUT:
        return TaskTimeoutError("the task exceeded its timeout; its worker was killed")
    if status == S_CANCELLED:
        return CancelledError()
    if status == S_DECODE:
        e = RuntimeError("gilfree: could not decode the task's result: %r" % (value,))
        e.__cause__ = value if isinstance(value, BaseException) else None
        return e
    return RuntimeError("gilfree: unknown task status %r" % (status,))


# ---------------------------------------------------------------- results

class ApplyResult:
    """The stdlib's AsyncResult: get(timeout), wait(timeout), ready(), successful()."""

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


class MapResult(ApplyResult):
    """The AsyncResult of map_async/starmap_async (multiprocessing.pool.MapResult): get()
    returns the list of results in input order; the first failing chunk fails the whole
    map, and its chunks still queued are cancelled."""

    def __init__(self, pool, length, nchunks, callback=None, error_callback=None, progress=None,
                 plan=None):
        super().__init__(pool, callback, error_callback)
        # n empty slots, filled in place by the chunks (calloc'd: no 8 MB of stores and page
        # faults before the first chunk goes out); nobody sees the list before it is full
        self._value = _core.Pool.new_list(length)
        self._left = length       # items not yet delivered
        self._progress = progress
        self._plan = plan
        self._mlock = threading.Lock()
        self._kind = K_MAP
        self._fnb = b""
        self._task_timeout = None
        self._retries = 0
        self._nchunks = nchunks
        if length == 0:
            self._set(True, self._value)

    def _refill(self, block):
        """Adaptive mode: send chunks until INFLIGHT per worker are out. One thread at a time
        submits; another one finding it busy returns (the busy one re-checks under the lock
        before it lets go). block=False: when every mailbox is full, retry after the next
        results (pool._starved) instead of waiting."""
        plan = self._plan
        pool = self._pool
        mine = False
        while True:
            with self._mlock:
                if plan.busy and not mine:
                    return
                if self._done or plan.next >= plan.n or plan.inflight >= plan.max_inflight:
                    plan.busy = False
                    return
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

    def _deliver(self, start, status, value, worker):
        self._deliver_t(start, status, value, worker, 0)

    def _deliver_t(self, start, status, value, worker, elapsed):
        if self._done:
            return
        plan = self._plan
        if status == S_OK:
            k = len(value) if type(value) is not bytes else None
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
            if type(value) is bytes:
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
        if self._plan is not None:
            with _evlock:
                self._pool._adaptive.discard(self)
        super()._set(success, value)

    def _fail(self, exc):
        if self._done:
            return
        if self._progress is not None:
            self._progress.close()
        self._set(False, exc)
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
                try:
                    tid = self._pool._submit(K_CALL, fnb, (args, kwds), res, 0)
                    res._ids = (tid,)
                except BaseException as e:
                    res._set(False, e)
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
            chunk = list(itertools.islice(self._src, self._chunksize))
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


# ---------------------------------------------------------------- progress

class _Bar:
    def __init__(self, total):
        self.total = total
        self.n = 0
        self._last = 0.0
        self._closed = False

    def update(self, k):
        self.n += k
        now = time.monotonic()
        if now - self._last > 0.1:
            self._last = now
            self._draw()

    def _draw(self):
        if self.total:
            frac = min(1.0, self.n / self.total)
            bar = "#" * int(frac * 30)
            sys.stderr.write("\r[%-30s] %d/%d" % (bar, self.n, self.total))
        else:
            sys.stderr.write("\r%d done" % self.n)
        sys.stderr.flush()

    def close(self):
        if not self._closed:
            self._closed = True
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()


def _make_progress(progress, total):
    if not progress:
        return None
    try:
        import tqdm
        return tqdm.tqdm(total=total)
    except ImportError:
        return _Bar(total)


# ---------------------------------------------------------------- the pool

_live_pools = weakref.WeakSet()


def _terminate_all():
    for p in list(_live_pools):
        try:
            p.terminate()
        except Exception:
            pass


import atexit  # noqa: E402

atexit.register(_terminate_all)


class Pool:
    """multiprocessing.pool.Pool on gilfree's C worker pool (fork start method).
    ``cluster=`` (or GILFREE_CLUSTER) runs it on a cluster: see gilfree.cluster."""

    def __new__(cls, *args, cluster=None, **kwargs):
        if cls is Pool and (os.environ.get("GILFREE_CLUSTER") if cluster is None
                            else cluster not in (False, "")):
            from gilfree.cluster import ClusterPool as cls
        return object.__new__(cls)

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None, cluster=None):
        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None:
            if not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0:
                raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._ctx = context
        self._processes = processes
        self._state = RUN
        self._lock = threading.Lock()
        self._collect = threading.RLock()
        self._batch = []
        self._maxtasks = maxtasksperchild
        self._pending = {}
        self._orphans = {}
        self._starved = set()  # adaptive maps waiting for mailbox space
        self._adaptive = set()  # adaptive maps not finished (close() sends their rest)
        self._fncache = {}
        self._drained = False
        self._last_collect = 0.0
        self._waiters = 0
        self._core = _core.Pool(processes, maxtasksperchild or 0, initializer, tuple(initargs),
                                _errfn)
        self._forker = threading.Thread(target=self._core.serve, daemon=True,
                                        name="gilfree-pool-forker")
        self._forker.start()
        try:
            self._core.start()
        except BaseException:
            self._core.stop()
            raise
        self._bg_stop = False
        self._bg_wake = threading.Event()
        self._bg = threading.Thread(target=self._bg_loop, daemon=True,
                                    name="gilfree-pool-results")
        self._bg.start()
        _live_pools.add(self)

    # ------------------------------------------------ plumbing
    def __reduce__(self):
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    def _fnbytes(self, fn):
        try:
            return self._fncache[fn]
        except KeyError:
            b = pickle.dumps(fn)
            if len(self._fncache) > 512:
                self._fncache.clear()
            self._fncache[fn] = b
            return b
        except TypeError:  # unhashable callable
            return pickle.dumps(fn)

    def _submit(self, kind, fnb, obj, sink, index, timeout=None, retries=0, wake=False,
                block=True):
        """Queue one task; returns its id. Drains results while the mailboxes are full
        (block=False: returns None instead)."""
        t = float(timeout) if timeout else 0.0
        while True:
            tid = self._core.submit(kind, fnb, obj, t, retries, False)
            if tid is not None:
                break
            if not block:
                return None
            if self._collect.acquire(False):
                try:
                    self._collect_once(0.002)
                finally:
                    self._collect.release()
            else:
                time.sleep(0.0002)
        with self._lock:
            o = self._orphans.pop(tid, None)
            if o is None:
                self._pending[tid] = (sink, index)
        if o is not None:
            _send(sink, index, *o)
        elif wake or getattr(sink, "_callback", None) or getattr(sink, "_error_callback", None):
            self._bg_wake.set()
        return tid

    def _collect_once(self, timeout):
        """Take and deliver a batch of results (caller holds _collect). Returns the number
        delivered, or None once the pool is closed and drained."""
        res = self._core.results(256, timeout)
        if res is None:
            self._drained = True
            return None
        self._last_collect = time.monotonic()
        for tid, status, worker, value, elapsed in res:
            with self._lock:
                entry = self._pending.pop(tid, None)
                if entry is None:
                    self._orphans[tid] = (status, value, worker, elapsed)
            if entry is not None:
                _send(entry[0], entry[1], status, value, worker, elapsed)
        if self._starved:
            with _evlock:
                starved, self._starved = self._starved, set()
            for r in starved:
                try:
                    r._refill(False)
                except BaseException as e:
                    r._fail(e)
        return len(res)

    def _wait_until(self, event, timeout):
        if self._batch:
            self._flush()
        deadline = None if timeout is None else time.monotonic() + timeout
        evwait = getattr(event, "_evwait", None) or event.wait
        with _evlock:  # (+= on an attribute is not atomic between threads)
            self._waiters += 1
        try:
            while not event.is_set():
                rem = None if deadline is None else deadline - time.monotonic()
                if rem is not None and rem <= 0:
                    return False
                if self._collect.acquire(False):
                    try:
                        while not event.is_set():
                            rem = None if deadline is None else deadline - time.monotonic()
                            if rem is not None and rem <= 0:
                                return False
                            if self._drained:
                                break
                            if self._collect_once(0.05 if rem is None else min(rem, 0.05)) \
                                    is None:
                                break
                    finally:
                        self._collect.release()
                    if not event.is_set() and self._drained:
                        evwait(0.01 if rem is None else min(rem, 0.01))
                else:
                    evwait(0.001 if rem is None else min(rem, 0.001))
            return True
        finally:
            with _evlock:
                self._waiters -= 1

    def _bg_loop(self):
        """Collect results when nobody else does (callbacks, supervision)."""
        while not self._bg_stop:
            self._bg_wake.wait(0.005 if (self._pending or self._batch) else 0.05)
            self._bg_wake.clear()
            if self._bg_stop:
                break
            if self._batch:
                try:
                    self._flush()
                except Exception:
                    traceback.print_exc()
            if self._waiters or self._drained:
                continue
            if not self._pending and time.monotonic() - self._last_collect < 0.1:
                continue
            if time.monotonic() - self._last_collect < 0.005 and self._pending:
                continue
            if not self._collect.acquire(False):
                continue
            try:
                while not self._bg_stop and not self._waiters and not self._drained:
                    n = self._collect_once(0.005)
                    if n is None or (n == 0 and not self._pending):
                        break
            except Exception:
                if not self._bg_stop:
                    traceback.print_exc()
                break
            finally:
                self._collect.release()

    def _cancel_ids(self, ids):
        for tid in ids:
            try:
                self._core.cancel(tid)
            except Exception:
                pass

    def _auto_chunksize(self, n):
        if n <= 8 * self._processes:
            return 1
        return max(1, math.ceil(n / (8 * self._processes)))

    # ------------------------------------------------ stdlib API
    def apply(self, func, args=(), kwds={}, **kw):
        """func(*args, **kwds) in a worker, blocking until it returns (Pool.apply). Extra
        keywords (``timeout``, ``retries``) go to apply_async()."""
        return self.apply_async(func, args, kwds, **kw).get()

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None,
                    timeout=None, retries=0):
        """Run func(*args, **kwds) in a worker; returns an ApplyResult (Pool.apply_async).
        ``callback``/``error_callback`` get the result/exception in a pool thread. Plain calls
        are batched (up to 256 per pool task). ``timeout`` (seconds) kills and replaces the
        worker if the call runs longer (TaskTimeoutError); ``retries`` re-runs it if its worker
        dies (else WorkerLostError)."""
        if self._state != RUN:
            raise ValueError("Pool not running")
        res = ApplyResult(self, callback, error_callback)
        fnb = self._fnbytes(func)
        args = tuple(args)
        kwds = dict(kwds) if kwds else None
        if timeout or retries or self._maxtasks:
            tid = self._submit(K_CALL, fnb, (args, kwds), res, 0, timeout, retries)
            res._ids = (tid,)
            return res
        # batched: calls are queued here and sent as one pool task of up to BATCH_MAX calls
        # (when the batch is full, when anyone waits, or within a few ms by the bg thread)
        for a in args:
            if type(a) not in _SIMPLE:
                # An unpicklable argument fails here, not later. Buffers (NumPy arrays) are
                # left out of band: checking must not copy a 100 MB array in-band.
                pickle.dumps((args, kwds), protocol=5, buffer_callback=_discard_buffer)
                break
        else:
            if kwds:
                pickle.dumps(kwds, protocol=5, buffer_callback=_discard_buffer)
        with _evlock:
            b = self._batch
            b.append((res, fnb, args, kwds))
            n = len(b)
        if n >= BATCH_MAX:
            self._flush()
        return res

    def _flush(self):
        """Send the queued apply_async calls as one task. An argument that does not pickle
        fails its own call (the others are sent)."""
        with _evlock:
            items, self._batch = self._batch, []
        if not items:
            return
        obj = [(fnb, args, kwds) for _, fnb, args, kwds in items]
        sink = _BatchSink(self, items)
        try:
            tid = self._submit(K_BATCH, b"", obj, sink, 0)
        except (ValueError, MemoryError, OSError):
            for it in items:
                it[0]._set(False, ValueError("Pool not running"))
            return
        except Exception:
            # some argument does not pickle: send them one by one, each fails alone
            for res, fnb, args, kwds in items:
                try:
                    res._ids = (self._submit(K_CALL, fnb, (args, kwds), res, 0),)
                except Exception as e:
                    res._set(False, e)
            return
        for it in items:
            it[0]._ids = (tid,)

    def _map_async(self, kind, func, iterable, chunksize, callback, error_callback, timeout,
                   retries, progress):
        self._check_running()
        # a range is sent as range slices (a few bytes per chunk); lists and tuples are sliced
        items = iterable if isinstance(iterable, (list, tuple, range)) else list(iterable)
        n = len(items)
        # adaptive chunking, except under maxtasksperchild (every probe chunk would use up
        # a task of a worker's quota: keep the fixed, few chunks there)
        adaptive = chunksize is None and not self._maxtasks
        if chunksize is None:
            chunksize = self._auto_chunksize(n)
        if chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        fnb = self._fnbytes(func)
        if adaptive:
            res = MapResult(self, n, 0, callback, error_callback, _make_progress(progress, n),
                            _Chunker(items, n, self._processes))
            res._ids = []
            res._kind, res._fnb, res._task_timeout, res._retries = kind, fnb, timeout, retries
            if n:
                with _evlock:
                    self._adaptive.add(res)
                res._refill(True)
            return res
        nchunks = (n + chunksize - 1) // chunksize
        res = MapResult(self, n, nchunks, callback, error_callback,
                        _make_progress(progress, n))
        ids = []
        res._ids = ids
        for start in range(0, n, chunksize):
            ids.append(self._submit(kind, fnb, items[start:start + chunksize], res, start,
                                    timeout, retries))
        return res

    def _get_or_cancel(self, res):
        """res.get(); on Ctrl-C (or any exception while waiting) cancel the queued chunks."""
        try:
            return res.get()
        except BaseException:
            if not res.ready():
                self._cancel_ids(res._ids)
            raise

    def map(self, func, iterable, chunksize=None, timeout=None, retries=0, progress=False):
        """[func(x) for x in iterable] computed in the workers, in order (Pool.map); blocks,
        and cancels the queued chunks if interrupted. ``chunksize=None`` (the default) sizes
        chunks adaptively from the workers' measured time per item (fixed chunks under
        maxtasksperchild); an int fixes it. The iterable is materialised (ranges, lists and
        tuples are sliced).
        ``timeout`` (seconds, per chunk) kills and replaces a worker whose task runs longer and
        fails the call with TaskTimeoutError; ``retries`` re-runs a task whose worker died
        (else WorkerLostError); ``progress=True`` shows a progress bar (tqdm if installed,
        else a plain one on stderr)."""
        return self._get_or_cancel(self._map_async(K_MAP, func, iterable, chunksize, None, None,
                                                   timeout, retries, progress))

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None,
                  timeout=None, retries=0, progress=False):
        """Non-blocking map(): returns a MapResult (Pool.map_async); ``callback`` gets the
        result list, ``error_callback`` the first exception."""
        return self._map_async(K_MAP, func, iterable, chunksize, callback, error_callback,
                               timeout, retries, progress)

    def starmap(self, func, iterable, chunksize=None, timeout=None, retries=0, progress=False):
        """[func(*args) for args in iterable], in order (Pool.starmap); otherwise as map()."""
        return self._get_or_cancel(self._map_async(K_STARMAP, func, iterable, chunksize, None,
                                                   None, timeout, retries, progress))

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None,
                      timeout=None, retries=0, progress=False):
        """Non-blocking starmap(): returns a MapResult (Pool.starmap_async)."""
        return self._map_async(K_STARMAP, func, iterable, chunksize, callback, error_callback,
                               timeout, retries, progress)

    def imap(self, func, iterable, chunksize=1, timeout=None, retries=0, progress=False):
        """A lazy iterator of func(x) for x in iterable, in order (Pool.imap): the input is read
        as results are consumed, with a bounded number of ``chunksize``-item chunks in flight;
        its next(timeout) raises multiprocessing.TimeoutError.
        ``timeout`` (seconds, per chunk) kills and replaces a worker whose task runs longer and
        fails the call with TaskTimeoutError; ``retries`` re-runs a task whose worker died
        (else WorkerLostError); ``progress=True`` shows a progress bar (tqdm if installed,
        else a plain one on stderr)."""
        self._check_running()
        if chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        total = len(iterable) if hasattr(iterable, "__len__") else None
        return IMapIterator(self, K_MAP, func, iterable, chunksize, True, timeout, retries,
                            _make_progress(progress, total))

    def imap_unordered(self, func, iterable, chunksize=1, timeout=None, retries=0,
                       progress=False):
        """As imap(), but results come in completion order (Pool.imap_unordered)."""
        self._check_running()
        if chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        total = len(iterable) if hasattr(iterable, "__len__") else None
        return IMapIterator(self, K_MAP, func, iterable, chunksize, False, timeout, retries,
                            _make_progress(progress, total))

    def map_lines(self, fn, path, chunk_bytes=1 << 20, encoding="utf-8", errors="strict",
                  progress=False):
        """gilfree extra: [fn(line) for line in open(path)] with workers reading their own byte
        ranges (about ``chunk_bytes`` each, split at line ends) instead of the parent sending
        every line; lines are decoded with ``encoding``/``errors``, results come in order."""
        self._check_running()
        path = os.fspath(path)
        size = os.path.getsize(path)
        bounds = [0]
        with open(path, "rb") as f:
            pos = chunk_bytes
            while pos < size:
                f.seek(pos)
                f.readline()
                end = f.tell()
                if end >= size:
                    break
                bounds.append(end)
                pos = end + chunk_bytes
        bounds.append(size)
        ranges = [(fn, path, bounds[i], bounds[i + 1], encoding, errors)
                  for i in range(len(bounds) - 1) if bounds[i + 1] > bounds[i]]
        out = []
        for chunk in IMapIterator(self, K_STARMAP, _lines_chunk, ranges, 1, True, None, 0,
                                  _make_progress(progress, len(ranges))):
            out.extend(chunk)
        return out

    def _send_rest(self):
        """Before close: adaptive maps send all their remaining chunks now (no more submits
        after close; the work already asked for must still run, as with the stdlib)."""
        with _evlock:
            maps = list(self._adaptive)
        for r in maps:
            plan = r._plan
            plan.max_inflight = 1 << 62
            while not r._done and plan.next < plan.n:
                r._refill(True)
                if plan.busy:
                    time.sleep(0.0005)

    def close(self):
        """Accept no more work; the tasks already submitted (batched apply_async calls and
        the rest of adaptive maps included) still run, and the workers exit when done
        (Pool.close)."""
        if self._state == RUN:
            self._flush()
            self._send_rest()
            self._state = CLOSE
            self._core.close()

    def terminate(self):
        """Stop the workers now; outstanding tasks fail with CancelledError. Also what
        ``with Pool() as p:`` does on exit, and done to live pools at interpreter exit
        (Pool.terminate)."""
        if self._state == TERMINATE:
            return
        try:
            self._flush()
        except Exception:
            pass
        self._state = TERMINATE
        _live_pools.discard(self)
        self._core.terminate()
        # deliver the cancellations
        with self._collect:
            while not self._drained:
                if self._collect_once(0.1) is None:
                    break
        self._shutdown_threads()

    def _shutdown_threads(self):
        self._core.join(5.0)
        self._bg_stop = True
        self._bg_wake.set()
        if self._bg is not threading.current_thread():
            self._bg.join(1.0)
        self._core.stop()
        self._forker.join(1.0)

    def join(self):
        """Wait for the workers to exit after close() or terminate(), delivering the remaining
        results; ValueError if the pool is still running (Pool.join)."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state == CLOSE:
            with _evlock:
                self._waiters += 1
            try:
                with self._collect:
                    while not self._drained:
                        if self._collect_once(0.1) is None:
                            break
            finally:
                with _evlock:
                    self._waiters -= 1
            _live_pools.discard(self)
            self._shutdown_threads()
        else:
            self._core.join(5.0)

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()

    def __repr__(self):
        return "<%s.%s state=%s pool_size=%d>" % (type(self).__module__,
                                                  type(self).__qualname__, self._state,
                                                  self._processes)

    # ------------------------------------------------ extras
    def stats(self):
        """gilfree extra: a dict of the C pool's counters: live_workers, outstanding (tasks
        not yet resolved), spawned and deaths (workers forked / lost so far)."""
        return self._core.stats()

    def worker_pids(self):
        """gilfree extra: the process ids of the live workers."""
        return [p for p in self._core.pids() if p]
