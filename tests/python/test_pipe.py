"""gilfree.Pipe / Connection: the multiprocessing.connection API, EOF on peer death, wait()."""

import array
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time

import pytest

import gilfree
from gilfree import connection


@pytest.mark.timeout(10)
def test_duplex_send_recv():
    a, b = gilfree.Pipe()
    assert a.readable and a.writable and b.readable and b.writable
    a.send({"x": [1, 2]})
    b.send(b"back")
    assert b.recv() == {"x": [1, 2]}
    assert a.recv() == b"back"
    for v in [1, 2**80, "s", None, 1.5, (1,), True]:
        a.send(v)
        got = b.recv()
        assert got == v and type(got) is type(v)
    a.close()
    b.close()


@pytest.mark.timeout(10)
def test_simplex_read_only_write_only():
    r, w = gilfree.Pipe(duplex=False)
    assert r.readable and not r.writable
    assert w.writable and not w.readable
    with pytest.raises(OSError, match="read-only"):
        r.send(1)
    with pytest.raises(OSError, match="write-only"):
        w.recv()
    w.send(1)
    assert r.recv() == 1


@pytest.mark.timeout(10)
def test_send_bytes_recv_bytes_and_validation():
    a, b = gilfree.Pipe()
    a.send_bytes(b"hello world", 6)
    assert b.recv_bytes() == b"world"
    a.send_bytes(b"hello world", 0, 5)
    assert b.recv_bytes() == b"hello"
    a.send_bytes(array.array("i", [1, 2, 3]))
    assert b.recv_bytes() == array.array("i", [1, 2, 3]).tobytes()
    a.send_bytes(b"")
    assert b.recv_bytes() == b""
    with pytest.raises(ValueError, match="offset is negative"):
        a.send_bytes(b"abc", -1)
    with pytest.raises(ValueError, match="buffer length < offset"):
        a.send_bytes(b"abc", 4)
    with pytest.raises(ValueError, match="size is negative"):
        a.send_bytes(b"abc", 0, -1)
    with pytest.raises(ValueError, match="buffer length < offset \\+ size"):
        a.send_bytes(b"abc", 1, 3)
    with pytest.raises(ValueError, match="negative maxlength"):
        b.recv_bytes(-1)
    a.send_bytes(b"x" * 100)
    with pytest.raises(OSError, match="bad message length"):
        b.recv_bytes(10)


@pytest.mark.timeout(10)
def test_recv_bytes_into_and_buffer_too_short():
    a, b = gilfree.Pipe()
    buf = bytearray(10)
    a.send_bytes(b"abcd")
    assert b.recv_bytes_into(buf, 3) == 4
    assert buf == bytearray(b"\0\0\0abcd\0\0\0")
    a.send_bytes(b"x" * 20)
    with pytest.raises(multiprocessing.BufferTooShort) as ei:
        b.recv_bytes_into(buf)
    assert ei.value.args[0] == b"x" * 20
    assert gilfree.BufferTooShort is multiprocessing.BufferTooShort
    with pytest.raises(ValueError, match="negative offset"):
        b.recv_bytes_into(buf, -1)
    with pytest.raises(ValueError, match="offset too large"):
        b.recv_bytes_into(buf, 11)
    big = os.urandom(3 << 20)
    a.send_bytes(big)
    out = bytearray(len(big))
    assert b.recv_bytes_into(out) == len(big) and out == big


@pytest.mark.timeout(10)
def test_bytes_and_objects_interoperate_like_stdlib():
    a, b = gilfree.Pipe()
    a.send_bytes(pickle.dumps([1, 2]))
    assert b.recv() == [1, 2]
    a.send({"k": 1})
    assert pickle.loads(b.recv_bytes()) == {"k": 1}


@pytest.mark.timeout(10)
def test_poll_timeouts():
    a, b = gilfree.Pipe()
    assert b.poll() is False
    assert b.poll(0) is False
    assert b.poll(-1) is False
    t0 = time.monotonic()
    assert b.poll(0.2) is False
    assert time.monotonic() - t0 >= 0.19
    threading.Timer(0.1, a.send, args=(1,)).start()
    assert b.poll(None) is True
    assert b.recv() == 1
    # the keyword, as multiprocessing's Connection.poll(timeout=0.0) (issue 9)
    assert b.poll(timeout=0.01) is False
    a.send(2)
    assert b.poll(timeout=None) is True and b.recv() == 2
    with pytest.raises(TypeError):
        b.poll(0, timeout=0)
    with pytest.raises(TypeError):
        b.poll(wait=0)


@pytest.mark.timeout(10)
def test_closed_connection_errors_and_context_manager():
    a, b = gilfree.Pipe()
    with a:
        pass
    assert a.closed
    for call in (lambda: a.send(1), a.recv, a.poll, a.fileno, lambda: a.send_bytes(b"x"),
                 a.recv_bytes):
        with pytest.raises(OSError, match="handle is closed"):
            call()
    a.close()  # idempotent
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(BrokenPipeError):
        b.send(1)


@pytest.mark.timeout(10)
def test_eof_after_peer_close_drains_first():
    a, b = gilfree.Pipe()
    a.send(1)
    a.send(2)
    a.close()
    assert b.recv() == 1
    assert b.poll() is True
    assert b.recv() == 2
    assert b.poll() is True  # EOF is "readable"
    with pytest.raises(EOFError):
        b.recv()


def _hold_forever(conn, ready):
    ready.send("ready")
    while True:
        time.sleep(1)


@pytest.mark.timeout(30)
def test_eof_after_peer_sigkilled(fork):
    a, b = gilfree.Pipe()
    ready_r, ready_w = gilfree.Pipe(duplex=False)
    pid = fork(_hold_forever, b, ready_w)
    b.close()  # the child holds the only other copy of b
    ready_w.close()
    assert ready_r.recv() == "ready"
    assert not a.poll(0.1)
    fork.kill(pid)
    t0 = time.monotonic()
    with pytest.raises(EOFError):
        a.recv()
    assert time.monotonic() - t0 < 5
    assert a.poll(0) is True


def _exit_without_close(conn):
    conn.send("bye")
    os._exit(0)  # no close, no garbage collection


@pytest.mark.timeout(30)
def test_eof_after_peer_exits_without_closing(fork):
    a, b = gilfree.Pipe()
    pid = fork(_exit_without_close, b)
    b.close()
    assert a.recv() == "bye"
    with pytest.raises(EOFError):
        a.recv()
    fork.join(pid)


def _stuck_reader(conn, ready):
    ready.send(1)
    time.sleep(60)


@pytest.mark.timeout(30)
def test_blocked_send_gets_broken_pipe_when_reader_dies(fork):
    r, w = gilfree.Pipe(duplex=False)
    ready_r, ready_w = gilfree.Pipe(duplex=False)
    pid = fork(_stuck_reader, r, ready_w)
    r.close()
    ready_r.recv()
    killer = threading.Timer(0.3, os.kill, args=(pid, signal.SIGKILL))
    killer.start()
    with pytest.raises(BrokenPipeError):
        for _ in range(10**6):  # fills the ring, then blocks until the reader is seen dead
            w.send_bytes(b"x" * 1000)
    killer.join()
    fork.join(pid)


def _ping_pong(conn, n):
    for _ in range(n):
        conn.send(conn.recv())


@pytest.mark.timeout(30)
def test_ping_pong_across_processes(fork):
    a, b = gilfree.Pipe()
    pid = fork(_ping_pong, b, 500)
    b.close()
    for i in range(500):
        a.send(i)
        assert a.recv() == i
    assert fork.join(pid) == 0
    with pytest.raises(EOFError):
        a.recv()


@pytest.mark.timeout(20)
def test_wait_several_connections():
    pipes = [gilfree.Pipe() for _ in range(4)]
    readers = [p[0] for p in pipes]
    assert connection.wait(readers, timeout=0.1) == []
    pipes[2][1].send("x")
    pipes[0][1].send("y")
    assert connection.wait(readers, timeout=5) == [readers[0], readers[2]]
    threading.Timer(0.1, pipes[3][1].send, args=("z",)).start()
    readers[0].recv()
    readers[2].recv()
    assert connection.wait(readers) == [readers[3]]
    readers[3].recv()
    pipes[1][1].close()  # EOF counts as ready
    assert connection.wait(readers, timeout=5) == [readers[1]]


@pytest.mark.timeout(20)
def test_wait_mixes_with_stdlib_objects_and_stdlib_wait_works():
    a, b = gilfree.Pipe()
    sa, sb = multiprocessing.Pipe()
    assert connection.wait([a, sa], timeout=0.05) == []
    sb.send(1)
    assert connection.wait([a, sa], timeout=5) == [sa]
    sa.recv()
    b.send(2)
    # our fileno() is an eventfd, readable while data is queued: the stdlib's wait works too
    assert multiprocessing.connection.wait([a, sa], timeout=5) == [a]
    assert a.recv() == 2
    assert multiprocessing.connection.wait([a], timeout=0.05) == []


@pytest.mark.timeout(30)
def test_wait_reports_sigkilled_peer(fork):
    a, b = gilfree.Pipe()
    ready_r, ready_w = gilfree.Pipe(duplex=False)
    pid = fork(_hold_forever, b, ready_w)
    b.close()
    ready_r.recv()
    threading.Timer(0.2, os.kill, args=(pid, signal.SIGKILL)).start()
    assert connection.wait([a], timeout=10) == [a]
    with pytest.raises(EOFError):
        a.recv()
    fork.join(pid)


def _echo_over_received_conn(inbox):
    conn = inbox.recv()
    conn.send(conn.recv() * 2)
    conn.close()


@pytest.mark.timeout(30)
def test_send_connection_through_pipe_to_running_process(fork):
    inbox_r, inbox_w = gilfree.Pipe(duplex=False)
    pid = fork(_echo_over_received_conn, inbox_r)
    inbox_r.close()
    a, b = gilfree.Pipe()  # created after the child started
    inbox_w.send(b)
    b.close()  # the message holds a reference in transit: no EOF
    a.send(21)
    assert a.recv() == 42
    assert fork.join(pid) == 0
    with pytest.raises(EOFError):
        a.recv()


@pytest.mark.timeout(10)
def test_connection_not_constructible_directly():
    with pytest.raises(TypeError):
        connection.Connection()


@pytest.mark.timeout(10)
def test_close_from_another_thread_wakes_blocked_recv():
    a, b = gilfree.Pipe()
    threading.Timer(0.2, a.close).start()
    with pytest.raises(OSError, match="handle is closed"):
        a.recv()


def _report_fileno_and_wait(conn):
    import gilfree.connection
    conn.send(conn.fileno() >= 0)
    conn.send(gilfree.connection.wait([conn], timeout=30) == [conn] and conn.recv())


@pytest.fixture(scope="module")
def _resource_tracker():
    """spawn's long-lived helper, started before the per-test leak check looks."""
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()


@pytest.mark.timeout(120)
def test_spawned_child_gets_the_eventfd(_resource_tracker):
    """A Connection passed to a spawned child at start brings its eventfd along: fileno()
    works there and wait() sleeps on it (issue 9: fileno() raised in spawned children)."""
    ctx = gilfree.get_context("spawn")
    a, b = ctx.Pipe()
    p = ctx.Process(target=_report_fileno_and_wait, args=(b,))
    p.start()
    assert a.recv() is True
    a.send("go")
    assert a.recv() == "go"
    p.join(60)
    assert p.exitcode == 0
