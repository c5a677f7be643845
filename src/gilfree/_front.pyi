"""Type stubs for gilfree._front (gilfree.Pool, gilfree.ProcessPoolExecutor)."""

from collections.abc import Callable, Iterable
from typing import Any

from gilfree import futures as _futures
from gilfree import pool as _pool

__all__ = ["Pool", "ProcessPoolExecutor", "Executor"]

class Pool(_pool.Pool):
    def __init__(self, processes: int | None = None,
                 initializer: Callable[..., object] | None = None,
                 initargs: Iterable[Any] = (), maxtasksperchild: int | None = None,
                 context: Any = None, cluster: Any = None,
                 **cluster_options: Any) -> None: ...

class ProcessPoolExecutor(_futures.ProcessPoolExecutor):
    def __init__(self, max_workers: int | None = None, mp_context: Any = None,
                 initializer: Callable[..., object] | None = None,
                 initargs: tuple[Any, ...] = (),
                 max_tasks_per_child: int | None = None, cluster: Any = None,
                 **cluster_options: Any) -> None: ...

Executor = ProcessPoolExecutor
