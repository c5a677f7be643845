"""Type stubs for gilfree.futures."""

import concurrent.futures as _cf
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from typing_extensions import ParamSpec

from gilfree.pool import TaskTimeoutError as TaskTimeoutError
from gilfree.pool import WorkerLostError as WorkerLostError

_T = TypeVar("_T")
_P = ParamSpec("_P")

__all__ = ["ProcessPoolExecutor", "Executor", "Future", "WorkerLostError", "TaskTimeoutError"]

class Future(_cf.Future[_T]): ...

class ProcessPoolExecutor(_cf.Executor):
    def __init__(self, max_workers: int | None = None, mp_context: Any = None,
                 initializer: Callable[..., object] | None = None,
                 initargs: tuple[Any, ...] = (),
                 max_tasks_per_child: int | None = None) -> None: ...
    def submit(self, fn: Callable[_P, _T], /, *args: _P.args,
               **kwargs: _P.kwargs) -> Future[_T]: ...
    def submit_with(self, fn: Callable[..., _T], args: Iterable[Any] = (),
                    kwargs: Mapping[str, Any] | None = None, timeout: float | None = None,
                    retries: int = 0) -> Future[_T]: ...
    def map(self, fn: Callable[..., _T], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, buffersize: int | None = None) -> Iterator[_T]: ...
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...

Executor = ProcessPoolExecutor
