"""Start-method contexts, as :mod:`multiprocessing.context`: ``get_context(method)``,
``set_start_method``, ``get_start_method``, ``get_all_start_methods``.

Every context exposes the names of the gilfree module (Process, Queue, Pipe, Pool, Lock, Value,
...). Factories import their module lazily, so that the names defined by other parts of gilfree
(queues, connection, pool, managers) are used as soon as those modules exist; until then the
standard library's implementation is used with a gilfree context (its Process and locks).
``fork`` is the default start method on Linux (functions defined in ``__main__`` or a notebook
work).
"""

import sys
from multiprocessing import context as _mpctx
from multiprocessing import reduction as _reduction
from multiprocessing.context import (AuthenticationError, BufferTooShort, ProcessError,
                                     TimeoutError)

from gilfree import process as _process

__all__ = ["BaseContext", "DefaultContext", "ForkContext", "SpawnContext", "ForkServerContext",
           "get_context", "get_start_method", "set_start_method", "get_all_start_methods",
           "ProcessError", "BufferTooShort", "TimeoutError", "AuthenticationError"]


def _optional(modname, attr):
    """gilfree.<modname>.<attr> if that module exists (another part of gilfree), else None."""
    import importlib
    try:
        mod = importlib.import_module("gilfree." + modname)
    except ModuleNotFoundError as e:
        if e.name not in ("gilfree." + modname,):
            raise
        return None
    return getattr(mod, attr, None)


class BaseContext(_mpctx.BaseContext):
    """multiprocessing.context.BaseContext whose factories make gilfree objects."""

    ProcessError = ProcessError
    BufferTooShort = BufferTooShort
    TimeoutError = TimeoutError
    AuthenticationError = AuthenticationError

    # ------------------------------------------------ synchronisation (gilfree.synchronize)
    def Lock(self):
        """A non-recursive lock (any process may release it)."""
        from gilfree.synchronize import Lock
        return Lock(ctx=self.get_context())

    def RLock(self):
        """A recursive lock."""
        from gilfree.synchronize import RLock
        return RLock(ctx=self.get_context())

    def Condition(self, lock=None):
        """A condition variable over a gilfree Lock or RLock (a new RLock by default)."""
        from gilfree.synchronize import Condition
        return Condition(lock, ctx=self.get_context())

    def Semaphore(self, value=1):
        """A counting semaphore (value: the initial count)."""
        from gilfree.synchronize import Semaphore
        return Semaphore(value, ctx=self.get_context())

    def BoundedSemaphore(self, value=1):
        """A semaphore whose release() past the initial value raises ValueError."""
        from gilfree.synchronize import BoundedSemaphore
        return BoundedSemaphore(value, ctx=self.get_context())

    def Event(self):
        """A process-shared event flag."""
        from gilfree.synchronize import Event
        return Event(ctx=self.get_context())

    def Barrier(self, parties, action=None, timeout=None):
        """A barrier for `parties` threads/processes (threading.Barrier semantics)."""
        from gilfree.synchronize import Barrier
        return Barrier(parties, action, timeout, ctx=self.get_context())

    # ------------------------------------------------ shared ctypes (gilfree.sharedctypes)
    def RawValue(self, typecode_or_type, *args):
        """A ctypes object in shared memory, without a lock."""
        from gilfree.sharedctypes import RawValue
        return RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type, size_or_initializer):
        """A ctypes array in shared memory, without a lock."""
        from gilfree.sharedctypes import RawArray
        return RawArray(typecode_or_type, size_or_initializer)

    def Value(self, typecode_or_type, *args, lock=True):
        """A synchronized ctypes object in shared memory (an RLock by default)."""
        from gilfree.sharedctypes import Value
        return Value(typecode_or_type, *args, lock=lock, ctx=self.get_context())

    def Array(self, typecode_or_type, size_or_initializer, *, lock=True):
        """A synchronized ctypes array in shared memory (an RLock by default)."""
        from gilfree.sharedctypes import Array
        return Array(typecode_or_type, size_or_initializer, lock=lock, ctx=self.get_context())

    # ------------------------------------------------ transport (gilfree.queues/connection)
    def Queue(self, maxsize=0):
        """A process-shared FIFO queue in shared memory (maxsize 0: unbounded)."""
        cls = _optional("queues", "Queue")
        if cls is None:
            return super().Queue(maxsize)
        return cls(maxsize, ctx=self.get_context())

    def JoinableQueue(self, maxsize=0):
        """A Queue with task_done() and join()."""
        cls = _optional("queues", "JoinableQueue")
        if cls is None:
            return super().JoinableQueue(maxsize)
        return cls(maxsize, ctx=self.get_context())

    def SimpleQueue(self):
        """A minimal queue: put, get, empty, close."""
        cls = _optional("queues", "SimpleQueue")
        if cls is None:
            return super().SimpleQueue()
        return cls(ctx=self.get_context())

    def Pipe(self, duplex=True):
        """A pair of connected Connection objects (duplex: both ends send and receive)."""
        fn = _optional("connection", "Pipe")
        if fn is None:
            return super().Pipe(duplex)
        return fn(duplex)

    # ------------------------------------------------ pool, managers
    def Pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        """A process pool (gilfree.pool.Pool) using this context."""
        cls = _optional("pool", "Pool")
        if cls is None:  # no gilfree pool (yet): the standard library's, all of it
            return self._stdlib_context().Pool(processes, initializer, initargs,
                                               maxtasksperchild)
        return cls(processes, initializer, initargs, maxtasksperchild, context=self.get_context())

    def Manager(self):
        """A started manager whose factories return gilfree shared objects."""
        fn = _optional("managers", "Manager")
        if fn is not None:
            return fn(ctx=self.get_context())
        cls = _optional("managers", "SyncManager")
        if cls is None:
            return self._stdlib_context().Manager()
        m = cls(ctx=self.get_context())
        m.start()
        return m

    def _stdlib_context(self):
        import multiprocessing
        return multiprocessing.get_context(self.get_context().get_start_method())

    # ------------------------------------------------ start methods
    def get_context(self, method=None):
        """This context, or the context of start method `method`."""
        if method is None:
            return self
        try:
            ctx = _concrete_contexts[method]
        except KeyError:
            raise ValueError("cannot find context for %r" % method) from None
        ctx._check_available()
        return ctx

    def get_all_start_methods(self):
        """The start methods available: fork, spawn, forkserver."""
        return ["fork", "spawn", "forkserver"]


class ForkContext(BaseContext):
    """The 'fork' start method (the default on Linux)."""
    _name = "fork"
    Process = _process.ForkProcess


class SpawnContext(BaseContext):
    """The 'spawn' start method: children run a fresh interpreter."""
    _name = "spawn"
    Process = _process.SpawnProcess


class ForkServerContext(BaseContext):
    """The 'forkserver' start method."""
    _name = "forkserver"
    Process = _process.ForkServerProcess

    def _check_available(self):
        if not _reduction.HAVE_SEND_HANDLE:
            raise ValueError("forkserver start method not available")


class DefaultContext(BaseContext):
    """The context of the gilfree module itself: follows set_start_method()."""

    Process = _process.Process

    def __init__(self, context):
        self._default_context = context
        self._actual_context = None

    def get_context(self, method=None):
        """The context in use (fixed at first use), or the one of start method `method`."""
        if method is None:
            if self._actual_context is None:
                self._actual_context = self._default_context
            return self._actual_context
        return super().get_context(method)

    def set_start_method(self, method, force=False):
        """Set the default start method (once, unless force=True)."""
        if self._actual_context is not None and not force:
            raise RuntimeError("context has already been set")
        if method is None and force:
            self._actual_context = None
            return
        self._actual_context = self.get_context(method)

    def get_start_method(self, allow_none=False):
        """The name of the default start method (None if unset and allow_none)."""
        if self._actual_context is None:
            if allow_none:
                return None
            self._actual_context = self._default_context
        return self._actual_context._name


if sys.platform != "linux":  # pragma: no cover - gilfree's core is Linux-only
    raise ImportError("gilfree needs Linux")

_concrete_contexts = {
    "fork": ForkContext(),
    "spawn": SpawnContext(),
    "forkserver": ForkServerContext(),
}
_default_context = DefaultContext(_concrete_contexts["fork"])

get_context = _default_context.get_context
get_start_method = _default_context.get_start_method
set_start_method = _default_context.set_start_method
get_all_start_methods = _default_context.get_all_start_methods
