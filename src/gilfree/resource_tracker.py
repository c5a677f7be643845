"""The resource tracker, as :mod:`multiprocessing.resource_tracker`.

gilfree's own objects need no tracker: they live in a memfd arena that the kernel frees with the
last process of the tree (SIGKILL included), and ``gilfree.shared_memory`` names are tokens in
that arena, not /dev/shm files. The standard library's tracker still cleans up what a program
creates with the standard library itself (named semaphores, POSIX shared memory segments), so
this module is the standard library's tracker (``ensure_running``, ``getfd``, ``main``,
``ResourceTracker``, ...), with one difference: ``register`` / ``unregister`` of a
``"shared_memory"`` name that is a gilfree block -- e.g. the common
``resource_tracker.unregister(shm._name, "shared_memory")`` after attaching -- does nothing,
instead of starting a tracker process that would complain about a name it never saw.
"""

from multiprocessing import resource_tracker as _std
from multiprocessing.resource_tracker import (ResourceTracker, ensure_running,  # noqa: F401
                                              getfd, main)

__all__ = ["ensure_running", "register", "unregister"]


def _is_gilfree_block(name, rtype):
    """True if (name, rtype) is a gilfree shared memory block of this process tree."""
    if rtype != "shared_memory" or not isinstance(name, str):
        return False
    from gilfree import shared_memory
    return shared_memory._is_block_name(name)


def register(name, rtype):
    """Have the tracker clean up `name` (of type `rtype`) if this process tree leaks it."""
    if not _is_gilfree_block(name, rtype):
        _std.register(name, rtype)


def unregister(name, rtype):
    """Tell the tracker that `name` (of type `rtype`) no longer needs cleaning up."""
    if not _is_gilfree_block(name, rtype):
        _std.unregister(name, rtype)


def __getattr__(name):
    """Any other name of :mod:`multiprocessing.resource_tracker` (the same object)."""
    try:
        return getattr(_std, name)
    except AttributeError:
        raise AttributeError("module 'gilfree.resource_tracker' has no attribute %r"
                             % (name,)) from None
