"""Shared-memory blocks for ctypes objects, as :mod:`multiprocessing.heap`.

The standard library keeps a per-process heap of mmapped arenas; gilfree's objects live in one
shared-memory arena per process tree, reference-counted, so a block here is a
:class:`gilfree._core.SharedBuffer` from that arena: it can be pickled to a process that is
already running (the receiver gets a reference of its own), and it is freed when the last
process holding it drops it (exit and SIGKILL included).

``BufferWrapper(size)`` is what :mod:`multiprocessing.sharedctypes`-style code uses:
``create_memoryview()`` returns a writable ``memoryview`` of exactly `size` bytes.
``Heap().malloc(size)`` allocates a block directly.
"""

import sys

from gilfree import _core

__all__ = ["BufferWrapper", "Heap"]


class Heap:
    """Allocator of shared-memory blocks from gilfree's arena (thread- and fork-safe)."""

    def malloc(self, size):
        """A new zero-filled shared block of at least `size` bytes (size >= 0)."""
        if size < 0:
            raise ValueError("Size {0:n} out of range".format(size))
        if sys.maxsize <= size:
            raise OverflowError("Size {0:n} too large".format(size))
        return _core.SharedBuffer(max(size, 1))

    def free(self, block):
        """Nothing to do: a block's memory is freed when its last handle, in any process, is
        garbage collected (or its process exits)."""


class BufferWrapper:
    """A shared block of `size` bytes; picklable, shared by every process that unpickles it."""

    _heap = Heap()

    def __init__(self, size):
        if size < 0:
            raise ValueError("Size {0:n} out of range".format(size))
        self._state = (type(self)._heap.malloc(size), size)

    def create_memoryview(self):
        """A writable memoryview of the block's `size` bytes."""
        block, size = self._state
        return memoryview(block).cast("B")[:size]
