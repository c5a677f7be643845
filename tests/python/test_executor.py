"""gilfree.ProcessPoolExecutor: a real concurrent.futures.Executor (h9-pypool)."""

import asyncio
import concurrent.futures as cf
import os
import signal
import time

import pytest

import gilfree
from gilfree import ProcessPoolExecutor, TaskTimeoutError, WorkerLostError


def sq(x):
    return x * x


def add(a, b=0):
    return a + b


def boom(x):
    raise KeyError(x)


def sleepy(t):
    time.sleep(t)
    return t


def die(_):
    os.kill(os.getpid(), signal.SIGKILL)


def getpid(_=None):
    return os.getpid()


_v = None


def _init(v):
    global _v
    _v = v


def get_v(_=None):
    return _v


@pytest.fixture
def ex():
    e = ProcessPoolExecutor(2)
    yield e
    e.shutdown(wait=True, cancel_futures=True)


@pytest.mark.timeout(30)
def test_submit_and_futures(ex):
    assert gilfree.Executor is ProcessPoolExecutor
    assert isinstance(ex, cf.Executor)
    f = ex.submit(add, 1, b=2)
    assert isinstance(f, cf.Future)
    assert f.result(timeout=10) == 3
    fs = [ex.submit(sq, i) for i in range(20)]
    done, not_done = cf.wait(fs, timeout=20)
    assert not not_done
    assert sorted(f.result() for f in cf.as_completed(fs, timeout=20)) == [i * i for i in range(20)]
    with pytest.raises(KeyError):
        ex.submit(boom, 1).result(timeout=10)
    assert isinstance(ex.submit(boom, 2).exception(timeout=10), KeyError)


@pytest.mark.timeout(30)
def test_done_callback(ex):
    got = []
    f = ex.submit(sq, 4)
    f.add_done_callback(lambda fut: got.append(fut.result()))
    cf.wait([f], timeout=10)
    deadline = time.time() + 5
    while not got and time.time() < deadline:
        time.sleep(0.01)
    assert got == [16]


@pytest.mark.timeout(30)
def test_asyncio_wrap_future(ex):
    async def main():
        return await asyncio.wrap_future(ex.submit(sq, 9))

    assert asyncio.run(main()) == 81


@pytest.mark.timeout(30)
def test_map(ex):
    assert list(ex.map(sq, range(10))) == [i * i for i in range(10)]
    assert list(ex.map(add, range(10), range(10), chunksize=3)) == [2 * i for i in range(10)]
    assert list(ex.map(sq, range(50), buffersize=4)) == [i * i for i in range(50)]
    with pytest.raises(cf.TimeoutError):
        list(ex.map(sleepy, [5], timeout=0.2))


@pytest.mark.timeout(30)
def test_map_buffersize_bounds_readahead(ex):
    seen = []

    def gen():
        for i in range(1000):
            seen.append(i)
            yield i

    it = ex.map(sq, gen(), buffersize=5)
    assert next(it) == 0
    assert len(seen) <= 7


@pytest.mark.timeout(30)
def test_cancel_running(ex):
    f = ex.submit(sleepy, 30)
    time.sleep(0.5)
    assert f.cancel() is True
    assert f.cancelled()
    with pytest.raises(cf.CancelledError):
        f.result()
    assert ex.submit(sq, 3).result(timeout=10) == 9


@pytest.mark.timeout(30)
def test_cancel_queued(ex):
    blockers = [ex.submit(sleepy, 0.5) for _ in range(2)]
    f = ex.submit(sq, 5)
    assert f.cancel() is True
    done, _ = cf.wait([f], timeout=5)
    assert f in done
    assert [b.result(timeout=10) for b in blockers] == [0.5, 0.5]


@pytest.mark.timeout(60)
def test_worker_crash_keeps_serving(ex):
    f = ex.submit(die, 1)
    with pytest.raises(WorkerLostError):
        f.result(timeout=20)
    assert [ex.submit(sq, i).result(timeout=10) for i in range(5)] == [0, 1, 4, 9, 16]


@pytest.mark.timeout(30)
def test_task_timeout(ex):
    f = ex.submit_with(sleepy, (30,), timeout=0.2)
    with pytest.raises(TaskTimeoutError):
        f.result(timeout=20)
    assert ex.submit(sq, 2).result(timeout=10) == 4


@pytest.mark.timeout(30)
def test_shutdown():
    e = ProcessPoolExecutor(2)
    fs = [e.submit(sleepy, 0.05) for _ in range(6)]
    e.shutdown(wait=True)
    assert all(f.done() for f in fs)
    with pytest.raises(RuntimeError):
        e.submit(sq, 1)


@pytest.mark.timeout(30)
def test_initializer_and_max_tasks_per_child():
    with ProcessPoolExecutor(2, initializer=_init, initargs=(7,), max_tasks_per_child=2) as e:
        assert set(e.map(get_v, range(10))) == {7}
        pids = [e.submit(getpid).result(timeout=10) for _ in range(10)]
        counts = {}
        for p in pids:
            counts[p] = counts.get(p, 0) + 1
        assert max(counts.values()) <= 2


# ---------------------------------------------------------------- p2-exec: semantics

def log_and_sq(path, x):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"%d\n" % x)
    finally:
        os.close(fd)
    return x * x


def log_then_die(path, x):
    log_and_sq(path, x)
    os.kill(os.getpid(), signal.SIGKILL)


def unpicklable_arg():
    return lambda: 0


@pytest.mark.timeout(60)
def test_shutdown_cancel_futures_lets_running_finish():
    e = ProcessPoolExecutor(2)
    running = [e.submit(sleepy, 0.6) for _ in range(2)]
    deadline = time.time() + 10
    while len(e._pool._pending) < 2 and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # both are running (one per worker)
    queued = [e.submit(sq, i) for i in range(300)]  # mailboxes and backlog
    e.shutdown(wait=True, cancel_futures=True)
    assert [f.result(timeout=0) for f in running] == [0.6, 0.6]
    assert all(f.done() for f in queued)
    assert sum(f.cancelled() for f in queued) >= 290
    for f in queued:
        if not f.cancelled():
            assert f.result(timeout=0) in [i * i for i in range(300)]


@pytest.mark.timeout(60)
def test_crash_fails_only_its_future_and_nothing_runs_twice(tmp_path):
    path = str(tmp_path / "log")
    with ProcessPoolExecutor(2) as e:
        fs = [e.submit(log_and_sq, path, i) for i in range(400)]
        bad = e.submit(log_then_die, path, 10_000)
        fs += [e.submit(log_and_sq, path, i) for i in range(400, 800)]
        with pytest.raises(WorkerLostError):
            bad.result(timeout=30)
        assert [f.result(timeout=30) for f in fs] == [i * i for i in range(800)]
    with open(path) as fh:
        seen = [int(x) for x in fh.read().split()]
    assert sorted(seen) == list(range(800)) + [10_000]  # each call ran exactly once


@pytest.mark.timeout(60)
def test_submit_does_not_block_behind_busy_workers():
    with ProcessPoolExecutor(2) as e:
        blockers = [e.submit(sleepy, 1.0) for _ in range(2)]
        fs = [e.submit(sq, i) for i in range(2000)]  # far beyond the workers' mailboxes
        assert not any(b.done() for b in blockers)
        assert [f.result(timeout=30) for f in fs] == [i * i for i in range(2000)]
        assert [b.result(timeout=30) for b in blockers] == [1.0, 1.0]


@pytest.mark.timeout(60)
def test_cancel_backlog_future(ex):
    blockers = [ex.submit(sleepy, 0.5) for _ in range(2)]
    fs = [ex.submit(sq, i) for i in range(1000)]
    last = fs[-1]
    assert last.cancel() is True and last.cancelled() and last.done()
    with pytest.raises(cf.CancelledError):
        last.result(timeout=0)
    assert [f.result(timeout=30) for f in fs[:-1]] == [i * i for i in range(999)]
    assert [b.result(timeout=10) for b in blockers] == [0.5, 0.5]


@pytest.mark.timeout(60)
def test_future_api_wait_as_completed_callbacks(ex):
    f = ex.submit(sleepy, 0.3)
    assert not f.done() and not f.cancelled() and f.running() is False
    with pytest.raises(cf.TimeoutError):
        f.result(timeout=0.01)
    with pytest.raises(cf.TimeoutError):
        f.exception(timeout=0.01)
    done, not_done = cf.wait([f, ex.submit(sq, 2)], return_when=cf.FIRST_COMPLETED, timeout=10)
    assert done
    assert f.result(timeout=10) == 0.3 and f.exception() is None
    got = []
    f.add_done_callback(got.append)  # already done: called at once
    assert got == [f]
    fs = [ex.submit(sq, i) for i in range(1500)]  # some wait in the backlog
    assert sorted(x.result() for x in cf.as_completed(fs, timeout=30)) == \
        sorted(i * i for i in range(1500))
    calls = []
    gs = [ex.submit(sq, i) for i in range(300)]
    for g in gs:
        g.add_done_callback(lambda fut: calls.append(fut.result()))
    done, not_done = cf.wait(gs, timeout=30)
    assert not not_done
    deadline = time.time() + 10
    while len(calls) < 300 and time.time() < deadline:
        time.sleep(0.01)
    assert sorted(calls) == sorted(i * i for i in range(300))
    err = ex.submit(boom, 3)
    cf.wait([err], timeout=10)
    assert isinstance(err.exception(), KeyError)
    assert "finished raised KeyError" in repr(err)


@pytest.mark.timeout(60)
def test_asyncio_gather_many(ex):
    async def main():
        return await asyncio.gather(*[asyncio.wrap_future(ex.submit(sq, i))
                                      for i in range(500)])

    assert asyncio.run(main()) == [i * i for i in range(500)]


@pytest.mark.timeout(30)
def test_unpicklable_argument_fails_its_future(ex):
    f = ex.submit(sq, unpicklable_arg())
    assert f.exception(timeout=10) is not None
    assert ex.submit(sq, 4).result(timeout=10) == 16


@pytest.mark.timeout(30)
def test_map_timeout_and_close_cancels(ex):
    it = ex.map(sleepy, [0.05] * 4 + [5] * 4, buffersize=2)
    assert next(it) == 0.05
    it.close()
    assert ex.submit(sq, 6).result(timeout=10) == 36


@pytest.mark.timeout(30)
def test_shutdown_wait_false_runs_everything():
    e = ProcessPoolExecutor(2)
    fs = [e.submit(sq, i) for i in range(1000)]
    e.shutdown(wait=False)
    assert [f.result(timeout=20) for f in fs] == [i * i for i in range(1000)]


@pytest.mark.timeout(60)
def test_backlog_survives_every_worker_being_replaced():
    # cancelling both running calls kills both workers while hundreds wait in the backlog:
    # nothing may be left undispatched (no result would come to dispatch it)
    for _ in range(3):
        with ProcessPoolExecutor(2) as e:
            blockers = [e.submit(sleepy, 30) for _ in range(2)]
            deadline = time.time() + 10
            while len(e._pool._pending) < 2 and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            fs = [e.submit(sq, i) for i in range(500)]
            assert all(b.cancel() for b in blockers)
            assert [f.result(timeout=30) for f in fs] == [i * i for i in range(500)]
            assert e.submit(sq, 7).result(timeout=10) == 49
