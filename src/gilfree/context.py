"""Start-method contexts, as :mod:`multiprocessing.context`: ``get_context(method)``,
``set_start_method``, ``get_start_method``, ``get_all_start_methods``.

Every context exposes the names of the gilfree module (Process, Queue, Pipe, Pool, Lock, Value,
...). This module is the top of gilfree's module graph: it imports the modules whose objects its
factories make (the heavier ones -- pool, managers, sharedctypes -- on first use) and nothing
below imports it. The start method itself is owned by :mod:`gilfree.process` (so that what
starts processes follows it without the contexts); ``DefaultContext`` is a view of it.
``fork`` is the default start method on Linux (functions defined in ``__main__`` or a notebook
work).
"""

import sys
from multiprocessing import context as _mpctx
from multiprocessing import reduction as _reduction
from multiprocessing.context import (AuthenticationError, BufferTooShort, ProcessError,
                                     TimeoutError)

from gilfree import connection as _connection
from gilfree import process as _process
from gilfree import queues as _queues

__all__ = ["BaseContext", "DefaultContext", "ForkContext", "SpawnContext", "ForkServerContext",
           "get_context", "get_start_method", "set_start_method", "get_all_start_methods",
           "ProcessError", "BufferTooShort", "TimeoutError", "AuthenticationError"]


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
        return _queues.Queue(maxsize, ctx=self.get_context())

    def JoinableQueue(self, maxsize=0):
        """A Queue with task_done() and join()."""
        return _queues.JoinableQueue(maxsize, ctx=self.get_context())

    def SimpleQueue(self):
        """A minimal queue: put, get, empty, close."""
        return _queues.SimpleQueue(ctx=self.get_context())

    def Pipe(self, duplex=True):
        """A pair of connected Connection objects (duplex: both ends send and receive)."""
        return _connection.Pipe(duplex)

    # ------------------------------------------------ pool, managers
    def Pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        """A process pool (gilfree.pool.Pool) using this context."""
        from gilfree.pool import Pool
        return Pool(processes, initializer, initargs, maxtasksperchild,
                    context=self.get_context())

    def Manager(self):
        """A started manager whose factories return gilfree shared objects."""
        from gilfree.managers import Manager
        return Manager(ctx=self.get_context())

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
        return list(_process.START_METHODS)


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
    """The context of the gilfree module itself: follows set_start_method() (whose state is
    gilfree.process's)."""

    Process = _process.Process

    def __init__(self, context):
        self._default_context = context

    def get_context(self, method=None):
        """The context in use (fixed at first use), or the one of start method `method`."""
        if method is None:
            return _concrete_contexts[_process._get_start_method()]
        return super().get_context(method)

    def set_start_method(self, method, force=False):
        """Set the default start method (once, unless force=True; None with force: unset)."""
        if method is not None:
            self.get_context(method)  # ValueError if unknown or unavailable
        _process._set_start_method(method, force)

    def get_start_method(self, allow_none=False):
        """The name of the default start method (None if unset and allow_none)."""
        return _process._get_start_method(allow_none)


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
