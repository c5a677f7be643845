"""Faults around shared objects: the parent SIGKILLed (workers exit, the arena memfd dies
with its last user), a lock holder SIGKILLed (OwnerDeadError once, then normal), a dict
writer SIGKILLed mid-resize and a queue producer SIGKILLed mid-message (the survivors see a
consistent object, at most the killed operation lost), and what the killed process held --
its references to the lock, event, dict or queue, its blocks in flight -- is dropped by the
survivors (the reference ledger, src/core/arena_ledger.c): nothing leaks."""

import json
import os
import random
import signal
import time

import pytest

import gilfree

import faultlib

PARENT = """
import json, os, time
import gilfree
from gilfree import _core
import faultlib
pool = gilfree.Pool(2)
ex = gilfree.ProcessPoolExecutor(2)
q = gilfree.Queue(); q.put(b"x" * (1 << 20))
d = gilfree.SharedDict(); d.update((i, i) for i in range(1000))
rs = [pool.apply_async(faultlib.slow, (i, 60)) for i in range(4)]
f = ex.submit(faultlib.slow, 0, 60)
time.sleep(0.3)
kids = []
for t in os.listdir("/proc/self/task"):
    with open("/proc/self/task/%s/children" % t) as fh:
        kids += [int(p) for p in fh.read().split()]
print(json.dumps([os.fstat(_core.arena_fd()).st_ino, kids]), flush=True)
time.sleep(60)
"""


@pytest.mark.timeout(60)
def test_parent_sigkill_workers_exit_and_the_arena_is_gone():
    proc = faultlib.run_script(PARENT)
    try:
        inode, kids = json.loads(proc.stdout.readline())
        assert len(kids) >= 4 and all(faultlib.alive(k) for k in kids)
        assert proc.pid in faultlib.memfd_holders(inode)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert faultlib.wait_gone(kids, 5) == []
    deadline = time.monotonic() + 5
    while faultlib.memfd_holders(inode) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert faultlib.memfd_holders(inode) == set()  # no fd, no mapping: the kernel freed it


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_lock_holder_sigkill_gives_owner_dead_once(kind):
    lock, held = getattr(gilfree, kind)(), gilfree.Event()
    p = gilfree.Process(target=faultlib.hold_lock, args=(lock, held))
    p.start()
    assert held.wait(20)
    p.kill()
    p.join(20)
    t0 = time.monotonic()
    with pytest.raises(gilfree.OwnerDeadError):
        lock.acquire(timeout=10)
    assert time.monotonic() - t0 < 5
    assert lock.acquire(timeout=5)  # works normally again
    lock.release()
    assert lock.acquire(False)
    lock.release()






@pytest.mark.timeout(90)
def test_dict_writer_sigkill_mid_resize(fork):
    rng = random.Random(12)
    d = gilfree.SharedDict()
    m = 0
    for round_ in range(6):
        # far more inserts than the longest sleep lets through, so the kill always lands mid-write
        pid = fork(faultlib.fill_dict, d, m, 10**8)
        # the first rounds kill while the stripes' tables double (few keys), later ones
        # with tens of thousands of keys in
        time.sleep(rng.uniform(0.001, 0.02) if round_ < 3 else rng.uniform(0.05, 0.3))
        assert fork.kill(pid) == -signal.SIGKILL
        m = faultlib.check_dict_prefix(d)
    assert m > 0
    faultlib.fill_dict(d, m, 5000)  # the dict goes on: inserts, growth, deletes
    assert faultlib.check_dict_prefix(d) == m + 5000
    for k in range(0, m + 5000, 2):
        del d[k]
    assert len(d) == d._check() == (m + 5000) // 2


def _wait_started(cond, timeout=20):
    """Wait until the forked writer has started writing: a child killed before it was first
    scheduled (it records what it inherits inside fork()) leaks those references -- a
    documented gap (docs/faults.md, tests/faults/test_fork_window.py), not what these tests
    are about."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.001)


def _leaked_after(fn):
    """Live arena blocks left by fn() once every object it made is dropped. What processes
    killed by earlier tests still hold is released first: the fork inside fn() would re-take
    their slot and release it then, and the count would balance a leak by coincidence."""
    from gilfree import _core

    _core.arena_reclaim()
    before = faultlib_live_blocks()
    fn()
    return faultlib_live_blocks() - before


def faultlib_live_blocks():
    from gilfree_tests_common import live_blocks

    return live_blocks()


@pytest.mark.timeout(60)
def test_dict_writer_sigkill_leaks_nothing(fork):
    def run():
        d = gilfree.SharedDict()
        pid = fork(faultlib.fill_dict, d, 0, 200000)
        _wait_started(lambda: len(d) > 0)
        time.sleep(0.05)
        fork.kill(pid)
        faultlib.check_dict_prefix(d)
        del d
    assert _leaked_after(run) == 0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("size", [100, 300 << 10])  # inline records, block records
def test_queue_producer_sigkill_mid_message(fork, size):
    rng = random.Random(size)
    q = gilfree.Queue()
    for _ in range(5):
        pid = fork(faultlib.produce, q, size)
        _wait_started(lambda: not q.empty())  # started (a fixed sleep was too short under load)
        time.sleep(rng.uniform(0.01, 0.1))
        assert fork.kill(pid) == -signal.SIGKILL
        got = faultlib.drain(q)
        assert got, "the producer put nothing"
        faultlib.check_produced(got, size)
    q.put("after")
    assert q.get(timeout=5) == "after"


@pytest.mark.timeout(60)
def test_queue_producer_sigkill_leaks_nothing(fork):
    def run():
        q = gilfree.Queue()
        pid = fork(faultlib.produce, q, 300 << 10)
        _wait_started(lambda: not q.empty())
        time.sleep(0.05)
        fork.kill(pid)
        faultlib.drain(q)
        del q
    assert _leaked_after(run) == 0


@pytest.mark.timeout(60)
def test_killed_worker_leaks_nothing():
    """A worker SIGKILLed while holding its task's blocks (argument, mailbox record): the
    pool frees them (live blocks; its cached free blocks are not counted here)."""
    def run():
        with gilfree.Pool(2) as pool:
            pool.map(faultlib.square, range(10))
            r = pool.apply_async(faultlib.task, ("/dev/null", "k", "kill", 0.0),
                                 timeout=30)
            with pytest.raises(gilfree.WorkerLostError):
                r.get(timeout=30)
    run()  # the first pool of a process leaves lazily made state behind: warm up first
    assert _leaked_after(run) == 0


@pytest.mark.timeout(60)
def test_pool_without_faults_leaks_nothing():
    """The control of the leak tests above: the same pool work without a kill returns
    every block (so the figures above are the kill's)."""
    def run():
        with gilfree.Pool(2) as pool:
            pool.map(faultlib.square, range(10))
            assert pool.apply(faultlib.task, ("/dev/null", "k", None, 0.0),
                              timeout=30) == "k"
    run()
    assert _leaked_after(run) == 0


@pytest.mark.timeout(60)
def test_lock_holder_sigkill_leaks_nothing():
    """The killed holder's references to the lock and the event are dropped by the survivors
    (here: the acquire that finds the holder dead, or the join that reaps it)."""
    def run():
        lock, held = gilfree.Lock(), gilfree.Event()
        p = gilfree.Process(target=faultlib.hold_lock, args=(lock, held))
        p.start()
        assert held.wait(20)
        p.kill()
        p.join(20)
        with pytest.raises(gilfree.OwnerDeadError):
            lock.acquire(timeout=10)
        del lock, held, p
    assert _leaked_after(run) == 0


def _refs(q):
    """The shared reference count of q's ring (a pickle takes one for its receiver; dropping
    it again returns what is left)."""
    from multiprocessing.reduction import ForkingPickler

    from gilfree import _core

    ForkingPickler.dumps(q)
    return _core._obj_decref(q._offsets[0])


@pytest.mark.timeout(90)
def test_retried_task_does_not_drop_its_handle_argument_twice(tmp_path):
    """A worker SIGKILLed running a task whose argument is a queue: the dead worker's own
    references (taken from the task, recorded in its ledger) are dropped for it, and the
    re-run (retries=) takes its own from the same task bytes, whose references stay the
    task's until its outcome. The queue's count ends as in the same run without the death
    (the control): nothing dropped twice, nothing left."""
    counts = []
    for marker in (tmp_path / "control", tmp_path / "death"):
        if marker.name == "control":
            marker.touch()  # the task finds it: no death
        q = gilfree.Queue()
        with gilfree.Pool(1) as pool:
            r = pool.apply_async(faultlib.put_after_a_death, (q, str(marker)), retries=1,
                                 timeout=30)
            assert r.get(timeout=60) is None
            assert q.get(timeout=10) == "ran"
        faultlib_live_blocks()  # reclaims what the dead workers held
        counts.append(_refs(q))
        q.put("still here")
        assert q.get(timeout=5) == "still here"
    assert counts[1] == counts[0] >= 1


@pytest.mark.timeout(60)
def test_child_os_exit_without_release_leaks_nothing():
    """A forked child that leaves with os._exit() and drops nothing (no release step): the
    references it inherited are dropped for it once it is gone."""
    def run():
        d, q = gilfree.SharedDict(), gilfree.Queue()
        d["k"] = list(range(100))
        q.put(b"x" * (300 << 10))
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        assert d["k"] == list(range(100)) and len(q.get(timeout=5)) == 300 << 10
        del d, q
    run()
    assert _leaked_after(run) == 0


@pytest.mark.timeout(60)
def test_lock_holder_that_exits_leaks_nothing():
    """The control: the same process ending normally drops its references."""
    def run():
        lock, held = gilfree.Lock(), gilfree.Event()
        p = gilfree.Process(target=held.set)
        p.start()
        p.join(20)
        assert p.exitcode == 0 and held.is_set() and lock.acquire(timeout=5)
        lock.release()
        del lock, held, p
    run()
    assert _leaked_after(run) == 0
