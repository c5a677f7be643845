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
