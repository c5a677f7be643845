"""gilfree.Queue / SimpleQueue / JoinableQueue: semantics of the standard library, across
processes, under faults."""

import math
import os
import pickle
import queue
import signal
import struct
import threading
import time

import pytest

import gilfree
from conftest import live_blocks


# ---------------------------------------------------------------- values and types

class IntSub(int):
    pass


class StrSub(str):
    pass


VALUES = [
    0, 1, -1, 2**63 - 1, -2**63, 2**63, -2**63 - 1, 2**200, -(2**200),
    True, False, IntSub(5),
    0.0, -0.0, 1.5, float("inf"), float("-inf"), 1e-310,
    "", "a", "é", "日本語", "\udc80surrogate", "x" * 100000, StrSub("sub"),
    b"", b"\x00\xff", bytes(range(256)) * 1000,
    bytearray(b""), bytearray(b"abc"),
    None, (1, 2), [1, [2]], {"a": 1}, {1, 2}, frozenset([3]), 3 + 4j, Ellipsis,
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("cls", [gilfree.Queue, gilfree.SimpleQueue, gilfree.JoinableQueue])
def test_round_trip_preserves_type_and_value(cls):
    q = cls()
    for v in VALUES:
        q.put(v)
    for v in VALUES:
        got = q.get()
        assert type(got) is type(v), (v, got)
        assert got == v
    q.close()


@pytest.mark.timeout(10)
def test_float_bits_preserved():
    q = gilfree.Queue()
    nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8DEADBEEF0001))[0]
    q.put(nan)
    q.put(-0.0)
    got = q.get()
    assert math.isnan(got)
    assert struct.pack("<d", got) == struct.pack("<d", nan)
    z = q.get()
    assert z == 0.0 and math.copysign(1.0, z) == -1.0


@pytest.mark.timeout(10)
def test_matches_stdlib_pickle_for_surrogates():
    s = "a\ud800b\udfff"
    q = gilfree.Queue()
    q.put(s)
    assert q.get() == pickle.loads(pickle.dumps(s))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [1 << 20, 100 << 20])
def test_large_bytes(size):
    q = gilfree.Queue()
    data = os.urandom(1 << 16) * (size >> 16)
    q.put(data)
    got = q.get()
    assert type(got) is bytes and got == data


@pytest.mark.timeout(30)
def test_out_of_band_buffer_is_zero_copy_and_freed():
    q = gilfree.Queue()
    before = live_blocks()
    payload = bytearray(os.urandom(1 << 20))
    q.put(pickle.PickleBuffer(payload))
    got = q.get()
    assert isinstance(got, memoryview)
    assert type(got.obj).__name__ == "BlockView"
    assert bytes(got) == bytes(payload)
    got[0:1] = b"z"  # the receiver owns the block: writable, like a bytearray would be
    del got
    assert live_blocks() == before


@pytest.mark.timeout(30)
def test_numpy_array_zero_copy():
    np = pytest.importorskip("numpy")
    q = gilfree.Queue()
    a = np.arange(1 << 20, dtype=np.float64)
    q.put(a)
    b = q.get()
    assert np.array_equal(a, b)
    base = b.base
    while base is not None and not isinstance(base, memoryview):
        base = getattr(base, "base", None)
    assert isinstance(base, memoryview) and type(base.obj).__name__ == "BlockView"
    small = np.arange(10)
    q.put(small)
    assert np.array_equal(q.get(), small)


# ---------------------------------------------------------------- blocking and timeouts

@pytest.mark.timeout(20)
def test_empty_and_full_like_stdlib():
    q = gilfree.Queue(maxsize=2)
    assert q.empty() and not q.full() and q.qsize() == 0
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, block=False)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.2)
    assert time.monotonic() - t0 >= 0.19
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False)
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(True, 0.2)
    assert 0.19 <= time.monotonic() - t0 < 5
    with pytest.raises(queue.Empty):
        q.get(block=False, timeout=10)  # block=False ignores the timeout


@pytest.mark.timeout(10)
def test_negative_timeout_is_value_error():
    q = gilfree.Queue()
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    with pytest.raises(ValueError):
        q.put(1, timeout=-0.5)
    with pytest.raises(ValueError):
        q.get(timeout=float("nan"))
    with pytest.raises(TypeError):
        q.get(timeout="1")


@pytest.mark.timeout(10)
def test_blocked_get_woken_by_put_from_thread():
    q = gilfree.Queue()
    threading.Timer(0.1, q.put, args=("late",)).start()
    assert q.get(timeout=5) == "late"


@pytest.mark.timeout(10)
def test_get_releases_the_gil():
    q = gilfree.Queue()
    count = 0
    stop = False

    def spin():
        nonlocal count
        while not stop:
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        with pytest.raises(queue.Empty):
            q.get(timeout=0.5)
        before = count
        time.sleep(0.1)
    finally:
        stop = True
        t.join()
    assert before > 1000


@pytest.mark.timeout(10)
def test_ctrl_c_interrupts_blocked_get():
    q = gilfree.Queue()
    timer = threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        q.get()
    assert time.monotonic() - t0 < 3
    timer.join()
    q.put(1)
    assert q.get() == 1  # still usable


@pytest.mark.timeout(10)
def test_ctrl_c_interrupts_blocked_put():
    q = gilfree.Queue(maxsize=1)
    q.put(0)
    timer = threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        q.put(1)
    timer.join()
    assert q.qsize() == 1


# ---------------------------------------------------------------- errors

@pytest.mark.timeout(10)
def test_unpicklable_raises_and_enqueues_nothing():
    q = gilfree.Queue()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        q.put(lambda: 1)
    with pytest.raises(TypeError):
        q.put(threading.Lock())
    with pytest.raises(TypeError):
        q.put_many([1, 2, threading.Lock()])
    assert q.empty() and q.qsize() == 0
    q.put(5)
    assert q.get() == 5


class _Boom:
    def __reduce__(self):
        return (_explode, ())


def _explode():
    raise RuntimeError("cannot unpickle me")


@pytest.mark.timeout(10)
def test_unpickling_error_consumes_message_queue_stays_usable():
    q = gilfree.Queue()
    q.put(_Boom())
    q.put("after")
    with pytest.raises(RuntimeError, match="cannot unpickle"):
        q.get()
    assert q.get() == "after"


@pytest.mark.timeout(10)
def test_unpickling_error_in_get_many_loses_nothing():
    q = gilfree.Queue()
    q.put_many([1, _Boom(), 3])
    assert q.get_many(10) == [1, 3]
    with pytest.raises(RuntimeError, match="cannot unpickle"):
        q.get(timeout=0)
    q.put(4)
    assert q.get() == 4


@pytest.mark.timeout(10)
def test_use_after_close():
    q = gilfree.Queue()
    q.put(1)
    q.close()
    with pytest.raises(ValueError, match="is closed"):
        q.put(2)
    with pytest.raises(ValueError, match="is closed"):
        q.get()
    q.join_thread()
    q.cancel_join_thread()
    q2 = gilfree.Queue()
    with pytest.raises(AssertionError):
        q2.join_thread()
    s = gilfree.SimpleQueue()
    s.close()
    with pytest.raises(OSError):
        s.get()
    with pytest.raises(OSError):
        s.put(1)


# ---------------------------------------------------------------- batches

@pytest.mark.timeout(20)
def test_put_many_get_many():
    q = gilfree.Queue()
    items = list(range(1000)) + ["s" * 10000, b"b" * 100000, None]
    q.put_many(items)
    assert q.qsize() == len(items)
    got = []
    while len(got) < len(items):
        got.extend(q.get_many(max_items=100))
    assert got == items
    assert len(q.get_many(5, timeout=0)) if False else True
    with pytest.raises(queue.Empty):
        q.get_many(10, block=False)
    q.put_many(iter([7, 8, 9]))
    assert q.get_many(2) == [7, 8]
    assert q.get_many() == [9]


@pytest.mark.timeout(20)
def test_put_many_full_puts_what_fits():
    q = gilfree.Queue(maxsize=3)
    with pytest.raises(queue.Full):
        q.put_many(range(5), timeout=0.1)
    assert q.get_many(10) == [0, 1, 2]


# ---------------------------------------------------------------- processes

def _producer(q, base, n):
    for i in range(n):
        q.put((base, i))


def _consumer(q, out, n_stop):
    count = 0
    while True:
        item = q.get()
        if item is None:
            break
        out.put(item)
        count += 1


@pytest.mark.timeout(60)
def test_many_producers_many_consumers_nothing_lost(fork):
    q = gilfree.Queue(maxsize=100)
    out = gilfree.Queue()
    n, producers, consumers = 3000, 3, 2
    cons = [fork(_consumer, q, out, None) for _ in range(consumers)]
    prods = [fork(_producer, q, p, n) for p in range(producers)]
    for p in prods:
        assert fork.join(p) == 0
    for _ in cons:
        q.put(None)
    for c in cons:
        assert fork.join(c) == 0
    got = []
    while not out.empty():
        got.extend(out.get_many())
    assert sorted(got) == sorted((p, i) for p in range(producers) for i in range(n))
    # per-producer FIFO order as seen by all consumers together is not defined; per consumer it is
    assert len(got) == producers * n


def _slow_consumer(q, started):
    started.put(1)
    while True:
        q.get()


@pytest.mark.timeout(60)
def test_consumer_sigkilled_mid_stream_queue_still_works(fork):
    q = gilfree.Queue()
    started = gilfree.Queue()
    pid = fork(_slow_consumer, q, started)
    started.get(timeout=10)
    for i in range(20000):
        q.put(i)
    fork.kill(pid)
    q.put("end")
    rest = []
    while True:
        x = q.get(timeout=5)
        if x == "end":
            break
        rest.append(x)
    assert rest == sorted(rest)  # whatever is left is still in order
    q.put_many([1, 2])
    assert q.get_many(5) == [1, 2]


def _big_producer(q):
    blob = b"x" * (1 << 20)
    while True:
        q.put(blob)


@pytest.mark.timeout(60)
def test_producer_sigkilled_mid_stream_queue_still_works(fork):
    q = gilfree.Queue(maxsize=4)
    pid = fork(_big_producer, q)
    for _ in range(20):
        assert len(q.get(timeout=10)) == 1 << 20
    fork.kill(pid)
    while True:
        try:
            assert len(q.get(timeout=0.2)) == 1 << 20
        except queue.Empty:
            break
    q.put("ok")
    assert q.get(timeout=5) == "ok"


def _receive_queue_and_answer(inbox):
    q2 = inbox.get(timeout=20)
    q2.put(("hello from child", os.getpid()))
    conn = inbox.get(timeout=20)
    conn.send("via pipe")
    conn.close()


@pytest.mark.timeout(60)
def test_send_queue_and_pipe_through_queue_to_running_process(fork):
    inbox = gilfree.Queue()
    pid = fork(_receive_queue_and_answer, inbox)
    q2 = gilfree.Queue()  # created after the child started
    inbox.put(q2)
    msg, child = q2.get(timeout=20)
    assert msg == "hello from child" and child == pid
    r, w = gilfree.Pipe(duplex=False)
    inbox.put(w)
    w.close()
    assert r.recv() == "via pipe"
    assert fork.join(pid) == 0
    with pytest.raises(EOFError):
        r.recv()


@pytest.mark.timeout(20)
def test_queue_pickled_in_process_round_trip():
    q = gilfree.Queue(5)
    q2 = pickle.loads(pickle.dumps(q))
    assert type(q2) is gilfree.Queue and q2.maxsize == 5
    q.put(1)
    assert q2.get() == 1
    q.close()
    q2.put(2)
    assert q2.get() == 2


@pytest.mark.timeout(20)
def test_parent_drops_queue_child_keeps_using_it(fork):
    q = gilfree.Queue()
    back = gilfree.Queue()

    def child():
        time.sleep(0.3)
        for i in range(100):
            q.put(i)
        back.put(sum(q.get() for _ in range(100)))

    pid = fork(child)
    del q  # the child's copy holds its own reference
    assert back.get(timeout=10) == sum(range(100))
    assert fork.join(pid) == 0


# ---------------------------------------------------------------- JoinableQueue

@pytest.mark.timeout(10)
def test_task_done_too_many_times():
    q = gilfree.JoinableQueue()
    with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
        q.task_done()
    q.put(1)
    q.get()
    q.task_done()
    q.join()
    with pytest.raises(ValueError):
        q.task_done()


def _worker(q):
    while True:
        item = q.get()
        time.sleep(0.001)
        q.task_done()
        if item is None:
            break


@pytest.mark.timeout(30)
def test_join_waits_for_task_done_across_processes(fork):
    q = gilfree.JoinableQueue()
    for i in range(200):
        q.put(i)
    q.put(None)
    pid = fork(_worker, q)
    q.join()
    assert q.empty()
    assert fork.join(pid) == 0


@pytest.mark.timeout(10)
def test_join_blocks_until_done():
    q = gilfree.JoinableQueue()
    q.put_many([1, 2])
    done = threading.Event()

    def joiner():
        q.join()
        done.set()

    t = threading.Thread(target=joiner)
    t.start()
    q.get()
    q.task_done()
    assert not done.wait(0.2)
    q.get()
    q.task_done()
    assert done.wait(5)
    t.join()


@pytest.mark.timeout(10)
def test_as_multiprocessing_drop_in():
    import gilfree as multiprocessing

    q = multiprocessing.Queue()
    q.put([1, 2, 3])
    assert q.get() == [1, 2, 3]
    sq = multiprocessing.SimpleQueue()
    sq.put("x")
    assert not sq.empty()
    assert sq.get() == "x"
    assert sq.empty()


@pytest.mark.timeout(10)
def test_close_from_another_thread_wakes_blocked_get():
    q = gilfree.Queue()
    threading.Timer(0.2, q.close).start()
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="is closed"):
        q.get()
    assert time.monotonic() - t0 < 3


@pytest.mark.timeout(10)
def test_put_get_many_threads_same_handle():
    q = gilfree.Queue(maxsize=50)
    out = []

    def consume():
        while True:
            x = q.get()
            if x is None:
                return
            out.append(x)

    ts = [threading.Thread(target=consume) for _ in range(3)]
    for t in ts:
        t.start()
    for i in range(3000):
        q.put(i)
    for _ in ts:
        q.put(None)
    for t in ts:
        t.join()
    assert sorted(out) == list(range(3000))
