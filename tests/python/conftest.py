"""Shared fixtures for the gilfree Python tests.

Every test is checked for leaks: after it, no /dev/shm entry may have been added and no child
process of the test process may be left (leftover children are killed and the test fails).
Other engineers: append fixtures below; do not change the leak check's contract.
"""

import gc
import os
import re
import signal
import sys
import time
import traceback

import pytest

# A run started in the background without job control (nohup, `setsid ... &`) inherits SIGINT
# ignored, and so would every child it starts: the Ctrl-C tests need it delivered, as in a
# terminal. Python's own handler again (children exec'd from here then get the default).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def live_blocks():
    """Live blocks in the shared-memory arena, counted after a garbage collection so that
    cyclic garbage left by earlier tests (freed whenever the collector runs) does not shift a
    test's before/after comparison."""
    from gilfree import _core

    gc.collect()
    return _core.arena_stats()["live_blocks"]


def _shm_entries():
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


def _children():
    """Pids of this process's live (or zombie) children, from /proc."""
    kids = set()
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children") as f:
                    kids.update(int(p) for p in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return kids


def _foreign(name):
    """True for a /dev/shm entry that names a live process outside this test's process tree
    (e.g. joblib/loky's 'sem.loky-<pid>-...' from another program running on the machine)."""
    mine = {os.getpid()} | _children()
    for tok in re.findall(r"\d{2,7}", name):
        pid = int(tok)
        if pid not in mine and os.path.exists(f"/proc/{pid}"):
            return True
    return False


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail a test that leaves a /dev/shm entry or a child process behind."""
    shm_before = _shm_entries()
    kids_before = _children()
    yield
    deadline = time.monotonic() + 3.0
    while True:
        left = _children() - kids_before
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    left = _children() - kids_before
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in left:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    added = {n for n in _shm_entries() - shm_before if not _foreign(n)}
    assert not left, f"test left child processes behind: {sorted(left)}"
    assert not added, f"test left /dev/shm entries behind: {sorted(added)}"


class Forker:
    """Start functions in forked children (no dependency on gilfree.Process) and reap them.

    ``pid = fork(fn, *args)`` runs fn(*args) in a child that exits 0 on success and 1 on an
    exception (printed); ``fork.join(pid, timeout)`` returns the exit code (or -signal)."""

    def __init__(self):
        self.pids = []

    def __call__(self, fn, *args):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                fn(*args)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                try:
                    from gilfree import _core

                    _core._ring_release_all()
                except BaseException:
                    pass
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.pids.append(pid)
        return pid

    def join(self, pid, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.pids.remove(pid)
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                raise TimeoutError(f"child {pid} did not exit in {timeout}s")
            time.sleep(0.005)

    def kill(self, pid, sig=signal.SIGKILL):
        os.kill(pid, sig)
        return self.join(pid)

    def cleanup(self):
        for pid in list(self.pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.pids.clear()


@pytest.fixture
def fork():
    """A Forker; children still running at the end of the test are killed and reaped."""
    f = Forker()
    yield f
    f.cleanup()


# ---------------------------------------------------------------- cluster tests (issue 10)
# One real Dask cluster (a `dask scheduler` and two `dask worker` processes on 127.0.0.1) for
# the whole session. A session fixture is set up before the function-scoped leak check takes
# its snapshot, so the cluster's processes are in every test's "before" set; the check still
# sees (and fails) any process a test itself leaves. Workers that a test kills are the
# nannies' children (not ours): the nannies replace them; `dask_address` waits for that.

@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    """The session's DaskCluster (tests/python/_dask_cluster.py): 2 workers, 1 thread each.
    Not under ASan (scripts/pytest_asan.sh): the cluster code is pure Python over Dask, and
    the plain pass runs it."""
    pytest.importorskip("distributed")
    if os.environ.get("GILFREE_ASAN"):
        pytest.skip("cluster tests run in the plain pass")
    from _dask_cluster import DaskCluster

    cluster = DaskCluster(tmp_path_factory.mktemp("dask"), nworkers=2).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def dask_address(dask_cluster):
    """The session cluster's scheduler address, once both of its workers are up."""
    dask_cluster.wait_for_workers(dask_cluster.nworkers, 60)
    return dask_cluster.address


@pytest.fixture(scope="session")
def mp_resource_tracker():
    """multiprocessing's resource tracker, started now. The spawn start method (Dask's
    LocalCluster starts its workers so) starts this helper on first use and keeps it until the
    interpreter exits; started by a session fixture, it is in every test's "before" set like
    the session cluster, and the leak check still fails any process a test leaves."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    return resource_tracker._resource_tracker._pid
