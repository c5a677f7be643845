"""What runs on the Dask workers: the task body of every gilfree cluster task, and the
interruption of a task that ran past its ``timeout=`` or was cancelled.

This module imports nothing from gilfree (only the standard library, and ``distributed`` when
it is there): the client ships it to the workers *by value* (cloudpickle), so the workers need
``dask``/``distributed`` and the user's own code, not gilfree.

A task is ``run(kind, fnb, objb, refs, timeout, note)``:

* ``fnb``: the pickled function (cloudpickle: lambdas and closures travel by value);
* ``objb``: the pickled call, as gilfree's local pool encodes it: ``(args, kwds)`` for a call,
  a list of items for a map / starmap chunk, ``[(fnb, args, kwds), ...]`` for a batch of
  ``apply_async`` calls; large arguments inside are persistent ids into ``refs``, the data that
  the client scattered once (Dask hands each task the scattered values in place of their
  futures);
* ``timeout``: seconds, or 0; ``note``: ``(topic, grace)`` used when the task times out, or None;
* ``init``: None, or ``(token, pickled (initializer, initargs))``, run once per worker process;
* the result is ``(elapsed_ns, data, buffers)``: the time the worker spent on the call(s) (the
  adaptive map sizes its chunks from it) and the call's value pickled here (protocol 5, large
  buffers out of band; cloudpickle where pickle cannot): a chunk's value is the list of
  results, a batch's ``(results, {index: pickled (exception, traceback text)})``. Pickling
  here means that a result that does not pickle fails its own call with MaybeEncodingError,
  as on the local pool (Dask would otherwise keep it on the worker and fail to send it).

A call's own exception propagates (Dask reports the task as erred, with its traceback).
"""

import ctypes
import io
import os
import pickle
import signal
import threading
import time
import traceback
from multiprocessing.pool import MaybeEncodingError

K_CALL, K_MAP, K_STARMAP, K_BATCH = 0, 1, 2, 3
TIMEOUT_TAG = "gilfree-timeout"  # last argument of the TimeoutError a timed-out task raises


class _Interrupted(BaseException):
    """Raised asynchronously in a task's thread when it times out or is cancelled."""


class _RefUnpickler(pickle.Unpickler):
    """Unpickles a call whose large arguments were scattered: persistent id i -> refs[i]."""

    def __init__(self, data, refs):
        super().__init__(io.BytesIO(data))
        self._refs = refs

    def persistent_load(self, pid):
        return self._refs[pid]


def _loads(data, refs):
    if refs:
        return _RefUnpickler(data, refs).load()
    return pickle.loads(data)


def _errbytes(exc):
    """A batch call's error as the local pool reports it: pickled (exception, traceback)."""
    tb = '\n"""\n' + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) \
        + '"""'
    try:
        return pickle.dumps((exc, tb))
    except Exception as e:  # an exception that does not pickle: its text travels
        return pickle.dumps((RuntimeError("%s: %s (unpicklable: %s)" % (
            type(exc).__name__, exc, e)), tb))


def _dumps(value):
    """(data, buffers): value pickled (protocol 5, buffers out of band), cloudpickle where
    pickle cannot; MaybeEncodingError when neither can."""
    bufs = []
    try:
        data = pickle.dumps(value, 5, buffer_callback=bufs.append)
        if b"__main__" not in data:
            return data, bufs
    except Exception:
        pass
    bufs = []
    try:
        import cloudpickle
        return cloudpickle.dumps(value, 5, buffer_callback=bufs.append), bufs
    except Exception as e:
        raise MaybeEncodingError(e, repr(value)[:200]) from None


def _encode(kind, value):
    """The task's value for the client (see _dumps); a batch whose results do not all pickle
    fails only the calls whose results do not."""
    try:
        return _dumps(value)
    except MaybeEncodingError:
        if kind != K_BATCH:
            raise
    out, errs = value
    for i, v in enumerate(out):
        try:
            _dumps(v)
        except MaybeEncodingError as e:
            out[i] = None
            errs[i] = _errbytes(e)
    return _dumps((out, errs))


def _body(kind, fnb, objb, refs):
    """Run the call(s); returns the task's value."""
    obj = _loads(objb, refs)
    if kind == K_BATCH:
        fns, out, errs = {}, [], {}
        for i, (fb, args, kwds) in enumerate(obj):
            try:
                fn = fns.get(fb)
                if fn is None:
                    fn = fns[fb] = pickle.loads(fb)
                out.append(fn(*args, **(kwds or {})))
            except Exception as e:
                out.append(None)
                errs[i] = _errbytes(e)
        return out, errs
    fn = pickle.loads(fnb)
    if kind == K_CALL:
        args, kwds = obj
        return fn(*args, **(kwds or {}))
    if kind == K_STARMAP:
        return [fn(*x) for x in obj]
    return [fn(x) for x in obj]


def _async_raise(ident, exc):
    """Raise `exc` (a class; None clears a pending one) in thread `ident` at its next Python
    instruction. Returns the number of threads affected."""
    return ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                                      ctypes.py_object(exc) if exc else None)


def _worker():
    try:
        from distributed import get_worker
        return get_worker()
    except (ImportError, ValueError):
        return None


def _set_paused(worker, paused):
    """Pause (the scheduler sends the worker nothing new) or resume a worker, from any
    thread (the status belongs to the worker's event loop)."""
    try:
        from distributed.core import Status
        status = Status.paused if paused else Status.running
        if paused or worker.status == Status.paused:
            worker.loop.add_callback(setattr, worker, "status", status)
    except Exception:
        pass


def _others(worker, ident):
    """True if the worker has other work than thread `ident`'s: another call executing, or
    tasks waiting for a thread."""
    active = getattr(worker, "active_threads", None) or {}
    state = getattr(worker, "state", None)
    return bool(set(active) - {ident}) or bool(state is not None and (state.ready or
                                                                       state.constrained))


def _unstick(worker, ident, gone, grace):
    """After an interruption: the worker is paused at once (nothing new is sent to it); if
    thread `ident` has left the interrupted call (``gone()``) within `grace` s the worker is
    resumed, else -- the call is stuck in C code -- the worker process is killed, as gilfree's
    local pool kills a worker whose task times out, and its nanny starts a new one. A worker
    without a nanny, or with other work to do, is never killed: it is resumed and the call
    keeps its thread until it returns."""
    _set_paused(worker, True)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if gone():
            _set_paused(worker, False)
            return
        time.sleep(0.01)
    if not gone() and getattr(worker, "nanny", None) and not _others(worker, ident):
        os.kill(os.getpid(), signal.SIGKILL)
    _set_paused(worker, False)


class _Call:
    """A running call's interruption point: ``interrupt()`` raises _Interrupted in its thread
    only while the call itself runs (never in Dask's code around it), then _unsticks the
    worker; with a timeout, a timer does so at the deadline and tells the client (an event on
    the pool's topic). Registered on the worker by task key while it runs."""

    def __init__(self, timeout=0, note=None):
        self.ident = threading.get_ident()
        self.worker = _worker()
        self.topic, self.grace = note or (None, 0.0)
        self.lock = threading.Lock()
        self.state = 0  # 0 running, 1 interrupted, 2 done
        self.done = threading.Event()
        self.key = None
        self.timer = None
        w = self.worker
        if w is not None:
            try:
                from distributed.worker import thread_state
                self.key = getattr(thread_state, "key", None)
            except ImportError:
                pass
            if self.key is not None:
                w.__dict__.setdefault("_gilfree_calls", {})[self.key] = self
        if timeout:
            self.timer = threading.Timer(timeout, self.expire)
            self.timer.daemon = True
            self.timer.start()

    def interrupt(self, grace):
        """Interrupt the call if it still runs; True if it did."""
        with self.lock:
            if self.state != 0:
                return False
            self.state = 1
            _async_raise(self.ident, _Interrupted)
        if self.worker is not None and grace:
            threading.Thread(target=_unstick, args=(self.worker, self.ident, self.done.is_set,
                                                    grace), daemon=True).start()
        return True

    def expire(self):
        """The timeout: interrupt, and tell the client at once."""
        if not self.interrupt(self.grace):
            return
        w = self.worker
        if w is not None and self.topic and self.key is not None:
            try:
                w.log_event(self.topic, {"key": self.key, "worker": w.address})
            except Exception:
                pass

    def finish(self):
        """The call returned or raised: no interruption may land after this."""
        if self.timer is not None:
            self.timer.cancel()
        with self.lock:
            if self.state == 1:
                _async_raise(self.ident, None)  # one not raised yet is withdrawn
            self.state = 2
        self.done.set()
        if self.key is not None:
            self.worker.__dict__.get("_gilfree_calls", {}).pop(self.key, None)


def _initialize(init):
    """Run the pool's initializer once per worker process: init = (token, pickled
    (initializer, initargs)). Remembered on the Worker object (a restarted worker is a new
    process: it runs the initializer again, as a replaced local worker does)."""
    token, initb = init
    w = _worker()
    if w is None:
        fn, args = pickle.loads(initb)
        fn(*args)
        return
    state = w.__dict__.setdefault("_gilfree_initialized", {})
    lock = w.__dict__.setdefault("_gilfree_init_lock", threading.Lock())
    if state.get(token):
        return
    with lock:
        if not state.get(token):
            fn, args = pickle.loads(initb)
            fn(*args)
            state[token] = True


def run(kind, fnb, objb, refs, timeout, note, init=None):
    """The body of a gilfree task on a Dask worker; see the module docstring."""
    if init is not None:
        _initialize(init)
    t0 = time.perf_counter_ns()
    call = _Call(timeout, note)
    try:
        try:
            value = _body(kind, fnb, objb, refs)
        finally:
            call.finish()
    except _Interrupted:
        if timeout:
            raise TimeoutError("the task ran past its timeout of %g s and was interrupted"
                               % timeout, TIMEOUT_TAG) from None
        raise RuntimeError("gilfree: the task was cancelled") from None
    return (time.perf_counter_ns() - t0,) + _encode(kind, value)


def interrupt(keys, grace, dask_worker=None):
    """(Client.run) Interrupt this worker's running calls of `keys` (cancelled or terminated
    tasks; see _Call.interrupt). Returns the number interrupted."""
    calls = getattr(dask_worker, "__dict__", {}).get("_gilfree_calls", {})
    return sum(1 for k in keys if k in calls and calls[k].interrupt(grace))


def lines(fn, data, encoding, errors):
    """Pool.map_lines on a cluster: fn(line) for every line of `data` (a byte range of the
    file, read by the client), decoded as ``open(path)`` would."""
    return [fn(line) for line in io.TextIOWrapper(io.BytesIO(data), encoding=encoding,
                                                   errors=errors)]
