"""Queues over gilfree shared-memory rings: Queue, SimpleQueue, JoinableQueue.

Same API and semantics as :mod:`multiprocessing.queues`, with these differences:

* ``put()`` never needs a feeder thread: the object is encoded and copied into shared memory
  before ``put()`` returns, so an unpicklable object raises in ``put()`` and nothing is
  enqueued; ``join_thread()`` / ``cancel_join_thread()`` have nothing to wait for.
* ``put_many(items)`` / ``get_many(max_items)`` move batches with one lock round trip.
* A queue can be sent through another queue or a pipe to a process that is already running
  (the standard library refuses). Each pickle of a queue may be loaded once.
* An object that fails to unpickle in ``get()`` raises there; that message is consumed and
  the queue stays usable. In ``get_many()`` the items before and after it are returned and the
  error is raised by the next ``get``/``get_many`` call.
* Large bytes-like pickle buffers (numpy arrays, ...) travel out of band: copied once into
  shared memory and received without another copy (the arrays are backed by shared memory).
* ``queue.Empty`` / ``queue.Full`` are the standard library's.
"""

import types

from gilfree import _core

__all__ = ["Queue", "SimpleQueue", "JoinableQueue"]


class Queue(_core.Ring):
    """Queue(maxsize=0): a multi-producer multi-consumer FIFO shared between processes.

    ``maxsize <= 0`` means unbounded (only shared memory limits it)."""

    __slots__ = ("__weakref__",)

    def __new__(cls, maxsize=0, *, ctx=None, capacity=0):
        return super().__new__(cls, maxsize, capacity=capacity, mode=0)

    def join_thread(self):
        """Nothing to join (no feeder thread); the queue must be closed, as in the stdlib."""
        assert self.closed, "Queue {0!r} not closed".format(self)

    def cancel_join_thread(self):
        """Nothing to cancel: put() completes into shared memory."""

    __class_getitem__ = classmethod(types.GenericAlias)


class JoinableQueue(Queue):
    """A Queue with task_done() and join(), counted in shared memory across processes."""

    __slots__ = ()

    def __new__(cls, maxsize=0, *, ctx=None, capacity=0):
        return _core.Ring.__new__(cls, maxsize, capacity=capacity, tasks=True, mode=0)


class SimpleQueue(_core.Ring):
    """SimpleQueue(): an unbounded queue with get(), put(), empty() and close()."""

    __slots__ = ("__weakref__",)

    def __new__(cls, *, ctx=None, capacity=0):
        return super().__new__(cls, 0, capacity=capacity, mode=1)

    __class_getitem__ = classmethod(types.GenericAlias)
