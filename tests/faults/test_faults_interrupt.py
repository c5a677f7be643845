"""One Ctrl-C (SIGINT to the parent) in each blocking call: KeyboardInterrupt comes promptly
after that one signal, the program ends normally, and no process or /dev/shm entry is left."""

import json
import os
import signal
import time

import pytest

import faultlib

SCRIPT = """
import json, os, sys, time
import gilfree
import faultlib

def kids():
    out = set()
    for t in os.listdir("/proc/self/task"):
        with open("/proc/self/task/%s/children" % t) as f:
            out.update(int(p) for p in f.read().split())
    return sorted(out)

def ready():
    time.sleep(0.3)  # let the pool's workers start: they are in the list below
    print(json.dumps(kids()), flush=True)

call = sys.argv[1]
pool = ex = None
if call in ("pool_map", "apply", "imap_next", "async_get"):
    pool = gilfree.Pool(2)
elif call == "executor_result":
    ex = gilfree.ProcessPoolExecutor(2)
    ex.submit(faultlib.square, 1).result()
try:
    if call == "pool_map":
        ready(); pool.map(faultlib.slow, range(100), chunksize=1)
    elif call == "apply":
        ready(); pool.apply(faultlib.slow, (0, 60))
    elif call == "imap_next":
        it = pool.imap(faultlib.slow, [(0)] * 4)
        ready(); next(it)  # each item sleeps 0.2 s; the signal comes during the first
        next(it); next(it); next(it); next(pool.imap(faultlib.slow, [60], 1))
    elif call == "async_get":
        r = pool.apply_async(faultlib.slow, (0, 60)); ready(); r.get()
    elif call == "executor_result":
        f = ex.submit(faultlib.slow, 0, 60); ready(); f.result()
    elif call == "queue_get":
        q = gilfree.Queue(); ready(); q.get()
    elif call == "lock_acquire":
        l = gilfree.Lock(); l.acquire(); ready(); l.acquire()
    elif call == "condition_wait":
        c = gilfree.Condition(); c.acquire(); ready(); c.wait()
    elif call == "event_wait":
        e = gilfree.Event(); ready(); e.wait()
    elif call == "pipe_recv":
        a, b = gilfree.Pipe(); ready(); b.recv()
    elif call == "process_join":
        p = gilfree.Process(target=time.sleep, args=(60,), daemon=True); p.start()
        ready(); p.join()
    print("no interrupt", flush=True)
except KeyboardInterrupt:
    print("KI %.6f" % time.monotonic(), flush=True)
    if pool is not None:
        pool.terminate()
    sys.exit(0)
"""

CALLS = ["pool_map", "apply", "imap_next", "async_get", "executor_result", "queue_get",
         "lock_acquire", "condition_wait", "event_wait", "pipe_recv", "process_join"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("call", CALLS)
def test_one_ctrl_c_in_each_blocking_call(call):
    proc = faultlib.run_script(SCRIPT, call)
    try:
        line = proc.stdout.readline()
        kids = json.loads(line)
        time.sleep(0.3)  # the call is blocking by now
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (out, err[-3000:])
    assert out.startswith("KI "), (out, err[-3000:])
    delay = float(out.split()[1]) - sent
    assert delay < 1.0, "KeyboardInterrupt %.3f s after the signal" % delay
    if call in ("pool_map", "apply", "imap_next", "async_get", "executor_result",
                "process_join"):
        assert kids, "the script had no children: the check below would prove nothing"
    assert faultlib.wait_gone(kids, 5) == [], "processes left: %r" % kids
