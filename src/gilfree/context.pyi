"""Type stubs for gilfree.context."""

from collections.abc import Callable, Iterable
from multiprocessing import context as _mpctx
from multiprocessing.context import AuthenticationError as AuthenticationError
from multiprocessing.context import BufferTooShort as BufferTooShort
from multiprocessing.context import ProcessError as ProcessError
from multiprocessing.context import TimeoutError as TimeoutError
from typing import Any

from gilfree.connection import Connection
from gilfree.managers import LocalSyncManager
from gilfree.pool import Pool
from gilfree.queues import JoinableQueue, Queue, SimpleQueue
from gilfree.sharedctypes import Synchronized, SynchronizedArray
from gilfree import synchronize as _sync
from gilfree.synchronize import Barrier, BoundedSemaphore, Condition, Event, Semaphore

__all__ = ["BaseContext", "DefaultContext", "ForkContext", "SpawnContext", "ForkServerContext",
           "get_context", "get_start_method", "set_start_method", "get_all_start_methods",
           "ProcessError", "BufferTooShort", "TimeoutError", "AuthenticationError"]

class BaseContext(_mpctx.BaseContext):
    def Lock(self) -> _sync.Lock: ...  # type: ignore[override]
    def RLock(self) -> _sync.RLock: ...  # type: ignore[override]
    def Condition(self, lock: _sync.Lock | _sync.RLock | None = None) -> Condition: ...  # type: ignore[override]
    def Semaphore(self, value: int = 1) -> Semaphore: ...  # type: ignore[override]
    def BoundedSemaphore(self, value: int = 1) -> BoundedSemaphore: ...  # type: ignore[override]
    def Event(self) -> Event: ...  # type: ignore[override]
    def Barrier(self, parties: int, action: Callable[[], object] | None = None,  # type: ignore[override]
                timeout: float | None = None) -> Barrier: ...
    def RawValue(self, typecode_or_type: str | type[Any], *args: Any) -> Any: ...
    def RawArray(self, typecode_or_type: str | type[Any],
                 size_or_initializer: int | Iterable[Any]) -> Any: ...
    def Value(self, typecode_or_type: str | type[Any], *args: Any,  # type: ignore[override]
              lock: Any = True) -> Synchronized: ...
    def Array(self, typecode_or_type: str | type[Any],  # type: ignore[override]
              size_or_initializer: int | Iterable[Any], *, lock: Any = True) -> SynchronizedArray: ...
    def Queue(self, maxsize: int = 0) -> Queue[Any]: ...  # type: ignore[override]
    def JoinableQueue(self, maxsize: int = 0) -> JoinableQueue[Any]: ...  # type: ignore[override]
    def SimpleQueue(self) -> SimpleQueue[Any]: ...  # type: ignore[override]
    def Pipe(self, duplex: bool = True) -> tuple[Connection, Connection]: ...  # type: ignore[override]
    def Pool(self, processes: int | None = None,  # type: ignore[override]
             initializer: Callable[..., object] | None = None, initargs: Iterable[Any] = (),
             maxtasksperchild: int | None = None) -> Pool: ...
    def Manager(self) -> LocalSyncManager: ...  # type: ignore[override]
    def get_context(self, method: str | None = None) -> BaseContext: ...  # type: ignore[override]
    def get_all_start_methods(self) -> list[str]: ...

class ForkContext(BaseContext): ...
class SpawnContext(BaseContext): ...
class ForkServerContext(BaseContext): ...

class DefaultContext(BaseContext):
    def __init__(self, context: BaseContext) -> None: ...
    def set_start_method(self, method: str | None, force: bool = False) -> None: ...
    def get_start_method(self, allow_none: bool = False) -> str: ...

def get_context(method: str | None = None) -> BaseContext: ...
def get_start_method(allow_none: bool = False) -> str: ...
def set_start_method(method: str | None, force: bool = False) -> None: ...
def get_all_start_methods() -> list[str]: ...
