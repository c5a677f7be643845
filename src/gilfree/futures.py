"""gilfree.ProcessPoolExecutor: a concurrent.futures.Executor on gilfree's worker pool.

Differences from the standard executor (improvements): a worker crash fails only the task it
was running (WorkerLostError) and the executor keeps serving; Future.cancel() of a RUNNING
task kills its worker (which is replaced) and returns True; map(buffersize=) bounds read-ahead.

Every future is its own pool task (never batched with others), so the C pool's claim words
give exact semantics: a task whose worker dies is reported lost only if it had started, and
tasks queued behind it are dispatched again -- no call runs twice because of a crash, none
that had completed is repeated. Tasks beyond the pool's mailboxes wait in a Python backlog
(submit() never blocks) and are dispatched as results come back.

Speed: the futures are :class:`Future`, a concurrent.futures.Future whose threading.Condition
is made only when some thread needs it (a waiter, a callback, concurrent.futures.wait); a
future that completes with nobody waiting costs a few attribute stores.
"""

import collections
import concurrent.futures as _cf
import itertools
import threading
import time
from concurrent.futures._base import (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING,
                                      RUNNING, InvalidStateError)

from gilfree import pool as _pool
from gilfree.pool import K_CALL, K_STARMAP, S_CANCELLED, S_OK, TaskTimeoutError, \
    WorkerLostError

__all__ = ["ProcessPoolExecutor", "Executor", "Future", "WorkerLostError", "TaskTimeoutError"]

_glock = threading.Lock()  # creation of a Future's condition vs. completion without one
_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)
_CANCELLED = (CANCELLED, CANCELLED_AND_NOTIFIED)
_UNSENT = -1  # _gf_tid of a backlog future cancelled before it was dispatched


class Future(_cf.Future):
    """A concurrent.futures.Future whose cancel() also stops a running task.

    It IS a concurrent.futures.Future (concurrent.futures.wait, as_completed,
    asyncio.wrap_future and add_done_callback work); its ``_condition`` is created lazily.
    """

    # The base class's __init__ is not called: every field starts as a class attribute, and
    # _condition, _waiters and _done_callbacks are made together on first use of _condition
    # (every use of the last two by concurrent.futures is under the condition).
    _state = PENDING
    _result = None
    _exception = None
    _waiters = ()
    _done_callbacks = ()
    _gf_cond = None
    _gf_ex = None      # the executor (class attribute of its per-executor subclass)
    _gf_tid = None     # the pool task id; None: in the backlog; _UNSENT: never dispatched
    _gf_after = None   # postprocess of a successful result (map chunks)
    # Pool._submit looks for these (ApplyResult's callbacks): class attributes keep it cheap
    _callback = None
    _error_callback = None

    __init__ = object.__init__  # (a C slot: no Python frame per future)

    @property
    def _condition(self):
        c = self._gf_cond
        if c is None:
            with _glock:
                c = self._gf_cond
                if c is None:
                    self._waiters = []
                    self._done_callbacks = []
                    c = self._gf_cond = threading.Condition()
            ex = self._gf_ex
            if ex is not None and self._state not in _DONE:
                # someone will wait on it or has a callback (concurrent.futures.wait,
                # as_completed, asyncio): the pool's background thread collects for them
                ex._pool._bg_wake.set()
        return c

    # ---------------------------------------------------------- state queries (no lock)
    def done(self):
        """True once the call completed or was cancelled."""
        return self._state in _DONE

    def is_set(self):
        """done() (for Pool._wait_until, which waits on event-like objects)."""
        return self._state in _DONE

    def cancelled(self):
        """True if the call was cancelled."""
        return self._state in _CANCELLED

    def running(self):
        """False: the parent does not track which queued call a worker has started (a
        running call can still be cancelled: cancel() stops it)."""
        return self._state == RUNNING

    # ---------------------------------------------------------- completion (collector side)
    def _deliver(self, index, status, value, worker):
        """The pool's result sink: one result of this future's task."""
        if status == S_OK:
            after = self._gf_after
            if after is not None:
                value = after(value)
            self._gf_finish(value, None)
        elif status == S_CANCELLED:
            self._gf_mark_cancelled()
        else:
            self._gf_finish(None, _pool._status_error(status, value, worker))
        ex = self._gf_ex
        if ex is not None and ex._backlog and (ex._pool._last_collect != ex._full_at or
                                               not ex._pool._pending):
            ex._refill()

    def _gf_finish(self, result, exc):
        if self._gf_cond is None:
            with _glock:
                if self._gf_cond is None:
                    # nobody waits on it and it has no callbacks (both create the condition)
                    if self._state in _DONE:
                        return
                    self._result = result
                    self._exception = exc
                    self._state = FINISHED
                    return
        with self._gf_cond:
            if self._state in _DONE:
                return
            self._result = result
            self._exception = exc
            self._state = FINISHED
            for w in self._waiters:
                if exc is None:
                    w.add_result(self)
                else:
                    w.add_exception(self)
            self._gf_cond.notify_all()
        self._invoke_callbacks()

    def _gf_mark_cancelled(self):
        with self._condition:
            if self._state == FINISHED:
                return False
            if self._state in _CANCELLED:
                return True
            self._state = CANCELLED
            self._condition.notify_all()
        self._invoke_callbacks()
        self.set_running_or_notify_cancel()  # tell concurrent.futures.wait / as_completed
        return True

    # ---------------------------------------------------------- public API
    def cancel(self):
        """Cancel the call: a queued one never runs; a RUNNING one is stopped (its worker is
        killed and replaced). Returns False only if the call had already completed."""
        st = self._state
        if st == FINISHED:
            return False
        if st in _CANCELLED:
            return True
        ex = self._gf_ex
        if ex is not None:
            with ex._blk:
                tid = self._gf_tid
                if tid is None:  # still in the backlog: never dispatched
                    self._gf_tid = _UNSENT
            if tid is not None and tid != _UNSENT:
                try:
                    r = ex._pool._core.cancel(tid)
                except ValueError:
                    r = None
                if r is None:  # finished (its result is on its way) or pool gone
                    ex._pool._wait_until(self, 1.0)
                    if self._state == FINISHED:
                        return False
        return self._gf_mark_cancelled()

    def _evwait(self, timeout):
        """For Pool._wait_until: sleep until done (or timeout) while another thread collects."""
        c = self._condition
        with c:
            if self._state not in _DONE:
                c.wait(timeout)
        return self._state in _DONE

    def _gf_wait(self, timeout):
        ex = self._gf_ex
        if ex is not None:
            ex._pool._wait_until(self, timeout)

    def result(self, timeout=None):
        """The call's return value; waits up to ``timeout`` seconds (None: forever). Raises
        concurrent.futures.TimeoutError, CancelledError, or the call's exception."""
        if self._state == FINISHED and self._exception is None:
            return self._result
        if self._state not in _DONE:
            self._gf_wait(timeout)
            if self._state == FINISHED and self._exception is None:
                return self._result
        return super().result(timeout=0)

    def exception(self, timeout=None):
        """The call's exception (None if it returned); waits like result()."""
        if self._state == FINISHED:
            return self._exception
        if self._state not in _DONE:
            self._gf_wait(timeout)
        return super().exception(timeout=0)


class _Pred:
    """Adapter: Pool._wait_until on a condition (is_set / _evwait)."""

    def __init__(self, pred):
        self.is_set = pred

    def _evwait(self, timeout):
        time.sleep(min(timeout, 0.001) if timeout is not None else 0.001)
        return self.is_set()


class ProcessPoolExecutor(_cf.Executor):
    """concurrent.futures.ProcessPoolExecutor on gilfree's self-healing worker pool.

    Each submit() is one pool task; submit() never blocks (tasks beyond the workers'
    mailboxes wait in a backlog). A worker that dies fails only the call it was running
    (WorkerLostError) and is replaced. shutdown(cancel_futures=True) cancels the calls that
    have not started and lets running ones finish. (``gilfree.ProcessPoolExecutor`` is this
    class, or a cluster executor when ``cluster=`` / GILFREE_CLUSTER says so: see
    gilfree.cluster.)
    """

    def __init__(self, max_workers=None, mp_context=None, initializer=None, initargs=(),
                 max_tasks_per_child=None):
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        self._max_workers = max_workers
        self._shutdown_lock = threading.Lock()
        self._shutdown = False
        self._blk = threading.RLock()  # the backlog, and dispatch vs. cancel of its futures
        self._backlog = collections.deque()  # (future, kind, fnb, obj, timeout, retries)
        self._full_at = None  # Pool._last_collect when a dispatch found the mailboxes full
        self._pool = _pool.Pool(max_workers, initializer, initargs, max_tasks_per_child,
                                context=mp_context)
        # futures of this executor: no __init__ to run, the executor is a class attribute
        self._Future = type("Future", (Future,), {"_gf_ex": self, "__slots__": ()})

    # ---------------------------------------------------------- dispatch
    def _submit_kind(self, kind, fn, obj, timeout=None, retries=0, after=None):
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            pool = self._pool
            f = self._Future()
            if after is not None:
                f._gf_after = after
            fnb = pool._fnbytes(fn)
            if not self._backlog:
                try:
                    # waits (briefly) only when nothing is outstanding: then no result would
                    # come to dispatch a backlog (the workers are being replaced)
                    tid = pool._submit(kind, fnb, obj, f, 0, timeout, retries,
                                       block=not pool._pending)
                except Exception as e:  # the argument does not pickle: the future fails
                    f._gf_tid = _UNSENT     # (as the standard executor does)
                    f._gf_finish(None, e)
                    return f
                if tid is not None:
                    f._gf_tid = tid
                    return f
            with self._blk:
                self._backlog.append((f, kind, fnb, obj, timeout, retries))
                n = len(self._backlog)
        if n & 63 == 0 and pool._collect.acquire(False):
            # now and then take the results that are in (no waiting): their delivery
            # dispatches backlog futures, so the workers stay busy while we submit
            try:
                pool._collect_once(0)
            finally:
                pool._collect.release()
        return f

    def _refill(self):
        """Dispatch backlog futures while the pool's mailboxes take them. Waits only when no
        task is outstanding (every worker is being replaced), else never blocks."""
        pool = self._pool
        while self._backlog:
            with self._blk:  # an RLock: a dispatch may deliver (orphan result) and re-enter
                if not self._backlog:
                    return
                item = self._backlog.popleft()
                f = item[0]
                if f._gf_tid is not None or f._state in _DONE:  # cancelled meanwhile
                    continue
                try:
                    # (waits only when nothing is outstanding: see _submit_kind)
                    tid = pool._submit(item[1], item[2], item[3], f, 0, item[4], item[5],
                                       block=not pool._pending)
                except BaseException as e:  # the argument does not pickle, pool closed
                    f._gf_tid = _UNSENT
                    err = e
                else:
                    if tid is None:
                        self._backlog.appendleft(item)  # mailboxes full: after the next
                        self._full_at = pool._last_collect  # batch of results comes in
                        return
                    f._gf_tid = tid
                    continue
            f._gf_finish(None, err)

    def _drain_backlog(self):
        """Wait until every backlog future has been dispatched (or cancelled)."""
        if self._backlog:
            self._refill()
            self._pool._wait_until(_Pred(lambda: not self._backlog), None)

    # ---------------------------------------------------------- Executor API
    def submit(self, fn, /, *args, **kwargs):
        """Schedule ``fn(*args, **kwargs)`` in a worker process and return its Future.

        The call and its result are pickled between processes (large buffers travel out of
        band through shared memory). If the worker dies while running it, only this Future
        fails (with WorkerLostError); the executor replaces the worker and stays usable.
        Raises RuntimeError after shutdown()."""
        return self._submit_kind(K_CALL, fn, (args, kwargs or None))

    def submit_with(self, fn, args=(), kwargs=None, timeout=None, retries=0):
        """submit() with gilfree's per-task ``timeout`` (TaskTimeoutError) and ``retries``."""
        return self._submit_kind(K_CALL, fn, (tuple(args), kwargs or None), timeout, retries)

    def map(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None):
        """Like map(fn, *iterables) computed in the workers, in order.

        ``chunksize`` items travel per task; ``buffersize`` bounds how many items are read
        ahead of the consumer (None: the iterables are read up front, as the standard library
        does). ``timeout`` (seconds from this call) raises concurrent.futures.TimeoutError.
        Unconsumed calls are cancelled when the iterator is closed.
        """
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None:
            if not isinstance(buffersize, int):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        end = None if timeout is None else time.monotonic() + timeout
        args = zip(*iterables)

        def chunks():
            while True:
                c = list(itertools.islice(args, chunksize))
                if not c:
                    return
                yield c

        def send(c):
            return self._submit_kind(K_STARMAP, fn, c, after=_pool._unpack)

        src = chunks()
        if buffersize is None:
            futs = collections.deque(send(c) for c in src)
        else:
            nchunks = max(1, -(-buffersize // chunksize))
            futs = collections.deque(send(c) for c in itertools.islice(src, nchunks))

        def gen():
            try:
                while futs:
                    f = futs.popleft()
                    if buffersize is not None:
                        for c in itertools.islice(src, 1):
                            futs.append(send(c))
                    rem = None if end is None else end - time.monotonic()
                    if rem is not None and rem <= 0 and not f.done():
                        raise _cf.TimeoutError()
                    yield from f.result(rem)
            finally:
                for f in futs:
                    f.cancel()

        return gen()

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Stop accepting work. cancel_futures=True cancels every call that has not started;
        running calls finish. wait=True returns once every call is done and the workers have
        exited."""
        with self._shutdown_lock:
            if self._shutdown and not wait:
                return
            first = not self._shutdown
            self._shutdown = True
        pool = self._pool
        if cancel_futures:
            with self._blk:
                queued = [it[0] for it in self._backlog]
                self._backlog.clear()
                for f in queued:
                    if f._gf_tid is None:
                        f._gf_tid = _UNSENT
            for f in queued:
                f._gf_mark_cancelled()
            with pool._lock:
                sinks = [(tid, e[0]) for tid, e in pool._pending.items()]
            for tid, f in sinks:
                if isinstance(f, Future) and not f.done():
                    try:
                        r = pool._core.cancel_queued(tid)
                    except ValueError:
                        r = None
                    if r == 0:
                        f._gf_mark_cancelled()
        if wait:
            self._drain_backlog()
            if first:
                pool.close()
            if pool._state != _pool.TERMINATE:
                pool.join()
        else:
            threading.Thread(target=self._finish_quietly, args=(first,), daemon=True).start()

    def _finish_quietly(self, first):
        try:
            self._drain_backlog()
            if first:
                self._pool.close()
            self._pool.join()
        except Exception:
            pass


Executor = ProcessPoolExecutor
