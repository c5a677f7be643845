"""NumPy arrays made in a pool worker live in the shared-memory arena (src/ext/npalloc.c):
a returned array travels by reference, arrays the worker keeps are copied when returned, the
blocks are freed by whichever process drops them last, and the handler gives heap memory back
to NumPy's own allocator (small arrays, zeroed memory, object dtypes, realloc)."""

import pickle
import time

import pytest

import gilfree
from gilfree import _core
from conftest import live_blocks

np = pytest.importorskip("numpy")

BIG = 1 << 18  # float64 items: 2 MiB, above the default threshold (128 KiB)

_KEPT = []


def _make(n, k=2.0):
    return np.arange(n, dtype=np.float64) * k


def _info(_=None):
    return _core.numpy_arena_info()


def _probe(_=None):
    """Where the worker's arrays of each kind live (True: in the arena)."""
    return {
        "computed": _core.in_arena(np.arange(BIG, dtype=np.float64) * 2),
        "small": _core.in_arena(np.ones(1000)),
        "zeros": _core.in_arena(np.zeros(BIG)),
        "object": _core.in_arena(np.empty(BIG, dtype=object)),
        "object_computed": _core.in_arena(np.arange(BIG).astype(object)),
        "structured_object": _core.in_arena(np.empty(BIG, dtype=[("a", "f8"), ("b", "O")])),
    }


def _keep(n):
    a = np.full(n, 7.0)
    _KEPT.append(a)
    return a


def _kept_sum(_=None):
    return [float(a.sum()) for a in _KEPT]


def _drop_kept(_=None):
    _KEPT.clear()
    return _info()


def _views(n):
    a = np.arange(n, dtype=np.float64)
    return {"slice": a[10:], "strided": a[::3], "reshaped": a.reshape(2, -1),
            "whole_view": a.view(), "base": a}


def _resized(n):
    a = np.arange(n, dtype=np.float64)
    a.resize(2 * n, refcheck=False)          # realloc of an arena block: grows
    b = np.arange(n, dtype=np.float64)
    b.resize(100, refcheck=False)            # shrinks below the threshold: to the heap
    c = np.arange(100, dtype=np.float64)
    c.resize(n, refcheck=False)              # a heap block grows: stays NumPy's
    d = np.resize(np.arange(n, dtype=np.float64), 3 * n)
    return a, b, c, d, _info()["live_blocks"]


@pytest.mark.timeout(60)
def test_worker_made_result_arrives_in_the_arena_with_correct_values():
    with gilfree.Pool(1) as pool:
        out = pool.apply(_make, (BIG,))
        assert _core.in_arena(out)
        assert out.dtype == np.float64 and out.shape == (BIG,)
        assert (out == np.arange(BIG) * 2.0).all()
        out[0] = 5.0                         # the parent's array is writable
        assert out[0] == 5.0
        info = pool.apply(_info)
        assert info["installed"] and info["threshold"] == 128 << 10
        assert info["live_blocks"] == 0      # the worker let go of it


@pytest.mark.timeout(60)
def test_small_zeroed_and_object_arrays_stay_on_the_heap():
    with gilfree.Pool(1) as pool:
        where = pool.apply(_probe)
    assert where == {"computed": True, "small": False, "zeros": False, "object": False,
                     "object_computed": False, "structured_object": False}
    assert not _core.numpy_arena_info()["installed"]  # the parent keeps NumPy's allocator


@pytest.mark.timeout(120)
def test_thousand_tasks_returning_arrays_leak_no_blocks():
    with gilfree.Pool(2) as pool:
        pool.map(_make, [BIG] * 4)           # workers warmed up, handler installed
        before = live_blocks()
        for i in range(1000):
            out = pool.apply(_make, (BIG // 4, float(i)))
            assert out[1] == float(i)
        del out
        for outs in (pool.map(_make, [BIG // 4] * 50), pool.map(_make, [BIG // 4] * 50, 7)):
            assert all(_core.in_arena(o) for o in outs)
        del outs
        assert live_blocks() == before
        assert all(i["live_blocks"] == 0 for i in pool.map(_info, range(8), 1))


@pytest.mark.timeout(60)
def test_kept_array_is_copied_not_shared():
    with gilfree.Pool(1) as pool:
        got = pool.apply(_keep, (BIG,))
        got[:] = 1.0                          # must not write the worker's kept array
        assert pool.apply(_kept_sum) == [7.0 * BIG]
        again = pool.apply(_keep, (BIG,))
        assert (again == 7.0).all() and (got == 1.0).all()
        assert pool.apply(_info)["live_blocks"] == 2
        assert pool.apply(_drop_kept)["live_blocks"] == 0


@pytest.mark.timeout(60)
def test_arrays_outlive_the_pool_and_kept_arrays_are_freed_at_worker_exit():
    before = live_blocks()
    pool = gilfree.Pool(1)
    outs = [pool.apply(_make, (BIG, float(k))) for k in range(3)]
    pool.apply(_keep, (BIG,))                 # alive in the worker when it exits
    pool.close()
    pool.join()
    del pool
    for k, o in enumerate(outs):
        assert o[-1] == (BIG - 1) * float(k)
    assert live_blocks() > before
    del outs, o
    assert live_blocks() == before


@pytest.mark.timeout(60)
def test_views_and_slices():
    with gilfree.Pool(1) as pool:
        r = pool.apply(_views, (BIG,))
    a = np.arange(BIG, dtype=np.float64)
    assert (r["slice"] == a[10:]).all() and (r["strided"] == a[::3]).all()
    assert (r["reshaped"] == a.reshape(2, -1)).all() and (r["whole_view"] == a).all()
    assert (r["base"] == a).all()
    base, sl = r["base"], r["slice"][:5]
    del r
    base[:] = -1.0                           # the parent's copies are independent
    assert (sl == a[10:15]).all()
    # received arrays, sent on: still correct on the way back
    with gilfree.Pool(1) as pool:
        back = pool.apply(_identity, (base,))
    assert (back == -1.0).all()


def _identity(x):
    return x


@pytest.mark.timeout(60)
def test_realloc_and_resize():
    n = BIG
    with gilfree.Pool(1) as pool:
        a, b, c, d, live = pool.apply(_resized, (n,))
        assert pool.apply(_info)["live_blocks"] == 0
    assert live == 2                          # a and d in the arena (b, c on the heap)
    assert (a[:n] == np.arange(n)).all() and a.shape == (2 * n,) and (a[n:] == 0).all()
    assert (b == np.arange(100)).all()
    assert (c[:100] == np.arange(100)).all() and c.shape == (n,)
    assert (d == np.resize(np.arange(n, dtype=np.float64), 3 * n)).all()


def _env_off(_=None):
    return _core.numpy_arena_info()["disabled"], _core.in_arena(np.ones(BIG))


@pytest.mark.timeout(60)
def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("GILFREE_NUMPY_ARENA", "0")
    with gilfree.Pool(1) as pool:
        assert pool.apply(_env_off) == (True, False)
        out = pool.apply(_make, (BIG,))       # copied out of band, as before
    assert (out == np.arange(BIG) * 2.0).all()


def test_in_arena_helper():
    assert not _core.in_arena(np.ones(10))
    assert not _core.in_arena(b"abc")
    with pytest.raises(TypeError):
        _core.in_arena(object())
    mv = pickle.loads(pickle.dumps(np.ones(4)))
    assert not _core.in_arena(mv)


def _put_then_change(q, n):
    a = np.arange(n, dtype=np.float64)
    q.put(a)                                  # a lives on here: the message gets a copy
    a[:] = -1.0
    return _core.in_arena(a)


@pytest.mark.timeout(60)
def test_array_a_worker_sends_on_a_queue_and_keeps_is_copied():
    q = gilfree.Queue()
    with gilfree.Pool(1) as pool:
        assert pool.apply(_put_then_change, (q, BIG))
        got = q.get(timeout=30)
    assert (got == np.arange(BIG)).all()


@pytest.mark.timeout(60)
def test_executor_results_travel_the_same_way():
    with gilfree.ProcessPoolExecutor(1) as ex:
        out = ex.submit(_make, BIG, 3.0).result()
        assert _core.in_arena(out) and out[-1] == (BIG - 1) * 3.0
        assert ex.submit(_info).result()["live_blocks"] == 0


def _keep_many_and_die(k):
    """k live arrays in this worker's arena (more than the block ledger's 8 entries for
    arrays), then a SIGKILL."""
    import os
    import signal

    _KEPT.extend(np.full(BIG, float(i)) for i in range(k))
    assert all(_core.in_arena(a) for a in _KEPT)
    os.kill(os.getpid(), signal.SIGKILL)


def _dead_blocks():
    return [b for b in _core._arena_blocks(64 << 10) if not b[4]]


@pytest.mark.timeout(60)
def test_killed_worker_with_many_live_arrays_leaks_none():
    """A worker killed holding 20 live arena arrays: the survivors free every one (the first
    8 are in its block ledger, the rest in its reference ledger; the 12 past the 8 leaked)."""
    _core.arena_reclaim()
    earlier = {b[0] for b in _dead_blocks()}  # left by earlier tests (documented windows)

    def ours():
        return [b for b in _dead_blocks() if b[0] not in earlier]

    with gilfree.Pool(1) as pool:
        with pytest.raises(gilfree.WorkerLostError):
            pool.apply(_keep_many_and_die, (20,))
        deadline = time.monotonic() + 10
        while ours() and time.monotonic() < deadline:
            _core.arena_reclaim()
            time.sleep(0.05)
        assert ours() == []
        assert pool.apply(abs, (-3,)) == 3


def _fork_a_child_that_dies(k):
    """Make k arena arrays, fork a child that is SIGKILLed at once (its inherited holders on
    them recorded inside fork()), drop the arrays: the live block count is back where it was
    once the dead child's holders are dropped."""
    import gc
    import os
    import signal

    gc.collect()
    before = _core.arena_stats()["live_blocks"]
    arrays = [np.full(BIG, float(i)) for i in range(k)]
    assert all(_core.in_arena(a) for a in arrays)
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)
    os.waitpid(pid, 0)
    _core.arena_reclaim()
    # the child's holders are gone, ours are not (a holder dropped twice would free them)
    still = _core.arena_stats()["live_blocks"] - before
    assert still == k and all((a == float(i)).all() for i, a in enumerate(arrays)), still
    del arrays
    gc.collect()
    _core.arena_reclaim()
    return _core.arena_stats()["live_blocks"] - before


@pytest.mark.timeout(60)
def test_forked_child_killed_gives_back_its_inherited_arrays():
    """A worker's arrays inherited by a forked child (it takes a holder on each): the child
    killed at once leaves none of those holders (they leaked: the blocks stayed live after the
    worker dropped its arrays)."""
    with gilfree.Pool(1) as pool:
        assert pool.apply(_fork_a_child_that_dies, (3,)) == 0
