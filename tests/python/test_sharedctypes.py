"""Value, Array, RawValue, RawArray: multiprocessing.sharedctypes semantics on gilfree's arena."""

import ctypes
import gc
import multiprocessing
import multiprocessing.sharedctypes as mpsc
import pickle

import pytest

import gilfree as mp
from gilfree import _core, sharedctypes


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]


@pytest.mark.parametrize("code,init", [("i", 7), ("d", 2.5), ("b", -3), ("Q", 2**63), ("c", b"x"),
                                       ("u", "z"), ("f", 0.5), ("l", -(2**40))])
def test_value_typecodes_match_stdlib(code, init):
    ours, theirs = mp.Value(code, init), multiprocessing.Value(code, init)
    assert ours.value == theirs.value
    assert type(ours.get_obj()) is type(theirs.get_obj())
    assert isinstance(ours, mpsc.Synchronized)
    assert repr(ours) == repr(theirs)


def test_value_defaults_and_locks():
    v = mp.Value("i")
    assert v.value == 0
    with v.get_lock():
        v.value += 1
    with v:
        v.value += 1
    v.acquire()
    v.release()
    assert v.value == 2
    assert type(v.get_lock()).__name__ == "RLock"
    raw = mp.Value("d", 1.0, lock=False)
    assert isinstance(raw, ctypes.c_double) and raw.value == 1.0
    lk = mp.Lock()
    v = mp.Value("i", 1, lock=lk)
    assert v.get_lock() is lk
    with pytest.raises(AttributeError):
        mp.Value("i", 1, lock="nope")


def test_value_ctypes_type_and_structure():
    v = mp.Value(ctypes.c_int64, 5)
    assert v.value == 5
    p = mp.Value(Point, 1.0, 2.0)
    assert (p.x, p.y) == (1.0, 2.0)
    p.x = 3.0
    assert p.get_obj().x == 3.0
    assert type(p).__name__ == "SynchronizedPoint"


def test_array():
    a = mp.Array("i", 5)
    assert a[:] == [0] * 5 and len(a) == 5
    a[:] = [1, 2, 3, 4, 5]
    assert a[1:3] == [2, 3] and a[-1] == 5 and a[::2] == [1, 3, 5]
    a[0] = 10
    assert list(a) == [10, 2, 3, 4, 5]
    d = mp.Array(ctypes.c_double, [1.5, 2.5])
    assert d[:] == [1.5, 2.5]
    assert isinstance(a, mpsc.SynchronizedArray)
    raw = mp.Array("h", 3, lock=False)
    assert isinstance(raw, ctypes.Array) and raw[:] == [0, 0, 0]
    with pytest.raises(IndexError):
        a[5]


def test_char_array_value_raw_match_stdlib():
    for A in (mp.Array, multiprocessing.Array):
        s = A("c", b"hello")
        assert s.value == b"hello" and s.raw == b"hello"
        s.value = b"hi"
        assert s.value == b"hi" and s.raw == b"hi\x00lo"
        s.raw = b"HELLO"
        assert s[:] == b"HELLO"
        assert isinstance(s, mpsc.SynchronizedString)
    s = mp.Array("c", 4)
    assert s.raw == b"\x00" * 4


def test_raw_value_array():
    r = mp.RawValue("d", 1.25)
    assert r.value == 1.25
    ra = mp.RawArray("i", [1, 2, 3])
    assert ra[:] == [1, 2, 3]
    rz = mp.RawArray(ctypes.c_ubyte, 1000)
    assert bytes(rz) == bytes(1000)
    empty = mp.RawArray("i", 0)
    assert len(empty) == 0


def test_memory_is_zeroed_on_reuse():
    for _ in range(20):
        a = mp.RawArray("B", 256)
        assert bytes(a) == bytes(256)
        a[:] = [255] * 256
        del a


@pytest.mark.parametrize("bad", ["z", "ii", "", 3, int, None])
def test_wrong_typecode_raises_typeerror(bad):
    with pytest.raises(TypeError):
        mp.Value(bad)
    with pytest.raises(TypeError):
        mp.Array(bad, 3)
    with pytest.raises(TypeError):
        mp.RawValue(bad)


def test_stdlib_wrong_typecode_is_typeerror_too():
    with pytest.raises(TypeError):
        multiprocessing.Value("z")


def test_copy_and_synchronized():
    r = mp.RawValue("i", 9)
    c = sharedctypes.copy(r)
    assert c.value == 9 and ctypes.addressof(c) != ctypes.addressof(r)
    s = sharedctypes.synchronized(c)
    assert s.value == 9


@pytest.mark.timeout(30)
def test_shared_between_processes():
    v = mp.Value("d", 0.0)
    a = mp.Array("i", 4)
    raw = mp.RawArray("q", 2)

    def child():
        v.value = 3.5
        a[:] = [4, 3, 2, 1]
        raw[1] = 77

    p = mp.Process(target=child)
    p.start()
    p.join(20)
    assert p.exitcode == 0
    assert v.value == 3.5 and a[:] == [4, 3, 2, 1] and raw[1] == 77


def test_pickle_shares_memory_in_process():
    v = mp.Value("i", 1)
    a = mp.Array("c", b"abc")
    r = mp.RawArray("d", [1.0, 2.0])
    v2, a2, r2 = pickle.loads(pickle.dumps((v, a, r)))
    v2.value = 5
    a2.value = b"xy"
    r2[0] = 9.0
    assert v.value == 5 and a.value == b"xy" and r[0] == 9.0
    # the lock travels too
    v2.get_lock().acquire()
    assert v.get_lock().acquire(False)  # RLock held by this thread: re-entrant, same lock
    v.get_lock().release()
    v2.get_lock().release()
    # an ordinary ctypes object is still pickled by value
    c = ctypes.c_int(4)
    c2 = pickle.loads(pickle.dumps(c))
    c2.value = 6
    assert c.value == 4


def _receiver(q, done):
    v, a, raw = q.get(timeout=20)
    with v.get_lock():
        v.value += 1
    a[0] = 123
    raw.value = 2.5
    done.set()


@pytest.mark.timeout(60)
def test_send_value_through_queue_to_running_process():
    q = mp.Queue()
    done = mp.Event()
    p = mp.Process(target=_receiver, args=(q, done))
    p.start()
    v, a, raw = mp.Value("i", 41), mp.Array("i", 3), mp.RawValue("d")
    q.put((v, a, raw))
    assert done.wait(20)
    p.join(20)
    assert p.exitcode == 0
    assert v.value == 42 and a[0] == 123 and raw.value == 2.5


def test_blocks_freed():
    gc.collect()
    before = _core.arena_stats()["live_blocks"]
    objs = [mp.Value("i"), mp.Array("d", 1000), mp.RawValue("i"), mp.RawArray("b", 10),
            mp.Value(Point)]
    objs.append(pickle.loads(pickle.dumps(objs)))
    del objs
    gc.collect()
    assert _core.arena_stats()["live_blocks"] == before


def test_forking_pickler_after_stdlib_values():
    """The standard library registers its own reducer for c_int when it makes a Value; ours
    must still be used for gilfree objects (spawn/forkserver pickle with ForkingPickler)."""
    import io
    from multiprocessing.reduction import ForkingPickler
    std = multiprocessing.Value("i", 1)
    ours = mp.Value("i", 2, lock=False)
    buf = io.BytesIO()
    ForkingPickler(buf).dump(ours)
    again = pickle.loads(buf.getvalue())
    again.value = 5
    assert ours.value == 5
    assert std.value == 1
