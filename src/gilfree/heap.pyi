"""Type stubs for gilfree.heap."""

from typing import ClassVar

from gilfree._core import SharedBuffer

__all__ = ["BufferWrapper", "Heap"]

class Heap:
    def malloc(self, size: int) -> SharedBuffer: ...
    def free(self, block: SharedBuffer) -> None: ...

class BufferWrapper:
    _heap: ClassVar[Heap]
    def __init__(self, size: int) -> None: ...
    def create_memoryview(self) -> memoryview: ...
