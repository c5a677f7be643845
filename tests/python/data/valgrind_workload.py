"""A workload for scripts/valgrind_py.sh: queues, pipes, locks, sync types, shared dict/list,
shared ctypes and shared memory in one process (threads instead of processes: valgrind does
not implement pidfd_open, which gilfree needs to start processes)."""
import gilfree as mp

def work(x):
    return x * 2

def child(q, conn, lock, d):
    with lock:
        d["child"] = 1
    q.put(("from child", b"x" * 100000))
    conn.send({"a": [1, 2, 3]})
    conn.close()

if __name__ == "__main__":
    q = mp.Queue()
    q.put_many(range(100)); assert q.get_many(100) == list(range(100))
    q.put(b"y" * 200000); assert len(q.get()) == 200000
    a, b = mp.Pipe()
    a.send_bytes(b"hello"); assert b.recv_bytes() == b"hello"
    lock = mp.Lock(); rl = mp.RLock(); ev = mp.Event(); sem = mp.Semaphore(2)
    cond = mp.Condition(rl)
    with cond:
        cond.notify()
    ev.set(); assert ev.wait(0.1)
    d = mp.SharedDict(); d.update({i: str(i) for i in range(200)}); d.update_item(5, lambda v: v + "!")
    l = mp.SharedList(range(50)); l.append("z"); l.sort(key=str); del l[3:7]
    v = mp.Value("i", 3); arr = mp.Array("d", 8)
    with v.get_lock(): v.value += 1
    arr[2] = 1.5
    import threading  # processes need pidfd_open, which valgrind does not implement
    t = threading.Thread(target=child, args=(q, a, lock, d)); t.start()
    msg = q.get(timeout=60); assert msg[0] == "from child"
    assert b.recv() == {"a": [1, 2, 3]}
    t.join(60)
    assert d["child"] == 1
    from gilfree import shared_memory
    shm = shared_memory.SharedMemory(create=True, size=4096); shm.buf[:3] = b"abc"
    shm2 = shared_memory.SharedMemory(shm.name); assert bytes(shm2.buf[:3]) == b"abc"
    shm2.close(); shm.close(); shm.unlink()
    jq = mp.JoinableQueue(); jq.put(1); jq.get(); jq.task_done(); jq.join()
    d.clear(); l.clear()
    import pickle
    for obj in (q, lock, ev, d, l, sem):
        pickle.loads(pickle.dumps(obj))
    print("vg ok")
