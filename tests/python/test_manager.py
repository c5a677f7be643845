"""gilfree.Manager(): the SyncManager API without a server process."""

import pytest

import gilfree
from gilfree import SharedDict, SharedList


def _work(ns, d, l, lock, q):
    with lock:
        ns.count += 1
    d["w"] = ns.name
    l.append(1)
    q.put("ok")


@pytest.mark.timeout(60)
def test_manager_objects():
    with gilfree.Manager() as m:
        d, l, ns = m.dict(a=1), m.list([1, 2]), m.Namespace(count=0, name="n")
        assert isinstance(d, SharedDict) and isinstance(l, SharedList)
        assert d == {"a": 1} and l == [1, 2] and ns.count == 0
        ns.extra = [1]
        assert "extra=[1]" in repr(ns)
        del ns.extra
        with pytest.raises(AttributeError):
            ns.extra
        lock, q = m.Lock(), m.Queue()
        for obj in (m.RLock(), m.Semaphore(2), m.BoundedSemaphore(), m.Condition(), m.Event(),
                    m.Barrier(1), m.JoinableQueue()):
            assert obj is not None
        v, a = m.Value("i", 5), m.Array("d", [1.0, 2.0])
        assert v.value == 5 and list(a) == [1.0, 2.0]
        ps = [gilfree.Process(target=_work, args=(ns, d, l, lock, q)) for _ in range(2)]
        for p in ps:
            p.start()
        assert [q.get(timeout=30) for _ in ps] == ["ok", "ok"]
        for p in ps:
            p.join(30)
        assert ns.count == 2 and d["w"] == "n" and l == [1, 2, 1, 1]


def test_manager_lifecycle():
    m = gilfree.managers.SyncManager()
    m.start()
    with pytest.raises(RuntimeError):
        m.start()
    m.connect()
    m.shutdown()
    m.join()
    with gilfree.get_context().Manager() as m2:
        assert m2.dict() == {}
    smm = gilfree.managers.SharedMemoryManager()
    with smm:
        shm = smm.SharedMemory(10)
        assert shm.size == 10
        sl = smm.ShareableList([1, 2])
        assert list(sl) == [1, 2]
        shm.close()
        shm.unlink()
        sl.shm.close()
        sl.shm.unlink()


def _set_value_take_lock(v, lock, rlock):
    assert v.value == 1 and v.get() == 1
    v.set("two")
    lock.acquire()
    rlock.acquire()
    rlock.release()


def test_manager_value_and_locks_behave_as_the_stdlib_managers():
    """SyncManager.Value holds any object (get/set/.value, seen by other processes); the
    manager's Lock/RLock raise threading's RuntimeError on a bad release (issue 9)."""
    with gilfree.Manager() as m:
        v, lock, rlock = m.Value("i", 1), m.Lock(), m.RLock()
        assert repr(v) == "Value('i', 1)"
        p = gilfree.Process(target=_set_value_take_lock, args=(v, lock, rlock))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert v.value == "two" and v.get() == "two"
        lock.release()  # taken by the child: any process may release a Lock
        with pytest.raises(RuntimeError):
            lock.release()
        with pytest.raises(RuntimeError):
            rlock.release()
        with lock, rlock:
            pass
        assert m._number_of_objects() == 0
