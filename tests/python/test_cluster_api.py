"""The Pool and Executor API suite on a real Dask cluster (issue 10).

These are the test functions of test_pool.py, test_pool_map.py and test_executor.py --
imported, not copied -- run a second time with GILFREE_CLUSTER naming the session's cluster
(a real `dask scheduler` and two `dask worker` processes, see conftest.py): their unchanged
``Pool(2)`` and ``ProcessPoolExecutor(2)`` are then a ClusterPool and a ClusterExecutor, which
is the drop-in promise itself. Left out: what only a local pool has (ThreadPool,
maxtasksperchild, Ctrl-C and parent-death of forked workers, fork contexts, mailbox
internals), the local pool's refusal of lambdas (the cluster sends them with cloudpickle),
and "a dead worker fails only the call it was running": Dask also fails (or retries) the
calls it had queued on that worker. test_cluster.py checks the cluster's own contract.
"""

import pytest

pytest.importorskip("distributed")

from test_executor import (ex, test_asyncio_gather_many, test_asyncio_wrap_future,  # noqa: F401,E402
                           test_cancel_queued, test_cancel_running, test_done_callback,
                           test_future_api_wait_as_completed_callbacks, test_map,
                           test_map_buffersize_bounds_readahead,
                           test_map_timeout_and_close_cancels, test_shutdown,
                           test_shutdown_wait_false_runs_everything, test_submit_and_futures,
                           test_task_timeout as test_executor_task_timeout,
                           test_worker_crash_keeps_serving)
from test_pool import (pool, test_async_result, test_basic_api, test_callbacks,  # noqa: F401,E402
                       test_closed_pool, test_context_manager_and_close_join_runs_everything,
                       test_imap_lazy_backpressure, test_initializer, test_int_results_roundtrip,
                       test_large_results_intact, test_many_tasks_auto_chunksize,
                       test_map_lines, test_progress, test_remote_exception, test_retries,
                       test_task_timeout, test_unpickling_error_in_worker)
from test_pool_map import (test_adaptive_concurrent_maps,  # noqa: F401,E402
                           test_adaptive_error_then_pool_still_works, test_adaptive_input_kinds,
                           test_adaptive_map_async_callback_without_waiter,
                           test_adaptive_slow_items_balance, test_adaptive_small_and_empty,
                           test_adaptive_starmap_and_timeout_arg,
                           test_adaptive_tiny_items_use_few_chunks, test_bytes_round_trip,
                           test_imap_and_executor_see_packed_chunks,
                           test_mixed_items_fall_back_to_pickle, test_results_packed_when_items_are_not,
                           test_str_round_trip_exact)


@pytest.fixture(autouse=True)
def _on_the_cluster(dask_address, monkeypatch):
    monkeypatch.setenv("GILFREE_CLUSTER", dask_address)


@pytest.mark.timeout(60)
def test_the_suite_runs_on_the_cluster(pool, ex):
    import gilfree
    from gilfree.cluster import ClusterExecutor, ClusterPool

    assert type(pool) is ClusterPool and isinstance(pool, gilfree.Pool)
    assert type(ex) is ClusterExecutor and isinstance(ex, gilfree.ProcessPoolExecutor)
    assert pool.stats()["live_workers"] == 2
