"""gilfree.shared_memory and gilfree.shared_array."""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gilfree
from gilfree.shared_memory import ShareableList, SharedMemory


def test_shared_memory_basics():
    before = set(os.listdir("/dev/shm"))
    s = SharedMemory(create=True, size=1000)
    assert s.size == 1000 and s.name.startswith("gf_") and len(s.name) >= 20
    s.buf[:5] = b"hello"
    t = SharedMemory(s.name)
    assert bytes(t.buf[:5]) == b"hello"
    big = SharedMemory(s.name, size=20 * s.size)  # as the stdlib: size ignored on attach
    assert big.size == s.size
    big.close()
    pickled = pickle.dumps(t)
    with pytest.raises(FileExistsError):
        SharedMemory(s.name, create=True, size=10)
    with pytest.raises(FileNotFoundError):
        SharedMemory("gf_nope")
    with pytest.raises(ValueError):
        SharedMemory(create=True, size=0)
    s.close()
    s.unlink()
    with pytest.raises(FileNotFoundError):
        SharedMemory(s.name)
    assert bytes(t.buf[:5]) == b"hello"  # still attached: no early deletion
    with pytest.raises(FileNotFoundError):  # as the stdlib: loading attaches by name
        pickle.loads(pickled)
    with pytest.raises(FileNotFoundError):
        pickle.loads(pickle.dumps(t))
    t.close()
    assert set(os.listdir("/dev/shm")) == before


def test_pickle_of_a_name_made_again_attaches_to_the_new_block():
    s = SharedMemory("gf_test_again_%d" % os.getpid(), create=True, size=16)
    pickled = pickle.dumps(s)
    s.unlink()
    s2 = SharedMemory(s.name, create=True, size=32)
    s2.buf[0] = 7
    u = pickle.loads(pickled)
    assert u.size == 32 and u.buf[0] == 7
    for x in (s, s2, u):
        x.close()
    s2.unlink()


def test_shared_memory_manager_unlinks_its_blocks_at_shutdown():
    smm = gilfree.managers.SharedMemoryManager()
    with pytest.raises(ValueError):
        smm.SharedMemory(10)  # not started
    with pytest.raises(ValueError):
        smm.ShareableList([1])
    smm.start()
    shm, sl = smm.SharedMemory(64), smm.ShareableList(range(5))
    assert len(ShareableList(name=sl.shm.name)) == 5
    names = [shm.name, sl.shm.name]
    smm.shutdown()
    for name in names:
        with pytest.raises(FileNotFoundError):
            SharedMemory(name)
    assert list(sl) == [0, 1, 2, 3, 4]  # still mapped by its holder
    shm.close()
    sl.shm.close()
    with gilfree.managers.SharedMemoryManager() as smm2:
        name = smm2.ShareableList("howdy").shm.name
    with pytest.raises(FileNotFoundError):
        ShareableList(name=name)


def test_shared_memory_freed_when_last_user_goes():
    st0 = gilfree._core.arena_stats()
    s = SharedMemory(create=True, size=1 << 20)
    name = s.name
    s.close()
    t = SharedMemory(name)  # the name keeps it alive until unlink
    t.unlink()
    t.close()
    st1 = gilfree._core.arena_stats()
    key = "in_use" if isinstance(st0, dict) else None
    if key:
        assert st1[key] <= st0[key] + 4096


def test_shareable_list():
    sl = ShareableList([1, 2.5, "abc", b"x", None, True])
    other = ShareableList(name=sl.shm.name)
    other[0] = 42
    assert sl[0] == 42 and list(sl) == [42, 2.5, "abc", b"x", None, True]
    sl.shm.close()
    other.shm.close()
    sl.shm.unlink()


def _child_writes(name, arr, q):
    s = SharedMemory(name)
    s.buf[0] = 99
    s.close()
    arr[:] = 7.0
    q.put("done")


@pytest.mark.timeout(60)
def test_process_via_queue():
    s = SharedMemory(create=True, size=16)
    a = gilfree.shared_array((4, 4))
    q, out = gilfree.Queue(), gilfree.Queue()
    p = gilfree.Process(target=_child_from_queue, args=(q, out))
    p.start()
    q.put((s.name, a, s))
    assert out.get(timeout=30) == "done"
    p.join(30)
    assert s.buf[0] == 99 and s.buf[1] == 55 and (a == 7.0).all()
    s.close()
    s.unlink()


def _child_from_queue(q, out):
    name, arr, shm = q.get(timeout=30)
    shm.buf[1] = 55
    _child_writes(name, arr, out)


def _fill(arr, i):
    arr[i] = i
    return float(arr[i].sum())


@pytest.mark.timeout(60)
def test_shared_array_to_pool():
    a = gilfree.shared_array((8, 1000), dtype=np.float64)
    assert type(a).__name__ == "SharedArray" and a.sum() == 0
    with gilfree.Pool(2) as pool:
        res = pool.starmap(_fill, [(a, i) for i in range(8)])
    assert res == [i * 1000.0 for i in range(8)]
    assert (a == np.arange(8)[:, None]).all()
    # a view travels by reference too; results of arithmetic are private, plain arrays
    v = pickle.loads(pickle.dumps(a[2:4, ::2]))
    v[:] = -1
    assert (a[2:4, ::2] == -1).all() and (a[2:4, 1::2] != -1).all()
    b = a + 1
    assert type(b) is np.ndarray
    c = pickle.loads(pickle.dumps(b))
    c[:] = 0
    assert (b != 0).any()


def _roundtrip(x):
    return x * 2


@pytest.mark.timeout(60)
def test_numpy_through_queue_pipe_pool_out_of_band():
    x = np.arange(1 << 18, dtype=np.float64)  # 2 MiB: out of band
    q = gilfree.Queue()
    q.put(x)
    y = q.get(timeout=10)
    assert (y == x).all()
    a, b = gilfree.Pipe()
    a.send(x)
    z = b.recv()
    assert (z == x).all()
    with gilfree.Pool(1) as pool:
        assert (pool.apply(_roundtrip, (x,)) == x * 2).all()


@pytest.mark.timeout(120)
def test_spawned_child_attaches_by_name(tmp_path):
    """A spawned child finds the name table (run in a subprocess: the standard library's spawn
    starts a resource tracker process that would outlive this test)."""
    code = textwrap.dedent("""
        import gilfree
        from gilfree.shared_memory import SharedMemory

        def child(name, q):
            t = SharedMemory(name)
            q.put(bytes(t.buf[:2]))
            t.close()

        if __name__ == "__main__":
            s = SharedMemory(create=True, size=8)
            s.buf[:2] = b"ok"
            ctx = gilfree.get_context("spawn")
            q = ctx.Queue()
            p = ctx.Process(target=child, args=(s.name, q))
            p.start()
            print(q.get(timeout=60))
            p.join(60)
            s.close()
            s.unlink()
    """)
    script = tmp_path / "spawn_attach.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=100)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "b'ok'"


def test_no_resource_tracker_warnings():
    code = textwrap.dedent("""
        from gilfree.shared_memory import SharedMemory
        s = SharedMemory(create=True, size=100)
        t = SharedMemory(s.name)
        s.close()
    """)
    r = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "leaked" not in r.stderr and "resource_tracker" not in r.stderr, r.stderr
