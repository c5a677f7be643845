"""Type stubs for gilfree (the package namespace: see __init__.py)."""

from collections.abc import Callable, Iterable
from logging import Logger
from multiprocessing import BufferTooShort as BufferTooShort
from typing import Any

from gilfree import connection as connection
from gilfree import containers as containers
from gilfree import dummy as dummy
from gilfree import heap as heap
from gilfree import managers as managers
from gilfree import reduction as reduction
from gilfree import resource_tracker as resource_tracker
from gilfree import resource_sharer as resource_sharer
from gilfree import shared_memory as shared_memory
from gilfree import sharedctypes as sharedctypes
from gilfree import synchronize as synchronize
from gilfree import util as util
from gilfree._core import OwnerDeadError as OwnerDeadError
from gilfree._core import ProtocolError as ProtocolError
from gilfree.connection import Connection
from gilfree.connection import Pipe as Pipe
from gilfree.context import AuthenticationError as AuthenticationError
from gilfree.context import BaseContext
from gilfree.context import ProcessError as ProcessError
from gilfree.context import TimeoutError as TimeoutError
from gilfree.context import get_all_start_methods as get_all_start_methods
from gilfree.context import get_context as get_context
from gilfree.context import get_start_method as get_start_method
from gilfree.context import set_start_method as set_start_method
from gilfree._front import Executor as Executor
from gilfree._front import ProcessPoolExecutor as ProcessPoolExecutor
from gilfree.containers import SharedDict as SharedDict
from gilfree.containers import SharedList as SharedList
from gilfree.managers import LocalSyncManager
from gilfree._front import Pool as Pool
from gilfree.pool import TaskTimeoutError as TaskTimeoutError
from gilfree.pool import ThreadPool as ThreadPool
from gilfree.pool import WorkerLostError as WorkerLostError
from gilfree.process import Process as Process
from gilfree.process import active_children as active_children
from gilfree.process import current_process as current_process
from gilfree.process import parent_process as parent_process
from gilfree.queues import JoinableQueue as JoinableQueue
from gilfree.queues import Queue as Queue
from gilfree.queues import SimpleQueue as SimpleQueue
from gilfree.shared_memory import shared_array as shared_array
from gilfree.sharedctypes import Synchronized, SynchronizedArray
from gilfree.synchronize import Barrier as _Barrier
from gilfree.synchronize import BoundedSemaphore as _BoundedSemaphore
from gilfree.synchronize import Condition as _Condition
from gilfree.synchronize import Event as _Event
from gilfree.synchronize import Lock as _Lock
from gilfree.synchronize import RLock as _RLock
from gilfree.synchronize import Semaphore as _Semaphore

__version__: str
__all__: list[str]

# Module-level factories: the default context's bound methods, as in multiprocessing.
def Lock() -> _Lock: ...
def RLock() -> _RLock: ...
def Condition(lock: _Lock | _RLock | None = None) -> _Condition: ...
def Semaphore(value: int = 1) -> _Semaphore: ...
def BoundedSemaphore(value: int = 1) -> _BoundedSemaphore: ...
def Event() -> _Event: ...
def Barrier(parties: int, action: Callable[[], object] | None = None,
            timeout: float | None = None) -> _Barrier: ...
def Value(typecode_or_type: str | type[Any], *args: Any, lock: Any = True) -> Synchronized: ...
def Array(typecode_or_type: str | type[Any], size_or_initializer: int | Iterable[Any], *,
          lock: Any = True) -> SynchronizedArray: ...
def RawValue(typecode_or_type: str | type[Any], *args: Any) -> Any: ...
def RawArray(typecode_or_type: str | type[Any], size_or_initializer: int | Iterable[Any]) -> Any: ...
def Manager() -> LocalSyncManager: ...
def cpu_count() -> int: ...
def freeze_support() -> None: ...
def get_logger() -> Logger: ...
def log_to_stderr(level: int | str | None = None) -> Logger: ...
def set_executable(executable: str) -> None: ...
def set_forkserver_preload(module_names: list[str]) -> None: ...
def allow_connection_pickling() -> None: ...
