"""Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier: the standard library's
semantics (compared with multiprocessing where practical), across threads and processes, owner
death, Ctrl-C, the GIL, and sending them to running processes."""

import multiprocessing
import os
import pickle
import signal
import threading
import time

import pytest

import gilfree
import gilfree as mp
import gilfree.synchronize
from conftest import live_blocks


def _sigint_after(delay):
    """SIGINT to the main thread after `delay` s, as a terminal's Ctrl-C reaches a sleeping
    process (os.kill from the timer thread could be taken by the timer thread itself)."""
    t = threading.Timer(delay, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    t.daemon = True
    t.start()
    return t


def _in_child(fn, *args, timeout=30):
    """Run fn(*args) in a gilfree Process; return its exit code."""
    p = mp.Process(target=fn, args=args)
    p.start()
    p.join(timeout)
    if p.exitcode is None:
        p.kill()
        p.join()
        raise AssertionError("child did not finish")
    return p.exitcode


# ---------------------------------------------------------------------------- Lock

def test_lock_basics_match_stdlib():
    for L in (mp.Lock(), multiprocessing.Lock()):
        assert L.acquire() is True
        assert L.acquire(False) is False
        assert L.acquire(block=False) is False
        assert L.acquire(True, 0.05) is False
        assert L.acquire(timeout=0.01) is False
        L.release()
        with pytest.raises(ValueError, match="released too many times"):
            L.release()
        with L as r:
            assert r is True
            assert L.acquire(False) is False
        assert L.acquire(False) is True
        L.release()


def test_lock_block_false_ignores_timeout():
    L = mp.Lock()
    L.acquire()
    t0 = time.monotonic()
    assert L.acquire(False, 5) is False
    assert time.monotonic() - t0 < 1.0
    L.release()


def test_sync_objects_are_weakly_referenceable():
    import weakref
    for make in (mp.Lock, mp.RLock, mp.Semaphore, mp.BoundedSemaphore, mp.Condition, mp.Event):
        o = make()
        r = weakref.ref(o)
        assert r() is o
        del o
        assert r() is None, make


def test_lock_repr():
    L = mp.Lock()
    assert repr(L) == "<Lock(owner=None)>"
    L.acquire()
    assert repr(L) == "<Lock(owner=MainProcess)>"
    L.release()


@pytest.mark.timeout(30)
def test_lock_released_by_other_thread_and_process():
    L = mp.Lock()
    L.acquire()
    t = threading.Thread(target=L.release)
    t.start()
    t.join()
    assert L.acquire(False)
    # and by another process
    assert _in_child(L.release) == 0
    assert L.acquire(False)
    L.release()


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan")])
def test_negative_timeout_raises(bad):
    L = mp.Lock()
    L.acquire()
    for fn in (lambda: L.acquire(True, bad), lambda: mp.RLock().acquire(timeout=bad),
               lambda: mp.Semaphore(0).acquire(timeout=bad), lambda: mp.Event().wait(bad)):
        with pytest.raises(ValueError):
            fn()
    c = mp.Condition()
    with c:
        with pytest.raises(ValueError):
            c.wait(bad)


def test_timeout_type_error():
    with pytest.raises(TypeError):
        mp.Lock().acquire(True, "1")


# ---------------------------------------------------------------------------- RLock

def test_rlock_basics_match_stdlib():
    for R in (mp.RLock(), multiprocessing.RLock()):
        assert R.acquire()
        assert R.acquire()
        assert R._semlock._count() == 2
        R.release()
        R.release()
        with pytest.raises(AssertionError, match="not owned"):
            R.release()
        with R:
            with R:
                pass


def test_rlock_release_by_other_thread_is_assertion():
    R = mp.RLock()
    R.acquire()
    err = []

    def other():
        try:
            R.release()
        except AssertionError as e:
            err.append(e)
        # another thread cannot take it either
        err.append(R.acquire(False))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert isinstance(err[0], AssertionError)
    assert err[1] is False
    R.release()


def test_rlock_repr():
    R = mp.RLock()
    assert repr(R) == "<RLock(None, 0)>"
    R.acquire()
    R.acquire()
    assert repr(R) == "<RLock(MainProcess, 2)>"
    R.release()
    R.release()


# ---------------------------------------------------------------------------- Semaphore

def test_semaphore_match_stdlib():
    for S in (mp.Semaphore(2), multiprocessing.Semaphore(2)):
        assert S.get_value() == 2
        assert S.acquire() and S.acquire()
        assert S.acquire(False) is False
        assert S.acquire(timeout=0.02) is False
        S.release()
        S.release()
        S.release()  # unbounded
        assert S.get_value() == 3
        assert repr(S) == "<Semaphore(value=3)>"
        with S:
            assert S.get_value() == 2


def test_bounded_semaphore():
    for B in (mp.BoundedSemaphore(2), multiprocessing.BoundedSemaphore(2)):
        with pytest.raises(ValueError):
            B.release()
        B.acquire()
        B.release()
        assert B.get_value() == 2
        assert repr(B) == "<BoundedSemaphore(value=2, maxvalue=2)>"


def test_semaphore_bad_value():
    with pytest.raises(ValueError):
        mp.Semaphore(-1)


@pytest.mark.timeout(30)
def test_semaphore_cross_process():
    S = mp.Semaphore(0)
    p = mp.Process(target=S.release)
    p.start()
    assert S.acquire(timeout=10)
    p.join()


# ---------------------------------------------------------------------------- Event

@pytest.mark.timeout(30)
def test_event():
    for E in (mp.Event(), multiprocessing.Event()):
        assert not E.is_set()
        assert E.wait(0.02) is False
        E.set()
        assert E.is_set() and E.wait() is True and E.wait(0) is True
        E.clear()
        assert not E.is_set()
    E = mp.Event()
    assert "unset" in repr(E)
    E.set()
    assert repr(E).endswith(" set>")


@pytest.mark.timeout(30)
def test_event_set_by_other_process_wakes_waiter():
    E = mp.Event()
    p = mp.Process(target=lambda: (time.sleep(0.1), E.set()))
    p.start()
    assert E.wait(10) is True
    p.join()
    assert p.exitcode == 0


# ---------------------------------------------------------------------------- Condition

@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["Lock", "RLock", None])
def test_condition_threads(kind):
    c = mp.Condition(getattr(mp, kind)() if kind else None)
    items = []

    def consumer():
        with c:
            assert c.wait_for(lambda: items, timeout=10)
            items.append("seen")

    t = threading.Thread(target=consumer)
    t.start()
    time.sleep(0.05)
    with c:
        items.append(1)
        c.notify()
    t.join(10)
    assert items == [1, "seen"]


@pytest.mark.timeout(30)
def test_condition_cross_process_notify_all():
    c = mp.Condition()
    n = mp.Value("i", 0)
    go = mp.Value("i", 0)

    def waiter():
        with c:
            n.value += 1
            c.notify_all()
            ok = c.wait_for(lambda: go.value == 1, timeout=20)
            assert ok

    ps = [mp.Process(target=waiter) for _ in range(3)]
    for p in ps:
        p.start()
    with c:
        assert c.wait_for(lambda: n.value == 3, timeout=20)
        go.value = 1
        c.notify_all()
    for p in ps:
        p.join(20)
        assert p.exitcode == 0


def _count_in_and_wait(c, waiting, woken):
    with c:
        waiting.value += 1
        c.wait(30)
        woken.value += 1


@pytest.mark.timeout(60)
def test_condition_notify_n_wakes_exactly_n():
    """notify(n) releases exactly n of the waiters (here 4 processes and 2 threads), even when
    they are not all asleep yet; notify_all() releases the rest (issue 9: notify(2) used to
    wake all four)."""
    c = mp.Condition()
    waiting, woken = mp.Value("i", 0), mp.Value("i", 0)
    procs = [mp.Process(target=_count_in_and_wait, args=(c, waiting, woken)) for _ in range(4)]
    threads = [threading.Thread(target=_count_in_and_wait, args=(c, waiting, woken))
               for _ in range(2)]
    for w in procs + threads:
        w.start()
    while True:
        with c:  # a waiter counts itself in holding c and is listed before it releases c
            if waiting.value == 6:
                assert c._n_waiting() == 6
                c.notify(2)
                assert c._n_waiting() == 4
                break
        time.sleep(0.001)
    while woken.value < 2:
        time.sleep(0.001)
    time.sleep(0.2)  # nobody else may follow
    assert woken.value == 2
    with c:
        assert c._n_waiting() == 4
        c.notify(3)
        assert c._n_waiting() == 1
        c.notify_all()
        assert c._n_waiting() == 0
    for w in procs + threads:
        w.join(30)
    assert woken.value == 6
    assert [p.exitcode for p in procs] == [0] * 4


@pytest.mark.timeout(30)
def test_condition_timed_out_waiter_takes_no_notify():
    """A waiter that timed out is gone: a later notify() releases a waiter still waiting."""
    c = mp.Condition()
    with c:
        assert c.wait(0.01) is False
        assert c._n_waiting() == 0
    got = []
    t = threading.Thread(target=lambda: got.append(c.acquire() and c.wait(30)) or c.release())
    t.start()
    while True:
        with c:
            if c._n_waiting() == 1:
                c.notify()
                break
        time.sleep(0.001)
    t.join(30)
    assert got == [True]


def test_condition_timeout_and_errors():
    c = mp.Condition(mp.Lock())
    with pytest.raises(AssertionError):
        c.wait(0.01)
    with pytest.raises(AssertionError):
        c.notify()
    with c:
        t0 = time.monotonic()
        assert c.wait(0.05) is False
        assert time.monotonic() - t0 >= 0.04
        assert c.wait_for(lambda: False, timeout=0.02) is False
        c.notify(0)
        c.notify(5)
        c.notify_all()
    with pytest.raises(TypeError):
        mp.Condition(threading.Lock())


def test_condition_rlock_depth_restored():
    r = mp.RLock()
    c = mp.Condition(r)
    with c:
        with c:
            assert r._count() == 2
            assert c.wait(0.01) is False
            assert r._count() == 2
    assert r._count() == 0
    assert repr(c) == "<Condition(<RLock(None, 0)>, 0)>"


# ---------------------------------------------------------------------------- Barrier

@pytest.mark.timeout(30)
def test_barrier_threads_and_action():
    hits = mp.Value("i", 0)
    b = mp.Barrier(3, action=lambda: setattr(hits, "value", hits.value + 1))
    out = []

    def w():
        out.append(b.wait(10))

    ts = [threading.Thread(target=w) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(out) == [0, 1, 2]
    assert hits.value == 1
    assert b.parties == 3 and b.n_waiting == 0 and not b.broken


@pytest.mark.timeout(30)
def test_barrier_processes():
    b = mp.Barrier(3)
    ps = [mp.Process(target=b.wait, args=(20,)) for _ in range(2)]
    for p in ps:
        p.start()
    assert b.wait(20) in (0, 1, 2)
    for p in ps:
        p.join(20)
        assert p.exitcode == 0


@pytest.mark.timeout(30)
def test_barrier_timeout_abort_reset():
    b = mp.Barrier(2)
    with pytest.raises(threading.BrokenBarrierError):
        b.wait(0.05)
    assert b.broken
    with pytest.raises(threading.BrokenBarrierError):
        b.wait()
    b.reset()
    assert not b.broken
    b.abort()
    assert b.broken
    b.reset()
    t = threading.Thread(target=b.wait, args=(10,))
    t.start()
    assert b.wait(10) in (0, 1)
    t.join()


# ---------------------------------------------------------------------------- processes

@pytest.mark.timeout(120)
def test_value_increments_are_exact_across_processes():
    v = mp.Value("i", 0)

    def work():
        for _ in range(10000):
            with v.get_lock():
                v.value += 1

    ps = [mp.Process(target=work) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(100)
        assert p.exitcode == 0
    assert v.value == 20000


def _hold(lock, ready):
    lock.acquire()
    ready.set()
    time.sleep(60)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_owner_death_raises_then_works(kind):
    lock = getattr(mp, kind)()
    ready = mp.Event()
    p = mp.Process(target=_hold, args=(lock, ready))
    p.start()
    assert ready.wait(10)
    p.kill()
    p.join()
    assert p.exitcode == -signal.SIGKILL
    with pytest.raises(gilfree.OwnerDeadError, match=kind):
        with lock:
            pytest.fail("the body must not run")
    # released again: the next acquire works normally
    assert lock.acquire(timeout=5)
    lock.release()
    with lock:
        pass


@pytest.mark.timeout(30)
def test_owner_death_while_waiting():
    """A waiter blocked on the lock when its holder is killed gets OwnerDeadError."""
    lock = mp.Lock()
    ready = mp.Event()
    p = mp.Process(target=_hold, args=(lock, ready))
    p.start()
    assert ready.wait(10)
    threading.Timer(0.2, p.kill).start()
    with pytest.raises(gilfree.OwnerDeadError):
        lock.acquire(timeout=10)
    p.join()
    assert lock.acquire(False)
    lock.release()


def _blocked_calls():
    held = mp.Lock()
    held.acquire()
    rheld = mp.RLock()
    threading.Thread(target=rheld.acquire).start()
    time.sleep(0.05)
    c = mp.Condition()

    def cond_wait():
        with c:
            c.wait()

    return {
        "lock": held.acquire,
        "rlock": rheld.acquire,
        "semaphore": mp.Semaphore(0).acquire,
        "event": mp.Event().wait,
        "condition": cond_wait,
        "barrier": mp.Barrier(2).wait,
    }


@pytest.mark.timeout(30)
@pytest.mark.parametrize("what", ["lock", "rlock", "semaphore", "event", "condition", "barrier"])
def test_ctrl_c_interrupts_blocking_call(what):
    call = _blocked_calls()[what]
    _sigint_after(0.2)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        call()
    assert time.monotonic() - t0 < 1.5


@pytest.mark.timeout(30)
def test_gil_released_while_blocked():
    L = mp.Lock()
    L.acquire()
    count = 0
    stop = threading.Event()

    def spin():
        nonlocal count
        while not stop.is_set():
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.05)
    before = count
    assert L.acquire(timeout=0.3) is False
    during = count - before
    stop.set()
    t.join()
    assert during > 1000  # the other thread ran while we were blocked


# ---------------------------------------------------------------------------- pickling

def test_pickle_in_process_shares_state():
    L, E, S = mp.Lock(), mp.Event(), mp.Semaphore(3)
    L2, E2, S2 = (pickle.loads(pickle.dumps(x)) for x in (L, E, S))
    assert type(L2) is type(L) and L2 is not L
    L.acquire()
    assert L2.acquire(False) is False
    L2.release()
    E2.set()
    assert E.is_set()
    S2.acquire()
    assert S.get_value() == 2
    c = mp.Condition()
    c2 = pickle.loads(pickle.dumps(c))
    with c2:
        assert c._lock._is_mine()
    b = mp.Barrier(2)
    b2 = pickle.loads(pickle.dumps(b))
    assert b2.parties == 2


def test_refcounts_free_shared_objects():
    import gc
    gc.collect()
    before = live_blocks()
    objs = [mp.Lock(), mp.RLock(), mp.Event(), mp.Semaphore(), mp.Condition(), mp.Barrier(2),
            mp.Value("d", 1.5), mp.Array("i", 100)]
    copies = [pickle.loads(pickle.dumps(o)) for o in objs]
    assert live_blocks() > before
    del objs, copies
    gc.collect()
    assert live_blocks() == before


@pytest.mark.timeout(60)
def test_refcounts_after_fork_children():
    import gc
    gc.collect()
    before = live_blocks()
    L = mp.Lock()
    p = mp.Process(target=lambda: L.acquire() and L.release())
    p.start()
    p.join()
    assert p.exitcode == 0
    # a Process started with an unreferenced object: the parent drops it right after start
    p = mp.Process(target=lambda e: e.set(), args=(mp.Event(),))
    p.start()
    p.join()
    assert p.exitcode == 0
    del L, p
    gc.collect()
    assert live_blocks() == before


def _use_received(q, done):
    lock, ev, val, sem = q.get(timeout=20)
    with lock:
        val.value += 42
    sem.release()
    ev.set()
    done.wait(20)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("channel", ["queue", "pipe"])
def test_send_sync_objects_to_running_process(channel):
    """The standard library refuses this; gilfree allows it."""
    if channel == "queue":
        q = mp.Queue()
        put = q.put
        getter = q
    else:
        r, w = mp.Pipe(duplex=False)
        put = w.send

        class _G:
            @staticmethod
            def get(timeout):
                assert r.poll(timeout)
                return r.recv()

        getter = _G()
    done = mp.Event()
    p = mp.Process(target=_use_received, args=(getter, done))
    p.start()
    time.sleep(0.1)  # the child is running and waiting
    lock, ev, val, sem = mp.Lock(), mp.Event(), mp.Value("q", 0), mp.Semaphore(0)
    put((lock, ev, val, sem))
    assert ev.wait(20)
    assert sem.acquire(timeout=20)
    assert val.value == 42
    done.set()
    p.join(20)
    assert p.exitcode == 0


def test_stdlib_refuses_what_we_allow():
    with pytest.raises(RuntimeError):
        pickle.dumps(multiprocessing.Lock())
    pickle.dumps(mp.Lock())


def test_rebuild_rejects_bad_offsets():
    with pytest.raises(gilfree.ProtocolError):
        gilfree.synchronize.Lock._rebuild(12345)
    ev = mp.Event()
    with pytest.raises(gilfree.ProtocolError):
        gilfree.synchronize.Lock._rebuild(ev._offset)  # an Event is not a Mutex


# ---------------------------------------------------------------- with / contention (v-value)

def test_with_binding_and_unbound_calls():
    from gilfree import _core
    from gilfree.synchronize import Lock, RLock
    rl = RLock()
    en, ex = rl.__enter__, rl.__exit__
    assert rl.__enter__ is en and ex.__self__ is rl and en.__name__ == "__enter__"
    assert en() is True and rl._count() == 1
    with rl:
        assert rl._count() == 2
    assert ex(None, None, None) is None and rl._count() == 0
    with pytest.raises(TypeError):
        en(1)
    _core.Mutex.__enter__(rl)
    assert rl._count() == 1
    _core.Mutex.__exit__(rl, None, None, None)
    assert rl._count() == 0
    with pytest.raises(TypeError):
        _core.Mutex.__dict__["__enter__"].__get__(object())
    with pytest.raises(TypeError):
        _core.Mutex.__exit__()
    # a bound __exit__ keeps its lock alive
    ex2 = Lock().__exit__
    ex2.__self__.acquire()
    ex2(None, None, None)
    assert ex2.__self__.acquire(False)
    # with on a temporary lock
    with Lock():
        pass
    with pytest.raises(ValueError):
        Lock().__exit__(None, None, None)  # not locked


def _hold_lock(lk, held, go):
    lk.acquire()
    held.set()
    go.wait(20)
    lk.release()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("timeout", [0.001, 0.03, 0.3])
def test_contended_acquire_timeout_is_respected(timeout):
    """The nap phase of a contended acquire never sleeps past the deadline."""
    lk = mp.Lock()
    held, go = mp.Event(), mp.Event()
    p = mp.Process(target=_hold_lock, args=(lk, held, go))
    p.start()
    try:
        assert held.wait(20)
        t = time.monotonic()
        assert lk.acquire(timeout=timeout) is False
        dt = time.monotonic() - t
        assert timeout <= dt + 0.001 and dt < timeout + 1.0
    finally:
        go.set()
        p.join(20)
    assert p.exitcode == 0
    assert lk.acquire(timeout=10)  # released by the child: the waiter gets it
    lk.release()


def _ping(lk, n, out):
    got = 0
    for _ in range(n):
        with lk:
            got += 1
    out.put(got)


@pytest.mark.timeout(60)
def test_contended_lock_in_loops_makes_progress():
    lk, out = mp.RLock(), mp.Queue()
    ps = [mp.Process(target=_ping, args=(lk, 5000, out)) for _ in range(2)]
    for p in ps:
        p.start()
    assert sorted(out.get(timeout=50) for _ in ps) == [5000, 5000]
    for p in ps:
        p.join(20)
    assert [p.exitcode for p in ps] == [0, 0]
