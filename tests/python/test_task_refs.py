"""References that die with their holder (issue 12): a pool task's shared-handle arguments
(SharedDict, Lock, Queue, ...) and out-of-band buffers belong to the task until its final
outcome, and each worker that decodes the task takes references of its own (recorded in its
reference ledger). So a worker SIGKILLed mid-task drops exactly its own (the pool's reclaim),
a retry finds the task's still valid, and the parent drops the task's at the outcome: result,
error, loss, timeout, cancel, terminate. Each test counts the arena's live blocks once
everything is dropped (the killed workers' holdings released first): nothing may be left."""

import gc
import os
import pickle
import signal
import time

import pytest

import gilfree
from conftest import live_blocks
from gilfree import _core

MiB = 1 << 20


def _leaked_after(fn):
    """Live arena blocks left by fn() once every object it made is dropped (a warm-up run
    first: the first pool of a process leaves lazily made state behind)."""
    fn()
    _core.arena_reclaim()
    before = live_blocks()
    fn()
    _core.arena_reclaim()
    gc.collect()
    return live_blocks() - before


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def die_holding(obj):
    """Task: SIGKILL the worker while it holds `obj` (a shared handle or an array)."""
    _die()


def use_or_die(marker, d, key):
    """Task: the first run (no `marker` yet) dies holding d; the re-run reads d[key]."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        _die()
    return d[key]


def _wait_for(path, seconds=20):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        assert time.monotonic() < deadline, path
        time.sleep(0.005)


def drop_then_die(marker, go, box, key):
    """Task: the first run waits for `go` (the parent has dropped its own handle), drops the
    handle it was given (box = [handle]) and dies; the re-run (retries=) must still find a
    live object in the same task bytes."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        _wait_for(go)
        del box[:]
        gc.collect()
        _die()
    return box[0][key]


def touch(obj, i):
    """Task: use a handle argument, return i."""
    if isinstance(obj, gilfree.SharedDict):
        obj[i % 4] = i
    else:
        with obj:
            pass
    return i


def hang(obj, seconds=60):
    time.sleep(seconds)


def arena_backed(a):
    """Task: is the NumPy argument a view of an arena block (zero-copy), and its sum."""
    base = a.base
    while base is not None and not isinstance(base, memoryview):
        base = getattr(base, "base", None)
    owner = base.obj if isinstance(base, memoryview) else None
    return type(owner).__name__, int(a[:16].sum())


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["dict", "lock"])
def test_worker_killed_with_handle_argument_leaks_nothing(kind):
    """(a) retries=0: the worker dies holding the argument; once the pool has reported the
    loss and the parent dropped its own handle, the object's block is freed."""
    def run():
        obj = gilfree.SharedDict() if kind == "dict" else gilfree.Lock()
        if kind == "dict":
            obj["k"] = list(range(100))
        with gilfree.Pool(1) as pool:
            r = pool.apply_async(die_holding, (obj,))
            with pytest.raises(gilfree.WorkerLostError):
                r.get(timeout=30)
            del r
            assert pool.apply(len, ([1, 2],), timeout=30) == 2  # the pool goes on
        off = obj._offset
        assert any(b[0] == off for b in _core._arena_blocks())
        del obj
        gc.collect()
        _core.arena_reclaim()
        # the object is gone: the task's reference was dropped with its loss, the dead
        # worker's by the pool's reclaim (and the workers forked since, which inherited the
        # parent's handle, were terminated: theirs too)
        assert not any(b[0] == off for b in _core._arena_blocks())
    assert _leaked_after(run) == 0


@pytest.mark.timeout(90)
def test_retried_task_with_handle_argument_leaks_nothing(tmp_path):
    """(b) retries=1: the first worker dies holding the argument, the re-run reads it."""
    n = [0]

    def run():
        n[0] += 1
        d = gilfree.SharedDict()
        d["k"] = "value"
        with gilfree.Pool(1) as pool:
            marker = str(tmp_path / f"m{n[0]}")
            assert pool.apply(use_or_die, (marker, d, "k"), retries=1, timeout=30) == "value"
            assert os.path.exists(marker)
        assert d["k"] == "value"
        del d
    assert _leaked_after(run) == 0


@pytest.mark.timeout(90)
def test_retry_after_the_worker_dropped_its_argument_finds_it_alive(tmp_path):
    """(c) The first worker drops the handle it was given, then dies; the parent has dropped
    its own meanwhile. The re-run decodes the same task bytes: the object must still be
    alive (the first worker's drop was of its own reference, not the task's). It used to be
    freed there: the re-run failed with ProtocolError ("does not name a live shared
    object") or used freed memory."""
    n = [0]

    def run():
        n[0] += 1
        marker, go = str(tmp_path / f"m{n[0]}"), str(tmp_path / f"go{n[0]}")
        with gilfree.Pool(1) as pool:
            assert pool.apply(len, ([1],), timeout=30) == 1  # its worker forked before d
            d = gilfree.SharedDict()
            d["k"] = 42
            r = pool.apply_async(drop_then_die, (marker, go, [d], "k"), retries=1, timeout=30)
            del d  # the task's reference alone keeps the dict alive now
            gc.collect()
            open(go, "w").close()
            assert r.get(timeout=60) == 42
            assert os.path.exists(marker)
    assert _leaked_after(run) == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["dict", "lock", "queue"])
def test_map_with_handle_arguments_leaks_nothing(kind):
    """(d) No deaths: many tasks (map chunks and apply calls) carrying handles."""
    def run():
        if kind == "dict":
            obj = gilfree.SharedDict()
        elif kind == "lock":
            obj = gilfree.Lock()
        else:
            obj = gilfree.Queue()
        with gilfree.Pool(2) as pool:
            if kind == "queue":
                assert pool.starmap(put_item, [(obj, i) for i in range(200)],
                                    chunksize=3) == list(range(200))
                assert sorted(obj.get(timeout=10) for _ in range(200)) == list(range(200))
            else:
                assert pool.starmap(touch, [(obj, i) for i in range(200)],
                                    chunksize=3) == list(range(200))
                rs = [pool.apply_async(touch, (obj, i)) for i in range(50)]
                assert [r.get(timeout=30) for r in rs] == list(range(50))
        del obj
    assert _leaked_after(run) == 0


def put_item(q, i):
    q.put(i)
    return i


def _wait_running(pids_of, seconds=20):
    """Wait until a worker exists, then a little more: the first task is running."""
    deadline = time.monotonic() + seconds
    while not any(pids_of()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("outcome", ["timeout", "error", "terminate", "cancel"])
def test_every_outcome_drops_the_task_references(outcome):
    """The task's references go at every final outcome, not only a result: a task killed
    at its timeout, failing, running (and queued) when the pool is terminated, a running
    future cancelled (its worker killed) and queued ones cancelled before they start."""
    def run():
        d = gilfree.SharedDict()
        d["k"] = 1
        if outcome == "cancel":
            ex = gilfree.ProcessPoolExecutor(1)
            f = ex.submit(hang, d)
            queued = [ex.submit(hang, d, 0) for _ in range(3)]
            _wait_running(ex._pool._core.pids)
            assert f.cancel() or f.cancelled() or f.done()
            for q in queued:
                q.cancel()
            ex.shutdown(wait=True, cancel_futures=True)
            del ex, f, queued
        else:
            pool = gilfree.Pool(1)
            if outcome == "timeout":
                with pytest.raises(gilfree.TaskTimeoutError):
                    pool.apply(hang, (d,), timeout=0.5)
                # the replacement worker has run a task: it has recorded the handle it
                # inherited (one killed in its first moments leaks it: docs/faults.md)
                assert pool.apply(len, ([1],), timeout=30) == 1
            elif outcome == "error":
                with pytest.raises(TypeError):
                    pool.apply(touch, (d,), timeout=30)  # a missing argument
            else:
                r = pool.apply_async(hang, (d,), timeout=60)
                queued = [pool.apply_async(hang, (d, 0), timeout=60) for _ in range(3)]
                _wait_running(pool._core.pids)
                del r, queued
            pool.terminate()
            pool.join()
            del pool
        del d
        gc.collect()
    assert _leaked_after(run) == 0


@pytest.mark.timeout(120)
def test_worker_killed_with_numpy_argument_frees_its_block():
    """(e) A NumPy argument >= 64 KiB travels as an arena block (zero-copy in the worker: a
    view of the block). The worker dies holding it: the block is freed once the pool has
    reported the loss; the same with a re-run, and after a normal run."""
    np = pytest.importorskip("numpy")

    def run():
        a = np.arange(MiB // 8, dtype=np.int64)
        with gilfree.Pool(1) as pool:
            assert pool.apply(arena_backed, (a,), timeout=30) == ("BlockView", 120)
            r = pool.apply_async(die_holding, (a,))
            with pytest.raises(gilfree.WorkerLostError):
                r.get(timeout=30)
            del r
            assert pool.apply(arena_backed, (a,), timeout=30)[1] == 120
        del a
    assert _leaked_after(run) == 0


@pytest.mark.timeout(120)
def test_retry_with_numpy_argument_after_the_worker_dropped_it(tmp_path):
    """The first worker drops its array (its view of the task's block) and dies; the
    re-run still reads the task's block (it used to be freed by the first worker)."""
    np = pytest.importorskip("numpy")
    n = [0]

    def run():
        n[0] += 1
        marker, go = str(tmp_path / f"m{n[0]}"), str(tmp_path / f"go{n[0]}")
        with gilfree.Pool(1) as pool:
            assert pool.apply(len, ([1],), timeout=30) == 1
            box = [np.full(MiB, 7, dtype=np.uint8)]
            r = pool.apply_async(drop_array_then_die, (marker, go, box), retries=1,
                                 timeout=30)
            del box
            open(go, "w").close()
            assert r.get(timeout=60) == 7 * 16
    assert _leaked_after(run) == 0


def drop_array_then_die(marker, go, box):
    """Task: as drop_then_die, with a NumPy array (a view of the task's arena block)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        _wait_for(go)
        del box[:]
        gc.collect()
        # the block is taken again by the next allocation of its size if it was freed
        import numpy as np
        junk = np.full(MiB, 1, dtype=np.uint8)
        junk += 0
        pickle.dumps(junk)
        _die()
    return int(box[0][:16].sum())


def _lock_from(d):
    return d["lock"]  # a stored value read while the task's argument is unpickled


class LockRef:
    """Pickles as a SharedDict and a key: unpickling reads the Lock stored in it (a read
    nested in the task's decode, which must adopt the value's references as any read)."""

    def __init__(self, d):
        self.d = d

    def __reduce__(self):
        return (_lock_from, (self.d,))


def use_lock(lock):
    with lock:
        return 1


def _refs(h):
    """The shared reference count of handle h (a pickle takes one for its receiver; dropping
    it again returns what is left)."""
    from multiprocessing.reduction import ForkingPickler

    ForkingPickler.dumps(h)
    return _core._obj_decref(h._offset)


@pytest.mark.timeout(60)
def test_value_read_nested_in_a_task_decode_keeps_the_counts():
    """A SharedDict value read by a reducer while a task's argument is unpickled adopts the
    stored value's references as any read does (it took references of its own, as the task's
    handles do: one leaked per read). The Lock's count ends where it started (a stored value
    keeps its references: DESIGN.md, shared dict)."""
    with gilfree.Pool(1) as pool:
        assert pool.apply(len, ([1],), timeout=30) == 1  # its worker forked before the lock
        d, lock = gilfree.SharedDict(), gilfree.Lock()
        d["lock"] = lock
        before = _refs(lock)
        assert pool.apply(use_lock, (LockRef(d),), timeout=30) == 1
        assert pool.map(use_lock, [LockRef(d)] * 8, chunksize=1) == [1] * 8
    _core.arena_reclaim()
    assert _refs(lock) == before


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["destroy", "dealloc"])
def test_outcomes_nobody_collected_are_released_with_the_pool(how):
    """_core.Pool destroyed (or deallocated) with task outcomes never collected -- a running
    task and queued ones, each holding a dict and an out-of-band buffer: what they kept goes
    with the pool."""
    import threading

    from gilfree._pool_errors import K_CALL, _errfn

    def run():
        d = gilfree.SharedDict()
        buf = pickle.PickleBuffer(bytearray(MiB))
        core = _core.Pool(1, 0, None, (), _errfn)
        t = threading.Thread(target=core.serve)
        t.start()
        try:
            core.start()
            fnb = pickle.dumps(hang)
            for _ in range(3):
                assert core.submit(K_CALL, fnb, ((d, buf), None), 60.0, 0, True) is not None
            time.sleep(0.3)  # the first one runs
            core.terminate()
            assert core.join(10)
            if how == "destroy":
                core.destroy()
        finally:
            core.stop()
            t.join(10)
        del core, d, buf
        gc.collect()
    assert _leaked_after(run) == 0
