"""gilfree: parallel Python past the GIL.

A drop-in for :mod:`multiprocessing` and :mod:`concurrent.futures` (``import gilfree as
multiprocessing``) built on a C engine: a shared-memory arena, process-shared futex locks,
multi-producer multi-consumer shared-memory rings, and a self-healing worker pool.

Security: objects travel between processes with :mod:`pickle`. Pickle is only safe between
processes you started yourself; gilfree never exchanges pickles with processes it did not
start, and its shared memory (a memfd) is reachable only by your own descendants.
"""

from gilfree import _core
from gilfree._core import OwnerDeadError, ProtocolError

__version__ = _core.__version__

__all__ = ["OwnerDeadError", "ProtocolError"]

# Each subsystem extends the namespace below (sections kept separate: one per module).

# --- h4-queue: queues and pipes over shared-memory rings -------------------------------------
from gilfree import connection  # noqa: E402
from gilfree.connection import Pipe  # noqa: E402
from gilfree.queues import JoinableQueue, Queue, SimpleQueue  # noqa: E402
from multiprocessing import BufferTooShort  # noqa: E402  (the same class as the stdlib's)

__all__ += ["Queue", "SimpleQueue", "JoinableQueue", "Pipe", "BufferTooShort", "connection"]

# --- h5-sync: processes, start-method contexts, locks and sync types, shared ctypes ----------
# Module-level names are the default context's bound methods, as in multiprocessing; names
# another section already defined (Queue, Pipe, ...) are kept.
from gilfree import context as _context  # noqa: E402
from gilfree.context import (AuthenticationError, ProcessError,  # noqa: E402
                             TimeoutError)
from gilfree.process import (Process, active_children, current_process,  # noqa: E402
                             parent_process)

for _name in ("Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier",
              "Value", "Array", "RawValue", "RawArray", "Manager", "Queue",
              "JoinableQueue", "SimpleQueue", "Pipe", "get_context", "get_start_method",
              "set_start_method", "get_all_start_methods", "cpu_count", "freeze_support",
              "get_logger", "log_to_stderr", "set_executable", "set_forkserver_preload",
              "allow_connection_pickling"):
    if _name not in globals():
        globals()[_name] = getattr(_context._default_context, _name)
        __all__.append(_name)
del _name

__all__ += ["Process", "current_process", "active_children", "parent_process", "ProcessError",
            "TimeoutError", "AuthenticationError"]

# --- pool, executor, shared dict/list, shared memory: imported on first use -------------------
# They pull in concurrent.futures, logging, threading helpers, ...: a program that only uses
# Process, Queue and locks does not load them. Every page a process maps is a page-table entry
# that each of its forks copies and each child tears down, so a small import keeps
# Process.start() as cheap as the standard library's.
_LAZY = {
    "Pool": ("gilfree._front", "Pool"),
    "ThreadPool": ("gilfree.pool", "ThreadPool"),
    "WorkerLostError": ("gilfree.pool", "WorkerLostError"),
    "TaskTimeoutError": ("gilfree.pool", "TaskTimeoutError"),
    "Executor": ("gilfree._front_executor", "Executor"),
    "ProcessPoolExecutor": ("gilfree._front_executor", "ProcessPoolExecutor"),
    "SharedDict": ("gilfree.containers", "SharedDict"),
    "SharedList": ("gilfree.containers", "SharedList"),
    "shared_array": ("gilfree.shared_memory", "shared_array"),
    # submodules, as attributes (as multiprocessing.util etc. are)
    "managers": ("gilfree.managers", None),
    "shared_memory": ("gilfree.shared_memory", None),
    "futures": ("gilfree.futures", None),
    "pool": ("gilfree.pool", None),
    "util": ("gilfree.util", None),
    "reduction": ("gilfree.reduction", None),
    "heap": ("gilfree.heap", None),
    "dummy": ("gilfree.dummy", None),
    "resource_tracker": ("gilfree.resource_tracker", None),
    "resource_sharer": ("gilfree.resource_sharer", None),
    "sharedctypes": ("gilfree.sharedctypes", None),
    "synchronize": ("gilfree.synchronize", None),
    "containers": ("gilfree.containers", None),
}
_SUBMODULES = ("managers", "shared_memory", "futures", "pool", "util", "reduction", "heap",
               "dummy", "resource_tracker", "resource_sharer", "sharedctypes", "synchronize",
               "containers")
__all__ += [n for n in _LAZY if n not in _SUBMODULES]


def __getattr__(name):
    """Import the submodule that defines `name` (see _LAZY) and return the name."""
    try:
        modname, attr = _LAZY[name]
    except KeyError:
        raise AttributeError("module 'gilfree' has no attribute %r" % (name,)) from None
    import importlib
    mod = importlib.import_module(modname)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
