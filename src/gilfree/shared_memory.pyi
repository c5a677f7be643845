"""Type stubs for gilfree.shared_memory."""

from collections.abc import Iterable
from multiprocessing.shared_memory import ShareableList as _StdShareableList
from typing import Any

__all__ = ["SharedMemory", "ShareableList", "shared_array"]

class SharedMemory:
    def __init__(self, name: str | None = None, create: bool = False, size: int = 0) -> None: ...
    @property
    def buf(self) -> memoryview: ...
    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    def close(self) -> None: ...
    def unlink(self) -> None: ...

class ShareableList(_StdShareableList[Any]):
    def __init__(self, sequence: Iterable[Any] | None = None, *, name: str | None = None) -> None: ...

def shared_array(shape: int | tuple[int, ...], dtype: Any = ...) -> Any:
    """A NumPy array of `shape` and `dtype` in shared memory, always zero-filled."""
