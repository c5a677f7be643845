"""gilfree.Pool: a drop-in for :class:`multiprocessing.pool.Pool` on the C worker pool.

Workers are forked by one long-lived thread of the pool (so that they die with the parent,
SIGKILL included), run a C loop (take task -> call -> publish result) and only call Python for
the user's function. A dead worker fails only the task it was running (WorkerLostError) and is
replaced; per-task ``timeout=`` kills and replaces the worker (TaskTimeoutError).

Results are collected by whichever thread waits for one (leader/follower: no thread hop on the
fast path); a background thread collects only when nobody else does (callbacks, supervision).
"""

import functools
import io
import math
import os
import pickle
import threading
import time
import traceback
import weakref
from multiprocessing import TimeoutError
from multiprocessing.pool import MaybeEncodingError, ThreadPool  # noqa: F401 (re-exported)

from gilfree import _core
# Everything below is re-exported (gilfree.futures and the tests import these names from
# gilfree.pool): task kinds and statuses, errors, results, the chunker, progress bars.
from gilfree._pool_chunker import _Chunker, _FixedChunks
from gilfree._pool_errors import (CLOSE, K_BATCH, K_CALL, K_MAP, K_STARMAP, RUN, S_CANCELLED,
                                  S_DECODE, S_ERROR, S_LOST, S_OK, S_TIMEOUT, TERMINATE,
                                  RemoteTraceback, TaskTimeoutError, WorkerLostError, _errfn,
                                  _cancelled, _rebuild_error, _status_error)
from gilfree._pool_progress import _Bar, _make_progress
from gilfree._pool_results import (ApplyResult, AsyncResult, IMapIterator, MapResult,
                                   _BatchSink, _evlock, _ImapSink, _send, _unpack, _unpack_into)

def _tids_gone(tids, limit):
    """Wait (at most `limit` s) until none of these threads of this process exists any more
    (/proc/self/task/<tid>)."""
    deadline = time.monotonic() + limit
    while tids and time.monotonic() < deadline:
        tids = {t for t in tids if os.path.exists("/proc/self/task/%d" % t)}
        if tids:
            time.sleep(0.0005)


def _thread_exited(t):
    """After t.join(): under a sanitizer's allocator, wait (up to 5 s) until the OS thread is
    gone. A joined thread still runs its C exit path for a few ms (measured: ~4 ms on the
    2-CPU VM), which gives its allocator caches back under the allocator's locks; glibc's
    malloc takes those locks around fork(), ASan's (GCC 12) does not, so a worker the next
    pool forks meanwhile could inherit a held lock and block in an allocation. No wait with
    glibc's malloc (nothing to fear) or on systems without /proc."""
    tid = getattr(t, "native_id", None)
    if _core._fork_unsafe_malloc and tid is not None and not t.is_alive():
        _tids_gone({tid}, 5.0)


def _exiting_threads_gone():
    """Under a sanitizer's allocator, before a pool forks its workers: wait (at most 50 ms)
    until every thread of this process that Python does not list as running is gone --
    threads joined a moment ago and still in their C exit path (the standard library pool's
    handler threads, another pool's), for the reason given in _thread_exited. Threads that
    stay (a BLAS library's own) only make the wait run to its bound. No wait with glibc's
    malloc."""
    if not _core._fork_unsafe_malloc:
        return
    try:
        tids = set(map(int, os.listdir("/proc/self/task")))
    except OSError:
        return
    _tids_gone(tids - {t.native_id for t in threading.enumerate()}, 0.05)


def __getattr__(name):
    """gilfree.pool.CancelledError: concurrent.futures' (re-exported, as before the split),
    imported on first use -- concurrent.futures loads logging, which a Pool does not need."""
    if name == "CancelledError":
        from concurrent.futures import CancelledError
        return CancelledError
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


__all__ = ["Pool", "ThreadPool", "AsyncResult", "ApplyResult", "MapResult", "WorkerLostError",
           "TaskTimeoutError", "RemoteTraceback", "TimeoutError"]


BATCH_MAX = 256
BATCH_WAIT = 0.002  # s: batched apply_async calls go out this long after the first one
_SLICE = 0.1  # s: the longest sleep of a waiting or collecting thread between checks
_IDLE_MAX = 1.0  # s: the results thread's sleep backs off to this while the pool is idle
_SIMPLE = frozenset((int, float, str, bytes, bool, type(None)))

# The public classes (and the worker's error reporter) keep the module path they had before
# gilfree.pool was split into private modules: reprs, tracebacks, pickles by reference (an
# exception sent to another process) and the API docs still name gilfree.pool.
for _obj in (WorkerLostError, TaskTimeoutError, RemoteTraceback, ApplyResult, MapResult,
             IMapIterator, _errfn):
    _obj.__module__ = __name__
del _obj


def _lines_chunk(fn, path, start, end, encoding, errors):
    """In the worker: fn(line) for every line of path[start:end] (file-iteration lines)."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    return [fn(line) for line in io.TextIOWrapper(io.BytesIO(data), encoding=encoding,
                                                   errors=errors)]


# ---------------------------------------------------------------- the pool

_live_pools = weakref.WeakSet()


def _terminate_all():
    for p in list(_live_pools):
        try:
            p.terminate()
        except Exception:
            pass


import atexit  # noqa: E402
import collections  # noqa: E402

atexit.register(_terminate_all)


class Pool:
    """multiprocessing.pool.Pool on gilfree's C worker pool (fork start method).
    (``gilfree.Pool`` is this class, or a cluster pool when ``cluster=`` / GILFREE_CLUSTER
    says so: see gilfree.cluster.)"""

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None):
        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None:
            if not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0:
                raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._processes = processes
        self._attach(_core.Pool(processes, maxtasksperchild or 0, initializer, tuple(initargs),
                                _errfn), context, maxtasksperchild)

    def _attach(self, core, context, maxtasksperchild, name="gilfree-pool"):
        """The pool's state around `core` -- the C pool, or a cluster transport with the same
        methods (gilfree.cluster) -- then its forker thread (core.serve), core.start() and the
        results thread. Raises what core.start() raises (after core.stop())."""
        self._ctx = context
        self._state = RUN
        self._lock = threading.Lock()
        self._collect = threading.RLock()
        self._batch = []
        self._maxtasks = maxtasksperchild
        self._pending = {}
        self._orphans = {}
        self._starved = set()  # maps waiting for mailbox space
        self._adaptive = set()  # maps with chunks not sent yet (close() sends their rest)
        # tasks waiting for mailbox space, in order: (send(block) -> sent?, fail(exc)); sent as
        # results free mailboxes, so that apply_async/map_async never block (the stdlib's
        # never do: its task handler thread feeds the workers)
        self._held = collections.deque()
        self._held_lock = threading.Lock()
        self._owner = os.getpid()
        self._fncache = {}
        self._drained = False
        self._last_collect = 0.0
        self._waiters = 0
        self._core = core
        self._core_is_local = type(core) is _core.Pool  # (results(into=): the C pool's)
        self._forker = threading.Thread(target=core.serve, daemon=True, name=name + "-forker")
        self._forker.start()
        if self._core_is_local:
            _exiting_threads_gone()
        try:
            core.start()
        except BaseException:
            core.stop()
            raise
        self._bg_stop = False
        self._bg_collecting = False  # the results thread collects, ready to hand over
        self._bg_handoff = False     # a leaving collector asks it to collect for the waiters
        self._batch_t0 = 0.0
        self._bg_wake = threading.Event()
        self._bg_napping = False  # the results thread sleeps longer than _SLICE (idle)
        self._bg = threading.Thread(target=self._bg_loop, daemon=True, name=name + "-results")
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
        elif wake or self._bg_napping or getattr(sink, "_callback", None) or \
                getattr(sink, "_error_callback", None):
            self._bg_wake.set()
        return tid

    def _collect_once(self, timeout):
        """Take and deliver a batch of results (caller holds _collect). Returns the number
        delivered, or None once the pool is closed and drained."""
        into = self._pending if self._core_is_local else None
        res = self._core.results(256, timeout, into) if into is not None else \
            self._core.results(256, timeout)
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
        if self._held and res:
            self._send_held(False)
        return len(res)

    def _wait_until(self, event, timeout):
        """Wait until event.is_set() (or `timeout` s), collecting results meanwhile if no other
        thread does (leader/follower: no thread hop when one thread waits). Sleeps in slices of
        _SLICE s at most: a signal (Ctrl-C) interrupts a wait at once, the slices only bound
        how long a missed wake-up could cost."""
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
                piece = _SLICE if rem is None else min(rem, _SLICE)
                got = self._collect.acquire(False)
                if not got and self._bg_collecting:
                    # the results thread collects (nobody waited): it hands over at once
                    self._kick_collector()
                    got = self._collect.acquire(True, piece)
                if not got:
                    evwait(piece)  # another waiter collects (and delivers our result)
                    continue
                try:
                    while not event.is_set():
                        rem = None if deadline is None else deadline - time.monotonic()
                        if rem is not None and rem <= 0:
                            return False
                        if self._drained:
                            break
                        if self._collect_once(_SLICE if rem is None else min(rem, _SLICE)) \
                                is None:
                            break
                finally:
                    self._collect.release()
                    if self._waiters > 1:  # others wait: the results thread collects for them
                        self._bg_handoff = True
                        self._bg_wake.set()
                if not event.is_set() and self._drained:
                    evwait(0.01 if rem is None else min(rem, 0.01))
            return True
        finally:
            with _evlock:
                self._waiters -= 1

    def _bg_loop(self):
        """Collect results when nobody else does (callbacks, supervision, map_async without
        get) and send batched calls a moment after the first one is queued. Sleeps until
        woken (_bg_wake) or for _SLICE s; no polling at a short period: on a small machine
        every wake-up of the parent takes a CPU from a worker. While the pool is idle (nothing
        outstanding, queued or held) the sleep doubles up to _IDLE_MAX s: the idle pass's
        supervision and memory return then run about once a second."""
        idle = 0
        while not self._bg_stop:
            if self._held:
                self._bg_wake.wait(0.005)
            else:
                nap = min(_SLICE * (1 << min(idle, 4)), _IDLE_MAX)
                self._bg_napping = nap > _SLICE  # a submission wakes it (_submit)
                # _submit files its task, then reads _bg_napping; this sets it, then looks at
                # the tasks: one of the two sees the other, so no submission sleeps a nap out
                if self._bg_napping and (self._pending or self._batch or self._held):
                    nap = _SLICE
                self._bg_wake.wait(nap)
                self._bg_napping = False
            idle = idle + 1 if not (self._bg_wake.is_set() or self._pending or self._batch
                                    or self._held) else 0
            self._bg_wake.clear()
            if self._bg_stop:
                break
            try:
                if self._batch:
                    # let the batch fill for BATCH_WAIT s after its first call was queued
                    age = time.monotonic() - self._batch_t0
                    if age < BATCH_WAIT:
                        time.sleep(BATCH_WAIT - age)
                    self._flush()
                if self._held:
                    self._send_held(False)
            except Exception:
                traceback.print_exc()
            self._bg_collect()

    def _kick_collector(self):
        """Make the thread waiting in core.results() return now (core.wake(); a core
        without it ends its waits within _SLICE anyway)."""
        wake = getattr(self._core, "wake", None)
        if wake is not None:
            wake()

    def _wake_bg(self):
        """Make the results thread look at the batch, held tasks and results now."""
        self._bg_wake.set()
        if self._bg_collecting:
            self._kick_collector()

    def _bg_collect(self):
        """The results thread's collecting: while results are outstanding and no thread waits
        (or a leaving collector handed over, _bg_handoff); a thread that starts waiting makes
        it let go at once (_core.Pool.wake)."""
        handoff, self._bg_handoff = self._bg_handoff, False
        if self._drained or (self._waiters and not handoff):
            return
        if not self._pending:
            self._bg_idle_pass()
            return
        self._bg_collecting = not handoff
        if not self._collect.acquire(False):
            self._bg_collecting = False
            return
        try:
            while not self._bg_stop and not self._drained and (handoff or not self._waiters):
                piece = _SLICE
                if self._batch:  # calls queued meanwhile: send them when due
                    piece = self._batch_t0 + BATCH_WAIT - time.monotonic()
                    if piece <= 0:
                        self._flush()
                        piece = _SLICE
                n = self._collect_once(min(piece, _SLICE))
                if n is None or (n == 0 and not self._pending and not self._batch):
                    break
        except Exception:
            if not self._bg_stop:
                traceback.print_exc()
        finally:
            self._bg_collecting = False
            self._collect.release()

    def _bg_idle_pass(self):
        """Nothing outstanding: one non-blocking visit to the core (at most every _SLICE s),
        so that an idle pool still supervises -- replaces a worker that died, releases the
        blocks of the results it handed out last, reclaims what dead workers held, and returns
        freed arena memory to the kernel once the warm delay is over (issue 12)."""
        if not self._core_is_local or not self._collect.acquire(False):
            return
        try:
            if not self._drained and not self._pending:
                self._collect_once(0)
        except Exception:
            if not self._bg_stop:
                traceback.print_exc()
        finally:
            self._collect.release()

    def _cancel_ids(self, ids):
        for tid in ids:
            try:
                self._core.cancel(tid)
            except Exception:
                pass

    def _hold(self, send, fail):
        """Run send(block=False) now if nothing is held and it succeeds, else queue it after
        the held tasks (caller holds _held_lock)."""
        if not self._held and send(False):
            return
        self._held.append((send, fail))
        self._bg_wake.set()

    def _send_held(self, block):
        """Send the held tasks in order while mailboxes take them (block=True: all of them,
        waiting for space). Another thread sending them already: block=False returns."""
        if not self._held_lock.acquire(block):
            return
        try:
            while self._held:
                send, _ = self._held[0]
                if not send(block):
                    return
                self._held.popleft()
        finally:
            self._held_lock.release()

    def _fail_held(self, exc):
        with self._held_lock:
            held, self._held = self._held, collections.deque()
        for _, fail in held:
            fail(exc)

    def _submit_or_hold(self, kind, fnb, obj, res, timeout=None, retries=0):
        """Submit one call for ApplyResult `res` without blocking: held if no mailbox is free."""
        def send(block):
            try:
                tid = self._submit(kind, fnb, obj, res, 0, timeout, retries, block=block)
            except BaseException as e:
                res._set(False, self._stopped_error(e))
                return True
            if tid is None:
                return False
            res._ids = (tid,)
            return True

        with self._held_lock:
            self._hold(send, lambda e: res._set(False, e))

    def _stopped_error(self, exc):
        """What a call that could not be sent fails with: CancelledError when terminate()
        stopped the pool meanwhile (it raced with the send), else `exc`."""
        if isinstance(exc, ValueError) and self._state == TERMINATE:
            return _cancelled()
        return exc

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
            self._submit_or_hold(K_CALL, fnb, (args, kwds), res, timeout, retries)
            return res
        # batched: calls are queued here and sent as one pool task of up to BATCH_MAX calls
        # (when the batch is full, when anyone waits, or within a few ms by the bg thread)
        for a in args:
            if type(a) not in _SIMPLE:
                # An unpicklable argument fails here, not later. Buffers (NumPy arrays) are
                # left out of band: checking must not copy a 100 MB array in-band.
                _core._pickle_check((args, kwds))  # (gives a handle's reference back)
                break
        else:
            if kwds:
                _core._pickle_check(kwds)
        with _evlock:
            b = self._batch
            b.append((res, fnb, args, kwds))
            n = len(b)
        if n >= BATCH_MAX:
            self._flush()
        elif n == 1:
            self._batch_t0 = time.monotonic()
            if callback is not None or error_callback is not None or self._bg_collecting \
                    or self._bg_napping:
                self._wake_bg()  # it sends the batch within BATCH_WAIT unless it fills first
        return res

    def _flush(self, block=False):
        """Send the queued apply_async calls as one task (held if no mailbox is free; with
        block=True after the held tasks, waiting for space)."""
        with _evlock:
            items, self._batch = self._batch, []
        if not items:
            return
        # one pool task per worker at most: two long calls queued together must not run one
        # after the other in one worker while the other one idles
        n = min(len(items), self._processes)
        step = -(-len(items) // n)
        parts = [items[i:i + step] for i in range(0, len(items), step)]
        if block:
            self._send_held(True)
            for part in parts:
                self._send_batch(part, True)
            return

        def fail(part, exc):
            for it in part:
                it[0]._set(False, exc)

        with self._held_lock:
            for part in parts:
                self._hold(functools.partial(self._send_batch, part),
                           functools.partial(fail, part))

    def _send_batch(self, items, block):
        """Send calls [(res, fnb, args, kwds)] as one pool task; False if no mailbox was free
        (block=False). A call whose arguments do not pickle fails alone."""
        obj = [(fnb, args, kwds) for _, fnb, args, kwds in items]
        try:
            tid = self._submit(K_BATCH, b"", obj, _BatchSink(self, items), 0, block=block)
        except MemoryError as exc:  # the calls do not fit in the arena: say so, not "closed"
            for it in items:
                it[0]._set(False, exc)
            return True
        except (ValueError, OSError):
            err = self._stopped_error(ValueError("Pool not running"))
            for it in items:
                it[0]._set(False, err)
            return True
        except Exception as exc:
            good = []
            for it in items:
                try:
                    _core._pickle_check((it[2], it[3]))
                    good.append(it)
                except Exception as e:
                    it[0]._set(False, e)
            if len(good) == len(items):  # not the arguments: fail them all
                for it in items:
                    it[0]._set(False, exc)
                return True
            return self._send_batch(good, block) if good else True
        if tid is None:
            return False
        for it in items:
            it[0]._ids = (tid,)
        return True

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
            plan = _Chunker(items, n, self._processes)
        else:
            plan = _FixedChunks(items, n, self._processes, chunksize)
        res = MapResult(self, n, 0, callback, error_callback, _make_progress(progress, n), plan)
        res._ids = []
        res._kind, res._fnb, res._task_timeout, res._retries = kind, fnb, timeout, retries
        if n:
            with _evlock:
                self._adaptive.add(res)
            # as many chunks as the mailboxes take now, the rest as results come: never
            # blocks (an adaptive map sends only its first probes here anyway)
            res._refill(False)
        return res

    def _get_or_cancel(self, res):
        """res.get(); on Ctrl-C (or any exception while waiting) cancel its chunks: queued ones
        never run, running ones have their worker killed and replaced."""
        try:
            return res.get()
        except BaseException:
            if not res.ready():
                res._cancel()
            raise

    def map(self, func, iterable, chunksize=None, timeout=None, retries=0, progress=False):
        """[func(x) for x in iterable] computed in the workers, in order (Pool.map); blocks,
        and if interrupted (Ctrl-C) cancels its chunks: queued ones never run, running ones
        have their worker killed and replaced (the pool stays usable). ``chunksize=None`` (the default) sizes
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
            while not r._cancelled and plan.next < plan.n:
                r._refill(True)
                if plan.busy:
                    time.sleep(0.0005)
            with _evlock:
                self._adaptive.discard(r)

    def close(self):
        """Accept no more work; the tasks already submitted (batched apply_async calls and
        the rest of adaptive maps included) still run, and the workers exit when done
        (Pool.close)."""
        if self._state == RUN:
            if os.getpid() != self._owner:  # a forked child's copy: it has no workers
                self._state = CLOSE
                return
            self._send_held(True)
            self._flush(block=True)
            self._send_rest()
            self._state = CLOSE
            self._core.close()

    def terminate(self):
        """Stop the workers now; outstanding tasks fail with CancelledError. Also what
        ``with Pool() as p:`` does on exit, and done to live pools at interpreter exit
        (Pool.terminate)."""
        if self._state == TERMINATE:
            return
        if os.getpid() != self._owner:  # a forked child's copy cannot stop the parent's pool
            self._state = TERMINATE
            return
        self._state = TERMINATE
        _live_pools.discard(self)
        # what was never sent fails now: held tasks, queued calls, the maps' unsent chunks
        if self._held:
            self._fail_held(_cancelled())
        with _evlock:
            batch, self._batch = self._batch, []
            maps = list(self._adaptive | self._starved)
            self._adaptive.clear()
            self._starved.clear()
        for it in batch:
            it[0]._set(False, _cancelled())
        for r in maps:
            r._cancelled = True
            r._fail(_cancelled())
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
            _thread_exited(self._bg)
        self._core.stop()
        self._forker.join(1.0)
        _thread_exited(self._forker)

    def join(self):
        """Wait for the workers to exit after close() or terminate(), delivering the remaining
        results; ValueError if the pool is still running (Pool.join)."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if os.getpid() != self._owner:
            return  # a forked child's copy: nothing of its own to wait for
        if self._state == CLOSE:
            with _evlock:
                self._waiters += 1
            try:
                if self._bg_collecting:
                    self._kick_collector()  # the results thread lets go of collecting at once
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
