"""Type stubs for gilfree.connection."""

from collections.abc import Iterable
from types import TracebackType
from typing import Any

from typing_extensions import Self

from gilfree import _core

__all__ = ["Pipe", "Connection", "wait"]

class Connection(_core.Ring):
    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 exc_tb: TracebackType | None) -> None: ...

def Pipe(duplex: bool = True) -> tuple[Connection, Connection]: ...
def wait(object_list: Iterable[Any], timeout: float | None = None) -> list[Any]: ...
