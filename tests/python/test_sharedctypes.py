"""Value, Array, RawValue, RawArray: multiprocessing.sharedctypes semantics on gilfree's arena."""

import ctypes
import gc
import multiprocessing
import multiprocessing.sharedctypes as mpsc
import pickle

import pytest

import gilfree as mp
from gilfree import sharedctypes
from conftest import live_blocks


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
    before = live_blocks()
    objs = [mp.Value("i"), mp.Array("d", 1000), mp.RawValue("i"), mp.RawArray("b", 10),
            mp.Value(Point)]
    objs.append(pickle.loads(pickle.dumps(objs)))
    del objs
    gc.collect()
    assert live_blocks() == before


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


# ---------------------------------------------------------------- the C wrappers (v-value)

import threading  # noqa: E402
import time  # noqa: E402

_ALL_CODES = "cbBhHiIlLqQfd"
_SAMPLES = [0, 1, -1, 127, 128, 255, 256, -129, 2**15, -(2**15) - 1, 2**31, -(2**31) - 1,
            2**32 + 5, 2**63, -(2**63), 2**64 + 3, -(2**70), 1.5, -2.25, 1e40, float("inf"),
            True, False, b"a", b"", b"ab", "x", None, 3 + 0j, bytearray(b"q")]


def _outcome(fn):
    try:
        return ("ok", fn())
    except Exception as e:  # the exception type is what must match ctypes
        return ("raise", type(e))


def _same(a, b):
    if a[0] == "ok" and b[0] == "ok" and isinstance(a[1], float) and a[1] != a[1]:
        return b[1] != b[1]
    return a == b


@pytest.mark.parametrize("code", list(_ALL_CODES) + ["?", "u"])
def test_value_get_set_every_typecode_matches_ctypes(code):
    """Whatever the C fast path decodes must be exactly what ctypes does (masking of big
    ints, float -> int TypeError, int -> float conversion, bytes for 'c', ...)."""
    ctype = ctypes.c_bool if code == "?" else sharedctypes.typecode_to_type[code]
    v = mp.Value(ctype)
    ref = ctype()
    for x in _SAMPLES:
        ours = _outcome(lambda: setattr(v, "value", x))
        theirs = _outcome(lambda: setattr(ref, "value", x))
        assert ours == theirs, (code, x, ours, theirs)
        assert _same(_outcome(lambda: v.value), _outcome(lambda: ref.value)), (code, x)
        assert v.get_obj().value == v.value or v.value != v.value
    # the lock is free again after every access, failed ones included
    assert v.get_lock().acquire(False)
    v.get_lock().release()


@pytest.mark.parametrize("code", list(_ALL_CODES) + ["?"])
def test_value_uses_c_fast_path(code):
    ctype = ctypes.c_bool if code == "?" else sharedctypes.typecode_to_type[code]
    assert mp.Value(ctype)._kind is not None
    assert mp.Array(ctype, 3)._kind is not None


def test_value_kinds_left_to_ctypes():
    """Types the C wrapper must not decode itself go through ctypes, and still work."""
    be = ctypes.c_int.__ctype_be__
    v = sharedctypes.synchronized(sharedctypes.RawValue(be, 0x01020304))
    assert v._kind is None and v.value == 0x01020304
    assert bytes(v.get_obj()) == b"\x01\x02\x03\x04"
    v.value = 5
    assert bytes(v.get_obj()) == b"\x00\x00\x00\x05"

    class MyInt(ctypes.c_int):
        pass

    m = sharedctypes.synchronized(sharedctypes.RawValue(MyInt, 3))
    assert m._kind is None and m.value == 3
    u = mp.Value("u", "z")
    assert u._kind is None and u.value == "z"
    u.value = "q"
    assert u.value == "q"
    g = mp.Value(ctypes.c_longdouble, 1.5)
    assert g.value == 1.5


@pytest.mark.parametrize("code,init", [("i", [1, 2, 3, 4, 5, 6]), ("d", [0.5, 1.5, 2.5, 3.5]),
                                       ("B", list(range(250, 256))), ("q", [-(2**62), 7, 8])])
def test_array_indexing_and_slicing_match_ctypes(code, init):
    a = mp.Array(code, init)
    ref = (sharedctypes.typecode_to_type[code] * len(init))(*init)
    n = len(init)
    keys = list(range(-n - 2, n + 2)) + [2**70, -(2**70), "x", 1.0, None]
    keys += [slice(None), slice(1, None), slice(None, -1), slice(None, None, -1),
             slice(None, None, 2), slice(5, 1, -2), slice(-100, 100)]
    for k in keys:
        assert _outcome(lambda: a[k]) == _outcome(lambda: ref[k]), k
    assert list(a) == list(ref) and len(a) == n
    for k, x in [(0, 9), (-1, 8), (n, 1), (-n - 1, 1), (1, "bad"), (slice(0, 2), [5, 6]),
                 (slice(None, None, -1), list(range(n))), (slice(0, 2), [1]), (0, 2.0)]:
        if code == "d" and isinstance(x, list):
            x = [float(y) for y in x]
        assert _outcome(lambda: a.__setitem__(k, x)) == _outcome(lambda: ref.__setitem__(k, x))
        assert a[:] == ref[:], (k, x)
    with pytest.raises(TypeError):
        del a[0]
    assert a.get_lock().acquire(False)
    a.get_lock().release()


def test_value_lock_false_rlock_lock_and_foreign_locks():
    raw = mp.Value("i", 3, lock=False)
    assert isinstance(raw, ctypes.c_int)
    rl = mp.RLock()
    v = mp.Value("i", 0, lock=rl)
    assert v.get_lock() is rl and v._lock is rl
    with v.get_lock():
        with v:
            v.value += 1
    assert v.value == 1
    # a plain Lock: each access takes it (the standard library's semantics)
    lk = mp.Lock()
    w = mp.Value("d", 1.0, lock=lk)
    w.value += 1
    assert w.value == 2.0 and lk.acquire(False)
    lk.release()
    # foreign locks are used through acquire/release
    for foreign in (threading.Lock(), threading.RLock(), multiprocessing.RLock()):
        f = mp.Value("q", 5, lock=foreign)
        assert f.get_lock() is foreign
        f.value = f.value * 2
        with f:
            pass
        assert f.acquire() and f.release() is None
        assert f.value == 10 and foreign.acquire(False)
        foreign.release()
    t = mp.Array("i", [1, 2], lock=threading.RLock())
    with t:
        t[0] += t[1]
    assert t[:] == [3, 2]


def test_value_access_blocks_while_another_thread_holds_the_lock():
    v = mp.Value("i", 0)
    got = []
    with v.get_lock():
        v.value = 5
        th = threading.Thread(target=lambda: got.append(v.value))
        th.start()
        time.sleep(0.2)
        assert got == []  # the other thread does not own the RLock: it waits
        v.value = 6
    th.join(10)
    assert got == [6]


def test_error_inside_access_releases_the_lock():
    v = mp.Value("i", 0, lock=mp.Lock())
    with pytest.raises(TypeError):
        v.value = "nope"
    assert v.get_lock().acquire(False)
    v.get_lock().release()
    a = mp.Array("i", 2, lock=threading.Lock())
    with pytest.raises(IndexError):
        a[7]
    assert a.get_lock().acquire(False)
    a.get_lock().release()


def test_wrapper_api_and_gc():
    v = mp.Value("i", 4)
    assert v.get_obj() is v._obj and isinstance(v.get_obj(), ctypes.c_int)
    assert repr(v) == "<Synchronized wrapper for c_int(4)>"
    assert isinstance(v, mpsc.SynchronizedBase) and isinstance(v, sharedctypes.Synchronized)
    a = mp.Array("c", b"ab")
    assert isinstance(a, mpsc.SynchronizedString) and a._kind == "c"
    with pytest.raises(AttributeError):
        del v.value
    v.cycle = v  # instances have a __dict__ (the standard library's do): cycles are collected
    import weakref
    r = weakref.ref(v)
    del v
    gc.collect()
    assert r() is None


def _bump_all(q, done):
    objs = q.get(timeout=20)
    v, a, s, v2 = objs
    for _ in range(1000):
        with v.get_lock():
            v.value += 1
        with a:  # a plain Lock: access the raw object inside (a[i] would take it again)
            o = a.get_obj()
            o[1:3] = [o[1] + 1, o[2] + 2]
    s.value = b"child"
    v2.value += 0.5
    done.set()


@pytest.mark.timeout(60)
def test_pickle_to_running_process_with_every_lock_kind():
    q = mp.Queue()
    done = mp.Event()
    p = mp.Process(target=_bump_all, args=(q, done))
    p.start()
    v = mp.Value("i", 0)
    a = mp.Array("q", 4, lock=mp.Lock())
    s = mp.Array("c", 8)
    v2 = mp.Value("d", 1.0, lock=mp.RLock())
    q.put((v, a, s, v2))
    for _ in range(1000):
        with v.get_lock():
            v.value += 1
        with a:  # a plain Lock: access the raw object inside (a[i] would take it again)
            o = a.get_obj()
            o[1:3] = [o[1] + 1, o[2] + 2]
    assert done.wait(30)
    p.join(20)
    assert p.exitcode == 0
    assert v.value == 2000 and a[:] == [0, 2000, 4000, 0]
    assert s.value == b"child" and v2.value == 1.5


def _incr_many(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lock", ["default", "Lock"])
def test_two_processes_incrementing(lock):
    v = mp.Value("i", 0) if lock == "default" else mp.Value("i", 0, lock=mp.Lock())
    if lock == "Lock":
        def work(v, n):  # a plain Lock: the access must not take it again
            for _ in range(n):
                with v.get_lock():
                    v.get_obj().value += 1
    else:
        work = _incr_many
    ps = [mp.Process(target=work, args=(v, 20000)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(50)
    assert [p.exitcode for p in ps] == [0, 0]
    assert v.value == 40000
