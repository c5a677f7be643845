"""Thread-backed connections, as :mod:`multiprocessing.dummy.connection`: ``Pipe``,
``Listener``, ``Client`` and ``Connection`` over in-process queues (the standard library's
objects: nothing here crosses a process boundary)."""

from multiprocessing.dummy.connection import (Client, Connection, Listener, Pipe,  # noqa: F401
                                              families)

__all__ = ["Client", "Listener", "Pipe"]
