"""The front doors ``gilfree.Pool`` and ``gilfree.ProcessPoolExecutor``: a local pool
(:class:`gilfree.pool.Pool`, :class:`gilfree.futures.ProcessPoolExecutor`), or the same API on a
cluster (:mod:`gilfree.cluster`) when ``cluster=`` is given or ``GILFREE_CLUSTER`` is set.

This module is the one place that knows both: the local classes know nothing of clusters, and
the cluster classes extend the local ones (gilfree.cluster imports gilfree.pool, never the
other way round). What a front class returns is a local or a cluster object, so
``isinstance(x, gilfree.Pool)`` holds for both (the front's isinstance is its local class's),
and ``type(gilfree.Pool(2)) is gilfree.pool.Pool``. A subclass of a front class is a local
pool or executor (subclass ``gilfree.cluster.ClusterPool`` for a cluster one).
The executor's front class is in gilfree._front_executor (with this module's metaclass), so
that ``gilfree.Pool`` does not load concurrent.futures and logging (~6 ms of a program's first
Pool()).
"""

from gilfree import pool as _pool
from gilfree.cluster import resolve

__all__ = ["Pool"]


class _Front(type):
    """The metaclass of a front class: ``isinstance`` / ``issubclass`` against the front class
    itself are those of the local class it stands for (cluster classes subclass that one);
    against a user's subclass they are as usual."""

    def __instancecheck__(cls, obj):
        local = cls.__dict__.get("_local")
        return isinstance(obj, local) if local else type.__instancecheck__(cls, obj)

    def __subclasscheck__(cls, sub):
        local = cls.__dict__.get("_local")
        return issubclass(sub, local) if local else type.__subclasscheck__(cls, sub)


def _open(front, cls, cluster, args, kwargs):
    """What ``front(*args, cluster=cluster, **kwargs)`` makes when called as `cls` (the front
    class or a user's subclass of it): a new `cls` object for a subclass (a local one: an
    explicit cluster raises TypeError), else an instance of the local class, or of its cluster
    class in gilfree.cluster.pool when `cluster` (or GILFREE_CLUSTER) names a cluster."""
    if cls is not front:
        if cluster not in (None, False, ""):
            raise TypeError("%s subclasses gilfree's local %s and runs locally; subclass "
                            "gilfree.cluster.%s to run on a cluster"
                            % (cls.__name__, front.__name__, front._cluster))
        return object.__new__(cls)
    spec = resolve(cluster)
    if spec is None:
        return front._local(*args, **kwargs)
    from gilfree.cluster import pool as _cluster_pool
    return getattr(_cluster_pool, front._cluster)(*args, cluster=spec, **kwargs)


class Pool(_pool.Pool, metaclass=_Front):
    """A process pool with the standard library's Pool API: :class:`gilfree.pool.Pool` on this
    machine, or :class:`gilfree.cluster.ClusterPool` -- the same methods and extras, its tasks
    run by Dask -- when ``cluster`` (an address, ``"local"``, a ``distributed.Client``) is given
    or ``GILFREE_CLUSTER`` is set (``cluster=False`` keeps the pool local). Keyword options of
    a cluster pool (``security=``, ``connect_timeout=``, ...) are ClusterPool's."""

    _local, _cluster = _pool.Pool, "ClusterPool"

    def __new__(cls, *args, cluster=None, **kwargs):
        return _open(Pool, cls, cluster, args, kwargs)

    def __init__(self, *args, cluster=None, **kwargs):  # a user's subclass (see _open)
        super().__init__(*args, **kwargs)
