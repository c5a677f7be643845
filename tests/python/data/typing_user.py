"""A user script of gilfree's public API, type-checked with mypy --strict."""
from __future__ import annotations

import gilfree as mp
from gilfree import shared_memory
from gilfree.connection import Connection


def square(x: int) -> int:
    return x * x


def child(q: mp.Queue[int], conn: Connection) -> None:
    q.put(1)
    conn.send({"x": 1})


def main() -> None:
    q: mp.Queue[int] = mp.Queue()
    q.put_many(range(10))
    first: list[int] = q.get_many(5)
    a, b = mp.Pipe()
    p = mp.Process(target=child, args=(q, a))
    p.start()
    p.join(timeout=5.0)
    code: int | None = p.exitcode
    msg = b.recv()
    lock = mp.Lock()
    with lock:
        pass
    ok: bool = lock.acquire(timeout=1.0)
    lock.release()
    rl = mp.RLock()
    cond = mp.Condition(rl)
    with cond:
        cond.notify_all()
    ev = mp.Event()
    ev.set()
    assert ev.wait(0.1)
    sem = mp.Semaphore(2)
    sem.acquire()
    sem.release()
    counter = mp.Value("i", 0)
    with counter.get_lock():
        counter.value += 1
    arr = mp.Array("d", 10)
    arr[0] = 1.5
    with mp.Pool(2) as pool:
        squares: list[int] = pool.map(square, range(10))
        r = pool.apply_async(square, (3,))
        nine: int = r.get(timeout=10)
        it = pool.imap_unordered(square, range(4))
        total = sum(it)
    with mp.ProcessPoolExecutor(max_workers=2) as ex:
        fut = ex.submit(square, 4)
        sixteen: int = fut.result()
        mapped: list[int] = list(ex.map(square, range(3)))
    d = mp.SharedDict()
    d["k"] = 1
    d.update_item("k", lambda v: v + 1)
    lst = mp.SharedList([1, 2])
    lst.append(3)
    with d.lock:
        n: int = len(d) + len(lst)
    with mp.Manager() as m:
        md = m.dict()
        ml = m.list()
        md["a"] = ml
    shm = shared_memory.SharedMemory(create=True, size=16)
    shm.buf[0] = 1
    shm.close()
    shm.unlink()
    ctx = mp.get_context("spawn")
    q2 = ctx.Queue()
    q2.close()
    try:
        pass
    except (mp.OwnerDeadError, mp.WorkerLostError, mp.TaskTimeoutError, mp.TimeoutError):
        pass
    print(first, code, msg, ok, squares, nine, total, sixteen, mapped, n, mp.cpu_count())


def sockets_and_managers() -> None:
    from gilfree.connection import Client, Listener, SocketConnection, wait
    from gilfree.managers import BaseManager, SyncManager

    with Listener(("127.0.0.1", 0), authkey=b"k") as listener:
        address = listener.address
    c: SocketConnection | None = None
    try:
        c = Client(address, authkey=b"k")
    except OSError:  # nothing listens there any more
        pass
    if c is not None:
        ready: list[object] = wait([c], timeout=0)
        print(ready, c.poll(0))

    class Mgr(BaseManager):
        pass
    Mgr.register("thing", dict)
    with Mgr() as m:
        thing = m.thing()
        print(thing)
    with SyncManager(address=("127.0.0.1", 0), authkey=b"k") as sm:
        d = sm.dict()
        d["x"] = 1


if __name__ == "__main__":
    main()
    sockets_and_managers()
