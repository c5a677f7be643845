"""The multiprocessing submodules users import, on gilfree: util, reduction, heap, dummy,
resource_tracker (``import gilfree.util`` and ``gilfree.util`` after ``import gilfree``)."""

import logging
import os
import subprocess
import sys
import textwrap

import pytest

import gilfree as mp


@pytest.fixture(scope="module", autouse=True)
def _resource_tracker():
    """spawn starts the standard library's resource tracker, a long-lived child by design:
    start it before the per-test leak check looks."""
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()
    yield


def test_submodules_as_attributes_and_imports():
    code = textwrap.dedent("""
        import gilfree, sys
        names = ["util", "reduction", "heap", "dummy", "resource_tracker", "resource_sharer",
                 "sharedctypes",
                 "synchronize", "managers", "pool", "connection", "queues", "process",
                 "context", "shared_memory"]
        for n in names:
            mod = getattr(gilfree, n)
            assert mod is sys.modules["gilfree." + n], n
            for attr in getattr(mod, "__all__", ()):
                assert hasattr(mod, attr), (n, attr)
        import gilfree.dummy.connection
        assert gilfree.dummy.connection.Pipe is gilfree.dummy.Pipe
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


# ---------------------------------------------------------------------------- util

def _child_finalizer_and_after_fork(q):
    import gilfree.util as util
    q.put(("after_fork", _AFTER_FORK_CALLS[:]))

    class Res:
        pass

    r = Res()
    util.Finalize(r, q.put, args=(("finalized", 1),), exitpriority=5)


_AFTER_FORK_CALLS = []


class _Registered:
    pass


def test_util_finalize_after_fork_and_logging():
    import gilfree.util as util
    assert util.Finalize is __import__("multiprocessing.util").util.Finalize  # the same object
    obj = _Registered()
    util.register_after_fork(obj, lambda o: _AFTER_FORK_CALLS.append("called"))
    q = mp.Queue()
    p = mp.Process(target=_child_finalizer_and_after_fork, args=(q,))
    p.start()
    assert q.get(timeout=30) == ("after_fork", ["called"])  # the hook ran in the child
    assert q.get(timeout=30) == ("finalized", 1)  # exit-priority finalizers ran at exit
    p.join(30)
    assert p.exitcode == 0
    assert _AFTER_FORK_CALLS == []  # not in the parent
    logger = util.get_logger()
    assert logger is mp.get_logger() and logger.name == "multiprocessing"
    assert util.log_to_stderr(logging.WARNING) is logger
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    assert util.is_exiting() is False
    assert os.path.isdir(util.get_temp_dir())


# ---------------------------------------------------------------------------- reduction

def _write_to_passed_fd(conn, data):
    from gilfree import reduction
    fd = reduction.recv_handle(conn)
    os.write(fd, data)
    os.close(fd)
    conn.send("done")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reduction_passes_an_fd_over_a_gilfree_pipe(method, tmp_path):
    """send_handle over a gilfree Pipe: the child gets a working descriptor even though the
    sender closed its own right after sending."""
    from gilfree import reduction
    ctx = mp.get_context(method)
    a, b = ctx.Pipe()
    p = ctx.Process(target=_write_to_passed_fd, args=(b, b"hello"))
    p.start()
    path = tmp_path / "f"
    with open(path, "wb") as f:
        reduction.send_handle(a, f.fileno(), p.pid)
    assert a.recv() == "done"
    p.join(60)
    assert p.exitcode == 0
    assert path.read_bytes() == b"hello"


def test_reduction_recv_handle_refuses_a_non_handle():
    from gilfree import reduction
    a, b = mp.Pipe()
    a.send("not a handle")
    with pytest.raises(RuntimeError):
        reduction.recv_handle(b)
    a.close()
    with pytest.raises(EOFError):
        reduction.recv_handle(b)


def test_reduction_registered_reducer_applies_to_gilfree_queues():
    from gilfree import reduction

    class Token:
        def __init__(self, v):
            self.v = v

    calls = []

    def reduce_token(t):
        calls.append(t.v)
        return (int, (t.v * 2,))

    reduction.register(Token, reduce_token)
    try:
        q = mp.Queue()
        q.put(Token(21))
        assert q.get(timeout=10) == 42 and calls == [21]
    finally:
        del reduction.ForkingPickler._extra_reducers[Token]


# ---------------------------------------------------------------------------- heap

def _bump(wrapper, lock):
    view = wrapper.create_memoryview().cast("i")
    with lock:
        view[0] += 1


def test_heap_buffer_wrapper_is_shared_across_processes():
    from gilfree import heap
    w = heap.BufferWrapper(8)
    view = w.create_memoryview()
    assert len(view) == 8 and bytes(view) == bytes(8)
    lock = mp.Lock()
    ps = [mp.Process(target=_bump, args=(w, lock)) for _ in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(30)
        assert p.exitcode == 0
    assert view.cast("i")[0] == 3
    assert len(heap.BufferWrapper(0).create_memoryview()) == 0
    with pytest.raises(ValueError):
        heap.BufferWrapper(-1)
    with pytest.raises(OverflowError):
        heap.Heap().malloc(sys.maxsize)


# ---------------------------------------------------------------------------- dummy

def test_dummy_is_the_thread_backed_api():
    import threading
    from gilfree import dummy
    with dummy.Pool(3) as pool:
        assert pool.map(abs, [-1, -2, 3]) == [1, 2, 3]
    seen = []
    p = dummy.Process(target=lambda: seen.append(threading.current_thread().name))
    p.start()
    p.join()
    assert seen and p.exitcode == 0
    a, b = dummy.Pipe()
    a.send(5)
    assert b.recv() == 5
    m = dummy.Manager()
    assert m is dummy and m.dict(x=1) == {"x": 1} and m.Value("i", 3).value == 3
    assert isinstance(dummy.Lock(), type(threading.Lock()))


# ---------------------------------------------------------------------------- resource_tracker

def test_resource_tracker_ignores_gilfree_blocks(monkeypatch):
    """unregister(shm._name, 'shared_memory') -- the common workaround for the standard
    library's tracker -- is a no-op for a gilfree block (the tracker would complain about a
    name it never saw); other names go to the standard library's tracker."""
    from multiprocessing import resource_tracker as std
    from gilfree import resource_tracker, shared_memory
    sent = []
    monkeypatch.setattr(std, "register", lambda name, rtype: sent.append(("R", name, rtype)))
    monkeypatch.setattr(std, "unregister", lambda name, rtype: sent.append(("U", name, rtype)))
    s = shared_memory.SharedMemory(create=True, size=16)
    try:
        resource_tracker.register(s._name, "shared_memory")
        resource_tracker.unregister(s._name, "shared_memory")
        resource_tracker.unregister("/" + s.name, "shared_memory")
        assert sent == []
        resource_tracker.unregister("/psm_not_ours", "shared_memory")
        resource_tracker.register(s._name, "semaphore")
        assert sent == [("U", "/psm_not_ours", "shared_memory"), ("R", s._name, "semaphore")]
        assert resource_tracker.ensure_running is std.ensure_running
        assert resource_tracker._CLEANUP_FUNCS is std._CLEANUP_FUNCS
    finally:
        s.close()
        s.unlink()


# ---------------------------------------------------------------------------- resource_sharer

def test_resource_sharer_is_the_standard_librarys():
    """A socket Connection pickled by gilfree refers to resource_sharer.DupFd: the same class
    whichever module name a program imports it by, and stop() ends that one sharer."""
    import multiprocessing.resource_sharer as std

    import gilfree.resource_sharer as rs
    assert (rs.DupFd, rs.stop) == (std.DupFd, std.stop)
    assert mp.resource_sharer is rs
