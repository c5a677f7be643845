"""Bad input across the process boundary: unpicklable arguments and results, pickles that
fail to load, messages too big for the arena; and fork() from a process whose other threads
are busy with gilfree objects. Each raises a clear exception in the caller (or works) and
leaves the pool / queue usable."""

import multiprocessing.pool
import os
import threading
import time

import pytest

import gilfree

import faultlib
from faultlib import FailsToLoad, Unpicklable


@pytest.fixture
def pool():
    p = gilfree.Pool(2)
    yield p
    p.terminate()
    p.join()


@pytest.mark.timeout(60)
def test_unpicklable_argument(pool):
    with pytest.raises(TypeError, match="refuse"):
        pool.apply_async(faultlib.square, (Unpicklable(),))
    with pytest.raises(TypeError, match="refuse"):
        pool.map(faultlib.square, [1, 2, Unpicklable()])
    with pytest.raises(TypeError, match="refuse"):
        pool.apply(faultlib.square, (Unpicklable(),), timeout=10)
    with gilfree.ProcessPoolExecutor(1) as ex:  # as the standard library: the future fails
        with pytest.raises(TypeError, match="refuse"):
            ex.submit(faultlib.square, Unpicklable()).result(timeout=10)
        assert ex.submit(faultlib.square, 4).result(timeout=10) == 16
    q = gilfree.Queue()
    with pytest.raises(TypeError, match="refuse"):
        q.put(Unpicklable())
    assert q.empty()
    assert pool.map(faultlib.square, range(5)) == [0, 1, 4, 9, 16]


@pytest.mark.timeout(60)
def test_unpicklable_result(pool):
    with pytest.raises(multiprocessing.pool.MaybeEncodingError, match="refuse"):
        pool.apply(faultlib.returns_unpicklable)
    rs = [pool.apply_async(faultlib.returns_unpicklable if i == 3 else faultlib.square, (i,))
          for i in range(8)]  # one batch: only the bad call fails
    for i, r in enumerate(rs):
        if i == 3:
            with pytest.raises(multiprocessing.pool.MaybeEncodingError):
                r.get(timeout=10)
        else:
            assert r.get(timeout=10) == i * i
    assert pool.stats()["deaths"] == 0


@pytest.mark.timeout(60)
def test_failing_unpickle(pool):
    # an argument that fails to load in the worker; a result that fails to load here
    with pytest.raises(RuntimeError, match="cannot rebuild"):
        pool.apply(faultlib.square, (FailsToLoad(),))
    with pytest.raises(RuntimeError, match="cannot rebuild"):
        pool.apply(faultlib.returns_fails_to_load)
    with gilfree.ProcessPoolExecutor(1) as ex:
        with pytest.raises(RuntimeError, match="cannot rebuild"):
            ex.submit(faultlib.returns_fails_to_load).result(timeout=10)
    q = gilfree.Queue()
    q.put(FailsToLoad())
    q.put("next")
    with pytest.raises(RuntimeError, match="cannot rebuild"):
        q.get(timeout=5)
    assert q.get(timeout=5) == "next"
    a, b = gilfree.Pipe()
    a.send(FailsToLoad())
    a.send("next")
    with pytest.raises(RuntimeError, match="cannot rebuild"):
        b.recv()
    assert b.recv() == "next"
    assert pool.apply(faultlib.square, (3,)) == 9 and pool.stats()["deaths"] == 0


OVERSIZED = """
import gilfree
def big(n): return bytes(n)
def size(b): return len(b)
N = 300 << 20  # over the 256 MiB arena
q = gilfree.Queue()
a, b = gilfree.Pipe()
pool = gilfree.Pool(2)
for what, fn in (("queue", lambda: q.put(bytes(N))), ("pipe", lambda: a.send_bytes(bytes(N))),
                 ("argument", lambda: pool.apply(size, (bytes(N),))),
                 ("argument-timeout", lambda: pool.apply(size, (bytes(N),), timeout=30)),
                 ("result", lambda: pool.apply(big, (N,)))):
    try:
        fn()
        print(what, "no error")
    except Exception as e:
        print(what, type(e).__name__, "arena" in str(e))
q.put("q ok"); a.send("pipe ok")
print(q.get(timeout=5), b.recv(), pool.apply(size, (b"abc",)), pool.stats()["deaths"])
pool.terminate()
"""


@pytest.mark.timeout(60)
def test_oversized_message():
    """A message bigger than the arena raises MemoryError where it is sent (a result: the
    task fails with MaybeEncodingError whose reason is that MemoryError, the worker lives);
    nothing is enqueued and everything stays usable. (A 256 MiB arena: GILFREE_ARENA_SIZE.)"""
    proc = faultlib.run_script(OVERSIZED, env={"GILFREE_ARENA_SIZE": str(256 << 20)})
    out, err = proc.communicate(timeout=50)
    assert proc.returncode == 0, err[-3000:]
    assert out.splitlines() == [
        "queue MemoryError True", "pipe MemoryError True", "argument MemoryError True",
        "argument-timeout MemoryError True", "result MaybeEncodingError True",
        "q ok pipe ok 3 0"], (out, err[-3000:])


def _busy(stop, q, d, lock, pool, errors):
    i = 0
    try:
        while not stop.is_set():
            q.put(("x", i))
            q.get(timeout=10)
            d[i % 500] = "v" * (i % 300)
            with lock:
                i += 1
            if i % 50 == 0:
                assert pool.apply_async(faultlib.square, (i,)).get(timeout=30) == i * i
    except BaseException as e:  # reported by the test
        errors.append(e)


def _child_uses_everything(q, d, lock):
    q.put("child")
    assert q.get(timeout=10) is not None
    d["child"] = os.getpid()
    assert d["child"] == os.getpid()
    assert lock.acquire(timeout=10)
    lock.release()
    with gilfree.Pool(2) as p:
        assert p.map(faultlib.square, range(20)) == [x * x for x in range(20)]


@pytest.mark.timeout(120)
def test_fork_while_other_threads_use_gilfree(fork):
    q, d, lock = gilfree.Queue(), gilfree.SharedDict(), gilfree.Lock()
    stop, errors = threading.Event(), []
    with gilfree.Pool(2) as pool:
        threads = [threading.Thread(target=_busy, args=(stop, q, d, lock, pool, errors))
                   for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for i in range(12):
                time.sleep(0.02)
                pid = fork(_child_uses_everything, q, d, lock)
                assert fork.join(pid, 60) == 0, "child %d failed (or hung)" % i
                p = gilfree.Process(target=_child_uses_everything, args=(q, d, lock))
                p.start()
                p.join(60)
                assert p.exitcode == 0, "gilfree.Process child %d: %r" % (i, p.exitcode)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert not errors, errors
        assert pool.map(faultlib.square, range(10)) == [x * x for x in range(10)]
