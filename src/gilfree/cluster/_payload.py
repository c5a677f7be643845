"""The client side of a cluster task's payload: the call pickled once, at submit, and its large
arguments scattered to the cluster once and shared by every task that uses them.

* Pickling: ``pickle`` (protocol 5), or ``cloudpickle`` for what pickle cannot send (lambdas,
  closures, classes and functions of ``__main__``, modules registered with
  ``cloudpickle.register_pickle_by_value``). A call that pickles with neither fails in
  ``submit`` and nothing is sent.
* Large arguments: a ``bytes``/``bytearray`` or a NumPy array (not of dtype object) of at least
  ``threshold`` bytes among a call's arguments (the positional and keyword arguments of a call,
  the items of a map chunk, the elements of a starmap item) is sent with
  ``Client.scatter(broadcast=True)`` and travels inside the pickle as a persistent id; the
  workers get the data from Dask. The same object is scattered once: arrays are remembered
  by identity while they live (weakly) *and* by a CRC-32 of their contents, so an array changed
  in place between calls is sent again; bytes by identity (at most ``MAX_BYTES`` of them kept).
"""

import collections
import io
import itertools
import pickle
import sys
import threading
import weakref
import zlib

import cloudpickle

from gilfree.cluster._remote import K_BATCH, K_CALL, K_MAP, K_STARMAP

DEFAULT_THRESHOLD = 1 << 20  # 1 MiB
_SIMPLE = frozenset((int, float, str, bytes, bool, type(None)))
MAX_BYTES = 1 << 30          # bytes / bytearray objects held alive for reuse (LRU)


def dumps(obj):
    """obj pickled with pickle, or cloudpickle where pickle cannot (or would name __main__)."""
    try:
        data = pickle.dumps(obj, 5)
    except Exception:
        return cloudpickle.dumps(obj, 5)
    if b"__main__" in data:
        return cloudpickle.dumps(obj, 5)
    return data


def dumps_function(fn):
    """A function pickled for the workers: as dumps(), and by value (cloudpickle) when its
    module is registered with cloudpickle.register_pickle_by_value."""
    mod = getattr(fn, "__module__", None)
    if mod is not None and mod in cloudpickle.list_registry_pickle_by_value():
        return cloudpickle.dumps(fn, 5)
    return dumps(fn)


def _discard(buf):
    return None


def check(kind, obj):
    """Raise what pickling the call ``obj`` would raise (buffers are not copied). A map or
    starmap input of only ints, floats, str, bytes, bools and None is not pickled for it."""
    if isinstance(obj, range):
        return
    if kind == K_MAP and set(map(type, obj)) <= _SIMPLE:
        return
    if kind == K_STARMAP and all(type(x) in (tuple, list) for x in obj) and \
            set(map(type, itertools.chain.from_iterable(obj))) <= _SIMPLE:
        return
    try:
        pickle.dumps(obj, 5, buffer_callback=_discard)
    except Exception:
        cloudpickle.dumps(obj, 5, buffer_callback=_discard)


class _RefPickler(cloudpickle.Pickler):
    """Pickles a call whose large arguments were scattered: each is persistent id i."""

    def __init__(self, f, ids):
        super().__init__(f, protocol=5)
        self._ids = ids

    def persistent_id(self, obj):
        return self._ids.get(id(obj))


def _candidates(kind, obj):
    """The objects of a call that may be large arguments (see the module docstring)."""
    if kind == K_CALL:
        args, kwds = obj
        return itertools.chain(args, kwds.values() if kwds else ())
    if kind == K_MAP:
        return () if isinstance(obj, range) else obj
    if kind == K_STARMAP:
        return itertools.chain.from_iterable(x for x in obj if type(x) in (tuple, list))
    if kind == K_BATCH:
        return itertools.chain.from_iterable(
            itertools.chain(a, k.values() if k else ()) for _, a, k in obj)
    return ()


def _fingerprint(x):
    """What must be unchanged for a scattered copy of x to be reused (None: immutable)."""
    if type(x) is bytes:
        return None
    try:
        crc = zlib.crc32(x)
    except (BufferError, TypeError, ValueError):  # a non-contiguous array
        crc = zlib.crc32(x.tobytes())
    if type(x) is bytearray:
        return (len(x), crc)
    return (x.shape, x.dtype.str, x.strides, crc)


class Payloads:
    """Encodes calls for one pool; ``scatter(obj) -> Future`` sends a large argument."""

    def __init__(self, scatter, threshold=DEFAULT_THRESHOLD):
        self._scatter = scatter
        self.threshold = threshold
        self._lock = threading.Lock()
        self._arrays = {}                        # id -> (weakref, fingerprint, future)
        self._bytes = collections.OrderedDict()  # id -> (object, fingerprint, future)
        self._held = 0                           # bytes held in self._bytes
        self._dead = collections.deque()         # ids of arrays collected since

    def _large(self, kind, obj):
        """The large arguments of a call, by id."""
        t = self.threshold
        if not t:
            return {}
        np = sys.modules.get("numpy")
        nd = np.ndarray if np is not None else ()
        cands = _candidates(kind, obj)
        if kind in (K_MAP, K_STARMAP):  # many small items: look only if some type may be
            cands = list(cands)
            kinds = set(map(type, cands))
            if not (kinds & {bytes, bytearray}) and not (nd and any(issubclass(k, nd)
                                                                    for k in kinds)):
                return {}
        found = {}
        for x in cands:
            tx = type(x)
            if tx is bytes or tx is bytearray:
                if len(x) >= t:
                    found[id(x)] = x
            elif nd and isinstance(x, nd) and x.nbytes >= t and not x.dtype.hasobject:
                found[id(x)] = x
        return found

    def _ref(self, x):
        """The future of x's scattered copy (scattering it now unless a current one exists)."""
        fp = _fingerprint(x)
        arrays = type(x) not in (bytes, bytearray)
        with self._lock:
            while self._dead:
                self._arrays.pop(self._dead.popleft(), None)
            e = (self._arrays if arrays else self._bytes).get(id(x))
            if e is not None:
                held = e[0]() if arrays else e[0]
                if held is x and e[1] == fp and e[2].status == "finished":
                    if not arrays:
                        self._bytes.move_to_end(id(x))
                    return e[2]
        fut = self._scatter(x)
        with self._lock:
            if arrays:
                dead = self._dead
                ident = id(x)
                self._arrays[ident] = (weakref.ref(x, lambda _, i=ident: dead.append(i)), fp,
                                       fut)
            else:
                old = self._bytes.pop(id(x), None)
                if old is not None:
                    self._held -= len(old[0])
                self._bytes[id(x)] = (x, fp, fut)
                self._held += len(x)
                while self._held > MAX_BYTES and len(self._bytes) > 1:
                    _, (o, _, _) = self._bytes.popitem(last=False)
                    self._held -= len(o)
        return fut

    def pack(self, kind, obj):
        """(bytes, refs): the call pickled, and the futures of its scattered arguments.
        Raises what pickling raises (nothing is sent then)."""
        large = self._large(kind, obj)
        if not large:
            return dumps(obj), []
        ids = {ident: i for i, ident in enumerate(large)}
        f = io.BytesIO()
        _RefPickler(f, ids).dump(obj)
        return f.getvalue(), [self._ref(x) for x in large.values()]

    def clear(self):
        """Forget every scattered argument (Dask frees them once no task needs them)."""
        with self._lock:
            self._arrays.clear()
            self._bytes.clear()
            self._held = 0
