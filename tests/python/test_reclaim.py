"""Reclaim after death (issue 12 item 1): a pool whose worker is SIGKILLed every 100 tasks, each
task returning a 1 MiB result, loses and duplicates nothing, the arena's backing (the memfd's
allocated blocks, measured with fstat as another process would through /proc/<pid>/fd) stays
within 2x its value after the first 100 tasks, and falls under 30% of its peak once every result
is dropped.

This is the issue's full run: 10,000 tasks, 100 kills (~21 s on the 2-CPU VM, measured under
load); GILFREE_RECLAIM_TASKS=N changes the count. Run with -s to see the figures."""

import gc
import json
import os
import pickle
import signal
import subprocess
import sys
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
    """Run the scenario; returns its figures (bytes): b100 (the highest backing during the
    first 100 tasks: the live results in flight swing from 1 to 8 from one moment to the
    next, so the value at one instant is no reference) and over2x (tasks after which the
    backing exceeded twice that), b100_instant (the backing right after task 100) and
    over2x_instant (the same against it: reported, not asserted), peak, end, in_use0 /
    in_use_end (with the pool, before and after), and counts. Without `strict` the two
    backing targets (2x, and 30% at the end) are measured but not asserted."""
    seen = {}
    peak = b100 = b100_instant = over2x = over2x_instant = 0
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
            if done <= KILL_EVERY:
                b100 = max(b100, b)
                b100_instant = b
            elif b > 2 * b100:
                over2x += 1
            if done > KILL_EVERY and b > 2 * b100_instant:
                over2x_instant += 1
        # every result has been dropped; freed memory past the warm delay goes back to the
        # kernel at the pool's next supervision pass
        deadline = time.monotonic() + 15
        while backing() >= 0.3 * peak and time.monotonic() < deadline:
            time.sleep(0.1)
        end = backing()
        st = _core.arena_stats()
        # what leaked: live blocks (>= 64 KiB: every result buffer and message block) whose
        # allocating process is dead. The last kill comes with the last result, so the pool's
        # supervision may not have released that worker's holdings yet (seen under ASan):
        # give it a few passes; a real leak never clears.
        deadline = time.monotonic() + 10
        while True:
            dead = [b for b in _core._arena_blocks(64 << 10) if not b[4]]
            if not dead or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    figures = dict(tasks=tasks, kills=kills, b100=b100, b100_instant=b100_instant, peak=peak,
                   end=end, over2x=over2x, over2x_instant=over2x_instant,
                   dead_blocks=len(dead), dead_bytes=sum(b[1] for b in dead),
                   in_use0=in_use0, in_use_end=st["in_use"],
                   reclaimed_blocks=st["reclaimed_blocks"], reclaimed_bytes=st["reclaimed_bytes"],
                   punched=st["punched"], stats_backing=st["backing"])
    if report:
        report(figures)
    assert sorted(seen) == list(range(tasks))  # none lost, none twice
    assert kills >= tasks // KILL_EVERY - 2
    # what the killed workers held came back: no block of theirs is left
    assert figures["dead_blocks"] == 0, figures
    assert st["in_use"] - in_use0 < MiB, figures
    assert figures["over2x"] == 0 or not strict, figures
    assert end < 0.3 * peak or not strict, figures
    return figures


def run_in_fresh_process(fn_name, strict, **extra_env):
    """Run the scenario as the issue's program: a fresh interpreter with an arena of its own
    (in this process the arena also holds what earlier tests left alive), with `extra_env`
    set. Returns its figures; its assertions fail the test (with its traceback)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GILFREE_ARENA_FD", "GILFREE_SHM_REGISTRY")}
    env.update(extra_env)
    code = ("import json, sys; sys.path.insert(0, %r); import test_reclaim as t; "
            "print('FIGURES ' + json.dumps(t.run_scenario(%d, fn=t.%s, strict=%r)))"
            % (os.path.dirname(os.path.abspath(__file__)), TASKS, fn_name, strict))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=540)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    line = [x for x in p.stdout.splitlines() if x.startswith("FIGURES ")][-1]
    figures = json.loads(line[len("FIGURES "):])
    print(figures)
    return figures


@pytest.mark.timeout(600)
def test_killed_workers_release_their_memory():
    """The issue's scenario with bytes results (pickled inline: each result's message is an
    arena block). Asserted: nothing lost or twice, the killed workers' blocks come back
    (in_use returns to the pool's own), the backing never above twice its value during the
    first 100 tasks, and under 30% of its peak at the end. The 2x target used to be missed in
    about half the runs (peaks 16-19 MB against 2 x 8.5 MB): the blocks of a batch of results
    already collected stayed allocated until the consumer collected again (up to 15 results in
    the arena with 8 in flight), and the rings kept every page their records had touched;
    both go now (gf_pool_results_done, and the pool trims its rings once a second)."""
    f = run_in_fresh_process("make_result", True)
    print("over 2x after task 100:", f["over2x"], "of", f["tasks"] - KILL_EVERY, "tasks")


@pytest.mark.timeout(600)
def test_killed_workers_release_their_memory_numpy():
    """The same with numpy arrays (out-of-band buffers, each an arena block the parent's array
    wraps zero-copy), and the same assertions. The end target used to be missed here (~38% of
    the peak): not by leaks but by the pool's rings, which carry small inline records in this
    scenario and whose pages, all touched over the run, stayed backed while the pool lived
    (~7.7 MiB); once a second a pool now hands back the pages of its rings that hold no record
    (gf_ring_trim), busy or idle, which also stopped the peak from creeping up over the run.

    The workers' arrays are made on the heap here (GILFREE_NUMPY_ARENA=0): each result is
    copied into an out-of-band arena block. The default, arrays made in the arena by NumPy's
    memory handler, is the next test. Both are strict under ASan too: the ASan-only residual
    of stop 16 (one block of a killed worker left in about 1 of 4 ASan runs) was not seen in
    any ASan run after the stop-17 fixes of the NumPy arena's windows."""
    pytest.importorskip("numpy")
    run_in_fresh_process("make_array", True, GILFREE_NUMPY_ARENA="0")


@pytest.mark.timeout(600)
def test_killed_workers_release_their_memory_numpy_arena():
    """The numpy scenario with the default: the workers' result arrays are made in the arena
    (src/ext/npalloc.c) and travel by reference. The same assertions as above: no block of a
    killed worker is left. (It leaked 2-10 MiB per 100 kills: a worker woken by the parent's
    free took that block for its next array and was killed at the getpid() system call on the
    way to recording it in its ledger; also the allocation's prefault, the allocator lock's
    release and the sender's share before its record were unrecorded windows.)"""
    pytest.importorskip("numpy")
    run_in_fresh_process("make_array", True, GILFREE_NUMPY_ARENA="1")


@pytest.mark.timeout(60)
def test_arena_trim_and_reclaim_api():
    st = _core.arena_stats()
    for k in ("backing", "free", "warm", "punched", "reclaimed_blocks", "reclaimed_bytes",
              "refs_reclaimed", "refs_unrecorded"):
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


@pytest.mark.timeout(60)
def test_a_collected_result_leaves_the_arena_at_once():
    """A large result (here a 1 MiB bytes pickled inline: its message is an arena block) is
    copied out when it is collected, and its block is freed then -- not at the next collection,
    which a program that waits on one result at a time makes only when it waits again (the
    blocks of a whole batch of collected results stayed in the arena meanwhile: twice the
    results in flight in the issue's scenario)."""
    with Pool(2) as pool:
        pool.apply(abs, (1,))
        base = _core.arena_stats()["in_use"]
        for i in range(3):
            rs = [pool.apply_async(make_result, (i * 8 + k,)) for k in range(8)]
            got = [r.get(timeout=30) for r in rs]
            assert [g[1] for g in got] == list(range(i * 8, i * 8 + 8))
            # every result was collected (all 8 delivered): nothing of theirs is left
            assert _core.arena_stats()["in_use"] - base < MiB, _core.arena_stats()
            del got, rs
