"""The front door ``gilfree.ProcessPoolExecutor`` (``gilfree.Executor``): a local
:class:`gilfree.futures.ProcessPoolExecutor`, or :class:`gilfree.cluster.ClusterExecutor` when
``cluster=`` is given or ``GILFREE_CLUSTER`` is set -- as gilfree._front does for ``Pool``, in a
module of its own so that ``gilfree.Pool`` does not import concurrent.futures."""

from gilfree import futures as _futures
from gilfree._front import _Front, _open

__all__ = ["ProcessPoolExecutor", "Executor"]


class ProcessPoolExecutor(_futures.ProcessPoolExecutor, metaclass=_Front):
    """A ``concurrent.futures`` executor: :class:`gilfree.futures.ProcessPoolExecutor` on this
    machine, or :class:`gilfree.cluster.ClusterExecutor` (real ``concurrent.futures.Future``s,
    its calls run by Dask) when ``cluster`` is given or ``GILFREE_CLUSTER`` is set
    (``cluster=False`` keeps it local)."""

    _local, _cluster = _futures.ProcessPoolExecutor, "ClusterExecutor"

    def __new__(cls, *args, cluster=None, **kwargs):
        return _open(ProcessPoolExecutor, cls, cluster, args, kwargs)

    def __init__(self, *args, cluster=None, **kwargs):  # a user's subclass (see _open)
        super().__init__(*args, **kwargs)


Executor = ProcessPoolExecutor
