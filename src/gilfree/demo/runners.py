"""How a workload is run: serially, by threads, by the standard Pool, by gilfree's Pool, and
by a cluster backend (gilfree.cluster).

A runner is one class.  ``runner.available()`` says whether it can run here (and why not);
``with runner.session(workers) as s:`` starts whatever it needs (a pool, threads) *outside*
the timed region, as the tutorials do (their ``%time`` covers the map, not the pool start).
A session offers:
  * ``s.map(fn, items)``: the tutorial's ``pool.map``;
  * ``s.map_lines(fn, path)``: the file-aware map (workers read their own byte ranges of the
    file, so lines never travel through the parent); ``Unsupported`` where there is none;
  * ``s.shared_array(shape, dtype)``: an array in memory shared with the workers (gilfree:
    ``gilfree.shared_array``, sent by reference); ``Unsupported`` elsewhere;
  * ``s.progress``: the ``report.Progress`` of the current run, driven from completed work
    where the runner can measure it (serial, threads, gilfree's ``progress=True``), else a
    spinner that says why (the standard library's ``Pool.map``).

Workloads (``workloads.py``) never know which runner runs them.  A cluster backend is one
more ``Runner``: ``backends(cluster)`` picks up ``gilfree.cluster.demo_runners(cluster)``
(``--cluster local|ADDRESS``), and the demo adds one row per workload for it.
"""

import concurrent.futures
import contextlib
import importlib

from . import report


class Unsupported(Exception):
    """This runner cannot run this variant (the message says why)."""


class Session:
    """What a workload sees: ``map``, and optionally ``map_lines`` and ``shared_array``.
    ``progress`` (a ``report.Progress``) is set by the caller before each timed run; a
    session drives it from completed work where it can."""

    label = "?"

    def __init__(self):
        self.progress = report.Quiet()

    def map(self, fn, items, chunksize=None):
        """[fn(x) for x in items]; ``chunksize`` as ``Pool.map``'s (None: the runner's
        default; runners without chunks ignore it)."""
        raise NotImplementedError

    def map_lines(self, fn, path):
        raise Unsupported("%s has no file-aware map" % self.label)

    def shared_array(self, shape, dtype):
        """An array in memory the workers share (frames travel by reference)."""
        raise Unsupported("%s has no shared memory arrays" % self.label)


class Runner:
    name = "?"
    label = "?"

    def available(self):
        """(True, "") or (False, reason)."""
        return True, ""

    @contextlib.contextmanager
    def session(self, workers):
        raise NotImplementedError


def _chunked(fn, items, progress):
    """list(map(fn, items)) in ~200 slices, counting each slice on ``progress``."""
    items = items if isinstance(items, (list, tuple, range)) else list(items)
    n = len(items)
    bar = progress.bar(n)
    step = max(1, n // 200)
    out = []
    for lo in range(0, n, step):
        part = items[lo:lo + step]
        out.extend(map(fn, part))
        bar.update(len(part))
    return out


class _SerialSession(Session):
    label = "serial"

    def map(self, fn, items, chunksize=None):
        return _chunked(fn, items, self.progress)


class SerialRunner(Runner):
    name = "serial"
    label = "serial"

    @contextlib.contextmanager
    def session(self, workers):
        yield _SerialSession()


class _ExecutorSession(Session):
    def __init__(self, ex, label, chunk, workers=1):
        super().__init__()
        self.ex = ex
        self.label = label
        self.chunk = chunk
        self.workers = workers

    def map(self, fn, items, chunksize=None):
        items = list(items)
        bar = self.progress.bar(len(items))
        if self.chunk:  # default: the Pool's chunking, about 4 chunks per worker
            cs = chunksize or max(1, -(-len(items) // (4 * self.workers)))
            it = self.ex.map(fn, items, chunksize=cs)
        else:
            it = self.ex.map(fn, items)
        out = []
        for v in it:  # results arrive in order: count them as they come
            out.append(v)
            bar.update(1)
        return out


class ThreadRunner(Runner):
    """Threads (to show the GIL): a ThreadPoolExecutor of ``workers`` threads."""

    name = "threads"
    label = "threads"

    @contextlib.contextmanager
    def session(self, workers):
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
            yield _ExecutorSession(ex, self.label, chunk=False)


class _PoolSession(Session):
    def __init__(self, pool, label):
        super().__init__()
        self.pool = pool
        self.label = label

    def map(self, fn, items, chunksize=None):
        self.progress.spinner("%s.map reports nothing until it returns" % self.label)
        return self.pool.map(fn, items, chunksize)


class PoolRunner(Runner):
    """A ``multiprocessing``-compatible module's ``Pool`` (the tutorial's code)."""

    name = "stdlib-pool"
    label = "stdlib Pool"

    def module(self):
        import multiprocessing
        return multiprocessing

    @contextlib.contextmanager
    def session(self, workers):
        with self.module().Pool(workers) as pool:
            yield _PoolSession(pool, self.label)


class _GilfreeSession(_PoolSession):
    """gilfree's Pool: the tutorial's ``map`` with the pool's own progress bar, the
    file-aware ``map_lines``, and ``gilfree.shared_array`` for frames."""

    def map(self, fn, items, chunksize=None):
        return self.pool.map(fn, items, chunksize, progress=self.progress.hand_over())

    def map_lines(self, fn, path):
        return list(self.pool.map_lines(fn, path, progress=self.progress.hand_over()))

    def shared_array(self, shape, dtype):
        import gilfree
        return gilfree.shared_array(shape, dtype)


class GilfreePoolRunner(PoolRunner):
    """gilfree's Pool: the same code with ``import gilfree as multiprocessing``."""

    name = "gilfree-pool"
    label = "gilfree Pool"

    def module(self):
        import gilfree
        return gilfree

    def available(self):
        try:
            import gilfree
        except Exception as e:  # ImportError, or a broken half-built extension
            return False, "gilfree unavailable (%s: %s)" % (type(e).__name__, e)
        if not hasattr(gilfree, "Pool"):
            return False, "gilfree unavailable (the package has no Pool yet)"
        return True, ""

    @contextlib.contextmanager
    def session(self, workers):
        with self.module().Pool(workers) as pool:
            yield _GilfreeSession(pool, self.label)


class NogilThreadRunner(ThreadRunner):
    """Threads running seed 004's Cython countdown, whose loop runs without the GIL
    (``gilfree.demo.nogil``: built with Cython from PyPI and the C compiler, once, cached;
    never timed).  Its sessions offer ``nogil_countdown``."""

    name = "threads-nogil"
    label = "threads, Cython nogil"

    def __init__(self):
        self._mod = None

    def available(self):
        from . import nogil

        ok, why = nogil.available()
        if not ok:
            return False, why
        try:
            self._mod = self._mod or nogil.countdown_module()
        except RuntimeError as e:
            return False, "cannot build the Cython module: %s" % str(e).splitlines()[0]
        return True, ""

    @contextlib.contextmanager
    def session(self, workers):
        ok, why = self.available()
        if not ok:
            raise Unsupported(why)
        with super().session(workers) as s:
            s.nogil_countdown = self._mod.countdown
            yield s


class ProcessExecutorRunner(Runner):
    """concurrent.futures.ProcessPoolExecutor with the Pool's default chunking."""

    name = "stdlib-executor"
    label = "ProcessPoolExecutor"

    @contextlib.contextmanager
    def session(self, workers):
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as ex:
            yield _ExecutorSession(ex, self.label, chunk=True, workers=workers)


RUNNERS = {cls.name: cls for cls in
           (SerialRunner, ThreadRunner, NogilThreadRunner, PoolRunner, GilfreePoolRunner,
            ProcessExecutorRunner)}


def get(name):
    return RUNNERS[name]()


def register(cls):
    """Add a Runner class (a cluster backend's, say) under ``cls.name``; returns cls."""
    RUNNERS[cls.name] = cls
    return cls


def backends(cluster=None):
    """Runners of the configured cluster backends, one more row per workload in the demo.

    The hook: ``gilfree.cluster.demo.demo_runners(cluster)`` (``demo_runners()`` when no
    ``--cluster`` was given) -> list of Runner instances (each with ``session(workers)``
    yielding a Session whose ``map`` runs on the cluster; ``map_lines`` / ``shared_array``
    optional; ``close()`` optional, called when the demo ends). Returns [] when no backend is
    configured."""
    try:
        mod = importlib.import_module("gilfree.cluster.demo")
    except ImportError:
        return []
    hook = getattr(mod, "demo_runners", None)
    if hook is None:
        return []
    return list(hook(cluster) if cluster else hook())


def close_all(runners):
    """Call close() on the runners that have one (backends that started a cluster)."""
    for r in runners:
        close = getattr(r, "close", None)
        if close is not None:
            close()
