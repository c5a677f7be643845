"""Type stubs for gilfree.cluster."""

from typing import Any

from gilfree.cluster.dask import VersionMismatchError as VersionMismatchError
from gilfree.cluster.pool import ClusterExecutor as ClusterExecutor
from gilfree.cluster.pool import ClusterPool as ClusterPool

__all__ = ["ClusterPool", "ClusterExecutor", "VersionMismatchError", "resolve"]

def resolve(cluster: Any = None) -> Any: ...
