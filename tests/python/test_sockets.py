"""gilfree.connection over sockets: Listener / Client / SocketConnection (AF_INET, AF_UNIX,
abstract), the authkey handshake, wire compatibility with the standard library in both
directions (its peers run in a separate interpreter that never imports gilfree), wait() over
mixed objects, threads and Ctrl-C, and every kind of bad input."""

import array
import errno
import hashlib
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import pytest

import gilfree
from gilfree import connection
from gilfree.connection import Client, Listener, SocketConnection
from multiprocessing import AuthenticationError, BufferTooShort
from multiprocessing.reduction import ForkingPickler

FAMILIES = ["AF_INET", "AF_UNIX", "abstract"]


@pytest.fixture(scope="module", autouse=True)
def _resource_tracker():
    """spawn starts the standard library's resource tracker, a long-lived child by design:
    start it before the per-test leak check looks."""
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()
    yield


def _listener(family, **kw):
    if family == "abstract":
        return Listener("\0gilfree-test-%d-%d" % (os.getpid(), time.monotonic_ns()), **kw)
    return Listener(family=family, **kw)


def _pair():
    a, b = socket.socketpair()
    return SocketConnection(a.detach()), SocketConnection(b.detach())


def _stdlib_peer(code, *args):
    """A pure standard-library Python process (gilfree is never imported there) running
    `code` with sys.argv[1:] = args; stdout is a pipe."""
    prog = "import sys\nassert 'gilfree' not in sys.modules\n" + textwrap.dedent(code)
    return subprocess.Popen([sys.executable, "-c", prog, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p, timeout=30):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return out


# ---------------------------------------------------------------------------- basics

@pytest.mark.timeout(30)
@pytest.mark.parametrize("family", FAMILIES)
def test_listener_client_connection_api(family):
    with _listener(family) as l:
        if family == "abstract":
            assert isinstance(l.address, bytes) and l.address.startswith(b"\0")
        with Client(l.address) as c, l.accept() as d:
            assert isinstance(c, SocketConnection) and isinstance(d, SocketConnection)
            assert c.readable and c.writable and not c.closed
            assert isinstance(c.fileno(), int)
            assert not d.poll()
            c.send({"x": [1, 2.5, None], "y": "h\xe9"})
            assert d.poll(5)
            assert d.recv() == {"x": [1, 2.5, None], "y": "h\xe9"}
            d.send_bytes(b"abcdefgh", 2, 3)
            assert c.recv_bytes() == b"cde"
            d.send_bytes(b"")
            assert c.poll(5) and c.recv_bytes() == b""
            arr = array.array("i", range(4))
            c.send_bytes(arr)
            buf = array.array("i", [0] * 10)
            assert d.recv_bytes_into(buf, 3 * buf.itemsize) == 16
            assert list(buf) == [0, 0, 0, 0, 1, 2, 3, 0, 0, 0]
            c.send_bytes(b"x" * 41)
            with pytest.raises(BufferTooShort) as ei:
                d.recv_bytes_into(bytearray(40))
            assert ei.value.args == (b"x" * 41,)
        assert c.closed and d.closed
        with pytest.raises(OSError, match="closed"):
            c.recv()
        if family == "AF_INET":
            assert l.last_accepted[0] == "127.0.0.1"
    with pytest.raises(OSError, match="listener is closed"):
        l.accept()
    if family == "AF_UNIX":
        assert not os.path.exists(l.address)  # the socket file is removed at close


@pytest.mark.timeout(30)
def test_tcp_connections_do_not_wait_for_delayed_acks():
    """TCP_NODELAY on both ends: the handshake's last message and the first request are two
    small writes in a row, which Nagle's algorithm would hold for the peer's delayed ACK."""
    with Listener(("127.0.0.1", 0)) as l, Client(l.address) as c, l.accept() as d:
        for conn in (c, d):
            s = socket.socket(fileno=os.dup(conn.fileno()))
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            s.close()


@pytest.mark.timeout(30)
def test_large_messages_and_growth():
    a, b = _pair()
    for size in (1 << 20, 16 << 20, 40 << 20):  # 40 MiB: more than the first allocation
        data = os.urandom(1 << 16) * (size >> 16)
        t = threading.Thread(target=a.send_bytes, args=(data,))
        t.start()
        got = b.recv_bytes()
        t.join()
        assert len(got) == size and hashlib.sha1(got).digest() == hashlib.sha1(data).digest()
    a.close()
    b.close()


@pytest.mark.timeout(30)
def test_send_bytes_argument_checks_match_stdlib():
    a, b = _pair()
    msg = b"abcdefghijklmnopqrstuvwxyz"
    for off, size, want in [(5, None, msg[5:]), (7, 8, msg[7:15]), (26, None, b""),
                            (26, 0, b"")]:
        a.send_bytes(msg, off, size)
        assert b.recv_bytes() == want
    for off, size in [(27, None), (22, 5), (26, 1), (-1, None), (4, -1)]:
        with pytest.raises(ValueError):
            a.send_bytes(msg, off, size)
    with pytest.raises(ValueError, match="negative maxlength"):
        b.recv_bytes(-1)
    with pytest.raises(ValueError, match="negative offset"):
        b.recv_bytes_into(bytearray(4), -1)
    with pytest.raises(ValueError, match="offset too large"):
        b.recv_bytes_into(bytearray(4), 5)
    a.close()
    b.close()


@pytest.mark.timeout(30)
def test_connection_of_fd_and_invalid_handles():
    s1, s2 = socket.socketpair()
    c = connection.Connection(s1.detach())
    assert isinstance(c, SocketConnection)
    d = connection.Connection(s2.detach(), readable=True, writable=False)
    assert d.readable and not d.writable
    with pytest.raises(OSError, match="read-only"):
        d.send(1)
    c.send(7)
    assert d.recv() == 7
    w = SocketConnection(os.dup(c.fileno()), readable=False)
    with pytest.raises(OSError, match="write-only"):
        w.recv()
    with pytest.raises(OSError, match="write-only"):
        w.poll()
    for conn in (c, d, w):
        conn.close()
    with pytest.raises(ValueError):
        connection.Connection(-1)
    with pytest.raises(ValueError):
        SocketConnection(0, readable=False, writable=False)
    with pytest.raises(TypeError):
        connection.Connection()
    bogus = SocketConnection(44977608)  # not an open fd: poll() fails cleanly
    with pytest.raises(OSError):
        bogus.poll()
    with pytest.raises(OSError):
        bogus.recv()


@pytest.mark.timeout(30)
def test_recv_waits_on_a_non_blocking_socket_and_after_idle_slices():
    """A reader sleeps in recv bounded by the interrupt slice (SO_RCVTIMEO, sock.c); a socket
    the user made non-blocking falls back to ppoll. Either way recv() waits for a message sent
    after several idle slices, and the socket is left as the user set it."""
    for nonblocking in (False, True):
        s1, s2 = socket.socketpair()
        if nonblocking:
            s2.setblocking(False)
        c, d = SocketConnection(s1.detach()), SocketConnection(s2.detach())
        t = threading.Timer(0.35, c.send, args=(("late", nonblocking),))
        t.start()
        t0 = time.monotonic()
        assert d.recv() == ("late", nonblocking)
        assert time.monotonic() - t0 >= 0.3
        t.join()
        assert (os.get_blocking(d.fileno()) is False) == nonblocking
        c.close()
        d.close()


@pytest.mark.timeout(30)
def test_pipe_fds_work_too():
    r, w = os.pipe()
    rc, wc = SocketConnection(r, writable=False), SocketConnection(w, readable=False)
    wc.send(["through", "a", "pipe"])
    assert rc.poll(5) and rc.recv() == ["through", "a", "pipe"]
    wc.close()
    with pytest.raises(EOFError):
        rc.recv()
    rc.close()


# ---------------------------------------------------------------------------- the wire

@pytest.mark.timeout(30)
def test_wire_bytes_are_the_standard_librarys():
    a, raw = socket.socketpair()
    c = SocketConnection(a.detach())
    c.send_bytes(b"hello")
    assert raw.recv(100) == struct.pack("!i", 5) + b"hello"
    obj = {"k": (1, 2.0, "three", None)}
    c.send(obj)
    want = bytes(ForkingPickler.dumps(obj))
    got = b""
    while len(got) < 4 + len(want):
        got += raw.recv(4096)
    assert got == struct.pack("!i", len(want)) + want
    # the long header form (-1, then an 8-byte length), which the standard library accepts
    raw.sendall(struct.pack("!i", -1) + struct.pack("!Q", 3) + b"xyz")
    assert c.recv_bytes() == b"xyz"
    c.close()
    raw.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family", ["AF_INET", "AF_UNIX"])
def test_stdlib_client_talks_to_gilfree_listener(family):
    with Listener(family=family, authkey=b"secret key") as l:
        p = _stdlib_peer("""
            import multiprocessing.connection as mc
            address = eval(sys.argv[1])
            with mc.Client(address, authkey=b"secret key") as c:
                c.send(("hello", [1, 2, 3], {"nested": b"bytes"}))
                c.send_bytes(b"Z" * (3 << 20))
                reply = c.recv()
                assert reply == {"answer": 42, "big": "y" * 100000}, reply
                assert c.recv_bytes() == b"done"
            print("ok")
            """, repr(l.address))
        with l.accept() as d:
            assert d.recv() == ("hello", [1, 2, 3], {"nested": b"bytes"})
            assert d.recv_bytes() == b"Z" * (3 << 20)
            d.send({"answer": 42, "big": "y" * 100000})
            d.send_bytes(b"done")
            assert _finish(p).strip() == "ok"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family", ["AF_INET", "AF_UNIX", "abstract"])
def test_gilfree_client_talks_to_stdlib_listener(family):
    p = _stdlib_peer("""
        import multiprocessing.connection as mc, os
        fam = sys.argv[1]
        if fam == "abstract":
            l = mc.Listener("\\0gilfree-interop-%d" % os.getpid(), authkey=b"k2")
        else:
            l = mc.Listener(family=fam, authkey=b"k2")
        print(repr(l.address), flush=True)
        with l.accept() as d:
            x = d.recv()
            d.send(("echo", x))
            d.send_bytes(d.recv_bytes() * 2)
        l.close()
        """, family)
    address = eval(p.stdout.readline())
    with Client(address, authkey=b"k2") as c:
        c.send({"from": "gilfree"})
        assert c.recv() == ("echo", {"from": "gilfree"})
        c.send_bytes(b"ab" * 600000)
        assert c.recv_bytes() == b"ab" * 1200000
    _finish(p)


@pytest.mark.timeout(30)
def test_handshake_functions_interoperate_with_stdlib():
    """The standard library's own deliver/answer functions against ours, on one socket."""
    import multiprocessing.connection as mc
    for ours_deliver in (True, False):
        a, b = _pair()
        if ours_deliver:
            t = threading.Thread(target=mc.answer_challenge, args=(b, b"kk"))
            t.start()
            connection.deliver_challenge(a, b"kk")
        else:
            t = threading.Thread(target=connection.answer_challenge, args=(b, b"kk"))
            t.start()
            mc.deliver_challenge(a, b"kk")
        t.join()
        a.close()
        b.close()


# ---------------------------------------------------------------------------- wait()

def _sleeper():
    time.sleep(0.3)


@pytest.mark.timeout(30)
def test_wait_mixes_socket_connections_pipes_sockets_and_sentinels():
    with Listener() as l:
        c = Client(l.address)
        d = l.accept()
    r, w = gilfree.Pipe(duplex=False)
    s1, s2 = socket.socketpair()
    p = gilfree.Process(target=_sleeper)
    p.start()
    objs = [d, r, s1, p.sentinel]
    assert connection.wait(objs, timeout=0) == []
    c.send("x")
    assert connection.wait(objs, timeout=10) == [d]
    w.send("y")
    s2.send(b"z")
    assert connection.wait([d, r, s1], timeout=10) == [d, r, s1]
    assert d.recv() == "x" and r.recv() == "y" and s1.recv(1) == b"z"
    assert connection.wait(objs, timeout=10) == [p.sentinel]
    p.join()
    c.close()  # end of file makes the peer ready
    assert connection.wait([d, r], timeout=10) == [d]
    with pytest.raises(EOFError):
        d.recv()
    for o in (d, r, w, s1, s2):
        o.close()


# ---------------------------------------------------------------------------- processes

def _child_uses(conn, text):
    conn.send(text.upper())
    conn.close()


def _child_receives_connection(pipe_end):
    conn = pipe_end.recv()
    conn.send(("child got", conn.recv()))
    conn.close()


def _connect(l, authkey):
    """(client end, server end) of a new authenticated connection to listener l."""
    got = []
    t = threading.Thread(target=lambda: got.append(l.accept()))
    t.start()
    c = Client(l.address, authkey=authkey)
    t.join()
    return c, got[0]


@pytest.mark.timeout(60)
def test_socket_connection_in_child_processes():
    with Listener(authkey=b"pk") as l:
        for method in ("fork", "spawn"):
            ctx = gilfree.get_context(method)
            c, d = _connect(l, b"pk")
            p = ctx.Process(target=_child_uses, args=(c, method))
            p.start()
            c.close()
            assert d.recv() == method.upper()
            p.join()
            assert p.exitcode == 0
            d.close()
        # to a process that is already running, through a gilfree Pipe (the fd is shared)
        a, b = gilfree.Pipe()
        p = gilfree.Process(target=_child_receives_connection, args=(b,))
        p.start()
        c, d = _connect(l, b"pk")
        try:
            a.send(c)  # the standard library's resource sharer hands the fd over
            c.close()
            d.send("hi")
            assert d.recv() == ("child got", "hi")
            p.join()
            assert p.exitcode == 0
        finally:
            from multiprocessing import resource_sharer
            resource_sharer.stop(timeout=10)
        d.close()


# ---------------------------------------------------------------------------- threads, signals

@pytest.mark.timeout(60)
def test_concurrent_senders_never_interleave():
    a, b = _pair()
    n, size = 50, 200000

    def sender(k):
        for i in range(n):
            a.send_bytes(bytes([k]) * size + i.to_bytes(4, "big"))

    ts = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    seen = {k: [] for k in range(4)}
    for _ in range(4 * n):
        m = b.recv_bytes()
        k = m[0]
        assert m[:size] == bytes([k]) * size
        seen[k].append(int.from_bytes(m[size:], "big"))
    for t in ts:
        t.join()
    assert all(v == list(range(n)) for v in seen.values())
    a.close()
    b.close()


@pytest.mark.timeout(30)
def test_close_from_another_thread_wakes_a_blocked_recv():
    a, b = _pair()
    errors = []

    def reader():
        try:
            b.recv()
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.2)
    b.close()
    t.join(10)
    assert not t.is_alive()
    assert len(errors) == 1 and "closed" in str(errors[0])
    a.close()


def _interrupt_soon(delay=0.3):
    tid = threading.get_ident()
    t = threading.Timer(delay, signal.pthread_kill, args=(tid, signal.SIGINT))
    t.start()
    return t


@pytest.mark.timeout(30)
def test_ctrl_c_interrupts_recv_and_the_message_is_not_lost():
    a, raw = socket.socketpair()
    c = SocketConnection(a.detach())
    t = _interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        c.recv_bytes()  # nothing sent: blocked until Ctrl-C
    t.join()
    raw.sendall(struct.pack("!i", 10) + b"01234")  # half a message, then Ctrl-C
    t = _interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        c.recv_bytes()
    t.join()
    raw.sendall(b"56789")
    assert c.recv_bytes() == b"0123456789"  # the interrupted message, whole
    raw.sendall(struct.pack("!i", 2) + b"ok")
    assert c.recv_bytes() == b"ok"
    c.close()
    raw.close()


@pytest.mark.timeout(30)
def test_ctrl_c_in_the_middle_of_a_send_stops_sending():
    a, raw = socket.socketpair()
    c = SocketConnection(a.detach())
    t = _interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        c.send_bytes(b"x" * (64 << 20))  # nobody reads: blocks after the socket buffers fill
    t.join()
    with pytest.raises(OSError, match="interrupted in the middle of a message"):
        c.send(1)
    c.close()
    raw.close()


# ---------------------------------------------------------------------------- bad input

@pytest.mark.timeout(30)
def test_wrong_authkey_both_sides():
    with Listener(authkey=b"right") as l:
        errs = []
        t = threading.Thread(
            target=lambda: errs.append(pytest.raises(AuthenticationError, Client, l.address,
                                                     authkey=b"wrong")))
        t.start()
        with pytest.raises(AuthenticationError, match="digest received was wrong"):
            l.accept()
        t.join()
        assert errs and errs[0].match("rejected")


@pytest.mark.timeout(60)
def test_wrong_authkey_against_stdlib_peers():
    with Listener(authkey=b"right") as l:
        p = _stdlib_peer("""
            import multiprocessing.connection as mc
            from multiprocessing import AuthenticationError
            try:
                mc.Client(eval(sys.argv[1]), authkey=b"wrong")
            except AuthenticationError:
                print("rejected")
            """, repr(l.address))
        with pytest.raises(AuthenticationError):
            l.accept()
        assert _finish(p).strip() == "rejected"
    p = _stdlib_peer("""
        import multiprocessing.connection as mc
        from multiprocessing import AuthenticationError
        l = mc.Listener(authkey=b"right")
        print(repr(l.address), flush=True)
        try:
            l.accept()
        except AuthenticationError:
            print("refused")
        """)
    address = eval(p.stdout.readline())
    with pytest.raises(AuthenticationError):
        Client(address, authkey=b"wrong")
    assert _finish(p).strip() == "refused"


@pytest.mark.timeout(30)
def test_challenge_functions_reject_bogus_peers():
    class Fake:
        def __init__(self, answers):
            self.answers = list(answers)

        def recv_bytes(self, size):
            return self.answers.pop(0) if self.answers else b""

        def send_bytes(self, data):
            pass

    with pytest.raises(AuthenticationError):
        connection.deliver_challenge(Fake([b"something bogus"]), b"abc")
    with pytest.raises(AuthenticationError):
        connection.answer_challenge(Fake([connection.CHALLENGE, b"bogus"]), b"abc")
    with pytest.raises(AuthenticationError, match="expected a challenge"):
        connection.answer_challenge(Fake([b"#NOT A CHALLENGE#" + b"x" * 30]), b"abc")
    with pytest.raises(ValueError):
        connection.deliver_challenge(Fake([]), "not bytes")


@pytest.mark.timeout(30)
def test_peer_closing_mid_message_and_at_a_boundary():
    for head, kind in [(b"", EOFError), (b"\0\0", connection.MessageTruncatedError),
                       (struct.pack("!i", 100) + b"x" * 10, connection.MessageTruncatedError),
                       (struct.pack("!i", -1) + b"\0\0", connection.MessageTruncatedError)]:
        a, raw = socket.socketpair()
        c = SocketConnection(a.detach())
        raw.sendall(head)
        raw.close()
        with pytest.raises(kind) as ei:
            c.recv()
        assert isinstance(ei.value, EOFError)
        if kind is not EOFError:
            assert isinstance(ei.value, OSError) and "end of file during message" in str(ei.value)
        c.close()


@pytest.mark.timeout(30)
def test_oversized_and_malformed_frames():
    a, raw = socket.socketpair()
    c = SocketConnection(a.detach())
    raw.sendall(struct.pack("!i", -1) + struct.pack("!Q", 1 << 62))  # claims 2^62 bytes
    with pytest.raises(OSError, match="exceeds max_message_size"):
        c.recv_bytes()
    assert not c.readable  # the stream is out of step: reading stops (as the stdlib does)
    c.close()
    raw.close()
    for header in (struct.pack("!i", -2), struct.pack("!i", -1) + struct.pack("!Q", 1 << 63)):
        a, raw = socket.socketpair()
        c = SocketConnection(a.detach())
        raw.sendall(header)
        with pytest.raises(OSError, match="bad message length"):
            c.recv()
        c.close()
        raw.close()
    a, raw = socket.socketpair()
    c = SocketConnection(a.detach())
    c.max_message_size = 1000
    assert c.max_message_size == 1000
    raw.sendall(struct.pack("!i", 1001) + b"x" * 1001)
    with pytest.raises(OSError, match="exceeds max_message_size"):
        c.recv_bytes()
    with pytest.raises(ValueError):
        c.max_message_size = 0
    c.close()
    raw.close()
    a, raw = socket.socketpair()  # the per-call limit of recv_bytes(maxlength)
    c = SocketConnection(a.detach(), writable=False)
    raw.sendall(struct.pack("!i", 10) + b"x" * 10)
    with pytest.raises(OSError, match="bad message length"):
        c.recv_bytes(5)
    assert c.closed  # read-only: closed, as the standard library does
    raw.close()


@pytest.mark.timeout(30)
def test_a_lying_header_costs_no_huge_allocation():
    a, raw = socket.socketpair()
    c = SocketConnection(a.detach())
    raw.sendall(struct.pack("!i", -1) + struct.pack("!Q", 60 << 30) + b"x" * 1024)
    raw.close()
    tracemalloc.start()
    try:
        with pytest.raises(connection.MessageTruncatedError):
            c.recv_bytes()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak  # announced 60 GiB; allocated one first chunk at most
    c.close()


@pytest.mark.timeout(30)
def test_address_in_use_names_the_address():
    for family in ("AF_INET", "AF_UNIX"):
        with Listener(family=family) as l:
            with pytest.raises(OSError) as ei:
                Listener(l.address, family)
            assert ei.value.errno == errno.EADDRINUSE
            assert repr(l.address) in str(ei.value)
    with _listener("abstract") as l:
        with pytest.raises(OSError) as ei:
            Listener(l.address)
        assert repr(l.address) in str(ei.value)


@pytest.mark.timeout(30)
def test_connecting_to_nothing_fails_at_once_naming_the_address():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(ConnectionRefusedError) as ei:
        Client(("127.0.0.1", port))
    assert str(port) in str(ei.value)
    with pytest.raises(FileNotFoundError) as ei:
        Client("/nonexistent-dir/gilfree.sock")
    assert "/nonexistent-dir/gilfree.sock" in str(ei.value)
    with pytest.raises(ConnectionRefusedError):
        Client("\0gilfree-nobody-listens-%d" % os.getpid())
    with pytest.raises(ValueError, match="unrecognized"):
        Client(12345)
    with pytest.raises(ValueError, match="not recognized"):
        Listener(r"\\.\pipe\x")
    with pytest.raises(TypeError, match="authkey"):
        Listener(authkey="not bytes")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family", ["AF_INET", "AF_UNIX"])
def test_clients_wait_for_a_full_backlog(family):
    """More clients than the backlog at once: each waits until the server accepts it (a
    non-blocking AF_UNIX connect would fail with EAGAIN instead)."""
    with Listener(family=family, backlog=1, authkey=b"b") as l:
        results = []

        def client(i):
            with Client(l.address, authkey=b"b") as c:
                c.send(i)
                results.append(c.recv())

        n = 8 if family == "AF_UNIX" else 4  # TCP: late ones wait for SYN-ACK retries (~1 s)
        ts = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        time.sleep(0.3)  # let them pile up on the backlog
        for _ in ts:
            with l.accept() as d:
                d.send(d.recv() * 10)
        for t in ts:
            t.join(30)
        assert sorted(results) == [i * 10 for i in range(n)]


def _misbehave(address, how):
    s = socket.socket(socket.AF_UNIX)
    s.connect(address)
    if how == "garbage":
        s.sendall(b"GET / HTTP/1.0\r\n\r\n" * 10)
        time.sleep(0.1)
    elif how == "huge header":
        s.sendall(struct.pack("!i", 1 << 30))
        time.sleep(0.1)
    elif how == "silent":
        time.sleep(2.0)  # longer than the server's handshake timeout below
    s.close()


@pytest.mark.timeout(60)
def test_listener_loop_survives_misbehaving_clients(monkeypatch):
    from gilfree import _sockets
    monkeypatch.setattr(_sockets, "HANDSHAKE_TIMEOUT", 0.5)
    l = Listener(authkey=b"good key")
    outcomes = []

    def serve(n):
        for _ in range(n):
            try:
                conn = l.accept()
            except (AuthenticationError, EOFError, OSError) as e:
                outcomes.append(type(e).__name__)
                continue
            with conn:
                conn.send(("served", conn.recv()))
                outcomes.append("served")

    hows = ["garbage", "hang up", "huge header", "silent"]
    t = threading.Thread(target=serve, args=(len(hows) + 2,))
    t.start()
    for how in hows:
        _misbehave(l.address, how)
    with pytest.raises(AuthenticationError):
        Client(l.address, authkey=b"bad key")
    with Client(l.address, authkey=b"good key") as c:
        c.send(1)
        assert c.recv() == ("served", 1)
    t.join(30)
    l.close()
    assert not t.is_alive()
    assert outcomes[-1] == "served"
    assert outcomes[:-1] == ["AuthenticationError", "EOFError", "AuthenticationError",
                             "AuthenticationError", "AuthenticationError"]


@pytest.mark.timeout(30)
def test_client_gives_up_on_a_server_that_never_sends_the_challenge(monkeypatch):
    from gilfree import _sockets
    monkeypatch.setattr(_sockets, "CHALLENGE_TIMEOUT", 0.3)
    srv = socket.create_server(("127.0.0.1", 0))
    with pytest.raises(AuthenticationError, match="no handshake message"):
        Client(srv.getsockname(), authkey=b"k")
    srv.close()


@pytest.mark.timeout(30)
def test_xmlrpc_connections(monkeypatch):
    from gilfree import _sockets
    monkeypatch.setattr(_sockets, "HANDSHAKE_TIMEOUT", 0.3)
    with connection.XmlListener(("127.0.0.1", 0)) as l:
        t = threading.Thread(target=lambda: l.accept().send({"a": [1, "two", 3.5]}))
        t.start()
        with connection.XmlClient(l.address) as c:
            assert c.recv() == {"a": [1, "two", 3.5]}
        t.join()
        # the handshake timeout applies through the wrapper too (a silent peer)
        s = socket.create_connection(l.address)
        w = l.accept()  # a ConnectionWrapper
        assert isinstance(w, _sockets.ConnectionWrapper)
        with pytest.raises(AuthenticationError, match="no handshake message"):
            connection.deliver_challenge(w, b"key")
        w.close()
        s.close()


@pytest.mark.timeout(30)
def test_unpicklable_and_non_pickle_payloads():
    a, b = _pair()
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
        a.send(lambda: 0)
    a.send_bytes(b"not a pickle")
    with pytest.raises(pickle.UnpicklingError):
        b.recv()
    a.send("still in step")
    assert b.recv() == "still in step"
    a.close()
    b.close()
