"""Pickling and handle passing, as :mod:`multiprocessing.reduction`.

``ForkingPickler``, ``register``, ``dump``, ``DupFd``, ``sendfds`` / ``recvfds`` are the standard
library's own objects: gilfree's transport pickles with ``ForkingPickler``'s registered reducers
(a reducer registered here applies to gilfree's Queue, Pipe and Pool payloads too).

``send_handle(conn, fd, destination_pid)`` / ``recv_handle(conn)`` pass a file descriptor to
another process. Over a socket connection (one whose ``fileno()`` is an AF_UNIX socket) they are
the standard library's (SCM_RIGHTS on that socket). A gilfree ``Pipe`` is shared memory, which
cannot carry a descriptor: the sender then sends a :func:`DupFd` of the descriptor through the
pipe -- the standard library's resource sharer, which keeps a duplicate and hands it over an
AF_UNIX socket, authenticated with the process tree's authkey, to the process that asks for it
-- and ``recv_handle`` receives it and returns the new descriptor. The descriptor may be closed
by the sender as soon as ``send_handle`` returns.
"""

import socket

from multiprocessing import reduction as _std
from multiprocessing.reduction import (HAVE_SEND_HANDLE, AbstractReducer,  # noqa: F401
                                       DupFd, ForkingPickler, dump, recvfds, register,
                                       sendfds)

from gilfree import _core

__all__ = ["send_handle", "recv_handle", "ForkingPickler", "register", "dump", "DupFd",
           "sendfds", "recvfds"]


def _is_shared_memory(conn):
    """True for a gilfree Connection (a ring in shared memory, not a socket)."""
    return isinstance(conn, _core.Ring)


def send_handle(conn, handle, destination_pid):
    """Send file descriptor `handle` over connection `conn` to process `destination_pid`
    (which receives it with :func:`recv_handle`)."""
    if not _is_shared_memory(conn):
        return _std.send_handle(conn, handle, destination_pid)
    conn.send(DupFd(handle))


def recv_handle(conn):
    """Receive a file descriptor sent with :func:`send_handle`; returns the new descriptor
    (RuntimeError if the message is not a descriptor, EOFError if the peer closed)."""
    if not _is_shared_memory(conn):
        return _std.recv_handle(conn)
    obj = conn.recv()
    detach = getattr(obj, "detach", None)
    if detach is None:
        raise RuntimeError("received %r, not a file descriptor" % (type(obj).__name__,))
    fd = detach()
    if isinstance(fd, socket.socket):  # never sent by send_handle; be exact about the type
        raise RuntimeError("received a socket, not a file descriptor")
    return fd
