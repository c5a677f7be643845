#!/usr/bin/env python3
"""gilfree benchmark suite: gilfree side by side with the standard library, concurrent.futures,
loky, mpire and faster-fifo, where each applies (issues 3 and 5).

    python bench/run.py [--quick] [--repeat R] [--groups a,b] [--variants x,y] [--name NAME]
    python bench/run.py --list

Every (group, variant) body runs in a fresh subprocess (``--one``), so variants never share a
pool, a queue or a warmed-up cache; the R repeats are interleaved (round 1 of every variant,
then round 2, ...) because timings on this VM drift up to 2x over seconds.  Reported: the median
of the R runs and, per group, the ratio against the standard library ("x stdlib": > 1 means
better than the standard library, whether the unit is higher- or lower-is-better).

Writes bench/results/<name>.json, bench/results/<name>.md and bench/results/<name>.png.
A variant whose library is missing (gilfree not built yet, a peer not installed) is reported
as skipped with the reason.  gilfree is called through its real API (gilfree.Pool,
gilfree.ProcessPoolExecutor, gilfree.Queue, ...), exactly like the standard library's.
"""

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKERS = 2


class Skip(Exception):
    """This variant cannot run here (the message says why)."""


# ----------------------------------------------------------------------------- helpers

def square(x):
    return x * x


def noop(x=None):
    return x


def identity(a):
    return a


def double(a):
    return a * 2


def gilfree_module():
    try:
        import gilfree
    except Exception as e:
        raise Skip("gilfree unavailable (%s: %s)" % (type(e).__name__, e))
    return gilfree


def need(name, attr=None):
    try:
        mod = __import__(name)
    except Exception as e:
        raise Skip("%s not installed (%s)" % (name, e))
    if attr and not hasattr(mod, attr):
        raise Skip("%s has no %s" % (name, attr))
    return mod


def mp_module(variant):
    """The multiprocessing-compatible module of a variant: the stdlib or gilfree."""
    if variant.startswith("gilfree"):
        return gilfree_module()
    import multiprocessing
    return multiprocessing


def workloads():
    """gilfree.demo.workloads; loaded from its file when the gilfree package cannot import
    (not built yet), so the standard-library side of the seed groups runs anyway."""
    try:
        from gilfree.demo import workloads as w
        return w
    except Exception:
        pass
    # by its plain name from its own folder, so that workers that import it by name (loky's
    # fresh interpreters) find it too (sys.path travels to them)
    demo_dir = os.path.join(ROOT, "src", "gilfree", "demo")
    if demo_dir not in sys.path:
        sys.path.insert(0, demo_dir)
    import workloads as w
    return w


def chunks_for(n, workers=WORKERS):
    """The standard Pool's default chunksize (about 4 chunks per worker), used for the
    executors whose default is 1 (hopeless for a million tiny items)."""
    return max(1, -(-n // (4 * workers)))


@contextlib.contextmanager
def mapper(variant, workers=WORKERS):
    """A started pool of the given kind, as a ``map(fn, items) -> list`` function.
    Workers are started (warm-up) before it is yielded, so timings exclude the start."""
    if variant == "serial":
        yield lambda fn, items: list(map(fn, items))
        return
    if variant in ("stdlib", "gilfree"):
        mp = mp_module(variant)
        with mp.Pool(workers) as pool:
            pool.map(noop, range(workers * 2))
            yield lambda fn, items: pool.map(fn, items)
        return
    if variant == "gilfree-map_lines":
        gf = gilfree_module()
        with gf.Pool(workers) as pool:
            if not hasattr(pool, "map_lines"):
                raise Skip("gilfree Pool has no map_lines() yet")
            pool.map(noop, range(workers * 2))
            yield pool
        return
    if variant in ("stdlib-executor", "gilfree-executor", "loky"):
        if variant == "stdlib-executor":
            import concurrent.futures
            ex = concurrent.futures.ProcessPoolExecutor(workers)
        elif variant == "loky":
            ex = need("loky").ProcessPoolExecutor(workers)
        else:
            ex = gilfree_module().ProcessPoolExecutor(workers)
        with ex:
            list(ex.map(noop, range(workers * 2)))
            yield lambda fn, items: list(ex.map(fn, items, chunksize=chunks_for(len(items))))
        return
    if variant == "mpire":
        mpire = need("mpire")
        with mpire.WorkerPool(n_jobs=workers) as pool:
            pool.map(noop, range(workers * 2))
            yield lambda fn, items: pool.map(fn, items, chunk_size=chunks_for(len(items)))
        return
    raise Skip("no mapper for %s" % variant)


def timed(fn):
    t0 = time.perf_counter()
    v = fn()
    return time.perf_counter() - t0, v


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# ----------------------------------------------------------------------------- groups
# Each group: title, unit, higher (is better), baseline variant, sizes (full, quick),
# variants, and body(variant, n) -> {"value": float, ...extra}.

GROUPS = {}


def group(name, title, unit, higher, variants, full, quick, baseline="stdlib", note=""):
    def deco(body):
        GROUPS[name] = dict(name=name, title=title, unit=unit, higher=higher,
                            variants=variants, full=full, quick=quick, baseline=baseline,
                            note=note, body=body)
        return body
    return deco


MAPPERS = ["serial", "stdlib", "gilfree", "stdlib-executor", "gilfree-executor", "loky",
           "mpire"]


@group("map_tiny", "Pool(2).map(square, range(N))", "items/s", True, MAPPERS,
       10**6, 2 * 10**5,
       note="executors and mpire get the Pool's default chunksize (executors' default is 1); "
            "pools started before timing; gilfree's fast path here: a range travels as slices "
            "whose item ints the worker makes (refilled in place on CPython 3.11), int64 "
            "results travel packed and are decoded in C into the result list -- other items "
            "and results (not all int / str / bytes) are pickled")
def b_map_tiny(variant, n):
    items = range(n)
    with mapper(variant) as m:
        dt, out = timed(lambda: m(square, items))
    bad = sum(1 for i, v in enumerate(out) if v != i * i) if len(out) == n else n
    assert not bad, "%d of %d results wrong" % (bad, n)
    return {"value": n / dt}


@group("apply_async", "apply_async x N tiny tasks, then get all", "tasks/s", True,
       ["stdlib", "gilfree", "mpire"], 20_000, 5_000)
def b_apply_async(variant, n):
    if variant == "mpire":
        mpire = need("mpire")
        with mpire.WorkerPool(n_jobs=WORKERS) as pool:
            pool.map(noop, range(4))
            dt, out = timed(lambda: [r.get() for r in
                                     [pool.apply_async(square, (i,)) for i in range(n)]])
    else:
        mp = mp_module(variant)
        with mp.Pool(WORKERS) as pool:
            pool.map(noop, range(4))
            dt, out = timed(lambda: [r.get() for r in
                                     [pool.apply_async(square, (i,)) for i in range(n)]])
    assert out[-1] == (n - 1) ** 2
    return {"value": n / dt}


def _executor(variant):
    """A ProcessPoolExecutor of WORKERS for a variant: loky's, gilfree's ("gilfree",
    "gilfree-executor"), else concurrent.futures' ("stdlib", "stdlib-executor", ...)."""
    if variant == "loky":
        return need("loky").ProcessPoolExecutor(WORKERS)
    if variant.startswith("gilfree"):
        return gilfree_module().ProcessPoolExecutor(WORKERS)
    import concurrent.futures
    return concurrent.futures.ProcessPoolExecutor(WORKERS)


@group("submit", "executor.submit x N tiny tasks, then result() all", "tasks/s", True,
       ["stdlib", "gilfree", "loky"], 20_000, 5_000,
       note="stdlib = concurrent.futures.ProcessPoolExecutor")
def b_submit(variant, n):
    with _executor(variant) as ex:
        list(ex.map(noop, range(4)))
        dt, out = timed(lambda: [f.result() for f in [ex.submit(square, i) for i in range(n)]])
    assert out[-1] == (n - 1) ** 2
    return {"value": n / dt}


@group("latency", "one-at-a-time round trip: apply_async(noop).get() / submit().result()",
       "us (median)", False,
       ["stdlib", "gilfree", "stdlib-executor", "gilfree-executor", "loky", "mpire"],
       3000, 800, note="p99 in the JSON")
def b_latency(variant, n):
    samples = []
    pc = time.perf_counter_ns
    if variant in ("stdlib", "gilfree", "mpire"):
        if variant == "mpire":
            ctx = need("mpire").WorkerPool(n_jobs=WORKERS)
        else:
            ctx = mp_module(variant).Pool(WORKERS)
        with ctx as pool:
            pool.map(noop, range(4))
            for i in range(n):
                t0 = pc()
                pool.apply_async(noop, (i,)).get()
                samples.append(pc() - t0)
    else:
        with _executor(variant) as ex:
            list(ex.map(noop, range(4)))
            for i in range(n):
                t0 = pc()
                ex.submit(noop, i).result()
                samples.append(pc() - t0)
    samples = samples[len(samples) // 10:]  # drop the first 10 % (warm-up)
    return {"value": statistics.median(samples) / 1e3, "p99_us": pct(samples, 0.99) / 1e3}


@group("pool_start", "pool start: create + close + join", "ms (median)", False,
       ["stdlib", "gilfree", "stdlib-executor", "loky", "mpire"], 20, 6,
       note="executors and mpire start workers lazily: they run one noop task")
def b_pool_start(variant, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        if variant in ("stdlib", "gilfree"):
            pool = mp_module(variant).Pool(WORKERS)
            pool.close()
            pool.join()
        elif variant == "mpire":
            with need("mpire").WorkerPool(n_jobs=WORKERS) as pool:
                pool.map(noop, [None])
        else:
            ex = _executor(variant)
            ex.submit(noop).result()
            ex.shutdown(wait=True)
        times.append(time.perf_counter() - t0)
    return {"value": statistics.median(times) * 1e3}


def _producer(q, n, payload):
    for _ in range(n):
        q.put(payload)
    q.put(None)


def _queue_for(variant, big):
    if variant == "faster-fifo":
        ff = need("faster_fifo")
        return ff.Queue(max_size_bytes=(16 << 20) if big else (1 << 20))
    return mp_module(variant).Queue()


def _queue_run(variant, n, payload):
    q = _queue_for(variant, len(payload) > 4096 if isinstance(payload, bytes) else False)
    mp = mp_module("gilfree" if variant == "gilfree" else "stdlib")
    p = mp.Process(target=_producer, args=(q, n, payload))
    t0 = time.perf_counter()
    p.start()
    got = 0
    while True:
        item = q.get(timeout=60) if variant == "faster-fifo" else q.get()
        if item is None:
            break
        got += 1
    dt = time.perf_counter() - t0
    p.join()
    assert got == n
    return dt


@group("queue_small", "Queue: small messages, 1 producer process -> 1 consumer", "msgs/s",
       True, ["stdlib", "gilfree", "faster-fifo"], 200_000, 50_000,
       note="message: a 3-tuple; time includes the producer's start")
def b_queue_small(variant, n):
    dt = _queue_run(variant, n, (1, "msg", 2.5))
    return {"value": n / dt}


@group("queue_ints", "Queue of ints (the issue's measure), 1 producer process -> 1 consumer",
       "msgs/s", True, ["stdlib", "gilfree", "faster-fifo"], 400_000, 50_000,
       note="time includes the producer's start")
def b_queue_ints(variant, n):
    dt = _queue_run(variant, n, 12345)
    return {"value": n / dt}


@group("queue_1mib", "Queue: 1 MiB bytes messages, 1 producer -> 1 consumer", "MB/s", True,
       ["stdlib", "gilfree", "faster-fifo"], 400, 100)
def b_queue_1mib(variant, n):
    payload = os.urandom(1 << 20)
    dt = _queue_run(variant, n, payload)
    return {"value": n * len(payload) / dt / 1e6}


def _echo(conn):
    while True:
        m = conn.recv()
        if m is None:
            break
        conn.send(m)


def _qecho(qin, qout):
    while True:
        m = qin.get()
        if m is None:
            break
        qout.put(m)


def _pingpong(send, recv, n):
    """Median and p99 (us) of n send/recv round trips, the first tenth dropped (warm-up)."""
    pc = time.perf_counter_ns
    samples = []
    for i in range(n):
        t0 = pc()
        send(i)
        recv()
        samples.append(pc() - t0)
    samples = samples[len(samples) // 10:]
    return {"value": statistics.median(samples) / 1e3, "p99_us": pct(samples, 0.99) / 1e3}


@group("queue_pingpong", "Queue ping-pong round trip (small object, two queues)", "us (median)",
       False, ["stdlib", "gilfree"], 20_000, 4_000, note="p99 in the JSON")
def b_queue_pingpong(variant, n):
    mp = mp_module(variant)
    a, b = mp.Queue(), mp.Queue()
    p = mp.Process(target=_qecho, args=(a, b))
    p.start()
    r = _pingpong(a.put, b.get, n)
    a.put(None)
    p.join()
    return r


@group("pipe_pingpong", "Pipe ping-pong round trip (small object)", "us (median)", False,
       ["stdlib", "gilfree"], 20_000, 4_000, note="p99 in the JSON")
def b_pipe(variant, n):
    mp = mp_module(variant)
    a, b = mp.Pipe()
    p = mp.Process(target=_echo, args=(b,))
    p.start()
    r = _pingpong(a.send, a.recv, n)
    a.send(None)
    p.join()
    return r


# Sockets: multiprocessing.connection's Listener / Client, each variant's own on both sides (the
# child is the variant's Process). The peer computes its reply (the round trip) or sends a fresh
# buffer it made before connecting (the stream); timing starts once the connection is made.

def _connection_module(variant):
    if variant == "gilfree":
        gilfree_module()
        from gilfree import connection
        return connection
    from multiprocessing import connection
    return connection


def _sock_peer(variant, address, mode, n):
    conn = _connection_module(variant).Client(address, authkey=b"bench")
    if mode == "echo":
        while True:
            m = conn.recv()
            if m is None:
                break
            conn.send((m[0] + 1, m[1].upper()))
    else:
        payload = os.urandom(1 << 20)
        for i in range(n):
            conn.send_bytes(payload)
        conn.send_bytes(b"")
    conn.close()


def _sock_session(variant, family, mode, n, body):
    mp = mp_module(variant)
    with _connection_module(variant).Listener(family=family, authkey=b"bench") as listener:
        p = mp.Process(target=_sock_peer, args=(variant, listener.address, mode, n))
        p.start()
        with listener.accept() as c:
            res = body(c)
        p.join()
    return res


def _sock_server(variant, address):
    """Serve connections, one request each, until a request is None."""
    listener = _connection_module(variant).Listener(address, authkey=b"bench", backlog=16)
    while True:
        with listener.accept() as c:
            m = c.recv()
            c.send(None if m is None else m + 1)
        if m is None:
            break
    listener.close()


def _sock_connect(variant, n, family):
    """Per connection: Client(address, authkey) (connect + handshake), one request, close."""
    mp, conn = mp_module(variant), _connection_module(variant)
    with conn.Listener(family=family) as probe:  # a free address for the server
        address = probe.address
    p = mp.Process(target=_sock_server, args=(variant, address))
    p.start()
    for _ in range(500):  # wait until it listens
        try:
            with conn.Client(address, authkey=b"bench") as c:
                c.send(-1)
                c.recv()
            break
        except OSError:
            time.sleep(0.01)
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        with conn.Client(address, authkey=b"bench") as c:
            c.send(i)
            assert c.recv() == i + 1
        samples.append(time.perf_counter_ns() - t0)
    with conn.Client(address, authkey=b"bench") as c:
        c.send(None)
        c.recv()
    p.join()
    samples = samples[len(samples) // 10:]
    return {"value": statistics.median(samples) / 1e3, "p99_us": pct(samples, 0.99) / 1e3}


def _sock_roundtrip(variant, n, family):
    def body(c):
        r = _pingpong(lambda i: c.send((i, "ping")), c.recv, n)
        c.send(None)
        return r
    return _sock_session(variant, family, "echo", n, body)


def _sock_stream(variant, n, family):
    def body(c):
        t0 = time.perf_counter()
        got, check = 0, 0
        while True:
            b = c.recv_bytes()
            if not b:
                break
            got += 1
            check ^= b[-1]
        dt = time.perf_counter() - t0
        assert got == n
        return {"value": n * (1 << 20) / dt / 1e6}
    return _sock_session(variant, family, "stream", n, body)


for _family, _tag, _where in (("AF_UNIX", "unix", "AF_UNIX"), ("AF_INET", "tcp", "TCP loopback")):
    group("socket_roundtrip_" + _tag, "Listener/Client round trip of a small object, " + _where,
          "us (median)", False, ["stdlib", "gilfree"], 20_000, 4_000,
          note="the peer replies (i + 1, text.upper()); authkey handshake before timing; p99 "
               "in the JSON")(functools.partial(_sock_roundtrip, family=_family))
    group("socket_connect_" + _tag, "Client(address, authkey) + one request + close, "
          + _where, "us (median)", False, ["stdlib", "gilfree"], 500, 200,
          note="connect, HMAC handshake both ways, one small request; what every manager "
               "proxy call that opens a connection pays")(
              functools.partial(_sock_connect, family=_family))
    group("socket_1mib_" + _tag, "Listener/Client: 1 MiB send_bytes messages, one way, " + _where,
          "MB/s", True, ["stdlib", "gilfree"], 400, 100,
          note="receiver reads each message (recv_bytes) and one byte of it")(
              functools.partial(_sock_stream, family=_family))


def _incr(v, k):
    for _ in range(k):
        with v.get_lock():
            v.value += 1


@group("value_lock", "locked Value increments by 2 processes", "incr/s", True,
       ["stdlib", "gilfree"], 200_000, 40_000, note="N increments per process")
def b_value_lock(variant, n):
    mp = mp_module(variant)
    v = mp.Value("i", 0)
    ps = [mp.Process(target=_incr, args=(v, n)) for _ in range(2)]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    dt = time.perf_counter() - t0
    assert v.value == 2 * n, (v.value, 2 * n)
    return {"value": 2 * n / dt}


@group("process_start", "Process(target=noop): start + join", "ms (median)", False,
       ["stdlib", "gilfree"], 40, 10)
def b_process_start(variant, n):
    mp = mp_module(variant)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = mp.Process(target=noop)
        p.start()
        p.join()
        times.append(time.perf_counter() - t0)
    return {"value": statistics.median(times) * 1e3}


@group("manager_dict", "Manager().dict(): N sets then N gets", "ops/s", True,
       ["stdlib", "gilfree"], 20_000, 4_000)
def b_manager_dict(variant, n):
    mp = mp_module(variant)
    with mp.Manager() as m:
        d = m.dict()
        t0 = time.perf_counter()
        for i in range(n):
            d[i] = i
        s = 0
        for i in range(n):
            s += d[i]
        dt = time.perf_counter() - t0
    assert s == n * (n - 1) // 2
    return {"value": 2 * n / dt}


def _manager_dict_ops(variant, n):
    """Seconds for n sets, then for n gets, on a Manager().dict()."""
    mp = mp_module(variant)
    with mp.Manager() as m:
        d = m.dict()
        t0 = time.perf_counter()
        for i in range(n):
            d[i] = i
        t1 = time.perf_counter()
        s = 0
        for i in range(n):
            s += d[i]
        t2 = time.perf_counter()
    assert s == n * (n - 1) // 2
    return t1 - t0, t2 - t1


@group("manager_dict_set", "Manager().dict(): d[k] = v alone (one process)", "ops/s", True,
       ["stdlib", "gilfree"], 20_000, 4_000)
def b_manager_dict_set(variant, n):
    return {"value": n / _manager_dict_ops(variant, n)[0]}


@group("manager_dict_get", "Manager().dict(): d[k] alone (one process)", "ops/s", True,
       ["stdlib", "gilfree"], 20_000, 4_000)
def b_manager_dict_get(variant, n):
    return {"value": n / _manager_dict_ops(variant, n)[1]}


def _dict_fill(d, lo, hi, rounds):
    for _ in range(rounds):
        for i in range(lo, hi):
            d[i] = i
            d[i]


def _dict_procs(variant, n, rounds):
    """Aggregate set+get operations per second of 1 or 2 processes, each on its own range of
    n // nproc keys of a new SharedDict, `rounds` times (the first round inserts)."""
    gf = gilfree_module()
    d = gf.SharedDict()
    nproc = 2 if variant == "2proc" else 1
    per = n // nproc
    ps = [gf.Process(target=_dict_fill, args=(d, k * per, (k + 1) * per, rounds))
          for k in range(nproc)]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    dt = time.perf_counter() - t0
    assert len(d) == per * nproc
    return {"value": 2 * per * nproc * rounds / dt}


@group("dict_scaling", "gilfree.SharedDict: insert+get on distinct keys, 1 vs 2 processes",
       "ops/s", True, ["1proc", "2proc"], 200_000, 40_000, baseline="1proc",
       note="aggregate throughput; each process owns its key range; one round into a new dict "
            "(new arena memory: page faults)")
def b_dict_scaling(variant, n):
    return _dict_procs(variant, n, 1)


@group("dict_hammer", "gilfree.SharedDict: 4 rounds of set+get on distinct keys, 1 vs 2 "
       "processes", "ops/s", True, ["1proc", "2proc"], 200_000, 40_000, baseline="1proc",
       note="aggregate throughput; each process owns its key range; round 1 inserts, rounds "
            "2-4 replace")
def b_dict_hammer(variant, n):
    return _dict_procs(variant, n, 4)


@group("numpy_array", "NumPy array to a pool task and back (apply / submit)", "MB/s", True,
       ["stdlib", "gilfree", "gilfree-shared", "stdlib-executor", "loky", "mpire"], 100, 20,
       note="N = MB; MB/s counts both directions, median of calls 2-4 (first: the first "
            "call's seconds, first touch of the memory); gilfree-shared: the array is a "
            "gilfree.shared_array (filled before timing), sent by reference")
def b_numpy(variant, n_mb):
    return _numpy_roundtrip(variant, n_mb, identity)


@group("numpy_new", "NumPy array to a pool task computing a new one (return a * 2) and back",
       "MB/s", True,
       ["stdlib", "gilfree", "gilfree-noarena", "stdlib-executor", "loky", "mpire"], 100, 20,
       note="N = MB; MB/s counts both directions, median of calls 2-4 (first: the first "
            "call's seconds); the result is made in the worker: gilfree "
            "allocates it in the arena (NumPy's memory handler) and it travels by reference; "
            "gilfree-noarena: GILFREE_NUMPY_ARENA=0 (the result is copied, as before)")
def b_numpy_new(variant, n_mb):
    return _numpy_roundtrip(variant, n_mb, double)


def _numpy_roundtrip(variant, n_mb, fn):
    np = need("numpy")
    arr = np.arange(n_mb * (1 << 20) // 8, dtype=np.float64)
    if variant == "gilfree-noarena":
        os.environ["GILFREE_NUMPY_ARENA"] = "0"  # read by the workers
    if variant == "gilfree-shared":
        sa = gilfree_module().shared_array(arr.shape, arr.dtype)
        sa[:] = arr
        arr = sa
    if variant in ("stdlib", "gilfree", "gilfree-shared", "gilfree-noarena", "mpire"):
        ctx = (need("mpire").WorkerPool(n_jobs=WORKERS) if variant == "mpire"
               else mp_module(variant).Pool(WORKERS))
        with ctx as pool:
            pool.map(noop, range(4))
            dts, out = _numpy_calls(lambda: pool.apply_async(fn, (arr,)).get())
    else:
        with _executor(variant) as ex:
            list(ex.map(noop, range(4)))
            dts, out = _numpy_calls(lambda: ex.submit(fn, arr).result())
    assert out.shape == arr.shape and out[-1] == (arr[-1] if fn is identity else 2 * arr[-1])
    dt = statistics.median(dts[1:])
    return {"value": 2 * arr.nbytes / dt / 1e6, "seconds": dt, "first": dts[0]}


def _numpy_calls(call, n=4):
    """Time n calls, each result dropped before the next (as a loop over arrays would).
    The first call (first touch of the memory every side uses) is reported apart; the
    value is the median of the others."""
    dts = []
    for _ in range(n):
        out = None
        dt, out = timed(call)
        dts.append(dt)
    return dts, out


# Groups whose ratios are printed side by side (the same variants, two workloads).
SIDE_BY_SIDE = [("numpy_array", "numpy_new")]


SEED_CACHE = os.path.join(tempfile.gettempdir(), "gilfree-bench")


def _seed_log(n):
    os.makedirs(SEED_CACHE, exist_ok=True)
    path = os.path.join(SEED_CACHE, "requests-%d.log" % n)
    if not os.path.exists(path):
        workloads().generate_log(path, n)
    return path


def _seed_gif(frames):
    os.makedirs(SEED_CACHE, exist_ok=True)
    path = os.path.join(SEED_CACHE, "kitten-%d.gif" % frames)
    if not os.path.exists(path):
        workloads().generate_gif(path, frames)
    return path


SEED_MAPPERS = ["serial", "stdlib", "gilfree", "stdlib-executor", "loky", "mpire"]


@group("seed_log", "seed 000 log analytics: readlines + map(get_ip) + Counter", "s", False,
       SEED_MAPPERS + ["gilfree-map_lines"], 1_000_000, 100_000,
       note="N = lines; the tutorial's code; gilfree-map_lines: workers read byte ranges")
def b_seed_log(variant, n):
    w = workloads()
    path = _seed_log(n)
    with mapper(variant) as m:
        if variant == "gilfree-map_lines":
            dt, c = timed(lambda: w.count_ips(m.map_lines(w.get_ip, path)))
        else:
            dt, c = timed(lambda: w.count_ips(m(w.get_ip, w.read_lines(path))))
    assert sum(c.values()) == n
    return {"value": dt, "top": c.most_common(1)[0][1]}


@group("seed_gif", "seed 000 ASCII-art GIF: map(filters.ascii, frames)", "s", False,
       SEED_MAPPERS + ["gilfree-shared"], 48, 16,
       note="N = frames of 320x240; gilfree-shared: frames copied into one gilfree.shared_array,"
            " tasks (chunksize 1) are views sent by reference, results written into a second "
            "one (copies timed)")
def b_seed_gif(variant, n):
    w = workloads()
    frames = w.load_frames(_seed_gif(n))
    if variant == "gilfree-shared":
        gf = gilfree_module()

        import numpy  # noqa: F401  (imported before the pool forks, as PIL is)

        def shared(pool):  # as the demo's gilfree variant: one frame per task
            src = w.frames_to_array(frames, gf.shared_array)
            dst = gf.shared_array(src.shape, src.dtype)
            pool.map(w.ascii_into, [(src[i], dst[i]) for i in range(len(src))], 1)
            return w.array_to_frames(dst)
        with gf.Pool(WORKERS) as pool:
            pool.map(noop, range(WORKERS * 2))
            dt, out = timed(lambda: shared(pool))
    else:
        with mapper(variant) as m:
            dt, out = timed(lambda: m(w.ascii, frames))
    assert len(out) == n
    return {"value": dt}


@group("seed_countdown", "seeds 002/004 countdown(N) split in 2", "s", False,
       SEED_MAPPERS + ["threads"], 50_000_000, 10_000_000)
def b_seed_countdown(variant, n):
    w = workloads()
    parts = w.split_count(n, 2)
    if variant == "threads":
        import threading
        ts = [threading.Thread(target=w.countdown, args=(k,)) for k in parts]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return {"value": time.perf_counter() - t0}
    with mapper(variant) as m:
        dt, out = timed(lambda: m(w.countdown, parts))
    assert out == [0, 0]
    return {"value": dt}


def _children_cpu_ns():
    """On-CPU nanoseconds of each child process of this one (/proc schedstat), by pid."""
    import glob
    kids = set()
    for f in glob.glob("/proc/self/task/*/children"):
        with open(f) as fh:
            kids |= set(fh.read().split())
    out = {}
    for k in kids:
        try:
            with open("/proc/%s/schedstat" % k) as fh:
                out[k] = int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


@group("seed_countdown_cpu", "countdown(N) split in 2: the workers' CPU time", "s", False,
       ["stdlib", "gilfree", "gilfree-unsettled"], 50_000_000, 10_000_000,
       note="CPU seconds the 2 workers spent on the map (schedstat), not wall time: what the "
            "interpreter loop costs in each pool's worker, steady under load; "
            "gilfree-unsettled: GILFREE_SETTLE_POOLS=0 (the worker does not settle pymalloc's "
            "32-byte pools before a chunk)")
def b_seed_countdown_cpu(variant, n):
    if variant == "gilfree-unsettled":
        os.environ["GILFREE_SETTLE_POOLS"] = "0"  # read by the workers forked below
    w = workloads()
    parts = w.split_count(n, 2)
    with mapper("gilfree" if variant.startswith("gilfree") else variant) as m:
        c0 = _children_cpu_ns()
        out = m(w.countdown, parts)
        c1 = _children_cpu_ns()
    assert out == [0, 0]
    return {"value": sum(c1[k] - c0.get(k, 0) for k in c1) / 1e9}


# ----------------------------------------------------------------------------- driver

def run_one(gname, variant, n):
    """In the child: run one body, print one JSON line."""
    g = GROUPS[gname]
    try:
        res = g["body"](variant, n)
        res["ok"] = True
    except Skip as e:
        res = {"ok": False, "skipped": str(e)}
    except Exception as e:
        msg = str(e)
        if not msg:  # a bare assert: say where
            import traceback
            fr = traceback.extract_tb(e.__traceback__)[-1]
            msg = "line %d: %s" % (fr.lineno, fr.line)
        res = {"ok": False, "error": "%s: %s" % (type(e).__name__, msg)}
    sys.stdout.flush()
    print("RESULT " + json.dumps(res), flush=True)


def spawn_one(gname, variant, n, timeout):
    """Run one body in a fresh interpreter, in its own process group: on a timeout the whole
    group (the body and any workers it started: mpire's, loky's) is killed, not orphaned."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", gname, variant, str(n)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return {"ok": False, "error": "timeout after %d s" % timeout}
    except BaseException:  # Ctrl-C: take the body and its workers down too
        _kill_group(proc)
        raise
    _kill_group(proc)  # workers a library left behind after the body exited
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"ok": False, "error": "exit %d: %s" % (proc.returncode, err.strip()[-300:])}


def _kill_group(proc):
    import signal
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.communicate(timeout=10)
    except Exception:
        pass


def summarise(g, runs):
    """Medians and ratios of one group; runs: variant -> list of results."""
    out = {}
    for v, rs in runs.items():
        good = [r for r in rs if r.get("ok")]
        entry = {"runs": [r.get("value") for r in good]}
        if good:
            entry["median"] = statistics.median(r["value"] for r in good)
            extras = {}
            for k in good[0]:
                if k not in ("ok", "value") and isinstance(good[0][k], (int, float)):
                    extras[k] = statistics.median(r[k] for r in good if k in r)
            if extras:
                entry["extra"] = extras
        bad = [r for r in rs if not r.get("ok")]
        if bad:
            entry["skipped" if "skipped" in bad[0] else "error"] = (
                bad[0].get("skipped") or bad[0].get("error"))
        out[v] = entry
    base = out.get(g["baseline"], {}).get("median")
    serial = out.get("serial", {}).get("median")  # (the groups that have a serial variant)
    for v, e in out.items():
        if base and e.get("median"):
            e["x_stdlib"] = (e["median"] / base) if g["higher"] else (base / e["median"])
        if serial and e.get("median") and v != "serial":
            e["x_serial"] = (e["median"] / serial) if g["higher"] else (serial / e["median"])
    return out


def fmt(x):
    if x is None:
        return "-"
    if x >= 1e6:
        return "%.2fM" % (x / 1e6)
    if x >= 1e4:
        return "%.1fk" % (x / 1e3)
    if x >= 100:
        return "%.0f" % x
    if x >= 1:
        return "%.2f" % x
    return "%.3f" % x


def markdown(doc):
    lines = ["# Benchmark results: %s" % doc["name"], "",
             "%s; %d repeats per variant, interleaved; median shown; "
             "x stdlib > 1 means better than the standard library (x serial: than one "
             "process, where the group has a serial row)." % (doc["machine"], doc["repeat"]),
             "",
             "| group | variant | median | unit | x stdlib | x serial | note |",
             "|---|---|---:|---|---:|---:|---|"]
    for gname, g in doc["groups"].items():
        first = True
        for v, e in g["variants"].items():
            note = e.get("skipped") or ("ERROR " + e["error"] if e.get("error") else "")
            if "extra" in e:
                note = ", ".join("%s %s" % (k, fmt(x)) for k, x in e["extra"].items()
                                 if k != "top") or note
            xs, xr = e.get("x_stdlib"), e.get("x_serial")
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                ("**%s** (N=%s)" % (gname, fmt(g["n"]))) if first else "", v,
                fmt(e.get("median")), g["unit"] if e.get("median") else "",
                ("%.2fx" % xs) if xs else "-", ("%.2fx" % xr) if xr else "-",
                note.replace("|", "/")))
            first = False
    for a, b in SIDE_BY_SIDE:
        ga, gb = doc["groups"].get(a), doc["groups"].get(b)
        if not ga or not gb:
            continue
        lines += ["", "Side by side, x stdlib: **%s** / **%s**" % (a, b), "",
                  "| variant | %s | %s |" % (a, b), "|---|---:|---:|"]
        for v in dict.fromkeys(list(ga["variants"]) + list(gb["variants"])):
            xa = ga["variants"].get(v, {}).get("x_stdlib")
            xb = gb["variants"].get(v, {}).get("x_stdlib")
            lines.append("| %s | %s | %s |" % (v, ("%.2fx" % xa) if xa else "-",
                                               ("%.2fx" % xb) if xb else "-"))
    lines += ["", "Groups:", ""]
    for gname, g in doc["groups"].items():
        lines.append("- **%s**: %s%s" % (gname, g["title"],
                                          (" (%s)" % g["note"]) if g["note"] else ""))
    return "\n".join(lines) + "\n"


def chart(doc, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels, vals, colours = [], [], []
    palette = {"gilfree": "#43a047", "stdlib": "#64b5f6", "serial": "#9e9e9e",
               "threads": "#e57373", "loky": "#ffb300", "mpire": "#8e24aa",
               "faster-fifo": "#6d4c41"}
    for gname, g in doc["groups"].items():
        for v, e in g["variants"].items():
            if e.get("x_stdlib"):
                labels.append("%s: %s" % (gname, v))
                vals.append(e["x_stdlib"])
                colours.append(next((c for k, c in palette.items() if v.startswith(k)),
                                    "#7e57c2"))
    if not vals:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(vals) + 1.5))
    y = list(range(len(vals)))[::-1]
    ax.barh(y, vals, color=colours)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=0.8, ls="--")
    for yi, v in zip(y, vals):
        ax.text(v, yi, " %.2fx" % v, va="center", fontsize=6)
    ax.set_xlabel("x standard library (median; > 1 is better)")
    ax.set_title("gilfree bench %s -- %s" % (doc["name"], doc["machine"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (under two minutes)")
    ap.add_argument("--repeat", "-r", type=int, help="runs per variant (default 5, quick 3)")
    ap.add_argument("--groups", help="comma-separated groups (default: all)")
    ap.add_argument("--variants", help="comma-separated variants (default: all)")
    ap.add_argument("--name", help="results name (default: quick or full)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--timeout", type=int, default=300, help="seconds per body")
    ap.add_argument("--list", action="store_true", help="list groups and variants")
    ap.add_argument("--one", nargs=3, metavar=("GROUP", "VARIANT", "N"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        run_one(a.one[0], a.one[1], int(a.one[2]))
        return 0
    if a.list:
        for g in GROUPS.values():
            print("%-15s %-60s %s" % (g["name"], g["title"], ", ".join(g["variants"])))
        return 0
    groups = [GROUPS[x] for x in a.groups.split(",")] if a.groups else list(GROUPS.values())
    only = set(a.variants.split(",")) if a.variants else None
    repeat = a.repeat or (3 if a.quick else 5)
    name = a.name or ("quick" if a.quick else "full")
    machine = "%d CPUs, Python %s, %s" % (os.cpu_count() or 0, platform.python_version(),
                                          platform.machine())
    # prepare the seed inputs once, outside any timing
    for g in groups:
        n = g["quick"] if a.quick else g["full"]
        if g["name"] == "seed_log":
            _seed_log(n)
        elif g["name"] == "seed_gif":
            _seed_gif(n)
    runs = {g["name"]: {v: [] for v in g["variants"] if not only or v in only} for g in groups}
    dead = set()  # (group, variant) that skipped: not retried
    t_start = time.perf_counter()
    for r in range(repeat):
        for g in groups:
            n = g["quick"] if a.quick else g["full"]
            for v in runs[g["name"]]:
                if (g["name"], v) in dead:
                    continue
                res = spawn_one(g["name"], v, n, a.timeout)
                runs[g["name"]][v].append(res)
                if not res.get("ok"):
                    dead.add((g["name"], v))
                shown = (fmt(res["value"]) + " " + g["unit"]) if res.get("ok") else (
                    "skipped: " + res["skipped"] if "skipped" in res else "ERROR: " + res["error"])
                print("[%d/%d] %-15s %-17s %s" % (r + 1, repeat, g["name"], v, shown),
                      flush=True)
    doc = {"name": name, "machine": machine, "quick": a.quick, "repeat": repeat,
           "workers": WORKERS, "seconds": round(time.perf_counter() - t_start, 1),
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "groups": {}}
    for g in groups:
        doc["groups"][g["name"]] = {
            "title": g["title"], "unit": g["unit"], "higher_is_better": g["higher"],
            "baseline": g["baseline"], "note": g["note"],
            "n": g["quick"] if a.quick else g["full"],
            "variants": summarise(g, runs[g["name"]])}
    os.makedirs(a.out, exist_ok=True)
    base = os.path.join(a.out, name)
    with open(base + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    md = markdown(doc)
    with open(base + ".md", "w") as f:
        f.write(md)
    png = chart(doc, base + ".png")
    print()
    print(md)
    print("wrote %s.json, %s.md%s (%.0f s)" % (base, base, ", " + png if png else "",
                                              doc["seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
