"""One Pool and one ProcessPoolExecutor used from several threads at once: apply_async,
apply, map, imap, starmap and submit racing on the same pool; every result arrives once and
is right. Also run under ThreadSanitizer (scripts/pytest_tsan.sh)."""

import os
import threading

import pytest

import gilfree

THREADS = 4
ROUNDS = 10 if os.environ.get("GILFREE_TSAN") else 200


def mul(a, b):
    return a * b


def ident(x):
    return x


def _run_threads(fn):
    errors, barrier = [], threading.Barrier(THREADS)

    def body(t):
        try:
            barrier.wait(30)
            fn(t)
        except BaseException as e:  # reported below
            errors.append((t, e))

    threads = [threading.Thread(target=body, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors


@pytest.mark.timeout(180)
def test_pool_from_several_threads_at_once():
    with gilfree.Pool(2) as pool:
        def work(t):
            for r in range(ROUNDS):
                base = (t * 1000 + r) * 100
                rs = [pool.apply_async(mul, (base + i, 3)) for i in range(50)]
                timed = pool.apply_async(mul, (base, 5), timeout=30)
                m = pool.map(ident, range(base, base + 200))
                s = pool.starmap(mul, [(base + i, 2) for i in range(30)], chunksize=4)
                it = list(pool.imap(ident, ["%d-%d" % (t, i) for i in range(20)], chunksize=3))
                assert [x.get(timeout=60) for x in rs] == [(base + i) * 3 for i in range(50)]
                assert timed.get(timeout=60) == base * 5
                assert m == list(range(base, base + 200))
                assert s == [(base + i) * 2 for i in range(30)]
                assert it == ["%d-%d" % (t, i) for i in range(20)]
                assert pool.apply(mul, (t, r)) == t * r
        _run_threads(work)
        assert pool.stats()["deaths"] == 0


@pytest.mark.timeout(180)
def test_executor_from_several_threads_at_once():
    with gilfree.ProcessPoolExecutor(2) as ex:
        def work(t):
            for r in range(ROUNDS):
                base = (t * 1000 + r) * 100
                fs = [ex.submit(mul, base + i, 7) for i in range(40)]
                m = list(ex.map(ident, range(base, base + 50), chunksize=5))
                assert [f.result(timeout=60) for f in fs] == [(base + i) * 7 for i in range(40)]
                assert m == list(range(base, base + 50))
        _run_threads(work)
