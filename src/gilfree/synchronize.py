"""Synchronisation primitives, as :mod:`multiprocessing.synchronize`, on gilfree's C core.

``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Event``, ``Condition``, ``Barrier``
live in the process tree's shared-memory arena (futex words: no named semaphores, nothing left
in /dev/shm). Differences from the standard library, all additions:

* Every wait releases the GIL and is interruptible by Ctrl-C.
* They can be sent to a process that is already running (through a gilfree Queue or Pipe),
  not only passed at creation.
* A Lock or RLock whose holder died (SIGKILL included) does not deadlock: the next ``acquire``
  takes it over, releases it and raises :class:`gilfree.OwnerDeadError`; the one after that
  works normally.
* A negative timeout raises ValueError (the standard library silently treats it as 0).

As the standard library's, they can be weakly referenced.
"""

import sys
import threading
import time

from multiprocessing import process as _mp_process

from gilfree import _core

__all__ = ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event", "Barrier"]

SEM_VALUE_MAX = _core.SEM_VALUE_MAX


def _holder_name():
    name = _mp_process.current_process().name
    if threading.current_thread().name != "MainThread":
        name += "|" + threading.current_thread().name
    return name


class Lock(_core.Mutex):
    """A non-recursive lock. acquire(block=True, timeout=None) -> bool; release() (by any
    process or thread; ValueError if it is not locked); usable with ``with``."""

    __slots__ = ("__weakref__",)

    def __new__(cls, *, ctx=None):
        return _core.Mutex.__new__(cls, False)

    def __repr__(self):
        try:
            if self._is_mine():
                name = _holder_name()
            elif self._get_value() == 1:
                name = "None"
            else:
                name = "SomeOtherProcess"
        except Exception:
            name = "unknown"
        return "<%s(owner=%s)>" % (self.__class__.__name__, name)


class RLock(_core.Mutex):
    """A recursive lock: the owning thread may acquire it again; only it may release it
    (AssertionError otherwise)."""

    __slots__ = ("__weakref__",)

    def __new__(cls, *, ctx=None):
        return _core.Mutex.__new__(cls, True)

    def __repr__(self):
        try:
            if self._is_mine():
                name, count = _holder_name(), self._count()
            elif self._get_value() == 1:
                name, count = "None", 0
            else:
                name, count = "SomeOtherProcess", "nonzero"
        except Exception:
            name, count = "unknown", "unknown"
        return "<%s(%s, %s)>" % (self.__class__.__name__, name, count)


class Semaphore(_core.Semaphore):
    """A counting semaphore. acquire(block=True, timeout=None) -> bool, release(),
    get_value()."""

    __slots__ = ("__weakref__",)

    def __new__(cls, value=1, *, ctx=None):
        return _core.Semaphore.__new__(cls, value, 0)

    def __repr__(self):
        try:
            value = self.get_value()
        except Exception:
            value = "unknown"
        return "<%s(value=%s)>" % (self.__class__.__name__, value)


class BoundedSemaphore(Semaphore):
    """A semaphore that may not be released above its initial value (ValueError)."""

    __slots__ = ()

    def __new__(cls, value=1, *, ctx=None):
        return _core.Semaphore.__new__(cls, value, value)

    def __repr__(self):
        try:
            value = self.get_value()
        except Exception:
            value = "unknown"
        return "<%s(value=%s, maxvalue=%s)>" % (self.__class__.__name__, value, self.maxvalue)


class Condition(_core.Condition):
    """A condition variable over a gilfree Lock or RLock (a new RLock if lock is None).
    wait(timeout=None) -> bool, wait_for(predicate, timeout=None), notify(n=1), notify_all()."""

    __slots__ = ("__weakref__",)

    def __new__(cls, lock=None, *, ctx=None):
        return _core.Condition.__new__(cls, lock if lock is not None else RLock())

    def wait_for(self, predicate, timeout=None):
        """Wait until predicate() is true (or timeout); return its last value."""
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result

    def __repr__(self):
        try:
            num_waiters = self._n_waiting()
        except Exception:
            num_waiters = "unknown"
        return "<%s(%s, %s)>" % (self.__class__.__name__, self._lock, num_waiters)


class Event(_core.Event):
    """An event flag: is_set(), set(), clear(), wait(timeout=None) -> bool."""

    __slots__ = ("__weakref__",)

    def __new__(cls, *, ctx=None):
        return _core.Event.__new__(cls)

    def __repr__(self):
        set_status = "set" if self.is_set() else "unset"
        return f"<{type(self).__qualname__} at {id(self):#x} {set_status}>"


class Barrier(threading.Barrier):
    """threading.Barrier's algorithm over a shared Condition and shared state (as
    multiprocessing.Barrier): wait(timeout=None) -> arrival index, reset(), abort(), parties,
    n_waiting, broken; threading.BrokenBarrierError."""

    def __init__(self, parties, action=None, timeout=None, *, ctx=None):
        if parties < 1:
            raise ValueError("parties must be >= 1")
        wrapper = _core.SharedBuffer(8)
        cond = Condition()
        self.__setstate__((parties, action, timeout, cond, wrapper))
        self._state = 0
        self._count = 0

    def __setstate__(self, state):
        (self._parties, self._action, self._timeout, self._cond, self._wrapper) = state
        self._array = memoryview(self._wrapper).cast("i")

    def __getstate__(self):
        return (self._parties, self._action, self._timeout, self._cond, self._wrapper)

    @property
    def _state(self):
        return self._array[0]

    @_state.setter
    def _state(self, value):
        self._array[0] = value

    @property
    def _count(self):
        return self._array[1]

    @_count.setter
    def _count(self, value):
        self._array[1] = value

    def __repr__(self):
        cls = self.__class__
        if self.broken:
            return f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}: broken>"
        return (f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}:"
                f" waiters={self.n_waiting}/{self.parties}>")


del sys
