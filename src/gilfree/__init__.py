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
              "Value", "Array", "RawValue", "RawArray", "Pool", "Manager", "Queue",
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

# --- h9-pypool: process pool and executor ----------------------------------------------------
from gilfree.pool import Pool, TaskTimeoutError, ThreadPool, WorkerLostError  # noqa: E402
from gilfree.futures import Executor, ProcessPoolExecutor  # noqa: E402

__all__ += ["ThreadPool", "ProcessPoolExecutor", "Executor", "WorkerLostError",
            "TaskTimeoutError"]

# --- h10-shared: shared dict and list, managers without a server, shared memory ---------------
from gilfree import managers, shared_memory  # noqa: E402
from gilfree.managers import SharedDict, SharedList  # noqa: E402
from gilfree.shared_memory import shared_array  # noqa: E402

__all__ += ["SharedDict", "SharedList", "shared_array", "shared_memory", "managers"]
