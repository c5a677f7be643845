"""A forked child killed at once, before any of its code runs: what the parent handed over to it
(references on shared objects, pipe ends) is recorded in the child's own ledger inside fork()
itself, so the survivors drop the references and the pipe's reader sees EOF.

The child is killed by an after-fork hook registered *before* gilfree is imported: it runs
first in the child, before gilfree's own Python hooks, which is where the references used to
be recorded (the child's first ~millisecond). Each case runs in a fresh interpreter."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import gc, os, signal, sys
    os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGKILL))
    import gilfree
    from gilfree import _core

    def live():
        gc.collect()
        _core.arena_reclaim()
        return _core.arena_stats()["live_blocks"]

    base = live()
    objs = [gilfree.SharedDict({1: "one"}), gilfree.Lock(), gilfree.Event(), gilfree.Queue()]
    r, w = gilfree.Pipe(duplex=False)
    for _ in range(3):
        pid = os.fork()  # the child dies in the first after-fork hook
        _, st = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGKILL, st
    w.close()
    # the writer's only other holders are dead: the reader sees EOF, not a wait for ever
    assert r.poll(10), "the pipe's reader never saw the dead children's ends go"
    try:
        r.recv()
    except EOFError:
        pass
    else:
        raise AssertionError("recv() did not raise EOFError")
    r.close()
    del objs, r, w
    left = live() - base
    print("left", left, _core.arena_stats()["refs_reclaimed"])
    sys.exit(0 if left == 0 else 3)
    """
)


@pytest.mark.timeout(60)
def test_child_killed_before_its_first_instruction_leaks_nothing():
    p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=50)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr[-2000:])
    assert "left 0" in p.stdout
