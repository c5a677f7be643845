"""How a workload is run: serially, by threads, by the standard Pool, by gilfree's Pool.

A runner is one class.  ``runner.available()`` says whether it can run here (and why not);
``with runner.session(workers) as s:`` starts whatever it needs (a pool, threads) *outside*
the timed region, as the tutorials do (their ``%time`` covers the map, not the pool start);
``s.map(fn, items)`` is the tutorial's ``pool.map``; ``s.map_lines(fn, path)`` is the
file-aware map (workers read their own byte ranges of the file, so lines never travel through
the parent) and raises ``Unsupported`` where the runner has none.

A cluster backend (a later issue) is one more subclass of ``Runner``.
"""

import concurrent.futures
import contextlib


class Unsupported(Exception):
    """This runner cannot run this variant (the message says why)."""


class Runner:
    name = "?"
    label = "?"

    def available(self):
        """(True, "") or (False, reason)."""
        return True, ""

    @contextlib.contextmanager
    def session(self, workers):
        yield self

    def map(self, fn, items):
        raise NotImplementedError

    def map_lines(self, fn, path):
        raise Unsupported("%s has no file-aware map" % self.label)


class SerialRunner(Runner):
    name = "serial"
    label = "serial"

    def map(self, fn, items):
        return list(map(fn, items))


class ThreadRunner(Runner):
    """Threads (to show the GIL): a ThreadPoolExecutor of ``workers`` threads."""

    name = "threads"
    label = "threads"

    @contextlib.contextmanager
    def session(self, workers):
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
            yield _ExecutorSession(ex, chunk=False)


class _ExecutorSession:
    def __init__(self, ex, chunk, workers=1):
        self.ex = ex
        self.chunk = chunk
        self.workers = workers

    def map(self, fn, items):
        items = list(items)
        if self.chunk:  # the Pool's default chunking: about 4 chunks per worker
            cs = max(1, -(-len(items) // (4 * self.workers)))
            return list(self.ex.map(fn, items, chunksize=cs))
        return list(self.ex.map(fn, items))

    def map_lines(self, fn, path):
        raise Unsupported("executor has no file-aware map")


class PoolRunner(Runner):
    """A ``multiprocessing``-compatible module's ``Pool`` (the tutorial's code)."""

    name = "stdlib-pool"
    label = "stdlib Pool"

    def module(self):
        import multiprocessing
        return multiprocessing

    @contextlib.contextmanager
    def session(self, workers):
        mp = self.module()
        with mp.Pool(workers) as pool:
            yield _PoolSession(pool, self.label)


class _PoolSession:
    def __init__(self, pool, label):
        self.pool = pool
        self.label = label

    def map(self, fn, items):
        return self.pool.map(fn, items)

    def map_lines(self, fn, path):
        method = getattr(self.pool, "map_lines", None)
        if method is None:
            raise Unsupported("%s has no map_lines() yet" % self.label)
        return list(method(fn, path))


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


class ProcessExecutorRunner(Runner):
    """concurrent.futures.ProcessPoolExecutor with the Pool's default chunking."""

    name = "stdlib-executor"
    label = "ProcessPoolExecutor"

    @contextlib.contextmanager
    def session(self, workers):
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as ex:
            yield _ExecutorSession(ex, chunk=True, workers=workers)


RUNNERS = {cls.name: cls for cls in
           (SerialRunner, ThreadRunner, PoolRunner, GilfreePoolRunner, ProcessExecutorRunner)}


def get(name):
    return RUNNERS[name]()
