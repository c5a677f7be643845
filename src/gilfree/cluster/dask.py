"""The Dask backend: the task transport of :class:`gilfree.pool.Pool` on a ``distributed``
cluster, built on Dask's client API (``Client.submit``, ``as_completed``, ``scatter``,
``cancel``, ``run``, topic events) -- no scheduler of our own.

:class:`DaskCore` offers the interface of the C pool (``gilfree._core.Pool``: ``submit`` ->
task id, ``results`` -> ``(id, status, worker, value, elapsed_ns)`` tuples, ``cancel``,
``close``, ``terminate``, ``join``, ...), so the whole Python Pool -- batched
``apply_async``, the adaptive ``map``, ``imap``, callbacks, progress bars -- and the Executor run
on it unchanged. Every gilfree task is one Dask task running ``_remote.run``, which the workers
receive by value (they need no gilfree).

Failure semantics (docs/cluster.md):

* a task's own exception comes back raised, with its remote traceback as ``__cause__``;
* a worker lost under a task (Dask's ``KilledWorker``): the task is submitted again while it
  has ``retries`` left, else it fails with ``WorkerLostError``; Dask's own
  ``distributed.scheduler.allowed-failures`` reruns come first (clusters gilfree starts set
  it to 0, so that retries mean what they mean on the local pool);
* ``timeout=``: measured on the worker from the start of the call; at the deadline the client
  gets ``TaskTimeoutError`` at once (a topic event), the call's thread is interrupted at its
  next Python instruction, and a thread still stuck (in C code) after ``GRACE`` seconds that
  is its worker's only task gets that worker killed and replaced by its nanny;
* ``cancel`` / ``terminate``: the Dask futures are cancelled and their running threads
  interrupted in the same way.
"""

import collections
import itertools
import os
import pickle
import threading
import time
import uuid
import warnings

import cloudpickle

from gilfree.cluster import _payload, _remote
from gilfree.pool import (K_BATCH, S_CANCELLED, S_DECODE, S_ERROR, S_LOST, S_OK,
                          TaskTimeoutError, WorkerLostError, _errfn, _rebuild_error)

__all__ = ["DaskCore", "connect", "VersionMismatchError", "DEFAULT_CONNECT_TIMEOUT"]

DEFAULT_CONNECT_TIMEOUT = 10.0
GRACE = 1.0  # seconds an interrupted call may take to return before its worker is killed
BATCH_WINDOW = 0.002  # with more tasks out than threads, results are gathered this late
# what clusters that gilfree starts use (cluster="local"); see the module docstring
LOCAL_CONFIG = {"distributed.scheduler.allowed-failures": 0,
                "distributed.scheduler.worker-saturation": 1.0}


class VersionMismatchError(ValueError):
    """The client, scheduler and workers run different versions of a package Dask requires to
    match (the message is Dask's own table of versions)."""


class _ByValue:
    """A function of gilfree.cluster._remote as Dask sends it: by value (cloudpickle), so
    that the workers need no gilfree. Pickles as ``pickle.loads(<cloudpickle bytes>)``."""

    _lock = threading.Lock()

    def __init__(self, fn):
        self._fn = fn
        with self._lock:
            cloudpickle.register_pickle_by_value(_remote)
            try:
                self._blob = cloudpickle.dumps(fn)
            finally:
                cloudpickle.unregister_pickle_by_value(_remote)
        self.__name__ = fn.__name__

    def __reduce__(self):
        return (pickle.loads, (self._blob,))

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


_RUN = _ByValue(_remote.run)
_INTERRUPT = _ByValue(_remote.interrupt)
LINES = _ByValue(_remote.lines)  # the body of ClusterPool.map_lines chunks


def _check_versions(client):
    """Raise VersionMismatchError (Dask's message) when the client, scheduler or a worker
    differ in Python (major.minor) or a package Dask requires to match; warn (Dask's message)
    for other differences."""
    from distributed import versions as dv

    v = client.get_versions()
    parts = [v["client"], v["scheduler"]] + list(v["workers"].values())
    pkgs = [p.get("packages", {}) if isinstance(p, dict) else {} for p in parts]
    bad = [name for name in dv.required_packages
           if len({p.get(name, "MISSING") for p in pkgs}) > 1]
    if len({".".join(str(p.get("python", "")).split(".")[:2]) for p in pkgs}) > 1:
        bad.append("python")
    msg = dv.error_message(v["scheduler"], v["workers"], v["client"])["warning"]
    if bad:
        raise VersionMismatchError("gilfree: the cluster's versions of %s differ from this "
                                   "client's; Dask says:\n%s" % (", ".join(bad), msg))
    if msg:
        warnings.warn(msg, dv.VersionMismatchWarning, stacklevel=3)


def connect(cluster, processes=None, security=None, connect_timeout=DEFAULT_CONNECT_TIMEOUT):
    """A distributed.Client for ``cluster``: an address (``"tcp://host:8786"``,
    ``"tls://..."``), ``"local"`` (a new ``LocalCluster`` of ``processes`` single-threaded
    worker processes on 127.0.0.1), a ``distributed.Client`` (used as is) or a Dask cluster
    object. Returns (client, objects to close with the pool). An unreachable address raises
    ConnectionError within ``connect_timeout`` seconds; version mismatches raise
    VersionMismatchError."""
    import dask
    import distributed

    if isinstance(cluster, distributed.Client):
        _check_versions(cluster)
        return cluster, []
    owned = []
    try:
        if isinstance(cluster, str) and cluster.strip().lower() == "local":
            with dask.config.set(LOCAL_CONFIG):
                # no dashboard; the scheduler's HTTP endpoints on a random loopback port
                lc = distributed.LocalCluster(n_workers=processes or os.cpu_count() or 1,
                                              threads_per_worker=1, processes=True,
                                              dashboard_address=None, security=security,
                                              scheduler_kwargs={
                                                  "dashboard_address": "127.0.0.1:0"})
            owned.append(lc)
            target = lc
        elif isinstance(cluster, str) or hasattr(cluster, "scheduler_address"):
            target = cluster
        else:
            raise TypeError("cluster= takes a scheduler address, \"local\", a "
                            "distributed.Client or a Dask cluster, not %r" % (cluster,))
        try:
            client = distributed.Client(target, timeout=connect_timeout, security=security,
                                        set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise ConnectionError("gilfree: cannot reach the Dask scheduler at %s within "
                                  "%g s (connect_timeout=): %s" % (cluster, connect_timeout, e)
                                  ) from e
        owned.insert(0, client)
        if target is not cluster:  # our LocalCluster: every worker has joined
            client.wait_for_workers(len(lc.workers), timeout=60)
        _check_versions(client)
        return client, owned
    except BaseException:
        for o in owned:
            o.close()
        raise


class _Task:
    """One gilfree task: its encoded call (kept for resubmission) and its Dask future."""

    __slots__ = ("tid", "kind", "name", "fnb", "objb", "refs", "timeout", "retries", "fut")

    def __init__(self, tid, kind, name, fnb, objb, refs, timeout, retries):
        self.tid, self.kind, self.name, self.fnb = tid, kind, name, fnb
        self.objb, self.refs, self.timeout, self.retries = objb, refs, timeout, retries
        self.fut = None


def _remote_error(exc, tb):
    """A task's own exception, raised with its remote traceback as __cause__ (as the local
    pool reports it)."""
    try:
        exc = exc.with_traceback(tb)
        return _rebuild_error(_errfn(exc, "call"))
    except Exception:
        return exc


class DaskCore:
    """The C pool's interface (see gilfree._core.Pool) on a distributed.Client."""

    def __init__(self, client, owned=(), scatter_threshold=_payload.DEFAULT_THRESHOLD,
                 init=None):
        from distributed import as_completed

        self.client = client
        self._owned = list(owned)
        self._id = uuid.uuid4().hex[:12]
        self._topic = "gilfree-%s" % self._id
        self._subscribed = False
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._tasks = {}     # tid -> _Task, until its result is produced
        self._keys = {}      # Dask key of its current attempt -> tid
        self._out = collections.deque()
        self._kicked = False  # wake(): the waiting results() returns [] at once
        self._ids = itertools.count(1)
        self._closed = False
        self._stopped = False
        self._losses = 0
        self._nthreads = (0.0, 1)
        self._proc_cache = (0.0, set())
        # the initializer, run once per worker process (see _remote._initialize)
        self._init = None if init is None else (self._id, _payload.dumps(init))
        self.names = {}      # pickled function -> its name (task keys carry it: name_of)
        self._payloads = _payload.Payloads(
            lambda x: client.scatter(x, broadcast=True, hash=False), scatter_threshold)
        self._ac = as_completed(loop=client.loop)
        self._work = threading.Event()
        self._pump = threading.Thread(target=self._pump_loop, daemon=True,
                                      name="gilfree-dask-results")
        self._pump.start()

    def name_of(self, fnb, fn):
        """Remember fn's name for the keys of its tasks (Dask groups tasks by key prefix)."""
        if len(self.names) > 1024:
            self.names.clear()
        name = "".join(c if c.isalnum() else "_" for c in getattr(fn, "__name__", "call"))
        self.names[fnb] = (name or "call")[:40]

    # ------------------------------------------------------------ the C pool's interface
    def serve(self):
        """(Nothing to fork: Dask runs the workers.)"""

    def start(self):
        """(The client is connected already.)"""

    def submit(self, kind, fnb, obj, timeout=0.0, retries=0, block=True):
        """Queue one task; returns its id. Raises what pickling raises (nothing is sent),
        ValueError once closed."""
        if self._closed:
            raise ValueError("Pool not running")
        objb, refs = self._payloads.pack(kind, obj)
        if timeout and not self._subscribed:
            self._subscribed = True
            self.client.subscribe_topic(self._topic, self._on_event)
        name = "gilfree_batch" if kind == K_BATCH else self.names.get(fnb, "call")
        task = _Task(next(self._ids), kind, name, fnb, objb, refs, timeout, retries)
        with self._lock:
            if self._closed:
                raise ValueError("Pool not running")
            self._tasks[task.tid] = task
        try:
            self._launch(task)
        except BaseException:
            with self._lock:
                self._tasks.pop(task.tid, None)
            raise
        return task.tid

    def _launch(self, task):
        key = "%s-%s" % (task.name, uuid.uuid4().hex)
        note = (self._topic, GRACE) if task.timeout else None
        fut = self.client.submit(_RUN, task.kind, task.fnb, task.objb, task.refs,
                                 task.timeout, note, self._init, key=key, pure=False)
        with self._lock:
            task.fut = fut
            self._keys[key] = task.tid
        self._ac.add(fut)
        self._work.set()

    def results(self, max=256, timeout=None):
        """Up to ``max`` results, waiting up to ``timeout`` s (None: forever) for one: a list
        (empty on timeout), or None once closed and every result was taken."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._out:
                if self._closed and not self._tasks:
                    return None
                rem = None if deadline is None else deadline - time.monotonic()
                if (rem is not None and rem <= 0) or self._kicked:
                    self._kicked = False
                    return []
                self._cond.wait(rem)
            n = min(max, len(self._out))
            return [self._out.popleft() for _ in range(n)]

    def wake(self):
        """Make a results() call waiting now (or the next one) return [] at once, as
        _core.Pool.wake: the pool's results thread hands collecting to a waiting thread."""
        with self._cond:
            self._kicked = True
            self._cond.notify_all()

    def cancel(self, tid):
        """Cancel a task: 1 (it yields CANCELLED; a running call is interrupted), None if it
        is not outstanding."""
        task = self._resolve(tid, S_CANCELLED, None)
        if task is None:
            return None
        self._drop([task])
        return 1

    def cancel_queued(self, tid):
        """Cancel a task unless a worker has it (Dask: "processing"): 0 (cancelled), 1 (left
        to finish), None (not outstanding)."""
        with self._lock:
            task = self._tasks.get(tid)
        if task is None:
            return None
        if task.fut is not None and task.fut.key in self._processing():
            return 1
        return None if self.cancel(tid) is None else 0

    def _processing(self):
        """Keys the workers have now (cached for a moment: shutdown asks for every task)."""
        t, keys = self._proc_cache
        if time.monotonic() - t > 0.2:
            keys = {k for ks in self.client.processing().values() for k in ks}
            self._proc_cache = (time.monotonic(), keys)
        return keys

    def close(self):
        """No more submits; outstanding tasks still run."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def terminate(self):
        """Cancel every outstanding task (each yields CANCELLED; running calls are
        interrupted); implies close."""
        with self._cond:
            self._closed = True
            tids = list(self._tasks)
        tasks = [t for t in (self._resolve(tid, S_CANCELLED, None) for tid in tids) if t]
        self._drop(tasks)

    def join(self, timeout=None):
        """Wait until every task has produced its result: True, or False after timeout s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._tasks:
                rem = None if deadline is None else deadline - time.monotonic()
                if rem is not None and rem <= 0:
                    return False
                self._cond.wait(rem)
        return True

    def stop(self):
        """Release everything: the result thread, the scattered data and the client (and the
        cluster) if the pool made them."""
        if self._stopped:
            return
        self._stopped = True
        self._work.set()
        self._payloads.clear()
        if self._subscribed:
            try:
                self.client.unsubscribe_topic(self._topic)
            except Exception:
                pass
        for o in self._owned:
            try:
                o.close()
            except Exception:
                pass
        self._pump.join(5.0)

    def stats(self):
        """live_workers (Dask workers now), outstanding (tasks without a result yet), spawned
        (0: Dask starts the workers), deaths (task attempts lost with their worker), threads
        (worker threads in the cluster) and the scheduler's address."""
        nt = self.client.nthreads()
        return {"live_workers": len(nt), "outstanding": len(self._tasks), "spawned": 0,
                "deaths": self._losses, "threads": sum(nt.values()),
                "scheduler": self.client.scheduler.address}

    def pids(self):
        """The process ids of the cluster's workers (a worker going away meanwhile is left
        out)."""
        return list(self.client.run(os.getpid, on_error="ignore").values())

    def nthreads(self):
        """Worker threads in the cluster (refreshed every 2 s; at least 1)."""
        t, n = self._nthreads
        if time.monotonic() - t > 2.0:
            n = max(1, sum(self.client.nthreads().values()))
            self._nthreads = (time.monotonic(), n)
        return n

    # ------------------------------------------------------------ results
    def _resolve(self, tid, status, value, elapsed=0):
        """Produce task tid's one result; returns the task (None if it had one already)."""
        with self._cond:
            task = self._tasks.pop(tid, None)
            if task is None:
                return None
            if task.fut is not None:
                self._keys.pop(task.fut.key, None)
            self._out.append((tid, status, -1, value, elapsed))
            self._cond.notify_all()
        return task

    def _drop(self, tasks):
        """Cancel the Dask futures of tasks that already have their result, and interrupt
        their calls where they run."""
        futs = [t.fut for t in tasks if t.fut is not None]
        if not futs or self._stopped:
            return
        try:
            self.client.cancel(futs, reason="gilfree")
            self.client.run(_INTERRUPT, [f.key for f in futs], GRACE, on_error="ignore")
        except Exception:  # the client is closing: Dask drops everything anyway
            pass

    def _pump_loop(self):
        """Take the Dask futures that completed (as_completed), fetch the results of a batch
        of them with one Client.gather, and turn them into results; resubmit lost tasks that
        have retries left."""
        ac = self._ac
        while not self._stopped:
            if ac.is_empty():
                self._work.wait(0.2)
                self._work.clear()
                continue
            try:
                batch = ac.next_batch(block=True)
                if len(self._tasks) > len(batch) + self.nthreads():
                    # a busy cluster: let a few more complete, so that one gather fetches
                    # them all (each gather is a round trip through the scheduler)
                    time.sleep(BATCH_WINDOW)
                    batch += ac.next_batch(block=False)
            except StopIteration:
                continue
            except Exception:
                if self._stopped:
                    return
                raise
            try:
                self._completed(batch)
            except Exception as e:  # (the client failing): these tasks fail, the rest go on
                for fut in batch:
                    task = self._task_of(fut)
                    if task is not None:
                        self._resolve(task.tid, S_ERROR, e)

    def _task_of(self, fut):
        """The outstanding task whose current attempt is fut (None: it has its result)."""
        with self._lock:
            tid = self._keys.get(fut.key)
            task = self._tasks.get(tid) if tid is not None else None
        return task if task is not None and task.fut is fut else None

    def _completed(self, futs):
        done = {}
        for fut in futs:
            task = self._task_of(fut)
            if task is None:
                continue  # (timeout, cancel, terminate)
            if fut.status == "finished":
                done[fut.key] = (task, fut)
            elif fut.status == "error":
                self._erred(task, type(fut.exception()), fut.exception(), fut.traceback())
            else:  # cancelled by Dask (not by us: ours have their result already)
                try:
                    fut.result()
                except BaseException as e:  # Dask's reason (e.g. the scheduler was lost)
                    self._resolve(task.tid, S_ERROR, e)
        if not done:
            return
        values = self.client.gather({k: f for k, (_, f) in done.items()}, errors="skip")
        for key, (task, fut) in done.items():
            if values.get(key) is None:  # not gathered: cancelled meanwhile, or its data
                if self._task_of(fut) is not None:  # was lost and Dask computes it again
                    self._ac.add(fut)
                continue
            elapsed, data, bufs = values[key]
            try:
                value = pickle.loads(data, buffers=bufs)
            except Exception as e:
                self._resolve(task.tid, S_DECODE, e)
            else:
                self._resolve(task.tid, S_OK, value, elapsed)

    def _erred(self, task, typ, exc, tb):
        from distributed.scheduler import KilledWorker

        if isinstance(exc, KilledWorker):
            self._losses += 1
            if task.retries > 0 and not self._stopped:
                task.retries -= 1
                with self._lock:
                    self._keys.pop(task.fut.key, None)
                try:
                    self._launch(task)
                    return
                except Exception as e:
                    exc = e
            if task.kind == K_BATCH:  # the pool reruns its calls one by one
                self._resolve(task.tid, S_LOST, None)
                return
            err = WorkerLostError("the Dask worker running this task was lost (%s)" % (exc,))
            err.__cause__ = exc
            self._resolve(task.tid, S_ERROR, err)
        elif isinstance(exc, TimeoutError) and exc.args[-1:] == (_remote.TIMEOUT_TAG,):
            self._resolve(task.tid, S_ERROR, TaskTimeoutError(exc.args[0]))
        else:
            self._resolve(task.tid, S_ERROR, _remote_error(exc, tb))

    async def _on_event(self, event):
        """A worker reports that a task ran past its timeout: its result is produced now,
        and its Dask future cancelled (so that Dask does not run it again)."""
        msg = event[1] if isinstance(event, (tuple, list)) else event
        key = msg.get("key") if isinstance(msg, dict) else None
        with self._lock:
            tid = self._keys.get(key)
            task = self._tasks.get(tid) if tid is not None else None
        if task is None or task.fut is None or task.fut.key != key:
            return
        self._resolve(tid, S_ERROR, TaskTimeoutError(
            "the task ran past its timeout of %g s on %s and was interrupted"
            % (task.timeout, msg.get("worker", "its worker"))))
        try:
            await self.client.cancel([task.fut], asynchronous=True, reason="gilfree-timeout")
        except Exception:
            pass
