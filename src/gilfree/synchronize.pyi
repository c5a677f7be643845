"""Type stubs for gilfree.synchronize."""

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from gilfree import _core

_T = TypeVar("_T")

__all__ = ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event", "Barrier"]

class Lock(_core.Mutex):
    def __init__(self, *, ctx: Any = None) -> None: ...

class RLock(_core.Mutex):
    def __init__(self, *, ctx: Any = None) -> None: ...

class Semaphore(_core.Semaphore):
    def __init__(self, value: int = 1, *, ctx: Any = None) -> None: ...

class BoundedSemaphore(Semaphore): ...

class Condition(_core.Condition):
    def __init__(self, lock: Lock | RLock | None = None, *, ctx: Any = None) -> None: ...
    def wait_for(self, predicate: Callable[[], _T], timeout: float | None = None) -> _T: ...

class Event(_core.Event):
    def __init__(self, *, ctx: Any = None) -> None: ...

class Barrier(threading.Barrier):
    def __init__(self, parties: int, action: Callable[[], object] | None = None,
                 timeout: float | None = None, *, ctx: Any = None) -> None: ...
