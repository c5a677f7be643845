"""gilfree.Process and the start-method contexts: the standard library's Process API and
behaviour, with fork (pidfd) as the default and spawn/forkserver attached to the same arena."""

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time

import pytest

import gilfree
import gilfree as mp
from conftest import live_blocks


@pytest.fixture(scope="module", autouse=True)
def _helper_processes():
    """spawn starts the standard library's resource tracker and forkserver a fork server: both
    are long-lived children by design. Start them before the per-test leak check looks."""
    from multiprocessing import resource_tracker
    from gilfree.process import _ensure_forkserver
    resource_tracker.ensure_running()
    _ensure_forkserver()
    yield


def _exit3():
    sys.exit(3)


def _raise():
    raise RuntimeError("boom")


def _sleep(t):
    time.sleep(t)


# ---------------------------------------------------------------------------- exit codes

@pytest.mark.timeout(30)
@pytest.mark.parametrize("target,code", [(lambda: None, 0), (_exit3, 3), (_raise, 1),
                                         (lambda: sys.exit(None), 0),
                                         (lambda: sys.exit("msg"), 1),
                                         (lambda: os._exit(7), 7)])
def test_exitcodes_match_stdlib(target, code):
    p = mp.Process(target=target)
    p.start()
    p.join(20)
    assert p.exitcode == code
    q = multiprocessing.get_context("fork").Process(target=target)
    q.start()
    q.join(20)
    assert q.exitcode == code


@pytest.mark.timeout(30)
def test_exception_is_printed(capfd):
    p = mp.Process(target=_raise, name="Boomer")
    p.start()
    p.join(20)
    err = capfd.readouterr().err
    assert "Process Boomer:" in err and "RuntimeError: boom" in err


@pytest.mark.timeout(30)
def test_child_stdout_is_flushed(capfd):
    p = mp.Process(target=lambda: print("from child", end=""))
    p.start()
    p.join(20)
    assert "from child" in capfd.readouterr().out


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how,code", [("kill", -signal.SIGKILL), ("terminate", -signal.SIGTERM)])
def test_kill_terminate(how, code):
    p = mp.Process(target=_sleep, args=(30,))
    p.start()
    assert p.is_alive()
    getattr(p, how)()
    p.join(10)
    assert p.exitcode == code
    assert not p.is_alive()
    getattr(p, how)()  # on a dead process: no error


@pytest.mark.timeout(30)
def test_join_timeout_and_is_alive():
    p = mp.Process(target=_sleep, args=(0.5,))
    assert p.exitcode is None
    p.start()
    t0 = time.monotonic()
    p.join(0.05)
    assert time.monotonic() - t0 < 0.45
    assert p.is_alive() and p.exitcode is None
    p.join(-1)  # negative: like the standard library, does not wait
    assert p.is_alive()
    p.join()
    assert not p.is_alive() and p.exitcode == 0


@pytest.mark.timeout(30)
def test_close():
    p = mp.Process(target=_sleep, args=(0.3,))
    p.start()
    with pytest.raises(ValueError, match="still running"):
        p.close()
    p.join()
    p.close()
    with pytest.raises(ValueError, match="closed"):
        p.is_alive()
    p.close()  # twice is fine


@pytest.mark.timeout(30)
def test_attributes_and_children():
    p = mp.Process(target=_sleep, args=(0.3,), name="worker-x", daemon=True)
    assert p.name == "worker-x" and p.daemon is True and p.pid is None
    p.start()
    assert p.pid > 0 and p.pid != os.getpid()
    assert p in mp.active_children()
    assert isinstance(p.sentinel, int)
    assert multiprocessing.connection.wait([p.sentinel], 10) == [p.sentinel]
    p.join()
    assert p not in mp.active_children()
    with pytest.raises(AssertionError):
        p.start()


def _report(q):
    cp, pp = mp.current_process(), mp.parent_process()
    q.put((cp.name, cp.pid == os.getpid(), pp.pid, pp.is_alive(), cp.daemon,
           multiprocessing.current_process().name))


@pytest.mark.timeout(30)
def test_current_and_parent_process_in_child():
    q = mp.Queue()
    p = mp.Process(target=_report, args=(q,), name="kid")
    p.start()
    name, pid_ok, ppid, palive, daemon, stdname = q.get(timeout=20)
    p.join(20)
    assert (name, pid_ok, ppid, palive, daemon, stdname) == ("kid", True, os.getpid(), True,
                                                             False, "kid")
    assert mp.current_process().name == "MainProcess"
    assert mp.parent_process() is None


class Adder(mp.Process):
    def __init__(self, value, n):
        super().__init__()
        self.value, self.n = value, n

    def run(self):
        for _ in range(self.n):
            with self.value.get_lock():
                self.value.value += 1


@pytest.mark.timeout(30)
def test_subclass_run():
    v = mp.Value("i", 0)
    ps = [Adder(v, 500) for _ in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(20)
        assert p.exitcode == 0
    assert v.value == 1500


@pytest.mark.timeout(30)
def test_daemon_child_cannot_have_children():
    q = mp.Queue()

    def child():
        try:
            mp.Process(target=lambda: None).start()
        except AssertionError as e:
            q.put(str(e))

    p = mp.Process(target=child, daemon=True)
    p.start()
    assert "daemonic processes are not allowed" in q.get(timeout=20)
    p.join(20)


@pytest.mark.timeout(30)
def test_ctrl_c_interrupts_join():
    p = mp.Process(target=_sleep, args=(20,))
    p.start()
    threading.Timer(0.2, signal.pthread_kill,
                    (threading.main_thread().ident, signal.SIGINT)).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        p.join()
    assert time.monotonic() - t0 < 1.5
    p.kill()
    p.join()


# ---------------------------------------------------------------------------- contexts

def test_contexts():
    assert mp.get_start_method() == "fork"
    assert mp.get_all_start_methods() == ["fork", "spawn", "forkserver"]
    for m in ("fork", "spawn", "forkserver"):
        ctx = mp.get_context(m)
        assert ctx.get_start_method() == m
        for name in ("Process", "Queue", "Pipe", "Lock", "RLock", "Value", "Array", "Event",
                     "Condition", "Barrier", "Semaphore", "BoundedSemaphore", "SimpleQueue",
                     "JoinableQueue", "Pool", "Manager", "cpu_count", "current_process"):
            assert hasattr(ctx, name), name
        with pytest.raises(ValueError):
            ctx.set_start_method("fork")
    with pytest.raises(ValueError):
        mp.get_context("nope")
    with pytest.raises(RuntimeError):
        mp.set_start_method("spawn")
    mp.set_start_method("spawn", force=True)
    try:
        assert mp.get_start_method() == "spawn"
    finally:
        mp.set_start_method("fork", force=True)
    assert isinstance(mp.get_context("spawn").Lock(), gilfree.synchronize.Lock)
    assert mp.cpu_count() == os.cpu_count()
    assert issubclass(mp.TimeoutError, mp.ProcessError)
    assert mp.TimeoutError is multiprocessing.TimeoutError


def _send_start_method(conn):
    conn.send(gilfree.get_start_method())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_child_knows_its_start_method(method):
    """get_start_method() in a child says how it was started, through a context's Process
    and through gilfree.Process under set_start_method (issue 9: spawned children said
    'fork')."""
    ctx = mp.get_context(method)
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_send_start_method, args=(w,))
    p.start()
    assert r.recv() == method
    p.join(60)
    old = mp.get_start_method()
    mp.set_start_method(method, force=True)
    try:
        p = mp.Process(target=_send_start_method, args=(w,))
        p.start()
        assert r.recv() == method
        p.join(60)
    finally:
        mp.set_start_method(old, force=True)
    assert mp.get_context() is mp.get_context(old)


def test_start_method_unset_and_forced():
    old = mp.get_start_method()
    try:
        mp.set_start_method(None, force=True)
        assert mp.get_start_method(allow_none=True) is None
        assert mp.get_context().get_start_method() == "fork"  # first use fixes the default
        assert mp.get_start_method(allow_none=True) == "fork"
        with pytest.raises(ValueError):
            mp.set_start_method("nope", force=True)
        with pytest.raises(ValueError):
            mp.get_context("fork").set_start_method(None)
    finally:
        mp.set_start_method(old, force=True)


def _use_lock_and_value(lock, value, n):
    for _ in range(n):
        with lock:
            value.value += 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawn_and_forkserver_share_the_arena(method):
    ctx = mp.get_context(method)
    lock = ctx.Lock()
    v = ctx.Value("i", 0, lock=False)
    ps = [ctx.Process(target=_use_lock_and_value, args=(lock, v, 200)) for _ in range(2)]
    for p in ps:
        p.start()
    _use_lock_and_value(lock, v, 200)
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    assert v.value == 600


def _child_spawn_with_queue(q, ev):
    q.put(os.environ.get("GILFREE_ARENA_FD"))
    ev.set()


@pytest.mark.timeout(120)
def test_spawn_child_gets_queue_and_event():
    ctx = mp.get_context("spawn")
    q, ev = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=_child_spawn_with_queue, args=(q, ev))
    p.start()
    assert ev.wait(60)
    assert q.get(timeout=10) is None  # the variable is consumed at import
    p.join(60)
    assert p.exitcode == 0
    assert "GILFREE_ARENA_FD" not in os.environ


@pytest.mark.timeout(60)
def test_no_leaked_shared_objects_after_processes():
    import gc
    gc.collect()
    before = live_blocks()
    for _ in range(3):
        v = mp.Value("i")
        p = mp.Process(target=lambda: setattr(v, "value", 1))
        p.start()
        p.join()
        assert v.value == 1
        del v, p
    gc.collect()
    assert live_blocks() == before


# ---------------------------------------------------------------------------- import weight

@pytest.mark.timeout(60)
def test_import_loads_only_what_processes_need():
    """`import gilfree` leaves the pool, executor, managers and shared memory (and what they
    pull in) unloaded until first use: every page a process maps is copied at each fork and
    torn down in each child, which made Process.start() slower than the standard library's.
    The lazy names still resolve to the real objects."""
    import subprocess
    code = (
        "import sys, gilfree\n"
        "heavy = ['gilfree.pool', 'gilfree.futures', 'gilfree.managers',\n"
        "         'gilfree.shared_memory', 'concurrent.futures', 'logging',\n"
        "         'multiprocessing.popen_spawn_posix', 'multiprocessing.popen_forkserver']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "import gilfree.pool, gilfree.futures, gilfree.managers, gilfree.shared_memory\n"
        "import gilfree._front, gilfree._front_executor\n"
        "assert gilfree.Pool is gilfree._front.Pool\n"
        "assert issubclass(gilfree.Pool, gilfree.pool.Pool)\n"
        "assert gilfree.ProcessPoolExecutor is gilfree._front_executor.ProcessPoolExecutor\n"
        "assert issubclass(gilfree.ProcessPoolExecutor, gilfree.futures.ProcessPoolExecutor)\n"
        "assert gilfree.SharedDict is gilfree.managers.SharedDict\n"
        "assert gilfree.shared_array is gilfree.shared_memory.shared_array\n"
        "assert 'Pool' in dir(gilfree) and 'Pool' in gilfree.__all__\n"
        "try:\n"
        "    gilfree.no_such_name\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_name' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=50)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
