"""Type stubs for gilfree.cluster.pool."""

from collections.abc import Callable, Iterable
from typing import Any

from gilfree.futures import ProcessPoolExecutor
from gilfree.pool import Pool

__all__ = ["ClusterPool", "ClusterExecutor"]

class ClusterPool(Pool):
    CHUNK_TARGET_NS: int
    CHUNK_MIN_NS: int
    CHUNK_QUEUE_NS: int
    CHUNK_GROWTH: int
    def __init__(self, processes: int | None = None,
                 initializer: Callable[..., object] | None = None,
                 initargs: Iterable[Any] = (), maxtasksperchild: int | None = None,
                 context: Any = None, cluster: Any = None, *, security: Any = None,
                 connect_timeout: float | None = None,
                 scatter_threshold: int = ...) -> None: ...
    @property
    def client(self) -> Any: ...

class ClusterExecutor(ProcessPoolExecutor):
    def __init__(self, max_workers: int | None = None, mp_context: Any = None,
                 initializer: Callable[..., object] | None = None,
                 initargs: tuple[Any, ...] = (), max_tasks_per_child: int | None = None,
                 cluster: Any = None, **options: Any) -> None: ...
    @property
    def client(self) -> Any: ...
