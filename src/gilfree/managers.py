"""Managers without a server process.

``multiprocessing.Manager()`` starts a server process and hands out proxies that forward every
operation over a socket (tens of microseconds each). gilfree's objects already live in shared
memory and can be passed to running processes, so :func:`Manager` returns a
:class:`LocalSyncManager` whose factories return gilfree objects directly:

==================  ============================================================
``dict()``          :class:`gilfree.SharedDict`
``list()``          :class:`gilfree.SharedList`
``Namespace()``     :class:`Namespace` (attributes kept in a SharedDict)
``Value()``         :class:`Value` (one object in shared memory: .value, get(), set())
``Lock()``          :class:`Lock` / :class:`RLock`: gilfree locks with threading's errors
``Queue()`` ...     gilfree ``Queue``, ``JoinableQueue``, ``Semaphore``,
                    ``BoundedSemaphore``, ``Condition``, ``Event``, ``Barrier``,
                    ``Array``, ``Pool``
==================  ============================================================

The usual life-cycle API is kept (``with Manager() as m:``, ``start()``, ``shutdown()``,
``connect()``, ``join()``) but does nothing costly: the objects live as long as some process
holds them (they are reference-counted in the arena), not as long as the manager. Differences
from proxies: values are copied in and out (``d['k'].append(1)`` changes a copy, as with a
manager proxy); ``d.keys()`` / ``values()`` / ``items()`` return lists (as DictProxy does).

Server-backed managers (``BaseManager`` with ``register()``, ``SyncManager(address=...)`` and its
subclasses, remote use over TCP, ``SharedMemoryManager``) live in :mod:`gilfree._managers_server`
and are imported on first use of their names here; nothing listens on a socket unless a manager
is given an address or started as a server.
"""

from gilfree import queues as _queues
from gilfree import synchronize as _sync
from gilfree._lazy import lazy_attributes as _lazy_attributes
from gilfree.containers import SharedDict, SharedList

__all__ = ["Manager", "SyncManager", "SharedMemoryManager", "SharedDict", "SharedList",
           "Namespace", "Value", "LocalSyncManager", "BaseManager", "BaseProxy", "Token",
           "RemoteError", "AutoProxy", "MakeProxyType"]


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


class Value:
    """What ``SyncManager.Value(typecode, value)`` returns: a holder of one picklable object
    in shared memory (``.value``, ``get()``, ``set(v)``), as the standard library's ValueProxy.
    `typecode` is kept for repr only: like the standard library's manager, any object may be
    stored (``Value('c', 'hello')``). Picklable to any process of the tree."""

    __slots__ = ("_typecode", "_cell")

    def __init__(self, typecode, value, lock=True):
        self._typecode = typecode
        self._cell = SharedList([value])

    def get(self):
        """The current value."""
        return self._cell[0]

    def set(self, value):
        """Replace the value."""
        self._cell[0] = value

    value = property(get, set, doc="The current value.")

    def __reduce__(self):
        return (_rebuild_value, (self._typecode, self._cell))

    def __repr__(self):
        return "%s(%r, %r)" % (type(self).__name__, self._typecode, self.get())


def _rebuild_value(typecode, cell):
    v = object.__new__(Value)
    v._typecode = typecode
    v._cell = cell
    return v


class Lock(_sync.Lock):
    """What ``SyncManager.Lock()`` returns: a gilfree Lock whose ``release()`` of an unlocked
    lock raises RuntimeError, as the standard library manager's ``threading.Lock`` does
    (``multiprocessing.Lock`` raises ValueError)."""

    __slots__ = ()

    def release(self):
        """Release the lock (by any process or thread); RuntimeError if it is not locked."""
        try:
            super().release()
        except ValueError:
            raise RuntimeError("release unlocked lock") from None


class RLock(_sync.RLock):
    """What ``SyncManager.RLock()`` returns: a gilfree RLock whose ``release()`` by a thread
    that does not hold it raises RuntimeError, as ``threading.RLock`` does
    (``multiprocessing.RLock`` raises AssertionError)."""

    __slots__ = ()

    def release(self):
        """Release one level; RuntimeError if the calling thread does not hold the lock."""
        try:
            super().release()
        except AssertionError:
            raise RuntimeError("cannot release un-acquired lock") from None


class LocalSyncManager:
    """A manager whose objects live in gilfree's shared memory (no server process): what
    ``Manager()`` and ``SyncManager()`` without an address return.

    `address`, `authkey` and `serializer` are accepted for the standard library's signature;
    `ctx` is the context whose start method the manager's Pool uses (None: the program's)."""

    def __init__(self, address=None, authkey=None, serializer="pickle", ctx=None, *,
                 shutdown_timeout=1.0):
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

    def _number_of_objects(self):
        """0: a local manager holds no objects (each lives while some process holds it)."""
        return 0

    def _debug_info(self):
        """'': a local manager has no server whose objects it could list."""
        return ""

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
        return _queues.Queue(maxsize)

    def JoinableQueue(self, maxsize=0):
        """A gilfree JoinableQueue."""
        return _queues.JoinableQueue(maxsize)

    def Lock(self):
        """A gilfree Lock (managers.Lock: threading.Lock's RuntimeError on a bad release)."""
        return Lock()

    def RLock(self):
        """A gilfree RLock (managers.RLock: threading.RLock's RuntimeError on a bad release)."""
        return RLock()

    def Semaphore(self, value=1):
        """A gilfree Semaphore."""
        return _sync.Semaphore(value)

    def BoundedSemaphore(self, value=1):
        """A gilfree BoundedSemaphore."""
        return _sync.BoundedSemaphore(value)

    def Condition(self, lock=None):
        """A gilfree Condition (over a new RLock by default)."""
        return _sync.Condition(lock)

    def Event(self):
        """A gilfree Event."""
        return _sync.Event()

    def Barrier(self, parties, action=None, timeout=None):
        """A gilfree Barrier."""
        return _sync.Barrier(parties, action, timeout)

    def Value(self, typecode, value, lock=True):
        """A shared holder of `value` (managers.Value: .value, get(), set())."""
        return Value(typecode, value, lock)

    def Array(self, typecode, sequence, lock=True):
        """A synchronized shared ctypes array (gilfree.Array) holding `sequence`."""
        from gilfree.sharedctypes import Array
        return Array(typecode, sequence, lock=lock)

    def Pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        """A gilfree Pool (started with the manager's context, if it was given one)."""
        from gilfree.pool import Pool
        return Pool(processes, initializer, initargs, maxtasksperchild, context=self._ctx)


def Manager(*, ctx=None):
    """A started :class:`LocalSyncManager` (``with Manager() as m:`` works as in multiprocessing)."""
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
