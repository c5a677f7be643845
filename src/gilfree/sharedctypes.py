"""ctypes objects in shared memory, as :mod:`multiprocessing.sharedctypes`.

``RawValue``, ``RawArray``, ``Value``, ``Array``, ``copy``, ``synchronized``. The storage is a
:class:`gilfree._core.SharedBuffer` (a zeroed block of the process tree's arena); the ctypes
object is ``type.from_buffer`` on it. The synchronized wrappers subclass the standard
library's classes (``isinstance(v, multiprocessing.sharedctypes.Synchronized)`` holds) and
gilfree._core's C wrappers (``.value``, indexing, ``get_lock()``, ``with``: C slots that read the
shared memory directly), with gilfree locks (an RLock by default) and a reduction that works for
running processes too: Values, Arrays and raw ctypes objects can be sent through a gilfree Queue
or Pipe, not only passed at creation.

Differences from the standard library: ``_obj`` and ``_lock`` are read-only; ``acquire`` and
``release`` are methods of the wrapper (forwarding to the lock) rather than the lock's own bound
methods stored on the instance.
"""

import copyreg
import ctypes

from multiprocessing import sharedctypes as _mpsc
from multiprocessing.reduction import ForkingPickler as _ForkingPickler

from gilfree import _core

__all__ = ["RawValue", "RawArray", "Value", "Array", "copy", "synchronized"]

typecode_to_type = dict(_mpsc.typecode_to_type)

_TYPECODES = "".join(typecode_to_type)


def _ctype(typecode_or_type):
    """The ctypes type for a typecode or a ctypes type; TypeError for anything else."""
    if isinstance(typecode_or_type, str):
        try:
            return typecode_to_type[typecode_or_type]
        except KeyError:
            raise TypeError("bad typecode %r: expected one of %r or a ctypes type"
                            % (typecode_or_type, _TYPECODES)) from None
    try:
        ctypes.sizeof(typecode_or_type)
    except TypeError:
        raise TypeError("%r is neither a typecode (one of %r) nor a ctypes type"
                        % (typecode_or_type, _TYPECODES)) from None
    return typecode_or_type


# ---------------------------------------------------------------- storage and pickling

_std_reduce_ctype = _mpsc.reduce_ctype


def _reduce_ctype(obj):
    buf = getattr(obj, "_gf_buffer", None)
    if buf is not None:
        if isinstance(obj, ctypes.Array):
            return _rebuild_ctype, (obj._type_, buf, obj._length_)
        return _rebuild_ctype, (type(obj), buf, None)
    if getattr(obj, "_wrapper", None) is not None:  # the standard library's sharedctypes
        return _std_reduce_ctype(obj)
    return obj.__reduce__()  # an ordinary ctypes object: pickled by value as usual


def _register(type_):
    if copyreg.dispatch_table.get(type_) is not _reduce_ctype:
        copyreg.pickle(type_, _reduce_ctype)
    if _ForkingPickler._extra_reducers.get(type_) is not _reduce_ctype:
        _ForkingPickler.register(type_, _reduce_ctype)


# The standard library registers its reducer with its ForkingPickler for every ctypes type it
# puts in shared memory (also types ours use: c_int, ...), which would then shadow ours in
# spawn/forkserver pickling. Make it register ours instead: ours hands its objects back to it.
_mpsc.reduce_ctype = _reduce_ctype


def _rebuild_ctype(type_, buf, length):
    if length is not None:
        type_ = type_ * length
    _register(type_)
    obj = type_.from_buffer(buf)
    obj._gf_buffer = buf
    return obj


def _new_value(type_):
    return _rebuild_ctype(type_, _core.SharedBuffer(ctypes.sizeof(type_)), None)


def RawValue(typecode_or_type, *args):
    """A ctypes object allocated from shared memory (zeroed, then initialised with args)."""
    type_ = _ctype(typecode_or_type)
    obj = _new_value(type_)
    if args:
        obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer):
    """A ctypes array allocated from shared memory: of `size` zeros, or a copy of the
    initializer sequence."""
    type_ = _ctype(typecode_or_type)
    if isinstance(size_or_initializer, int):
        if size_or_initializer < 0:
            raise ValueError("array size must be >= 0")
        return _new_value(type_ * size_or_initializer)
    type_ = type_ * len(size_or_initializer)
    result = _new_value(type_)
    result.__init__(*size_or_initializer)
    return result


def _lock_for(lock, ctx):
    if lock in (True, None):
        if ctx is not None:
            return ctx.RLock()
        from gilfree.synchronize import RLock
        return RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return lock


def Value(typecode_or_type, *args, lock=True, ctx=None):
    """A synchronized wrapper (get_lock(), get_obj(), .value) around a RawValue; lock=False
    returns the raw object, lock=<a Lock/RLock> uses that lock."""
    obj = RawValue(typecode_or_type, *args)
    if lock is False:
        return obj
    return synchronized(obj, _lock_for(lock, ctx), ctx=ctx)


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    """A synchronized wrapper around a RawArray (indexing, slicing, len; .value/.raw for 'c')."""
    obj = RawArray(typecode_or_type, size_or_initializer)
    if lock is False:
        return obj
    return synchronized(obj, _lock_for(lock, ctx), ctx=ctx)


def copy(obj):
    """A shared copy of a ctypes object."""
    new_obj = _new_value(type(obj))
    ctypes.pointer(new_obj)[0] = obj
    return new_obj


# ---------------------------------------------------------------- synchronized wrappers
#
# The wrappers are the standard library's classes (isinstance(v, multiprocessing.sharedctypes.
# Synchronized) holds) with gilfree._core's SyncValue / SyncArray first in their MRO: get_lock,
# get_obj, acquire/release, with, .value and indexing are C slots that read/write the shared
# memory directly for the plain numeric types, and take a gilfree lock in C (nothing at all
# when the calling thread already holds the recursive lock: `with v.get_lock(): v.value += 1`).

# ctypes types whose values the C wrapper decodes itself: the exact standard types (not
# subclasses, not byte-swapped variants, whose `.value` ctypes converts differently).
_C_KINDS = {t: t._type_ for t in (
    ctypes.c_byte, ctypes.c_ubyte, ctypes.c_short, ctypes.c_ushort, ctypes.c_int,
    ctypes.c_uint, ctypes.c_long, ctypes.c_ulong, ctypes.c_longlong, ctypes.c_ulonglong,
    ctypes.c_float, ctypes.c_double, ctypes.c_bool, ctypes.c_char)
    if t._type_ in "bBhHiIlLqQfd?c"}


def _kind_of(obj):
    """The element typecode the C wrapper may decode for ctypes object obj, or None."""
    if isinstance(obj, ctypes.Array):
        return _C_KINDS.get(obj._type_)
    return _C_KINDS.get(type(obj))


class SynchronizedBase(_core.SyncBase, _mpsc.SynchronizedBase):
    """Base of the synchronized wrappers: get_lock(), get_obj(), acquire(), release(), with."""

    def __new__(cls, obj, lock=None, ctx=None):
        if not lock:
            lock = _lock_for(None, ctx)
        kind = _kind_of(obj) if issubclass(cls, (_core.SyncValue, _core.SyncArray)) else None
        return super().__new__(cls, obj, lock, kind)

    def __init__(self, obj, lock=None, ctx=None):
        pass  # everything is set by __new__ (the standard library's __init__ sets attributes)

    def __reduce__(self):
        return synchronized, (self._obj, self._lock)


def _make_property(name, doc=None):
    def fget(self):
        lock = self._lock
        lock.acquire()
        try:
            return getattr(self._obj, name)
        finally:
            lock.release()

    def fset(self, value):
        lock = self._lock
        lock.acquire()
        try:
            setattr(self._obj, name, value)
        finally:
            lock.release()

    return property(fget, fset, doc=doc or "Field %r, read and set under the lock." % name)


class Synchronized(_core.SyncValue, SynchronizedBase, _mpsc.Synchronized):
    """A synchronized ctypes value: .value is read and written under the lock."""


class SynchronizedArray(_core.SyncArray, SynchronizedBase, _mpsc.SynchronizedArray):
    """A synchronized ctypes array: len, indexing and slicing under the lock."""


class SynchronizedString(SynchronizedArray, _mpsc.SynchronizedString):
    """A synchronized c_char array: `value` and `raw` are read and set under its lock."""

    value = _make_property("value", "The string up to the first NUL (bytes), under the lock.")
    raw = _make_property("raw", "All the bytes of the array, under the lock.")


_class_cache = {}


def synchronized(obj, lock=None, ctx=None):
    """Wrap a ctypes object in a synchronized wrapper using `lock` (a new RLock if None)."""
    assert not isinstance(obj, _mpsc.SynchronizedBase), "object already synchronized"
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock, ctx)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock, ctx)
        return SynchronizedArray(obj, lock, ctx)
    cls = type(obj)
    try:
        scls = _class_cache[cls]
    except KeyError:
        d = {field[0]: _make_property(field[0]) for field in cls._fields_}
        scls = _class_cache[cls] = type("Synchronized" + cls.__name__, (SynchronizedBase,), d)
    return scls(obj, lock, ctx)


for _t in set(typecode_to_type.values()):
    _register(_t)
del _t
