"""Faults inside pool workers: death (SIGKILL, segfault, os._exit), a memory limit hit,
per-task timeouts, a SIGSTOP'd worker, cancelling a running task. Every task is accounted
for: its result, or the documented exception for the one task that met the fault; executions
are counted by a Ledger (no call runs twice where the docs say so)."""

import concurrent.futures as cf
import os
import signal
import time

import pytest

import gilfree
from gilfree import TaskTimeoutError, WorkerLostError

import faultlib
from faultlib import Ledger, task

N = 40


def _account(results, faulty, expect_exc):
    """results: {key: AsyncResult-like with .get(timeout)}. The faulty keys raise expect_exc,
    every other key returns itself. Returns (lost, wrong) lists (both must be empty)."""
    lost, wrong = [], []
    for key, r in results.items():
        try:
            v = r.get(timeout=60) if hasattr(r, "get") else r.result(timeout=60)
        except expect_exc:
            if key not in faulty:
                lost.append(key)
            continue
        if key in faulty or v != key:
            wrong.append((key, v))
    return lost, wrong


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", ["kill", "segv", "exit"])
@pytest.mark.parametrize("path", ["batched", "unbatched"])
def test_worker_death_mid_task(tmp_path, fault, path):
    led = Ledger(tmp_path / "ledger")
    faulty = {"7", "23"}
    kw = {} if path == "batched" else {"retries": 0, "timeout": 60}
    with gilfree.Pool(2) as pool:
        before = pool.stats()["deaths"]
        rs = {str(i): pool.apply_async(task, (led.path, str(i), fault if str(i) in faulty
                                              else None, 0.005), **kw) for i in range(N)}
        lost, wrong = _account(rs, faulty, WorkerLostError)
        assert (lost, wrong) == ([], [])
        counts = led.counts()
        assert set(counts) == {str(i) for i in range(N)}
        if path == "unbatched":  # a worker death fails only its own call; nothing re-runs
            assert all(c == 1 for c in counts.values()), counts
        else:  # a batch whose worker died is resubmitted call by call (documented): the
            # faulty call ran once or twice, the others at most twice
            assert max(counts.values()) <= 2, counts
        deaths = pool.stats()["deaths"] - before
        # each faulty call kills its worker once, or twice when its batch ran it first
        assert len(faulty) <= deaths <= (len(faulty) if path == "unbatched" else 2 * len(faulty))
        assert pool.map(faultlib.square, range(50)) == [x * x for x in range(50)]
        assert pool.stats()["live_workers"] == 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", ["kill", "segv", "exit"])
def test_executor_worker_death_runs_every_other_call_once(tmp_path, fault):
    led = Ledger(tmp_path / "ledger")
    faulty = {"5", "17"}
    with gilfree.ProcessPoolExecutor(2) as ex:
        fs = {str(i): ex.submit(task, led.path, str(i), fault if str(i) in faulty else None,
                                0.005) for i in range(N)}
        lost, wrong = _account(fs, faulty, WorkerLostError)
        assert (lost, wrong) == ([], [])
        assert led.counts() == {str(i): 1 for i in range(N)}
        assert ex.submit(faultlib.square, 9).result(timeout=30) == 81


@pytest.mark.timeout(120)
def test_map_with_a_dying_item_fails_the_map_and_the_pool_goes_on(tmp_path):
    led = Ledger(tmp_path / "ledger")
    args = [(led.path, str(i), "kill" if i == 11 else None, 0.005) for i in range(30)]
    with gilfree.Pool(2) as pool:
        with pytest.raises(WorkerLostError):
            pool.starmap(task, args, chunksize=1)
        counts = led.counts()
        assert max(counts.values()) == 1, counts  # chunksize=1: nothing ran twice
        assert pool.map(faultlib.square, range(20)) == [x * x for x in range(20)]


@pytest.mark.timeout(60)
def test_memory_limit_hit_mid_task(tmp_path):
    """RLIMIT_AS set inside the task, then an allocation over it: the caller gets the
    MemoryError (with the remote traceback); the worker lives on and the pool is usable."""
    led = Ledger(tmp_path / "ledger")
    with gilfree.Pool(2) as pool:
        pids = set(pool.worker_pids())
        rs = [pool.apply_async(task, (led.path, str(i), "oom" if i % 3 == 0 else None))
              for i in range(12)]
        for i, r in enumerate(rs):
            if i % 3 == 0:
                with pytest.raises(MemoryError):
                    r.get(timeout=30)
            else:
                assert r.get(timeout=30) == str(i)
        assert led.counts() == {str(i): 1 for i in range(12)}
        assert pool.map(faultlib.square, range(20)) == [x * x for x in range(20)]
        assert set(pool.worker_pids()) == pids and pool.stats()["deaths"] == 0


@pytest.mark.timeout(60)
def test_per_task_timeout_vs_waiting_timeout(tmp_path):
    """timeout= on the call limits how long it runs (TaskTimeoutError, worker replaced);
    get(timeout) only stops waiting (TimeoutError, the task runs on and its result comes)."""
    led = Ledger(tmp_path / "ledger")
    with gilfree.Pool(2) as pool:
        r = pool.apply_async(faultlib.slow, ("late", 0.6))
        with pytest.raises(gilfree.TimeoutError):
            r.get(timeout=0.05)
        assert r.get(timeout=30) == "late"
        hung = [pool.apply_async(task, (led.path, "h%d" % i, "hang"), timeout=0.5)
                for i in range(2)]
        ok = [pool.apply_async(task, (led.path, str(i)), timeout=30) for i in range(10)]
        t0 = time.monotonic()
        for h in hung:
            with pytest.raises(TaskTimeoutError):
                h.get(timeout=30)
        assert time.monotonic() - t0 < 20
        assert [o.get(timeout=30) for o in ok] == [str(i) for i in range(10)]
        assert led.counts() == dict({"h0": 1, "h1": 1}, **{str(i): 1 for i in range(10)})
        assert pool.map(faultlib.square, range(10)) == [x * x for x in range(10)]


@pytest.mark.timeout(60)
def test_sigstopped_worker_is_detected_by_its_timeout(tmp_path):
    led = Ledger(tmp_path / "ledger")
    with gilfree.Pool(2) as pool:
        r = pool.apply_async(task, (led.path, "s", "stop"), timeout=1.0)
        with pytest.raises(TaskTimeoutError):
            r.get(timeout=30)
        assert pool.apply(faultlib.square, (5,)) == 25
        assert led.counts() == {"s": 1}


@pytest.mark.timeout(60)
def test_sigstopped_worker_without_timeout_does_not_hang_the_pool(tmp_path):
    """No task timeout: the waiter's own timeout fires, and terminate() reaps the stopped
    worker (SIGKILL reaches a stopped process)."""
    led = Ledger(tmp_path / "ledger")
    pool = gilfree.Pool(2)
    pids = pool.worker_pids()
    r = pool.apply_async(task, (led.path, "s", "stop"))
    with pytest.raises(gilfree.TimeoutError):
        r.get(timeout=1.0)
    assert pool.apply(faultlib.square, (6,)) == 36  # the other worker serves
    t0 = time.monotonic()
    pool.terminate()
    pool.join()
    assert time.monotonic() - t0 < 10
    assert faultlib.wait_gone(pids) == []


@pytest.mark.timeout(60)
def test_executor_cancel_of_a_running_call(tmp_path):
    led = Ledger(tmp_path / "ledger")
    with gilfree.ProcessPoolExecutor(2) as ex:
        f = ex.submit(task, led.path, "long", "hang")
        deadline = time.monotonic() + 20
        while "long" not in led.counts() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert f.cancel() is True
        assert f.cancelled()
        with pytest.raises(cf.CancelledError):
            f.result(timeout=10)
        rest = [ex.submit(task, led.path, str(i)) for i in range(10)]
        assert [x.result(timeout=30) for x in rest] == [str(i) for i in range(10)]
        assert led.counts() == dict({"long": 1}, **{str(i): 1 for i in range(10)})


@pytest.mark.timeout(60)
def test_stdlib_style_cancel_of_a_queued_future():
    """concurrent.futures semantics for calls not started: cancel() -> True, never runs."""
    with gilfree.ProcessPoolExecutor(1) as ex:
        blocker = ex.submit(faultlib.slow, "b", 0.5)
        queued = [ex.submit(faultlib.square, i) for i in range(5)]
        assert all(q.cancel() for q in queued)
        assert blocker.result(timeout=30) == "b"
        assert all(q.cancelled() for q in queued)
        assert ex.submit(faultlib.square, 3).result(timeout=30) == 9


@pytest.mark.timeout(60)
def test_interrupted_map_cancels_its_running_chunks(tmp_path):
    """gilfree's own cancel: a map whose wait is interrupted cancels its chunks (queued ones
    never run, running ones are stopped) and the pool stays usable."""
    led = Ledger(tmp_path / "ledger")
    with gilfree.Pool(2) as pool:
        res = pool.starmap_async(task, [(led.path, str(i), None, 0.3) for i in range(40)],
                                 chunksize=1)
        deadline = time.monotonic() + 20
        while not led.counts() and time.monotonic() < deadline:  # some chunks have started
            time.sleep(0.01)
        res._cancel()
        time.sleep(0.5)
        ran = led.counts()
        assert 0 < len(ran) < 40 and max(ran.values()) == 1
        assert pool.map(faultlib.square, range(10)) == [x * x for x in range(10)]
        time.sleep(0.4)
        assert led.counts() == ran  # nothing of the cancelled map ran afterwards
