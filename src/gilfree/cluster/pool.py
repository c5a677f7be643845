"""ClusterPool and ClusterExecutor: gilfree's Pool and ProcessPoolExecutor with their tasks
run by a cluster engine (Dask distributed: ``gilfree.cluster.dask``).

They *are* a ``gilfree.Pool`` and a ``gilfree.ProcessPoolExecutor`` (subclasses): every
method, result object and extra of the local pool (batched ``apply_async``, the adaptive
``map``, ``imap``, callbacks, ``timeout=``, ``retries=``, ``progress=``) runs unchanged on
the cluster's transport, which replaces the C worker pool. What differs is said here and in
docs/cluster.md: functions travel with cloudpickle (lambdas and closures work), large
arguments are scattered once, adaptive map chunks aim at ~250 ms of work and grow 64-fold per
measurement (Dask's per-task cost is about a millisecond), ``map_lines`` reads the file here and ships byte ranges,
``maxtasksperchild`` is refused (Dask workers are long-lived).
"""

import collections
import os
import threading

from gilfree.cluster import _payload, resolve
from gilfree.futures import Future, ProcessPoolExecutor
from gilfree.pool import K_STARMAP, IMapIterator, Pool, _make_progress

__all__ = ["ClusterPool", "ClusterExecutor"]


class ClusterPool(Pool):
    """gilfree.Pool with its tasks run on a Dask cluster (``gilfree.Pool(cluster=...)``).

    ``cluster``: a scheduler address (``"tcp://host:8786"``, ``"tls://..."``), ``"local"``
    (starts a ``distributed.LocalCluster`` of ``processes`` worker processes, closed with the
    pool), a ``distributed.Client`` (used, not closed) or a Dask cluster object; None reads
    ``GILFREE_CLUSTER``. ``processes``: the worker count of a ``"local"`` cluster (elsewhere
    the cluster decides). ``security``: a ``distributed.Security`` (TLS, certificates), passed
    to Dask. ``connect_timeout``: seconds to reach the scheduler before ConnectionError.
    ``scatter_threshold``: bytes from which a bytes/NumPy argument is scattered once and
    shared instead of sent with each task (0: never).
    """

    # adaptive map chunks on a cluster: target, minimum and queued work per worker (ns)
    CHUNK_TARGET_NS = 250_000_000
    CHUNK_MIN_NS = 50_000_000
    CHUNK_QUEUE_NS = 500_000_000
    CHUNK_GROWTH = 64  # (fewer round trips to reach the target size)

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None, cluster=None, *, security=None, connect_timeout=None,
                 scatter_threshold=_payload.DEFAULT_THRESHOLD):
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None:
            raise ValueError("maxtasksperchild is not supported on a cluster: Dask workers "
                             "are long-lived (see `dask worker --lifetime`)")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        spec = resolve(cluster)
        if spec is None:
            raise ValueError("ClusterPool needs cluster= (or GILFREE_CLUSTER): an address, "
                             "\"local\" or a distributed.Client")
        from gilfree.cluster import dask as backend

        client, owned = backend.connect(spec, processes, security,
                                        connect_timeout or backend.DEFAULT_CONNECT_TIMEOUT)
        try:
            init = None if initializer is None else (initializer, tuple(initargs))
            core = backend.DaskCore(client, owned, scatter_threshold, init)
        except BaseException:
            for o in owned:
                o.close()
            raise
        self._attach(core, context, None, name="gilfree-cluster-pool")

    @property
    def _processes(self):
        """Worker threads in the cluster (chunk sizes and read-ahead depend on it)."""
        return self._core.nthreads()

    @property
    def client(self):
        """The ``distributed.Client`` this pool submits through."""
        return self._core.client

    def _fnbytes(self, fn):
        try:
            return self._fncache[fn]
        except KeyError:
            pass
        except TypeError:  # unhashable callable
            return self._encode_fn(fn)
        b = self._encode_fn(fn)
        if len(self._fncache) > 512:
            self._fncache.clear()
        self._fncache[fn] = b
        return b

    def _encode_fn(self, fn):
        b = _payload.dumps_function(fn)
        self._core.name_of(b, fn)
        return b

    def _map_async(self, kind, func, iterable, *args):
        # the whole input must pickle before the first chunk goes (nothing sent otherwise)
        items = iterable if isinstance(iterable, (list, tuple, range)) else list(iterable)
        _payload.check(kind, items)
        res = super()._map_async(kind, func, items, *args)
        plan = res._plan
        if plan is not None:  # per-instance constants: chunks sized for a cluster
            plan.TARGET_NS = self.CHUNK_TARGET_NS
            plan.MIN_NS = self.CHUNK_MIN_NS
            plan.QUEUE_NS = self.CHUNK_QUEUE_NS
            plan.GROWTH = self.CHUNK_GROWTH
        return res

    def map_lines(self, fn, path, chunk_bytes=1 << 20, encoding="utf-8", errors="strict",
                  progress=False):
        """[fn(line) for line in open(path)]: the file is read here, in byte ranges of about
        ``chunk_bytes`` ending at a line end, and each range is one task that splits and
        decodes its lines on a worker (no per-line pickling); results come in order."""
        self._check_running()
        path = os.fspath(path)
        size = os.path.getsize(path)

        def ranges():
            with open(path, "rb") as f:
                while True:
                    data = f.read(chunk_bytes)
                    if not data:
                        return
                    yield (fn, data + f.readline(), encoding, errors)

        from gilfree.cluster.dask import LINES

        out = []
        for chunk in IMapIterator(self, K_STARMAP, LINES, ranges(), 1, True, None, 0,
                                  _make_progress(progress, max(1, -(-size // chunk_bytes)))):
            out.extend(chunk)
        return out


class ClusterExecutor(ProcessPoolExecutor):
    """gilfree.ProcessPoolExecutor on a Dask cluster
    (``gilfree.ProcessPoolExecutor(cluster=...)``): its futures are
    ``concurrent.futures.Future``s; ``cluster`` and the keyword options are ClusterPool's;
    ``max_workers`` is the worker count of a ``"local"`` cluster."""

    def __init__(self, max_workers=None, mp_context=None, initializer=None, initargs=(),
                 max_tasks_per_child=None, cluster=None, **options):
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if max_tasks_per_child is not None:
            raise ValueError("max_tasks_per_child is not supported on a cluster: Dask "
                             "workers are long-lived (see `dask worker --lifetime`)")
        self._max_workers = max_workers
        self._shutdown_lock = threading.Lock()
        self._shutdown = False
        self._blk = threading.RLock()
        self._backlog = collections.deque()
        self._full_at = None
        self._pool = ClusterPool(max_workers, initializer, initargs, None, mp_context,
                                 cluster, **options)
        self._Future = type("Future", (Future,), {"_gf_ex": self, "__slots__": ()})

    @property
    def client(self):
        """The ``distributed.Client`` this executor submits through."""
        return self._pool.client
