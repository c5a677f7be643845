"""Shared memory blocks, as :mod:`multiprocessing.shared_memory`, backed by gilfree's arena.

``SharedMemory(name=None, create=False, size=0)`` and ``ShareableList`` behave like the
standard library's, with these differences:

* ``name`` is an unguessable token (``gf_`` + 24 hex digits, or the name you chose) that is
  valid inside this process tree only (the processes that share gilfree's arena). Nothing is
  created in /dev/shm.
* The memory is reference-counted: it is freed when the last process that uses it closes it
  or exits (SIGKILL included: the arena dies with the process tree). There is no resource
  tracker, so no "leaked shared_memory objects" warnings and no early deletion when the
  creating process exits while others still use the block.
* ``unlink()`` removes the name: further ``SharedMemory(name)`` attaches (and loading a
  pickle of the block) fail with FileNotFoundError; processes already attached keep their
  mapping. ``size`` is ignored when attaching, as in the standard library.

``shared_array(shape, dtype=float)`` returns a NumPy array in shared memory; pickling it (to a
Process, a Pool task, a Queue) sends a reference, so the receiver sees and changes the same
memory, without copying.
"""

import os
import secrets
import types

from multiprocessing import shared_memory as _mpshm

from gilfree import _core
from gilfree.containers import SharedDict

__all__ = ["SharedMemory", "ShareableList", "shared_array"]

_REG_ENV = "GILFREE_SHM_REGISTRY"
_registry_dict = None
_registry_pid = None


def _registry():
    """The process tree's name -> block-offset table (a SharedDict). Created by the first
    process that imports this module; forked children inherit it, spawned children find its
    offset in the environment."""
    global _registry_dict, _registry_pid
    if _registry_dict is not None:
        return _registry_dict
    reg = None
    off = os.environ.get(_REG_ENV)
    if off:
        try:
            reg = SharedDict._rebuild(int(off))
            reg.__reduce__()  # the reference that this handle drops at exit is ours
        except (ValueError, _core.ProtocolError):
            reg = None
    if reg is None:
        reg = SharedDict()
        os.environ[_REG_ENV] = str(reg._offset)
    _registry_dict = reg
    _registry_pid = os.getpid()
    return reg


def _is_block_name(name):
    """True if `name` (or `name` without a leading '/', as the standard library spells
    POSIX names) names a shared memory block of this process tree."""
    reg = _registry()
    return name in reg or (name.startswith("/") and name[1:] in reg)


def _attach_buffer(off):
    """A SharedBuffer handle on the block at `off`, owning a reference of its own."""
    buf = _core.SharedBuffer._rebuild(off)  # adopts a reference...
    buf.__reduce__()                        # ...that this takes for it
    return buf


class SharedMemory:
    """A block of shared memory, named within the process tree. See the module docstring."""

    _buf = None
    _mv = None

    def __init__(self, name=None, create=False, size=0):
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        reg = _registry()
        if create:
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
            buf = _core.SharedBuffer(size)
            with reg.lock:
                if name is None:
                    name = "gf_" + secrets.token_hex(12)
                    while name in reg:
                        name = "gf_" + secrets.token_hex(12)
                elif name in reg:
                    raise FileExistsError(17, "File exists", name)
                buf.__reduce__()          # a reference for the registry (dropped by unlink)
                reg[name] = buf._offset
        else:
            if name is None:
                raise ValueError("'name' can only be None if create=True")
            with reg.lock:
                off = reg.get(name)
                if off is None:
                    raise FileNotFoundError(2, "No such file or directory", name)
                buf = _attach_buffer(off)
            # as the standard library: `size` is ignored when attaching
        self._name = name
        self._buf = buf
        self._size = buf.size
        self._mv = memoryview(buf).cast("B")

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __reduce__(self):
        # The handle travels (with a reference for the receiver, so the memory cannot go away
        # while the pickle is in flight); as the standard library's, loading it attaches by
        # name: FileNotFoundError once the name is unlinked.
        return (_rebuild_shm, (self._name, self._buf))

    def __repr__(self):
        return f"{self.__class__.__name__}({self.name!r}, size={self.size})"

    @property
    def buf(self):
        """A memoryview of the whole block."""
        return self._mv

    @property
    def name(self):
        """The block's name (pass it to SharedMemory(name) in another process)."""
        return self._name

    @property
    def size(self):
        """Size in bytes."""
        return self._size

    def close(self):
        """Release this process's view (BufferError while views of `buf` are exported)."""
        if self._mv is not None:
            self._mv.release()
            self._mv = None
        self._buf = None

    def unlink(self):
        """Remove the name: later attaches fail; the memory lives while someone uses it."""
        reg = _registry()
        with reg.lock:
            off = reg.pop(self._name, None)
        if off is not None:
            _core._obj_decref(off)


def _rebuild_shm(name, buf):
    reg = _registry()
    off = reg.get(name)
    if off is None:
        raise FileNotFoundError(2, "No such file or directory", name)
    if off != buf._offset:  # the name was unlinked and made again: attach to the new block
        return SharedMemory(name)
    shm = SharedMemory.__new__(SharedMemory)
    shm._name = name
    shm._buf = buf
    shm._size = buf.size
    shm._mv = memoryview(buf).cast("B")
    return shm


def _rebound(fn):
    g = dict(_mpshm.__dict__)
    g["SharedMemory"] = SharedMemory
    new = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__doc__ = fn.__doc__
    new.__qualname__ = fn.__qualname__
    return new


class ShareableList(_mpshm.ShareableList):
    """multiprocessing.shared_memory.ShareableList over a gilfree SharedMemory."""


for _k, _v in list(vars(_mpshm.ShareableList).items()):
    if isinstance(_v, types.FunctionType) and _v.__code__.co_names.count("SharedMemory"):
        setattr(ShareableList, _k, _rebound(_v))
del _k, _v


# ---------------------------------------------------------------- NumPy arrays

def _np():
    import numpy
    return numpy


_SharedArray = None


def _shared_array_type():
    global _SharedArray
    if _SharedArray is not None:
        return _SharedArray
    np = _np()

    class SharedArray(np.ndarray):
        """An ndarray whose memory is a gilfree SharedBuffer: pickled by reference."""

        def __array_finalize__(self, obj):
            self._gf_buf = getattr(obj, "_gf_buf", None)

        def __reduce__(self):
            buf = getattr(self, "_gf_buf", None)
            if buf is not None:
                base = np.frombuffer(buf, np.uint8)
                start = base.ctypes.data
                lo, hi = np.byte_bounds(self) if hasattr(np, "byte_bounds") \
                    else np.lib.array_utils.byte_bounds(self)
                if start <= lo and hi <= start + buf.size:
                    return (_rebuild_array, (buf, self.shape, self.dtype.str if
                                             not self.dtype.fields else self.dtype,
                                             self.strides, self.ctypes.data - start))
            return np.asarray(self).copy().__reduce__()  # not in shared memory: by value

        def __array_wrap__(self, arr, context=None, return_scalar=False):
            # results of ufuncs are private memory: plain ndarrays
            if arr.base is None or not np.may_share_memory(arr, self):
                arr = arr.view(np.ndarray)
            if return_scalar and arr.ndim == 0:
                return arr[()]
            return arr

    _SharedArray = SharedArray
    return SharedArray


def _rebuild_array(buf, shape, dtype, strides, offset):
    np = _np()
    cls = _shared_array_type()
    a = np.ndarray(shape, dtype, buffer=buf, offset=offset, strides=strides).view(cls)
    a._gf_buf = buf
    return a


def shared_array(shape, dtype=float):
    """A NumPy array of `shape` and `dtype` in shared memory, always zero-filled. Pass it to
    other processes (Process args, Pool tasks, Queues): they map the same memory, no copy."""
    np = _np()
    dt = np.dtype(dtype)
    if isinstance(shape, int):
        shape = (shape,)
    n = dt.itemsize
    for s in shape:
        n *= int(s)
    buf = _core.SharedBuffer(max(n, 1))  # zeroed
    a = np.ndarray(shape, dt, buffer=buf).view(_shared_array_type())
    a._gf_buf = buf
    return a


# Create the process tree's name table now, so that processes forked later share it.
_registry()
