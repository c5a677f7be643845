"""Pipes over gilfree shared-memory rings, and connections over sockets (the
:mod:`multiprocessing.connection` API).

``Pipe(duplex=True)`` returns two :class:`Connection` objects. Differences from the standard
library:

* Messages go through shared memory (no system call per message when nobody sleeps).
* ``recv()`` / ``poll()`` see EOF when every process holding the other end has closed it,
  exited or been killed (SIGKILL included): the holders of each end are tracked in shared
  memory (a fork registers the child for every connection it inherits).
* A Connection can be sent through a gilfree Queue or Pipe to a process that is already
  running. Each pickle of a connection may be loaded once.
* ``fileno()`` is an eventfd that is readable while messages are queued (or at EOF after a
  close). It exists in the process that created the pipe and its forked children; use
  :func:`wait` (which also handles connections without a usable fd and peers that died).

``Listener``, ``Client``, ``SocketConnection``, ``answer_challenge``, ``deliver_challenge``,
``families``, ``address_type``, ``arbitrary_address`` (and ``Connection(fd)``, which wraps a
socket fd) are the standard library's socket connections, wire-compatible with it, framed in
C: see :mod:`gilfree._sockets` (imported on first use, so that ``import gilfree`` stays light).
"""

import selectors
import time

from gilfree import _core
from gilfree._lazy import lazy_attributes as _lazy_attributes

__all__ = ["Pipe", "Connection", "wait", "Listener", "Client", "SocketConnection"]

# Names defined by gilfree._sockets, imported when first used (PEP 562).
_SOCKET_NAMES = frozenset({
    "Listener", "Client", "SocketConnection", "MessageTruncatedError", "families",
    "default_family", "address_type", "arbitrary_address", "answer_challenge",
    "deliver_challenge", "XmlListener", "XmlClient", "ConnectionWrapper", "BUFSIZE",
    "CONNECTION_TIMEOUT", "HANDSHAKE_TIMEOUT", "CHALLENGE_TIMEOUT", "MESSAGE_LENGTH", "CHALLENGE", "WELCOME",
    "FAILURE"})


__getattr__ = _lazy_attributes(globals(), _SOCKET_NAMES, "gilfree._sockets")


def __dir__():
    return sorted(set(globals()) | _SOCKET_NAMES)

# How often wait() re-checks connections whose peer may have died without closing.
_WAIT_SLICE = 0.05


class Connection(_core.Ring):
    """One end of a gilfree Pipe: send/recv, send_bytes/recv_bytes/recv_bytes_into, poll.

    ``Connection(handle, readable=True, writable=True)`` wraps a socket (or stream) file
    descriptor, as the standard library's does, and returns a :class:`SocketConnection`."""

    __slots__ = ("__weakref__",)

    def __new__(cls, *args, **kwargs):
        if not args and "handle" not in kwargs:
            raise TypeError("Connection objects are created by gilfree.Pipe(), or "
                            "Connection(handle) for a socket fd")
        from gilfree._sockets import SocketConnection
        return SocketConnection(*args, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else (
            "duplex" if self.readable and self.writable else
            "read-only" if self.readable else "write-only")
        return "<gilfree.connection.Connection %s at %#x>" % (state, id(self))


def Pipe(duplex=True):
    """Return (conn1, conn2). duplex=False: conn1 can only receive, conn2 only send."""
    return _core._pipe(Connection, bool(duplex))


def _ready_now(obj):
    try:
        return obj.poll(0)
    except OSError:  # closed: reported as ready, like a closed fd would be by select()
        return True


def wait(object_list, timeout=None):
    """Wait till an object in object_list is ready; return the list of those that are.

    Accepts gilfree Connections and Queues (ready when a message is waiting or, for
    Connections, at EOF) mixed with anything :func:`multiprocessing.connection.wait` accepts
    (objects with fileno(), integer fds, process sentinels). timeout None waits forever.
    """
    object_list = list(object_list)
    ours = [o for o in object_list if isinstance(o, _core.Ring)]
    others = [o for o in object_list if not isinstance(o, _core.Ring)]
    deadline = None if timeout is None else time.monotonic() + max(float(timeout), 0.0)

    ready = [o for o in ours if _ready_now(o)]
    if ready and not others:
        return ready

    with selectors.DefaultSelector() as sel:
        need_slices = False
        for o in others:
            sel.register(o, selectors.EVENT_READ)
        for o in ours:
            try:
                fd = o.fileno()
            except OSError:
                need_slices = True  # no fd in this process: poll it every slice
                continue
            sel.register(fd, selectors.EVENT_READ, o)
            if isinstance(o, Connection):
                need_slices = True  # a peer may die without closing: re-check every slice
        while True:
            if deadline is None:
                t = None
            else:
                t = max(deadline - time.monotonic(), 0.0)
            if ready:
                t = 0.0
            if need_slices and (t is None or t > _WAIT_SLICE):
                t = _WAIT_SLICE
            events = sel.select(t)
            for key, _ in events:
                if key.data is None and key.fileobj not in ready:
                    ready.append(key.fileobj)
            for o in ours:
                if o not in ready and _ready_now(o):
                    ready.append(o)
            if ready:
                return [o for o in object_list if o in ready]
            if deadline is not None and time.monotonic() >= deadline:
                return []
