"""Type stubs for gilfree._front (gilfree.Pool)."""

from collections.abc import Callable, Iterable
from typing import Any

from gilfree import pool as _pool

__all__ = ["Pool"]

class Pool(_pool.Pool):
    def __init__(self, processes: int | None = None,
                 initializer: Callable[..., object] | None = None,
                 initargs: Iterable[Any] = (), maxtasksperchild: int | None = None,
                 context: Any = None, cluster: Any = None,
                 **cluster_options: Any) -> None: ...
