"""Quick self-check benchmark of gilfree queues and pipes against multiprocessing (fork).

Runs each case for both libraries, interleaved, several rounds; prints medians.
  python bench/queue_bench.py [--rounds N]
"""

import argparse
import multiprocessing as smp
import os
import statistics
import time

import gilfree


def _fork(fn, *args):
    pid = os.fork()
    if pid == 0:
        try:
            fn(*args)
        finally:
            os._exit(0)
    return pid


def _produce(q, n, item):
    for _ in range(n):
        q.put(item)
    q.put(None)
    q.close()
    q.join_thread()  # the stdlib's feeder thread must flush before os._exit


def ints_1to1(mod, n):
    q = mod.Queue()
    t0 = time.perf_counter()
    pid = _fork(_produce, q, n, 12345)
    while q.get() is not None:
        pass
    dt = time.perf_counter() - t0
    os.waitpid(pid, 0)
    return n / dt


def _produce_many(q, n, batch):
    for i in range(0, n, batch):
        q.put_many([12345] * batch)
    q.put(None)


def ints_batched(n, batch=256):
    q = gilfree.Queue()
    t0 = time.perf_counter()
    pid = _fork(_produce_many, q, n, batch)
    done = False
    while not done:
        for x in q.get_many(1024):
            if x is None:
                done = True
    dt = time.perf_counter() - t0
    os.waitpid(pid, 0)
    return n / dt


def mib_bytes(mod, n):
    q = mod.Queue(maxsize=8)
    blob = b"x" * (1 << 20)
    t0 = time.perf_counter()
    pid = _fork(_produce, q, n, blob)
    while q.get() is not None:
        pass
    dt = time.perf_counter() - t0
    os.waitpid(pid, 0)
    return n / dt  # MiB/s


def _pong(conn, n):
    for _ in range(n):
        conn.send(conn.recv())


def ping_pong(mod, n):
    a, b = mod.Pipe()
    pid = _fork(_pong, b, n)
    for _ in range(100):  # warm-up is part of n
        a.send(1)
        a.recv()
    t0 = time.perf_counter()
    for _ in range(n - 100):
        a.send(1)
        a.recv()
    dt = time.perf_counter() - t0
    os.waitpid(pid, 0)
    return dt / (n - 100) * 1e6  # us per round trip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    res = {}
    for r in range(args.rounds):
        res.setdefault("ints msgs/s stdlib", []).append(ints_1to1(smp, 100_000))
        res.setdefault("ints msgs/s gilfree", []).append(ints_1to1(gilfree, 1_000_000))
        res.setdefault("ints msgs/s gilfree put_many/get_many", []).append(ints_batched(2_000_000))
        res.setdefault("1MiB MB/s stdlib", []).append(mib_bytes(smp, 300) * 1.048576)
        res.setdefault("1MiB MB/s gilfree", []).append(mib_bytes(gilfree, 1000) * 1.048576)
        res.setdefault("ping-pong us stdlib", []).append(ping_pong(smp, 5000))
        res.setdefault("ping-pong us gilfree", []).append(ping_pong(gilfree, 20000))
    for k, v in res.items():
        print(f"{k:42s} median {statistics.median(v):14.1f}   (min {min(v):.1f} max {max(v):.1f})")


if __name__ == "__main__":
    main()
