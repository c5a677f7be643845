"""gilfree.SharedDict: the mapping protocol, canonical keys, atomic updates across processes."""

import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import MutableMapping

import pytest

import gilfree
from gilfree import SharedDict


def test_protocol_basics():
    d = SharedDict({"a": 1}, b=2)
    assert isinstance(d, MutableMapping)
    assert len(d) == 2 and d["a"] == 1 and d.get("zz") is None and d.get("zz", 5) == 5
    assert "a" in d and "zz" not in d
    d["c"] = [1, 2, {"x": (3,)}]
    assert d["c"] == [1, 2, {"x": (3,)}]
    assert sorted(d) == ["a", "b", "c"]
    assert sorted(d.keys()) == ["a", "b", "c"]
    assert sorted(d.items(), key=str) == sorted({"a": 1, "b": 2, "c": [1, 2, {"x": (3,)}]}.items(), key=str)
    assert d.setdefault("a", 9) == 1 and d.setdefault("n", 9) == 9 and d["n"] == 9
    assert d.pop("n") == 9 and d.pop("n", "dflt") == "dflt"
    with pytest.raises(KeyError):
        d.pop("n")
    with pytest.raises(KeyError):
        d["missing"]
    with pytest.raises(KeyError):
        del d["missing"]
    d.update([("p", 1)], q=2)
    d.update({"r": 3})
    c = d.copy()
    assert type(c) is dict and c == d and d == c and not (d != c)
    assert repr(d) == repr(c)
    k, v = d.popitem()
    assert k not in d and c[k] == v
    d.clear()
    assert len(d) == 0 and d == {}
    with pytest.raises(KeyError):
        d.popitem()
    with pytest.raises(TypeError):
        d[[1, 2]] = 1
    with pytest.raises(TypeError):
        hash(d)
    assert SharedDict.fromkeys("ab", 0) == {"a": 0, "b": 0}


def test_random_ops_match_dict():
    rnd = random.Random(1)
    d, ref = SharedDict(), {}
    keys = [None, 0, 1, -5, 2**70, 1.5, "s", "é", b"b", (1, "a"), (), frozenset({1, 2})]
    for _ in range(3000):
        k = rnd.choice(keys)
        op = rnd.random()
        if op < 0.4:
            v = rnd.choice([1, "x", b"y" * rnd.randrange(1000), [1, 2], None, 2.5])
            d[k] = v
            ref[k] = v
        elif op < 0.55:
            assert d.pop(k, "M") == ref.pop(k, "M")
        elif op < 0.7:
            assert d.setdefault(k, 7) == ref.setdefault(k, 7)
        elif op < 0.85:
            assert d.get(k, "M") == ref.get(k, "M")
        else:
            assert (k in d) == (k in ref)
        assert len(d) == len(ref)
    assert d == ref
    assert list(d.items()) == list(ref.items())  # the same order, too
    assert d._check() == len(ref)


def _add_key(d):
    d["from the child"] = 1


def test_insertion_order_and_iteration_as_a_dict():
    """keys/values/items/iter/repr in insertion order (a replace keeps a key's place, delete
    then set moves it to the end), and iter() raises RuntimeError once the size changes -- in
    any process -- as a dict's iterator (issue 9: hash order, and a list iterator)."""
    d, ref = SharedDict(), {}
    for k in [5, "b", (1, 2), -1, "a", 2**40, b"x", 3.5] + list(range(100, 0, -7)):
        d[k] = ref[k] = str(k)
    d["b"] = ref["b"] = "replaced"
    del d[5], ref[5]
    d[5] = ref[5] = "back at the end"
    d.setdefault("new", 1), ref.setdefault("new", 1)
    d.update_item("a", lambda v: v + "!"), ref.update({"a": ref["a"] + "!"})
    assert list(d) == list(ref) and d.keys() == list(ref.keys())
    assert d.values() == list(ref.values()) and d.items() == list(ref.items())
    assert repr(d) == repr(ref)
    it = iter(d)
    assert next(it) == next(iter(ref))
    d["grown"] = 1
    with pytest.raises(RuntimeError, match="changed size"):
        next(it)
    it = iter(d)
    p = gilfree.Process(target=_add_key, args=(d,))
    p.start()
    p.join(30)
    with pytest.raises(RuntimeError):
        next(it)
    it = iter(d)
    assert len(list(it)) == len(d) and list(it) == []  # exhausted stays exhausted
    d.clear()
    assert list(it) == []
    assert it.__length_hint__() == 0


def test_canonical_keys():
    d = SharedDict()
    d[1] = "int"
    assert d[1.0] == "int" and d[True] == "int"
    d[1.0] = "float"
    assert len(d) == 1 and d[1] == "float"
    d[0.0] = "z"
    assert d[-0.0] == "z" and d[0] == "z" and d[False] == "z"
    d[(1, "a")] = "t"
    assert d[(1.0, "a")] == "t" and d[(True, "a")] == "t"
    d[2**100] = "big"
    assert d[float(2**100)] == "big"
    d[frozenset({"x", "y", "z"})] = "fs"
    assert d[frozenset(["z", "y", "x"])] == "fs"
    d[float("nan")] = "nan"
    assert d[float("nan")] == "nan"
    d[complex(1, 2)] = "pickled"  # other hashable keys: equal by pickle
    assert d[complex(1, 2)] == "pickled"
    assert set(d.keys()) >= {1, 0, (1, "a"), 2**100}


def test_canonical_keys_across_processes():
    """Equal keys give equal bytes in a fresh interpreter too (different hash seed)."""
    d = SharedDict()
    d[("k", 1, frozenset({"a", "b", "c"}))] = 41
    q = gilfree.Queue()
    p = gilfree.Process(target=_bump_fs_key, args=(d, q))
    p.start()
    assert q.get(timeout=30) == "ok"
    p.join(30)
    assert d[("k", 1.0, frozenset("cba"))] == 42


def _bump_fs_key(d, q):
    d[("k", True, frozenset(["c", "b", "a"]))] += 1
    q.put("ok")


def _fill(d, lo, hi):
    for i in range(lo, hi):
        d[i] = i * 2


@pytest.mark.timeout(60)
def test_two_processes_distinct_keys_union():
    d = SharedDict()
    ps = [gilfree.Process(target=_fill, args=(d, i * 1000, (i + 1) * 1000)) for i in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    assert len(d) == 2000 and d == {i: i * 2 for i in range(2000)}
    assert d._check() == 2000


def _incr(d, n):
    for _ in range(n):
        d.update_item("n", lambda v: v + 1, default=0)


@pytest.mark.timeout(120)
def test_update_item_two_processes():
    d = SharedDict()
    ps = [gilfree.Process(target=_incr, args=(d, 2000)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(120)
        assert p.exitcode == 0
    assert d["n"] == 4000


def test_update_item_semantics():
    d = SharedDict()
    with pytest.raises(KeyError):
        d.update_item("x", lambda v: v + 1)
    assert d.update_item("x", lambda v: v + [1], default=[]) == [1]
    assert d.update_item("x", lambda v: v + [2]) == [1, 2]
    with pytest.raises(ZeroDivisionError):
        d.update_item("x", lambda v: 1 / 0)
    assert d["x"] == [1, 2]


@pytest.mark.timeout(30)
def test_lock_groups_operations_threads():
    d = SharedDict(n=0)

    def worker():
        for _ in range(300):
            with d.lock:
                d["n"] = d["n"] + 1
    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert d["n"] == 1200
    assert d.lock.acquire(timeout=1) is True
    d.lock.release()
    with pytest.raises(RuntimeError):
        d.lock.release()


def _hold_lock_forever(d, q):
    d.lock.acquire()
    d["held"] = True
    q.put("locked")
    import time
    time.sleep(600)


@pytest.mark.timeout(60)
def test_lock_holder_killed_next_user_proceeds():
    """A process SIGKILLed inside `with d.lock:`: the next user proceeds (no OwnerDeadError;
    the dict itself is consistent)."""
    d = SharedDict()
    q = gilfree.Queue()
    p = gilfree.Process(target=_hold_lock_forever, args=(d, q))
    p.start()
    assert q.get(timeout=30) == "locked"
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    with d.lock:
        d["after"] = 1
    d["again"] = 2
    assert d["held"] is True and d["after"] == 1 and d._check() == 3


def test_unpicklable_value_raises_at_call():
    d = SharedDict()
    with pytest.raises((TypeError, pickle.PicklingError, AttributeError)):
        d["x"] = lambda: 0
    with pytest.raises((TypeError, pickle.PicklingError)):
        d["y"] = threading.Lock()
    assert len(d) == 0


@pytest.mark.timeout(60)
def test_huge_value_memory_error():
    code = textwrap.dedent("""
        import gilfree
        d = gilfree.SharedDict()
        d['small'] = 1
        try:
            d['big'] = b'x' * (64 << 20)
        except MemoryError:
            print('MemoryError')
        assert d['small'] == 1 and 'big' not in d and d._check() == 1
        l = gilfree.SharedList([1])
        try:
            l.append(b'x' * (64 << 20))
        except MemoryError:
            print('MemoryError')
        assert l == [1]
    """)
    env = dict(os.environ, GILFREE_ARENA_SIZE=str(32 << 20))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["MemoryError", "MemoryError"]


def test_pickle_roundtrip_and_large_values():
    import numpy as np
    d = SharedDict()
    a = np.arange(100_000, dtype=np.float64)  # out-of-band pickle buffer
    d["a"] = a
    b = d["a"]
    assert (b == a).all()
    b[0] = -1  # a private, writable copy
    assert d["a"][0] == 0
    d2 = pickle.loads(pickle.dumps(d))
    d2["via2"] = 1
    assert d["via2"] == 1


def _pool_task(d, i):
    d[i] = os.getpid()
    return i


@pytest.mark.timeout(60)
def test_dict_to_pool_workers():
    d = SharedDict()
    with gilfree.Pool(2) as pool:
        assert sorted(pool.starmap(_pool_task, [(d, i) for i in range(10)])) == list(range(10))
    assert sorted(d) == list(range(10))


def _from_queue(q, out):
    d = q.get(timeout=30)
    d["child"] = "hello"
    out.put("done")


@pytest.mark.timeout(60)
def test_dict_through_queue_to_running_process():
    q, out = gilfree.Queue(), gilfree.Queue()
    p = gilfree.Process(target=_from_queue, args=(q, out))
    p.start()
    d = SharedDict()
    q.put(d)
    assert out.get(timeout=30) == "done"
    p.join(30)
    assert d["child"] == "hello"


def test_nested_shared_handles_survive_reads():
    """Shared objects stored as values keep their own references: reading them many times
    (each read rebuilds a handle) never frees them under their other users."""
    import gc
    d = SharedDict()
    inner = gilfree.SharedList([0])
    lock, q = gilfree.Lock(), gilfree.Queue()
    d["l"], d["lock"], d["q"], d["deep"] = inner, lock, q, {"x": [inner]}
    for i in range(20):
        a, b, c, e = d["l"], d["deep"]["x"][0], d["lock"], d["q"]
        a.append(i)
        del a, b, c, e
        gc.collect()
    del inner
    gc.collect()
    assert d["l"] == [0] + list(range(20))
    with d["lock"]:
        pass
    d["q"].put(1)
    assert q.get(timeout=5) == 1
    assert d["l"]._check() == 21


@pytest.mark.timeout(30)
def test_ctrl_c_while_waiting_for_lock_holder():
    import time
    d = SharedDict()
    held, done = threading.Event(), threading.Event()

    def holder():
        with d.lock:
            held.set()
            done.wait(10)
    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        d["x"] = 1  # waits for the other thread's `with d.lock:`
    assert time.monotonic() - t0 < 5
    assert d.lock.acquire(timeout=0.1) is False
    done.set()
    t.join()
    assert "x" not in d


class _Int(int):
    pass


class _Str(str):
    pass


def test_fast_paths_match_general_encoding():
    """Scalar keys/values take a stack-encoded fast path; it must store exactly what the general
    encoder stores (subclasses, tuples and non-ASCII strings take the general path)."""
    d = SharedDict()
    pairs = [(1, 10), (-(2 ** 63), -1.5), (2 ** 63 - 1, None), ("k", "v"), (b"k", b"v"),
             ("x" * 200, "y" * 200), (b"z" * 200, b"w" * 200), ("é", "ü"), (2 ** 70, 2 ** 70),
             (0, 0.0), (None, float("inf"))]
    for k, v in pairs:
        d[k] = v
    for k, v in pairs:
        assert d[k] == v and type(d[k]) is type(v)
        assert k in d and d.get(k) == v
    # General-path keys land on the same entries as the fast-path ones.
    assert d[_Int(1)] == 10 and d[1.0] == 10 and d[True] == 10 and d[_Str("k")] == "v"
    d[_Int(1)] = _Int(11)
    assert d[1] == 11 and type(d[1]) is _Int  # values keep their type (pickled)
    d[(1, "k")] = [1, 2]
    assert d[(1, "k")] == [1, 2]
    assert len(d) == len(pairs) + 1
    assert dict(d.items())[1] == 11
    assert d.get(12345) is None and d.get(12345, "x") == "x" and 12345 not in d
    with pytest.raises(KeyError):
        d["missing"]


def test_fast_paths_wait_for_lock_holder_thread():
    """With `with d.lock:` held by another thread, fast-path operations wait (GIL released)
    instead of proceeding or deadlocking."""
    d = SharedDict()
    d[1] = 1
    held, release = threading.Event(), threading.Event()

    def holder():
        with d.lock:
            held.set()
            release.wait(10)
            d[1] = 2

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(10)
    threading.Timer(0.2, release.set).start()
    d[2] = 5  # waits for the holder
    assert d[1] == 2 and d.get(2) == 5 and (2 in d)
    t.join()


def test_list_fast_append_matches():
    lst = gilfree.SharedList()
    vals = [1, -2 ** 63, 1.5, None, "s", b"b", "é", 2 ** 70, [1], _Int(3)]
    for v in vals:
        lst.append(v)
    assert list(lst) == vals
    assert [type(x) for x in lst][:7] == [type(v) for v in vals][:7]
    assert lst[0] == 1 and lst[2] == 1.5 and lst[3] is None
