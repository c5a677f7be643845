"""Managers without a server process.

``multiprocessing.Manager()`` starts a server process and hands out proxies that forward every
operation over a socket (tens of microseconds each). gilfree's objects already live in shared
memory and can be passed to running processes, so :func:`Manager` returns a
:class:`SharedMemoryManager`-like object whose factories return gilfree objects directly:

==================  ============================================================
``dict()``          :class:`gilfree.SharedDict`
``list()``          :class:`gilfree.SharedList`
``Namespace()``     :class:`Namespace` (attributes kept in a SharedDict)
``Queue()`` ...     gilfree ``Queue``, ``JoinableQueue``, ``Lock``, ``RLock``, ``Semaphore``,
                    ``BoundedSemaphore``, ``Condition``, ``Event``, ``Barrier``, ``Value``,
                    ``Array``, ``Pool``
==================  ============================================================

The usual life-cycle API is kept (``with Manager() as m:``, ``start()``, ``shutdown()``,
``connect()``, ``join()``) but does nothing costly: the objects live as long as some process
holds them (they are reference-counted in the arena), not as long as the manager. Differences
from proxies: values are copied in and out (``d['k'].append(1)`` changes a copy, as with a
manager proxy); ``d.keys()`` / ``values()`` / ``items()`` return lists (as DictProxy does).
"""

from collections.abc import MutableMapping, MutableSequence

from gilfree import _core
from gilfree._lazy import lazy_attributes as _lazy_attributes

__all__ = ["Manager", "SyncManager", "SharedMemoryManager", "SharedDict", "SharedList",
           "Namespace", "LocalSyncManager", "BaseManager", "BaseProxy", "Token", "RemoteError",
           "AutoProxy", "MakeProxyType"]


class SharedDict(_core.SharedDict):
    """A dict in shared memory (see ``gilfree._core.SharedDict``)."""
    __slots__ = ()


class SharedList(_core.SharedList):
    """A list in shared memory (see ``gilfree._core.SharedList``)."""
    __slots__ = ()


MutableMapping.register(_core.SharedDict)
MutableSequence.register(_core.SharedList)


class Namespace:
    """An object whose attributes live in shared memory (a SharedDict)."""

    __slots__ = ("_d",)

    def __init__(self, **kwds):
        object.__setattr__(self, "_d", SharedDict(kwds))

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        try:
            return self._d[name]
        except KeyError:
            raise AttributeError(f"'Namespace' object has no attribute '{name}'") from None

    def __setattr__(self, name, value):
        self._d[name] = value

    def __delattr__(self, name):
        try:
            del self._d[name]
        except KeyError:
            raise AttributeError(name) from None

    def __reduce__(self):
        return (_rebuild_namespace, (self._d,))

    def __repr__(self):
        items = sorted(self._d.items(), key=lambda kv: str(kv[0]))
        return "Namespace(%s)" % ", ".join("%s=%r" % kv for kv in items
                                           if not str(kv[0]).startswith("_"))

    def __eq__(self, other):
        if isinstance(other, Namespace):
            return self._d.copy() == other._d.copy()
        return NotImplemented


def _rebuild_namespace(d):
    ns = object.__new__(Namespace)
    object.__setattr__(ns, "_d", d)
    return ns


class LocalSyncManager:
    """A manager whose objects live in gilfree's shared memory (no server process)."""

    def __init__(self, address=None, authkey=None, serializer="pickle", ctx=None, *,
                 shutdown_timeout=1.0):
        if ctx is None:
            from gilfree import context
            ctx = context._default_context
        self._ctx = ctx
        self._state = "initial"
        self.address = address

    # ------------------------------------------------ life cycle (cheap no-ops)
    def start(self, initializer=None, initargs=()):
        """Run initializer(*initargs) if given; there is no server process to start."""
        if self._state == "started":
            raise RuntimeError("Already started manager")
        if initializer is not None:
            initializer(*initargs)
        self._state = "started"

    def connect(self):
        """Mark the manager started: there is no server to connect to."""
        self._state = "started"

    def get_server(self):
        """Not supported: a gilfree manager has no server (raises)."""
        raise NotImplementedError("gilfree managers have no server process")

    def shutdown(self):
        """Mark the manager shut down (the shared objects stay valid while referenced)."""
        self._state = "shutdown"

    def join(self, timeout=None):
        """No-op: there is no server process to wait for."""
        pass

    def __enter__(self):
        if self._state == "initial":
            self.start()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.shutdown()

    @classmethod
    def register(cls, typeid, callable=None, proxytype=None, exposed=None,
                 method_to_typeid=None, create_method=True):
        """Register `callable` as a factory method `typeid` (it runs in the caller)."""
        if callable is not None and create_method:
            def factory(self, *args, **kwds):
                return callable(*args, **kwds)
            factory.__name__ = typeid
            setattr(cls, typeid, factory)

    # ------------------------------------------------ factories
    def dict(self, *args, **kwds):
        """A SharedDict built like dict(*args, **kwds)."""
        return SharedDict(*args, **kwds)

    def list(self, sequence=()):
        """A SharedList holding the items of `sequence`."""
        return SharedList(sequence)

    def Namespace(self, **kwds):
        """A Namespace whose attributes live in shared memory."""
        return Namespace(**kwds)

    def Queue(self, maxsize=0):
        """A gilfree Queue."""
        return self._ctx.Queue(maxsize)

    def JoinableQueue(self, maxsize=0):
        """A gilfree JoinableQueue."""
        return self._ctx.JoinableQueue(maxsize)

    def Lock(self):
        """A gilfree Lock."""
        return self._ctx.Lock()

    def RLock(self):
        """A gilfree RLock."""
        return self._ctx.RLock()

    def Semaphore(self, value=1):
        """A gilfree Semaphore."""
        return self._ctx.Semaphore(value)

    def BoundedSemaphore(self, value=1):
        """A gilfree BoundedSemaphore."""
        return self._ctx.BoundedSemaphore(value)

    def Condition(self, lock=None):
        """A gilfree Condition (over a new RLock by default)."""
        return self._ctx.Condition(lock)

    def Event(self):
        """A gilfree Event."""
        return self._ctx.Event()

    def Barrier(self, parties, action=None, timeout=None):
        """A gilfree Barrier."""
        return self._ctx.Barrier(parties, action, timeout)

    def Value(self, typecode, value, lock=True):
        """A synchronized shared ctypes value (gilfree.Value)."""
        return self._ctx.Value(typecode, value, lock=lock)

    def Array(self, typecode, sequence, lock=True):
        """A synchronized shared ctypes array (gilfree.Array)."""
        return self._ctx.Array(typecode, sequence, lock=lock)

    def Pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        """A gilfree Pool."""
        return self._ctx.Pool(processes, initializer, initargs, maxtasksperchild)

    # SharedMemoryManager API
    def SharedMemory(self, size):
        """A new gilfree SharedMemory block of `size` bytes."""
        from gilfree.shared_memory import SharedMemory
        return SharedMemory(create=True, size=size)

    def ShareableList(self, sequence):
        """A new gilfree ShareableList holding `sequence`."""
        from gilfree.shared_memory import ShareableList
        return ShareableList(sequence)


def Manager(*, ctx=None):
    """A started :class:`SyncManager` (``with Manager() as m:`` works as in multiprocessing)."""
    m = LocalSyncManager(ctx=ctx)
    m.start()
    return m


# Server-backed managers (BaseManager, register(), remote use; SyncManager(address=...) and
# subclasses; SharedMemoryManager): gilfree._managers_server, imported on first use. Without
# an address, SyncManager() is LocalSyncManager (see its metaclass there).
_SERVER_NAMES = frozenset({
    "BaseManager", "SyncManager", "SharedMemoryManager", "BaseProxy", "Token", "RemoteError",
    "AutoProxy", "MakeProxyType", "Server", "SharedMemoryServer", "IteratorProxy",
    "AcquirerProxy", "ConditionProxy", "EventProxy", "BarrierProxy", "NamespaceProxy",
    "ValueProxy", "ListProxy", "DictProxy", "ArrayProxy", "PoolProxy", "listener_client",
    "dispatch"})


__getattr__ = _lazy_attributes(globals(), _SERVER_NAMES, "gilfree._managers_server")
