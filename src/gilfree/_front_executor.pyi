"""Type stubs for gilfree._front_executor (gilfree.ProcessPoolExecutor)."""

from collections.abc import Callable
from typing import Any

from gilfree import futures as _futures

__all__ = ["ProcessPoolExecutor", "Executor"]

class ProcessPoolExecutor(_futures.ProcessPoolExecutor):
    def __init__(self, max_workers: int | None = None, mp_context: Any = None,
                 initializer: Callable[..., object] | None = None,
                 initargs: tuple[Any, ...] = (),
                 max_tasks_per_child: int | None = None, cluster: Any = None,
                 **cluster_options: Any) -> None: ...

Executor = ProcessPoolExecutor
