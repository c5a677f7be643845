"""gilfree.cluster: the same Pool and ProcessPoolExecutor on more machines (Dask distributed).

Usage::

    pool = gilfree.Pool(cluster="tcp://scheduler:8786")     # or a distributed.Client,
    ex = gilfree.ProcessPoolExecutor(cluster="local")        # "local": a LocalCluster here
    GILFREE_CLUSTER=tcp://scheduler:8786 python program.py   # every Pool/Executor, no edit

``gilfree.Pool(..., cluster=...)`` (and ``GILFREE_CLUSTER`` when ``cluster`` is not given;
``cluster=False`` keeps a pool local) returns a :class:`ClusterPool`, a ``gilfree.Pool`` whose
tasks are Dask tasks; ``gilfree.ProcessPoolExecutor(cluster=...)`` a :class:`ClusterExecutor`.
See docs/cluster.md: set-up, security (``security=distributed.Security(...)``), and what
happens when a worker is lost, a task times out or versions differ.

The front classes ``gilfree.Pool`` / ``gilfree.ProcessPoolExecutor`` (gilfree._front,
gilfree._front_executor) choose between the local classes and these; this package builds on the
local pool, never the other way round. Importing it loads neither Dask nor the pool: that happens on first use.
"""

import os

__all__ = ["ClusterPool", "ClusterExecutor", "VersionMismatchError", "resolve"]

_LAZY = {"ClusterPool": "gilfree.cluster.pool", "ClusterExecutor": "gilfree.cluster.pool",
         "VersionMismatchError": "gilfree.cluster.dask"}


def resolve(cluster=None):
    """The cluster a Pool or Executor is to use: ``cluster`` when given (False or "" mean
    none), else the ``GILFREE_CLUSTER`` environment variable, else None (a local pool)."""
    if cluster is None:
        cluster = os.environ.get("GILFREE_CLUSTER") or None
    if cluster is False or (isinstance(cluster, str) and not cluster.strip()):
        return None
    return cluster


def __getattr__(name):
    """ClusterPool, ClusterExecutor and VersionMismatchError, imported on first use."""
    try:
        modname = _LAZY[name]
    except KeyError:
        raise AttributeError("module 'gilfree.cluster' has no attribute %r" % (name,)) from None
    import importlib
    value = getattr(importlib.import_module(modname), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
