"""Managers with a server process: :class:`BaseManager` (``register()``, ``start()``,
``connect()``, ``get_server().serve_forever()``, ``shutdown()``), proxies, :class:`SyncManager`
with an address, and :class:`SharedMemoryManager` (re-exported by :mod:`gilfree.managers`).

This is the standard library's own machinery (:mod:`multiprocessing.managers`: its Server,
BaseManager, BaseProxy, proxy types and wire protocol), subclassed so that it runs on gilfree's
parts: the server listens on a gilfree :class:`~gilfree.connection.Listener`, clients and
proxies connect with gilfree's :func:`~gilfree.connection.Client` (messages framed in C), and
``start()`` runs the server in a gilfree :class:`~gilfree.Process`. The bytes on the wire are
the standard library's, so a Python ``multiprocessing`` client can use a gilfree manager
server and the other way round (the "manager on another machine" recipe works unchanged).

What changes against the standard library's server: authentication uses gilfree's handshake
(with a timeout; a client that fails it is dropped without being sent a traceback), and the
accepting thread survives a listener error instead of spinning.

Sockets: a manager listens only when it has a server. ``Manager()``, ``SyncManager()`` and
``SharedMemoryManager()`` without an address run no server at all (their objects live in
shared memory); a ``SyncManager(address=...)``, any subclass of ``SyncManager`` or
``BaseManager`` (their registered types live in the server), a ``SharedMemoryManager`` with an
address or registered types, and ``get_server()`` do. With no address they listen on an
AF_UNIX socket in a private directory (mode 0700), reachable by this user only and
authenticated with the authkey; pickle is trusted only between your own processes.
"""

import os
import queue
import threading
import time
from traceback import format_exc

from multiprocessing import managers as _mm
from multiprocessing import process, util
from multiprocessing.context import ProcessError
from multiprocessing.managers import (Array, Namespace, RemoteError, State, Token, Value,
                                      dispatch)

from gilfree import _sockets

__all__ = ["BaseManager", "SyncManager", "SharedMemoryManager", "BaseProxy", "Token",
           "RemoteError", "Server", "SharedMemoryServer", "AutoProxy", "MakeProxyType",
           "IteratorProxy", "AcquirerProxy", "ConditionProxy", "EventProxy", "BarrierProxy",
           "NamespaceProxy", "ValueProxy", "ListProxy", "DictProxy", "ArrayProxy", "PoolProxy",
           "listener_client"]

#: serializer name -> (Listener, Client), as multiprocessing.managers.listener_client
listener_client = {
    "pickle": (_sockets.Listener, _sockets.Client),
    "xmlrpclib": (_sockets.XmlListener, _sockets.XmlClient),
}


# ------------------------------------------------------------------ server

class Server(_mm.Server):
    """The standard library's manager server, listening on a gilfree Listener."""

    def __init__(self, registry, address, authkey, serializer):
        if not isinstance(authkey, bytes):
            raise TypeError("Authkey {0!r} is type {1!s}, not bytes".format(
                authkey, type(authkey)))
        self.registry = registry
        self.authkey = process.AuthenticationString(authkey)
        listener_cls = listener_client[serializer][0]
        self.listener = listener_cls(address=address, backlog=16)  # authenticated per request
        self.address = self.listener.address
        self.id_to_obj = {"0": (None, ())}
        self.id_to_refcount = {}
        self.id_to_local_proxy_obj = {}
        self.mutex = threading.Lock()

    def accepter(self):
        """Accept connections forever, each served by its own thread; stops when the listener
        is closed and keeps going (after a pause) on other errors, e.g. out of fds."""
        while True:
            try:
                c = self.listener.accept()
            except OSError:
                if getattr(self.listener, "_socket", True) is None:
                    return
                time.sleep(0.05)
                continue
            t = threading.Thread(target=self.handle_request, args=(c,))
            t.daemon = True
            t.start()

    def _handle_request(self, c):
        """Authenticate the peer (gilfree's handshake, with a timeout), then run one request
        as the standard library does. A peer that fails the handshake is dropped."""
        try:
            _sockets.deliver_challenge(c, self.authkey)
            _sockets.answer_challenge(c, self.authkey, _sockets.HANDSHAKE_TIMEOUT)
        except Exception as e:  # wrong key, garbage, hang-up, silence: not worth a reply
            util.info("manager server dropped a connection: %r", e)
            return
        request = None
        try:
            request = c.recv()
            ignore, funcname, args, kwds = request
            if funcname not in self.public:
                raise ValueError("%r unrecognized" % (funcname,))
            func = getattr(self, funcname)
        except Exception:
            msg = ("#TRACEBACK", format_exc())
        else:
            try:
                msg = ("#RETURN", func(c, *args, **kwds))
            except Exception:
                msg = ("#TRACEBACK", format_exc())
        try:
            c.send(msg)
        except Exception as e:
            try:
                c.send(("#TRACEBACK", format_exc()))
            except Exception:
                pass
            util.info("Failure to send message: %r", msg)
            util.info(" ... request was %r", request)
            util.info(" ... exception was %r", e)


# ------------------------------------------------------------------ proxies

class BaseProxy(_mm.BaseProxy):
    """The standard library's BaseProxy, connecting to its manager with gilfree's Client."""

    def __init__(self, token, serializer, manager=None, authkey=None, exposed=None,
                 incref=True, manager_owned=False):
        super().__init__(token, serializer, manager=manager, authkey=authkey, exposed=exposed,
                         incref=False, manager_owned=manager_owned)
        self._Client = listener_client[serializer][1]
        if incref:
            self._incref()

    def __reduce__(self):
        func, (cls, token, serializer, kwds) = super().__reduce__()
        if getattr(self, "_isauto", False):
            cls = AutoProxy
        return func, (cls, token, serializer, kwds)


def MakeProxyType(name, exposed, _cache={}):
    """A proxy type (a gilfree BaseProxy) with a method for each name in `exposed`."""
    exposed = tuple(exposed)
    key = (name, exposed)
    cls = _cache.get(key)
    if cls is None:
        cls = type(name, (_mm.MakeProxyType(name, exposed), BaseProxy), {})
        _cache[key] = cls
    return cls


def AutoProxy(token, serializer, manager=None, authkey=None, exposed=None, incref=True,
              manager_owned=False):
    """A proxy for `token` whose methods are the referent's exposed ones (asked from the
    server when `exposed` is None)."""
    client = listener_client[serializer][1]
    if exposed is None:
        conn = client(token.address, authkey=authkey)
        try:
            exposed = dispatch(conn, None, "get_methods", (token,))
        finally:
            conn.close()
    if authkey is None and manager is not None:
        authkey = manager._authkey
    if authkey is None:
        authkey = process.current_process().authkey
    proxy_type = MakeProxyType("AutoProxy[%s]" % token.typeid, exposed)
    proxy = proxy_type(token, serializer, manager=manager, authkey=authkey, incref=incref,
                       manager_owned=manager_owned)
    proxy._isauto = True
    return proxy


class IteratorProxy(_mm.IteratorProxy, BaseProxy):
    """Proxy of an iterator in the manager (next, send, throw, close)."""


class AcquirerProxy(_mm.AcquirerProxy, BaseProxy):
    """Proxy of a lock or semaphore in the manager (acquire, release, with)."""


class ConditionProxy(_mm.ConditionProxy, BaseProxy):
    """Proxy of a threading.Condition in the manager."""


class EventProxy(_mm.EventProxy, BaseProxy):
    """Proxy of a threading.Event in the manager."""


class BarrierProxy(_mm.BarrierProxy, BaseProxy):
    """Proxy of a threading.Barrier in the manager."""


class NamespaceProxy(_mm.NamespaceProxy, BaseProxy):
    """Proxy of a Namespace in the manager (attribute access is forwarded)."""


class ValueProxy(_mm.ValueProxy, BaseProxy):
    """Proxy of a Value in the manager (get, set, .value)."""


class ListProxy(_mm.ListProxy, BaseProxy):
    """Proxy of a list in the manager."""


class DictProxy(_mm.DictProxy, BaseProxy):
    """Proxy of a dict in the manager."""


class ArrayProxy(_mm.ArrayProxy, BaseProxy):
    """Proxy of an array in the manager."""


class PoolProxy(_mm.PoolProxy, BaseProxy):
    """Proxy of a process pool in the manager."""


# ------------------------------------------------------------------ managers

class BaseManager(_mm.BaseManager):
    """The standard library's BaseManager on gilfree's Listener/Client and Process: register
    types with :meth:`register`, then :meth:`start` a server process, :meth:`connect` to a
    running one, or run one in this process with ``get_server().serve_forever()``."""

    _registry = {}
    _Server = Server

    def __init__(self, address=None, authkey=None, serializer="pickle", ctx=None, *,
                 shutdown_timeout=1.0):
        if ctx is None:
            from gilfree import context
            ctx = context._default_context
        super().__init__(address, authkey, serializer, ctx, shutdown_timeout=shutdown_timeout)
        self._Listener, self._Client = listener_client[serializer]

    def _check_initial(self, what="server"):
        if self._state.value == State.STARTED:
            raise ProcessError("Already started %s" % what)
        if self._state.value == State.SHUTDOWN:
            raise ProcessError("Manager has shut down")
        if self._state.value != State.INITIAL:
            raise ProcessError("Unknown state {!r}".format(self._state.value))

    def get_server(self):
        """A server (with serve_forever() and address) for this manager's registered types,
        listening on the manager's address."""
        self._check_initial()
        return self._Server(self._registry, self._address, self._authkey, self._serializer)

    def connect(self):
        """Connect to the server already running at the manager's address."""
        conn = self._Client(self._address, authkey=self._authkey)
        try:
            dispatch(conn, None, "dummy")
        finally:
            conn.close()
        self._state.value = State.STARTED

    @classmethod
    def register(cls, typeid, callable=None, proxytype=None, exposed=None,
                 method_to_typeid=None, create_method=True):
        """Register a type (or a callable returning the object) as `typeid`; with
        create_method, manager.<typeid>(...) creates one in the server and returns a proxy
        (an AutoProxy unless `proxytype` is given)."""
        super().register(typeid, callable, proxytype or AutoProxy, exposed, method_to_typeid,
                         create_method)
        if create_method:
            getattr(cls, typeid).__doc__ = ("Create a %r object in the manager's server and "
                                            "return a proxy for it." % (typeid,))


class _SyncManagerType(type):
    """SyncManager() without an address is gilfree's shared-memory manager (no server, no
    socket); with an address, or as a base class, it is the server-backed manager."""

    def __call__(cls, address=None, *args, **kwds):
        if cls is SyncManager and address is None:
            from gilfree.managers import LocalSyncManager
            return LocalSyncManager(None, *args, **kwds)
        return super().__call__(address, *args, **kwds)

    def __instancecheck__(cls, obj):
        if cls is SyncManager:
            from gilfree.managers import LocalSyncManager
            if isinstance(obj, LocalSyncManager):
                return True
        return super().__instancecheck__(obj)


def _make_pool(*args, **kwds):
    """A gilfree Pool, made in the server process."""
    from gilfree.pool import Pool
    return Pool(*args, **kwds)


class SyncManager(BaseManager, metaclass=_SyncManagerType):
    """The standard library's SyncManager, served by a gilfree server process: its queues,
    locks, events, dicts, lists, ... live in the server and are used through proxies.
    ``SyncManager()`` with no address (and ``Manager()``) returns gilfree's shared-memory
    manager instead, which needs no server."""


for _typeid, _callable, _proxy in [
        ("Queue", queue.Queue, None), ("JoinableQueue", queue.Queue, None),
        ("Event", threading.Event, EventProxy), ("Lock", threading.Lock, AcquirerProxy),
        ("RLock", threading.RLock, AcquirerProxy),
        ("Semaphore", threading.Semaphore, AcquirerProxy),
        ("BoundedSemaphore", threading.BoundedSemaphore, AcquirerProxy),
        ("Condition", threading.Condition, ConditionProxy),
        ("Barrier", threading.Barrier, BarrierProxy), ("Pool", _make_pool, PoolProxy),
        ("list", list, ListProxy), ("dict", dict, DictProxy), ("Value", Value, ValueProxy),
        ("Array", Array, ArrayProxy), ("Namespace", Namespace, NamespaceProxy)]:
    SyncManager.register(_typeid, _callable, _proxy)
SyncManager.register("Iterator", proxytype=IteratorProxy, create_method=False)
SyncManager.register("AsyncResult", create_method=False)
del _typeid, _callable, _proxy


# ------------------------------------------------------------------ shared memory

class _SharedMemoryTracker(_mm._SharedMemoryTracker):
    """The blocks a SharedMemoryManager made (gilfree shared memory), unlinked at shutdown
    (by the process that made the tracker only: a forked child's copy unlinks nothing)."""

    def __init__(self, name, segment_names=None):
        # a list of its own: the standard library's default list is shared by all trackers
        super().__init__(name, [] if segment_names is None else segment_names)
        self._pid = os.getpid()

    def __del__(self):
        if getattr(self, "_pid", None) == os.getpid():
            self.unlink()

    def __setstate__(self, state):
        self.__init__(*state)

    def destroy_segment(self, segment_name):
        """Unlink the block and stop tracking it."""
        from gilfree.shared_memory import SharedMemory
        self.segment_names.remove(segment_name)
        try:
            segment = SharedMemory(segment_name)
        except FileNotFoundError:  # already unlinked by its user
            return
        segment.close()
        segment.unlink()


class SharedMemoryServer(_mm.SharedMemoryServer, Server):
    """The standard library's SharedMemoryServer (tracks blocks, unlinks them at shutdown) on
    a gilfree server, for gilfree's shared memory."""

    def __init__(self, *args, **kwargs):
        Server.__init__(self, *args, **kwargs)
        address = self.address
        if isinstance(address, bytes):
            address = os.fsdecode(address)
        self.shared_memory_context = _SharedMemoryTracker(f"shm_{address}_{os.getpid()}")


class SharedMemoryManager(BaseManager):
    """:class:`multiprocessing.managers.SharedMemoryManager` for gilfree's shared memory:
    ``SharedMemory(size)`` and ``ShareableList(seq)`` make blocks that ``shutdown()`` (or the
    end of ``with``) unlinks. Without an address and registered types it runs no server (the
    blocks are tracked by the manager object itself, and unlinked at exit too); with either
    it is the server-backed manager of the standard library."""

    _Server = SharedMemoryServer

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._local = self._address is None and not type(self)._registry
        self._tracker = None

    def start(self, initializer=None, initargs=()):
        """Start the server (or, for a manager without one, just mark it started)."""
        if not self._local:
            return super().start(initializer, initargs)
        self._check_initial()
        if initializer is not None:
            if not callable(initializer):
                raise TypeError("initializer must be a callable")
            initializer(*initargs)
        self._tracker = _SharedMemoryTracker("shm_local_%d" % os.getpid())
        self._state.value = State.STARTED
        self.shutdown = util.Finalize(self, _shutdown_local, args=(self._tracker, self._state),
                                      exitpriority=0)

    def join(self, timeout=None):
        """Wait for the server process (no-op without a server)."""
        if not self._local:
            super().join(timeout)

    def _check_started(self):
        if self._state.value != State.STARTED:  # ValueError: what the stdlib's raises here
            raise ValueError("SharedMemoryManager is not started (call start(), or use with)")

    def _track(self, name):
        if self._local:
            self._tracker.register_segment(name)
            return
        with self._Client(self._address, authkey=self._authkey) as conn:
            dispatch(conn, None, "track_segment", (name,))

    def SharedMemory(self, size):
        """A new gilfree SharedMemory block of `size` bytes, unlinked at shutdown."""
        from gilfree.shared_memory import SharedMemory
        self._check_started()
        sms = SharedMemory(None, create=True, size=size)
        try:
            self._track(sms.name)
        except BaseException:
            sms.unlink()
            raise
        return sms

    def ShareableList(self, sequence):
        """A new gilfree ShareableList holding `sequence`, unlinked at shutdown."""
        from gilfree.shared_memory import ShareableList
        self._check_started()
        sl = ShareableList(sequence)
        try:
            self._track(sl.shm.name)
        except BaseException:
            sl.shm.unlink()
            raise
        return sl


def _shutdown_local(tracker, state):
    tracker.unlink()
    state.value = State.SHUTDOWN
