"""Type stubs for gilfree.cluster.dask."""

from typing import Any

__all__ = ["DaskCore", "connect", "VersionMismatchError", "DEFAULT_CONNECT_TIMEOUT"]

DEFAULT_CONNECT_TIMEOUT: float
GRACE: float
LOCAL_CONFIG: dict[str, Any]

class VersionMismatchError(ValueError): ...

def connect(cluster: Any, processes: int | None = None, security: Any = None,
            connect_timeout: float = ...) -> tuple[Any, list[Any]]: ...

class DaskCore:
    client: Any
    def __init__(self, client: Any, owned: Any = (), scatter_threshold: int = ...,
                 init: Any = None) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def pids(self) -> list[int]: ...
    def nthreads(self) -> int: ...
