"""Passing file descriptors and sockets to other processes, as
:mod:`multiprocessing.resource_sharer`.

A socket :class:`gilfree.connection.Connection` pickled into a message (to a process of the
tree, through a gilfree Queue or Pipe) travels as a ``DupFd``: the sending process keeps a
duplicate of the descriptor and hands it to the receiver on request over a private AF_UNIX
socket, as the standard library does. This module *is* the standard library's resource sharer
(``DupFd``, ``stop``): the same objects, so that pickles made by either refer to
one class, and ``stop()`` ends the same sharer thread.
"""

from multiprocessing.resource_sharer import DupFd, stop  # noqa: F401

__all__ = ["DupFd", "stop"]
