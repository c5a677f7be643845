"""gilfree.ProcessPoolExecutor: a concurrent.futures.Executor on gilfree's worker pool.

Differences from the standard executor (improvements): a worker crash fails only the task it
was running (WorkerLostError) and the executor keeps serving; Future.cancel() of a RUNNING
task kills its worker (which is replaced) and returns True; map(buffersize=) bounds read-ahead.
"""

import collections
import concurrent.futures as _cf
import itertools
import threading
import time
from concurrent.futures._base import (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED,
                                      InvalidStateError)

from gilfree import pool as _pool
from gilfree.pool import K_CALL, K_STARMAP, S_CANCELLED, S_OK, TaskTimeoutError, \
    WorkerLostError

__all__ = ["ProcessPoolExecutor", "Executor", "Future", "WorkerLostError", "TaskTimeoutError"]


class Future(_cf.Future):
    """A concurrent.futures.Future whose cancel() also stops a running task."""

    def __init__(self):
        super().__init__()
        self._gf_pool = None
        self._gf_tid = None
        self._gf_event = threading.Event()
        self._gf_after = None  # postprocess of a chunk result (map)

    # the pool's result sink
    def _deliver(self, index, status, value, worker):
        if status == S_CANCELLED:
            self._gf_mark_cancelled()
            return
        try:
            if status == S_OK:
                self.set_result(value)
            else:
                self.set_exception(_pool._status_error(status, value, worker))
        except InvalidStateError:  # cancelled meanwhile
            pass
        self._gf_event.set()

    def cancel(self):
        with self._condition:
            if self._state == FINISHED:
                return False
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
        p = self._gf_pool
        if p is not None and self._gf_tid is not None:
            try:
                r = p._core.cancel(self._gf_tid)
            except ValueError:
                r = 0
            if r is None:  # finished: its result is on its way
                p._wait_until(self._gf_event, 1.0)
                if not self.cancelled():
                    return False
        return self._gf_mark_cancelled()

    def _gf_mark_cancelled(self):
        with self._condition:
            if self._state == FINISHED:
                self._gf_event.set()
                return False
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                self._gf_event.set()
                return True
            self._state = CANCELLED
            self._condition.notify_all()
        self._invoke_callbacks()
        self.set_running_or_notify_cancel()  # tell concurrent.futures.wait / as_completed
        self._gf_event.set()
        return True

    def _gf_wait(self, timeout):
        p = self._gf_pool
        if p is not None and not self.done():
            p._wait_until(self._gf_event, timeout)

    def result(self, timeout=None):
        self._gf_wait(timeout)
        return super().result(timeout=0 if self.done() else timeout)

    def exception(self, timeout=None):
        self._gf_wait(timeout)
        return super().exception(timeout=0 if self.done() else timeout)


class ProcessPoolExecutor(_cf.Executor):
    """concurrent.futures.ProcessPoolExecutor on gilfree's self-healing worker pool."""

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
        self._futures = set()
        self._pool = _pool.Pool(max_workers, initializer, initargs, max_tasks_per_child,
                                context=mp_context)

    def _new_future(self):
        f = Future()
        f._gf_pool = self._pool
        self._futures.add(f)
        f.add_done_callback(self._futures.discard)
        return f

    def _submit_kind(self, kind, fn, obj, timeout=None, retries=0):
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            f = self._new_future()
            try:
                fnb = self._pool._fnbytes(fn)
                f._gf_tid = self._pool._submit(kind, fnb, obj, f, 0, timeout, retries,
                                               wake=True)
            except BaseException:
                self._futures.discard(f)
                raise
            return f

    def submit(self, fn, /, *args, **kwargs):
        return self._submit_kind(K_CALL, fn, (args, kwargs or None))

    submit.__doc__ = _cf.Executor.submit.__doc__

    def submit_with(self, fn, args=(), kwargs=None, timeout=None, retries=0):
        """submit() with gilfree's per-task ``timeout`` (TaskTimeoutError) and ``retries``."""
        return self._submit_kind(K_CALL, fn, (tuple(args), kwargs or None), timeout, retries)

    def map(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None):
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

        src = chunks()
        if buffersize is None:
            futs = collections.deque(self._submit_kind(K_STARMAP, fn, c) for c in src)
        else:
            nchunks = max(1, -(-buffersize // chunksize))
            futs = collections.deque(self._submit_kind(K_STARMAP, fn, c)
                                     for c in itertools.islice(src, nchunks))

        def gen():
            try:
                while futs:
                    f = futs.popleft()
                    if buffersize is not None:
                        for c in itertools.islice(src, 1):
                            futs.append(self._submit_kind(K_STARMAP, fn, c))
                    rem = None if end is None else end - time.monotonic()
                    if rem is not None and rem <= 0 and not f.done():
                        raise _cf.TimeoutError()
                    yield from _pool._unpack(f.result(rem))
            finally:
                for f in futs:
                    f.cancel()

        return gen()

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._shutdown_lock:
            if self._shutdown and not wait:
                return
            first = not self._shutdown
            self._shutdown = True
        if cancel_futures:
            # NB: the pool cannot tell queued from running tasks here; running ones are
            # stopped too.
            for f in list(self._futures):
                if not f.done():
                    f.cancel()
        if first:
            self._pool.close()
        if wait:
            if self._pool._state != _pool.TERMINATE:
                self._pool.join()
        else:
            threading.Thread(target=self._join_quietly, daemon=True).start()

    def _join_quietly(self):
        try:
            self._pool.join()
        except Exception:
            pass

    shutdown.__doc__ = _cf.Executor.shutdown.__doc__


Executor = ProcessPoolExecutor
