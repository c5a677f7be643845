"""The multiprocessing API on threads, as :mod:`multiprocessing.dummy`.

``Process`` is a thread, ``Queue`` a :class:`queue.Queue`, the locks are :mod:`threading`'s,
``Pool`` is a :class:`multiprocessing.pool.ThreadPool`, ``Manager()`` returns this module (whose
``dict``, ``list``, ``Namespace``, ``Value`` and ``Array`` are plain in-process objects). Nothing
here crosses a process boundary, so gilfree's shared-memory types have nothing to add: these are
the standard library's own objects, re-exported so that ``import gilfree as multiprocessing``
programs that use ``multiprocessing.dummy`` keep working.
"""

import sys

from multiprocessing.dummy import (Array, Barrier, BoundedSemaphore, Condition,  # noqa: F401
                                   DummyProcess, Event, JoinableQueue, Lock, Namespace, Pool,
                                   Process, Queue, RLock, Semaphore, Value, active_children,
                                   current_process, freeze_support, shutdown)
from multiprocessing.dummy import dict, list  # noqa: F401,A004  (the builtins, as there)

from gilfree.dummy import connection  # noqa: F401
from gilfree.dummy.connection import Pipe  # noqa: F401

__all__ = ["Process", "current_process", "active_children", "freeze_support", "Lock", "RLock",
           "Semaphore", "BoundedSemaphore", "Condition", "Event", "Barrier", "Queue",
           "Manager", "Pipe", "Pool", "JoinableQueue"]


def Manager():
    """This module: its factories (dict, list, Namespace, Queue, Lock, ...) make thread-shared
    objects."""
    return sys.modules[__name__]
