"""Server-backed managers (gilfree._managers_server): BaseManager.register(), start(),
connect(), get_server().serve_forever(), proxies, SyncManager with an address,
SharedMemoryManager; the standard library's "manager on another machine" recipe; talking to
the standard library's managers both ways; a server that survives misbehaving clients; and
that Manager() opens no socket at all."""

import os
import queue as pyqueue
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import gilfree
from gilfree import connection, managers
from gilfree.managers import BaseManager, BaseProxy, RemoteError, SyncManager, dispatch
from multiprocessing import AuthenticationError


@pytest.fixture(scope="module", autouse=True)
def _resource_tracker():
    """spawn starts the standard library's resource tracker (a long-lived child by design)."""
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()
    yield


class FooBar:
    def f(self):
        return "f()"

    def g(self):
        raise ValueError("g failed")

    def _h(self):
        return "_h()"


def baz():
    for i in range(10):
        yield i * i


class IteratorProxy(BaseProxy):
    _exposed_ = ("__next__",)

    def __iter__(self):
        return self

    def __next__(self):
        return self._callmethod("__next__")


class Probe:
    """Reports, from inside the server process, what the server is made of."""

    def server_parts(self):
        from multiprocessing import process
        srv = process.current_process()._manager_server
        return (type(srv).__module__, type(srv.listener).__module__, os.getpid())


class MyManager(BaseManager):
    pass


MyManager.register("Foo", callable=FooBar)
MyManager.register("Bar", callable=FooBar, exposed=("f", "_h"))
MyManager.register("baz", callable=baz, proxytype=IteratorProxy)
MyManager.register("Probe", callable=Probe)


def _common(manager):
    foo, bar, it = manager.Foo(), manager.Bar(), manager.baz()
    assert [n for n in ("f", "g", "_h") if hasattr(foo, n)] == ["f", "g"]
    assert [n for n in ("f", "g", "_h") if hasattr(bar, n)] == ["f", "_h"]
    assert foo.f() == "f()"
    with pytest.raises(ValueError, match="g failed"):
        foo.g()
    assert foo._callmethod("f") == "f()"
    with pytest.raises(RemoteError):
        foo._callmethod("_h")
    assert bar._h() == "_h()" and bar._callmethod("_h") == "_h()"
    assert list(it) == [i * i for i in range(10)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_custom_manager_register_start_shutdown(method):
    manager = MyManager(ctx=gilfree.get_context(method), shutdown_timeout=10)
    manager.start()
    try:
        _common(manager)
        server_mod, listener_mod, server_pid = manager.Probe().server_parts()
        assert server_mod == "gilfree._managers_server"  # gilfree's server ...
        assert listener_mod == "gilfree._sockets"          # ... on gilfree's sockets ...
        assert server_pid == manager._process.pid          # ... in a gilfree Process
        assert type(manager._process).__module__ == "gilfree.process"
        foo = manager.Foo()
        assert foo._Client is connection.Client            # proxies use gilfree's Client
        del foo
    finally:
        manager.shutdown()
    assert manager._process.exitcode == 0
    with MyManager(shutdown_timeout=10) as m2:         # context manager
        _common(m2)
    assert m2._process.exitcode == 0


class QueueManager(BaseManager):
    pass


@pytest.mark.timeout(60)
def test_sync_manager_with_an_address_is_a_server():
    with SyncManager(address=("127.0.0.1", 0), authkey=b"sync") as m:
        assert isinstance(m, SyncManager) and m._process.is_alive()
        d, lst, q = m.dict(a=1), m.list([1, 2]), m.Queue()
        d["b"] = 2
        lst.append(3)
        q.put("x")
        assert d.copy() == {"a": 1, "b": 2} and lst[:] == [1, 2, 3] and q.get() == "x"
        assert sorted(iter(d)) == ["a", "b"]
        ns = m.Namespace(x=1)
        ns.y = 2
        assert (ns.x, ns.y) == (1, 2)
        v = m.Value("i", 3)
        v.value += 1
        assert v.value == 4
        arr = m.Array("i", [1, 2, 3])
        arr[0] = 9
        assert list(arr[:]) == [9, 2, 3]
        ev, lock, cond = m.Event(), m.Lock(), m.Condition()
        with lock:
            pass
        ev.set()
        assert ev.is_set()
        with cond:
            cond.notify_all()
        b = m.Barrier(1)
        assert b.wait() == 0 and b.parties == 1
        with m.Pool(2) as pool:
            assert pool.map(abs, [-1, -2, -3]) == [1, 2, 3]
            assert pool.apply_async(abs, (-7,)).get(30) == 7
        p = gilfree.Process(target=_child_uses_proxies, args=(d, lst, q, ev))
        p.start()
        assert q.get(timeout=30) == "child done"
        p.join(30)
        assert p.exitcode == 0 and d["child"] == p.pid
        assert lst[-1] == "from child"


def _child_uses_proxies(d, lst, q, ev):
    assert ev.is_set()
    d["child"] = os.getpid()
    lst.append("from child")
    q.put("child done")


class MySync(SyncManager):
    pass


MySync.register("Foo", FooBar)


@pytest.mark.timeout(60)
def test_sync_manager_subclass_with_register_is_server_backed():
    with MySync() as m:
        assert m._process.is_alive()
        assert m.Foo().f() == "f()"
        d = m.dict()
        assert type(d).__name__ == "DictProxy"


def _listening_inodes():
    inodes = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            continue
        inodes.update(ln.split()[9] for ln in lines if ln.split()[3] == "0A")  # LISTEN
    with open("/proc/net/unix") as f:
        for ln in f.readlines()[1:]:
            fields = ln.split()
            if int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON: listening
                inodes.add(fields[6])
    return inodes


def _listening_sockets_of(pid):
    mine = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    return mine & _listening_inodes()


def _child_uses_local_manager(d, q):
    d["child"] = True
    q.put("ok")


@pytest.mark.timeout(60)
def test_manager_without_an_address_opens_no_socket():
    kids_before = set(p.pid for p in gilfree.active_children())
    before = _listening_sockets_of(os.getpid())  # e.g. the stdlib's resource sharer
    with gilfree.Manager() as m:
        d, q = m.dict(), m.Queue()
        lk, ns = m.Lock(), m.Namespace(a=1)
        with lk:
            ns.b = 2
        p = gilfree.Process(target=_child_uses_local_manager, args=(d, q))
        p.start()
        assert q.get(timeout=30) == "ok"
        p.join(30)
        assert d["child"] and ns.b == 2
        assert not _listening_sockets_of(os.getpid()) - before
        assert set(p.pid for p in gilfree.active_children()) == kids_before  # no server
    for mgr in (managers.SyncManager(), managers.SharedMemoryManager()):
        with mgr:
            assert not _listening_sockets_of(os.getpid()) - before
            assert not hasattr(mgr, "_process") or mgr._process is None
    # the check can fail: a server-backed manager does listen (in its server process)
    with SyncManager(address=("127.0.0.1", 0)) as sm:
        assert _listening_sockets_of(sm._process.pid)


@pytest.mark.timeout(60)
def test_shared_memory_manager_unlinks_its_blocks():
    from gilfree.shared_memory import SharedMemory
    with pytest.raises(ValueError, match="not started"):
        managers.SharedMemoryManager().SharedMemory(8)
    with managers.SharedMemoryManager() as smm:  # no server
        shm = smm.SharedMemory(64)
        sl = smm.ShareableList([1, "two", 3.0])
        shm.buf[:3] = b"abc"
        other = SharedMemory(shm.name)
        assert bytes(other.buf[:3]) == b"abc"
        other.close()
        names = [shm.name, sl.shm.name]
    for name in names:
        with pytest.raises(FileNotFoundError):
            SharedMemory(name)
    with managers.SharedMemoryManager(address=("127.0.0.1", 0)) as smm:  # served
        assert smm._process.is_alive()
        shm = smm.SharedMemory(16)
        name = shm.name
        other = SharedMemory(name)
        assert other.size >= 16
        other.close()
    with pytest.raises(FileNotFoundError):
        SharedMemory(name)
    assert smm._process.exitcode == 0


# ---------------------------------------------------------------------------- remote use

_RECIPE_SERVER = """
import sys, queue
from gilfree.managers import BaseManager
q = queue.Queue()
class QueueManager(BaseManager): pass
QueueManager.register('get_queue', callable=lambda: q)
m = QueueManager(address=('127.0.0.1', 0), authkey=b'abracadabra')
s = m.get_server()
print(repr(s.address), flush=True)
s.serve_forever()
"""


def _recipe_client(address, item):
    class QM(BaseManager):
        pass
    QM.register("get_queue")
    m = QM(address=address, authkey=b"abracadabra")
    m.connect()
    m.get_queue().put(item)


@pytest.mark.timeout(60)
def test_manager_on_another_machine_recipe():
    """The standard library docs' recipe, with gilfree in both programs: a server process that
    serves a queue forever over TCP, clients in other processes that connect()."""
    srv = subprocess.Popen([sys.executable, "-c", _RECIPE_SERVER], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        address = eval(srv.stdout.readline())

        class QM(BaseManager):
            pass
        QM.register("get_queue")
        m = QM(address=address, authkey=b"abracadabra")
        m.connect()
        q = m.get_queue()
        p = gilfree.Process(target=_recipe_client, args=(address, "from another process"))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert q.get(timeout=30) == "from another process"
        q.put({"a": [1, 2]})
        assert q.get() == {"a": [1, 2]}
        with pytest.raises(AuthenticationError):
            QM(address=address, authkey=b"wrong").connect()
        del q
        conn = connection.Client(address, authkey=b"abracadabra")
        dispatch(conn, None, "shutdown")
        conn.close()
        srv.wait(30)
        assert srv.returncode == 0, srv.stderr.read()
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
        srv.stdout.close()
        srv.stderr.close()


def _stdlib(code, *args):
    prog = "import sys\nassert 'gilfree' not in sys.modules\n" + textwrap.dedent(code)
    return subprocess.Popen([sys.executable, "-c", prog, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


_q, _replies = pyqueue.Queue(), pyqueue.Queue()


def _get_q():
    return _q


def _get_replies():
    return _replies


class ServedQueue(BaseManager):
    pass


ServedQueue.register("get_queue", callable=_get_q)
ServedQueue.register("get_replies", callable=_get_replies)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("serializer", ["pickle", "xmlrpclib"])
def test_stdlib_client_uses_a_gilfree_manager_server(serializer):
    with ServedQueue(address=("127.0.0.1", 0), authkey=b"interop",
                     serializer=serializer) as m:
        p = _stdlib("""
            from multiprocessing.managers import BaseManager
            class QM(BaseManager): pass
            QM.register("get_queue")
            QM.register("get_replies")
            m = QM(address=eval(sys.argv[1]), authkey=b"interop", serializer=sys.argv[2])
            m.connect()
            m.get_queue().put(("from the stdlib", 42))
            print(m.get_replies().get())
            """, repr(m.address), serializer)
        q, replies = m.get_queue(), m.get_replies()
        got = q.get(timeout=30)
        assert list(got) == ["from the stdlib", 42]  # xmlrpc turns tuples into lists
        replies.put("reply")
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert out.strip() == "reply"
        del q, replies


@pytest.mark.timeout(60)
def test_gilfree_client_uses_a_stdlib_manager_server():
    p = _stdlib("""
        import multiprocessing.managers as mm
        class M(mm.SyncManager): pass
        m = M(address=("127.0.0.1", 0), authkey=b"std")
        s = m.get_server()
        print(repr(s.address), flush=True)
        s.serve_forever()
        """)
    try:
        address = eval(p.stdout.readline())

        class M(SyncManager):
            pass
        m = M(address=address, authkey=b"std")
        m.connect()
        d = m.dict()
        d["k"] = [1, 2, 3]
        assert d["k"] == [1, 2, 3] and len(d) == 1
        lst = m.list(range(3))
        lst.append(3)
        assert lst[:] == [0, 1, 2, 3]
        del d, lst
        conn = connection.Client(address, authkey=b"std")
        dispatch(conn, None, "shutdown")
        conn.close()
        p.wait(30)
        assert p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()


# ---------------------------------------------------------------------------- bad input

def _misbehave(address, how):
    s = socket.create_connection(address)
    if how == "garbage":
        s.sendall(b"\x00\x00\x00\x05hello" + b"garbage" * 100)
    elif how == "huge header":
        s.sendall(struct.pack("!i", -1) + struct.pack("!Q", 1 << 62))
    elif how == "silent":
        time.sleep(1.5)
    time.sleep(0.1)
    s.close()


@pytest.mark.timeout(60)
def test_manager_server_survives_misbehaving_clients(monkeypatch):
    from gilfree import _sockets
    monkeypatch.setattr(_sockets, "HANDSHAKE_TIMEOUT", 0.5)  # inherited by the forked server
    with ServedQueue(address=("127.0.0.1", 0), authkey=b"good") as m:
        for how in ("garbage", "hang up", "huge header", "silent"):
            _misbehave(m.address, how)
        with pytest.raises(AuthenticationError):
            connection.Client(m.address, authkey=b"bad")
        p = _stdlib("""
            import multiprocessing.connection as mc
            from multiprocessing import AuthenticationError
            try:
                mc.Client(eval(sys.argv[1]), authkey=b"bad")
            except AuthenticationError:
                print("refused")
            """, repr(m.address))
        out, err = p.communicate(timeout=30)
        assert out.strip() == "refused", err
        threads = []
        for _ in range(3):  # several silent clients at once do not block good ones
            t = threading.Thread(target=_misbehave, args=(m.address, "silent"))
            t.start()
            threads.append(t)
        q = m.get_queue()
        q.put("still serving")
        assert q.get(timeout=30) == "still serving"
        for t in threads:
            t.join()
        del q
        assert m._process.is_alive()


@pytest.mark.timeout(30)
def test_connect_to_nothing_and_address_in_use():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    address = s.getsockname()
    s.close()
    with pytest.raises(ConnectionRefusedError) as ei:
        QueueManager(address=address, authkey=b"x").connect()
    assert str(address[1]) in str(ei.value)
    with ServedQueue(address=("127.0.0.1", 0), authkey=b"x") as m:
        with pytest.raises(OSError) as ei:
            ServedQueue(address=m.address, authkey=b"x").get_server()
        assert repr(m.address) in str(ei.value)
