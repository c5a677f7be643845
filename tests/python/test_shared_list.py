"""gilfree.SharedList: the sequence protocol vs list, sharing across processes."""

import os
import pickle
import random
import signal
from collections.abc import MutableSequence

import pytest

import gilfree
from gilfree import SharedList


def test_protocol_basics():
    l = SharedList(range(5))
    assert isinstance(l, MutableSequence)
    assert len(l) == 5 and l[0] == 0 and l[-1] == 4 and l[1:3] == [1, 2] and l[::-2] == [4, 2, 0]
    with pytest.raises(IndexError):
        l[5]
    with pytest.raises(IndexError):
        l[-6] = 1
    with pytest.raises(TypeError):
        l["a"]
    l.append("x")
    l.extend([7, 8])
    l.insert(0, "first")
    l.insert(-100, "start")
    l.insert(100, "end")
    assert l == ["start", "first", 0, 1, 2, 3, 4, "x", 7, 8, "end"]
    assert l.pop() == "end" and l.pop(0) == "start"
    l.remove("x")
    with pytest.raises(ValueError):
        l.remove("nope")
    assert l.index(2) == 3 and l.count(1) == 1 and 3 in l and "x" not in l
    assert l.index(1.0) == 2  # Python equality, not bytes
    l[1:3] = ["a", "b", "c"]
    del l[0]
    del l[::2]
    l.reverse()
    l += [10]
    l *= 2
    assert l == list(l) and l.copy() == list(l)
    assert l + [1] == list(l) + [1] and l * 2 == list(l) * 2
    assert list(reversed(l)) == list(l)[::-1]
    assert repr(l) == repr(list(l))
    l.sort(key=str, reverse=True)
    assert l == sorted(l.copy(), key=str, reverse=True)
    l.clear()
    assert l == [] and len(l) == 0
    with pytest.raises(IndexError):
        l.pop()


def test_iterator_is_live_as_a_lists():
    """iter() reads each item when next() reaches it, as a list iterator (and ListProxy's)
    does; an exhausted iterator stays exhausted."""
    l, ref = SharedList(range(10)), list(range(10))
    for seq in (l, ref):
        it = iter(seq)
        assert list(it) == list(range(10)) and list(it) == []
        it = iter(seq)
        seq[0] = 100
        assert next(it) == 100
        del seq[5:]
        assert list(it) == [1, 2, 3, 4]
        seq.append(7)
        assert list(it) == []
    assert l == ref


def test_random_ops_match_list():
    rnd = random.Random(2)
    l, ref = SharedList(), []
    for _ in range(3000):
        op = rnd.random()
        v = rnd.choice([1, "a", (1, 2), None, b"z" * rnd.randrange(300)])
        n = len(ref)
        i = rnd.randrange(-n - 2, n + 2)
        if op < 0.25:
            l.append(v); ref.append(v)
        elif op < 0.35:
            l.insert(i, v); ref.insert(i, v)
        elif op < 0.45 and n:
            assert l.pop(i % n) == ref.pop(i % n)
        elif op < 0.55:
            a, b = sorted((rnd.randrange(-n - 1, n + 2), rnd.randrange(-n - 1, n + 2)))
            l[a:b] = [v, v]; ref[a:b] = [v, v]
        elif op < 0.6:
            a, b = rnd.randrange(-n - 1, n + 2), rnd.randrange(-n - 1, n + 2)
            del l[a:b]; del ref[a:b]
        elif op < 0.7 and n:
            l[i % n] = v; ref[i % n] = v
        elif op < 0.8:
            a, b, s = rnd.randrange(-n - 1, n + 2), rnd.randrange(-n - 1, n + 2), rnd.choice([1, 2, -1, 3])
            assert l[a:b:s] == ref[a:b:s]
        elif op < 0.85:
            l.extend([v] * 3); ref.extend([v] * 3)
        else:
            if -n <= i < n:
                assert l[i] == ref[i]
        assert len(l) == len(ref)
    assert l == ref and l._check() == len(ref)


def _append_many(l, tag, n):
    for i in range(n):
        l.append((tag, i))


@pytest.mark.timeout(60)
def test_two_processes_append():
    l = SharedList()
    ps = [gilfree.Process(target=_append_many, args=(l, t, 500)) for t in "ab"]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    assert len(l) == 1000
    assert sorted(l) == sorted([(t, i) for t in "ab" for i in range(500)])
    assert [x for x in l if x[0] == "a"] == [("a", i) for i in range(500)]  # order kept


def _set(l, i):
    l[i] = i * i


@pytest.mark.timeout(60)
def test_list_to_pool_workers():
    l = SharedList([0] * 10)
    with gilfree.Pool(2) as pool:
        pool.starmap(_set, [(l, i) for i in range(10)])
    assert l == [i * i for i in range(10)]


def _hold(l, q):
    l.lock.acquire()
    l.append("held")
    q.put("locked")
    import time
    time.sleep(600)


@pytest.mark.timeout(60)
def test_lock_holder_killed():
    l = SharedList()
    q = gilfree.Queue()
    p = gilfree.Process(target=_hold, args=(l, q))
    p.start()
    assert q.get(timeout=30) == "locked"
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    with l.lock:
        l.append("next")
    assert l == ["held", "next"]


def test_unpicklable_and_pickle():
    l = SharedList()
    with pytest.raises(Exception):
        l.append(lambda: 1)
    assert l == []
    l2 = pickle.loads(pickle.dumps(l))
    l2.append(1)
    assert l == [1]
