"""The demo's cluster rows: the seed workloads run by ``gilfree.Pool(cluster=...)``
(``python -m gilfree demo --cluster local|ADDRESS``, see gilfree.demo.runners).

``local`` starts one ``distributed.LocalCluster`` of ``--workers`` single-threaded worker
processes for the whole demo (outside the timed region, as the pools are) and closes it at
the end. With an address, the workloads' functions are sent by value (cloudpickle), so the
cluster's workers need Pillow for the GIF but not gilfree.
"""

import contextlib

from gilfree.demo import runners

__all__ = ["DaskRunner", "demo_runners"]


def demo_runners(cluster=None):
    """The demo's cluster rows (``python -m gilfree demo --cluster local|ADDRESS``; the hook
    gilfree.demo.runners.backends calls): one runner running the seed workloads on
    ``cluster``; [] when no cluster is given."""
    if not cluster:
        return []
    return [DaskRunner(cluster)]


class _ClusterSession(runners._GilfreeSession):
    """The tutorial's ``map`` on the cluster pool (with its progress bar); frames in shared
    memory do not exist on a cluster."""

    def shared_array(self, shape, dtype):
        raise runners.Unsupported("a cluster has no shared memory arrays")


class DaskRunner(runners.Runner):
    """gilfree's Pool on a Dask cluster: ``"local"`` or a scheduler address."""

    name = "gilfree-dask"

    def __init__(self, cluster):
        self.cluster = cluster
        self.local = str(cluster).strip().lower() == "local"
        self.label = "gilfree Pool on Dask (%s)" % ("local cluster" if self.local else cluster)
        self._client = None
        self._owned = []

    def available(self):
        """(False, why) when dask.distributed is not installed or the cluster is out of
        reach; connects (and starts a local cluster) on first use."""
        try:
            import distributed  # noqa: F401
        except ImportError as e:
            return False, ("dask.distributed is not installed (pip install -r "
                           "requirements/cluster.txt): %s" % e)
        return True, ""

    def _connect(self, workers):
        if self._client is None:
            from gilfree.cluster import dask as backend
            self._client, self._owned = backend.connect(self.cluster, processes=workers)
            if not self.local:
                import cloudpickle
                from gilfree.demo import workloads
                cloudpickle.register_pickle_by_value(workloads)
        return self._client

    @contextlib.contextmanager
    def session(self, workers):
        """A ClusterPool on this runner's client (connected once, on first use)."""
        import gilfree
        with gilfree.Pool(workers, cluster=self._connect(workers)) as pool:
            yield _ClusterSession(pool, self.label)

    def close(self):
        """Close what this runner started (the client; a local cluster)."""
        for o in self._owned:
            try:
                o.close()
            except Exception:
                pass
        self._owned = []
        self._client = None
