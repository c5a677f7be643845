"""Soak mode of the fault suite: random mixes of the faults of tests/faults for N minutes,
then a table of counts (printed, and written as Markdown).

    python tests/faults/soak.py --minutes 30 [--seed 1] [--out bench/results/soak.md]

Rounds, picked at random: pool tasks on a long-lived Pool / ProcessPoolExecutor with faults
injected into some of them (SIGKILL, segfault, os._exit, RLIMIT_AS hit, a raise, and on
calls with a task timeout a hang or SIGSTOP); a lock holder SIGKILLed; a dict writer
SIGKILLed mid-insert/resize; a queue producer SIGKILLed mid-message; a Ctrl-C in Pool.map
(a subprocess); the parent of a pool SIGKILLed (a subprocess). Every task is accounted for
(lost = a task without a fault that did not return its value; duplicated = a call run twice
where the docs say it runs once; a batch re-run after its worker died is counted apart, as
documented), every wait has a bound (a hang is a wait that hit it), and after every round
the processes and /dev/shm entries left are counted (and killed). Run it through
/work/coord/isolated (a private /dev/shm)."""

import argparse
import collections
import concurrent.futures as cf
import importlib.util
import json
import os
import random
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gilfree  # noqa: E402
from gilfree import TaskTimeoutError, WorkerLostError, _core  # noqa: E402

import faultlib  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "gilfree_tests_common", os.path.join(HERE, "..", "python", "conftest.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)  # the leak check's helpers: one definition for both

EXPECT = {"kill": WorkerLostError, "segv": WorkerLostError, "exit": WorkerLostError,
          "oom": MemoryError, "raise": ValueError, "hang": TaskTimeoutError,
          "stop": TaskTimeoutError}
WAIT = 60.0  # bound on any single wait: past it, a hang


class Soak:
    def __init__(self, rng, tmp):
        self.rng, self.tmp = rng, tmp
        self.c = collections.Counter()
        self.unexpected = collections.Counter()
        self.growth = collections.Counter()  # arena backing growth by round kind
        self.pool = self.ex = None
        self.rounds_left = 0
        self.backing0 = self.backing_peak = faultlib.arena_backing()
        self.blocks0 = common.live_blocks()

    # ------------------------------------------------------------------ pool tasks
    def _pools(self):
        if self.rounds_left <= 0:
            self.close_pools()
            self.pool, self.ex = gilfree.Pool(2), gilfree.ProcessPoolExecutor(2)
            self.rounds_left = 25
        self.rounds_left -= 1

    def close_pools(self):
        for p in (self.pool,):
            if p is not None:
                p.terminate()
                p.join()
        if self.ex is not None:
            self.ex.shutdown(wait=True, cancel_futures=True)
        self.pool = self.ex = None

    def round_tasks(self):
        self._pools()
        path = self.rng.choice(["batched", "timed", "executor"])
        led = faultlib.Ledger(os.path.join(self.tmp, "ledger-%d" % self.c["rounds"]))
        n = 50
        faults = {}
        for k in self.rng.sample(range(n), self.rng.randint(0, 4)):
            kinds = list(EXPECT) if path != "batched" else ["kill", "segv", "exit", "oom",
                                                            "raise"]
            faults[str(k)] = self.rng.choice(kinds)
        futs = {}
        for i in range(n):
            key, fault = str(i), faults.get(str(i))
            args = (led.path, key, fault, self.rng.choice([0, 0, 0.002, 0.01]))
            if path == "batched":
                futs[key] = self.pool.apply_async(faultlib.task, args)
            elif path == "timed":
                futs[key] = self.pool.apply_async(faultlib.task, args, timeout=2.0)
            else:
                futs[key] = self.ex.submit_with(faultlib.task, args, timeout=2.0)
        for f in faults.values():
            self.c["fault " + f] += 1
        self.c["tasks"] += n
        for key, r in futs.items():
            fault = faults.get(key)
            try:
                v = r.get(WAIT) if hasattr(r, "get") else r.result(WAIT)
                ok = fault is None and v == key
                self.c["tasks ok" if ok else "tasks wrong"] += 1
                if fault is not None:
                    self.unexpected["%s returned" % fault] += 1
            except (gilfree.TimeoutError, cf.TimeoutError) as e:
                if isinstance(e, TaskTimeoutError) and fault in ("hang", "stop"):
                    self.c["tasks failed as expected"] += 1
                else:
                    self.c["hangs"] += 1
            except Exception as e:
                if fault is not None and isinstance(e, EXPECT[fault]):
                    self.c["tasks failed as expected"] += 1
                else:
                    self.c["lost"] += 1
                    self.unexpected["%s: %s" % (fault, type(e).__name__)] += 1
        counts = led.counts()
        self.c["executions"] += sum(counts.values())
        twice = sum(1 for v in counts.values() if v > 1)
        if path == "batched":
            self.c["batch re-runs (documented)"] += twice
        else:
            self.c["duplicated"] += twice

    # ------------------------------------------------------------------ shared objects
    def round_lock(self):
        lock, held = gilfree.Lock(), gilfree.Event()
        p = gilfree.Process(target=faultlib.hold_lock, args=(lock, held))
        p.start()
        if not held.wait(WAIT):
            self.c["hangs"] += 1
        p.kill()
        p.join(WAIT)
        self.c["fault lock holder kill"] += 1
        try:
            lock.acquire(timeout=WAIT)
            self.unexpected["lock: no OwnerDeadError"] += 1
        except gilfree.OwnerDeadError:
            pass
        if not lock.acquire(timeout=WAIT):
            self.c["hangs"] += 1
        else:
            lock.release()

    def _kill_child(self, fork, fn, *args, delay):
        pid = fork(fn, *args)
        time.sleep(delay)
        fork.kill(pid)

    def round_dict(self):
        fork = common.Forker()
        try:
            d = gilfree.SharedDict()
            for _ in range(2):  # (the survivors drop what each killed writer held)
                m = len(d)
                self._kill_child(fork, faultlib.fill_dict, d, m, 10 ** 6,
                                 delay=self.rng.uniform(0.001, 0.04))
                self.c["fault dict writer kill"] += 1
                try:
                    faultlib.check_dict_prefix(d)
                except AssertionError as e:
                    self.unexpected["dict inconsistent: %s" % e] += 1
        finally:
            fork.cleanup()

    def round_queue(self):
        fork = common.Forker()
        try:
            q = gilfree.Queue()
            size = self.rng.choice([100, 300 << 10])
            self._kill_child(fork, faultlib.produce, q, size, delay=self.rng.uniform(0.01, 0.1))
            self.c["fault queue producer kill"] += 1
            try:
                faultlib.check_produced(faultlib.drain(q), size)
            except AssertionError as e:
                self.unexpected["queue messages: %s" % e] += 1
        finally:
            fork.cleanup()

    # ------------------------------------------------------------------ subprocesses
    def _script(self, src, sig):
        proc = faultlib.run_script(src)
        try:
            kids = json.loads(proc.stdout.readline())
            time.sleep(self.rng.uniform(0.1, 0.5))
            sent = time.monotonic()
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=WAIT)
        except Exception:
            self.c["hangs"] += 1
            proc.kill()
            proc.communicate()
            return
        if sig == signal.SIGINT:
            if not out.startswith("KI ") or float(out.split()[1]) - sent > 1.0:
                self.unexpected["Ctrl-C: %r" % out[:40]] += 1
        left = faultlib.wait_gone(kids, 5)
        self.c["leaked processes"] += len(left)
        for pid in left:
            os.kill(pid, signal.SIGKILL)

    def round_ctrl_c(self):
        self.c["fault Ctrl-C in map"] += 1
        self._script(CTRL_C, signal.SIGINT)

    def round_parent_kill(self):
        self.c["fault parent kill"] += 1
        self._script(PARENT, signal.SIGKILL)

    # ------------------------------------------------------------------ the loop
    def run(self, seconds):
        rounds = [self.round_tasks] * 6 + [self.round_lock, self.round_dict, self.round_queue,
                                           self.round_ctrl_c, self.round_parent_kill]
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            shm0, kids0 = common._shm_entries(), common._children()
            if self.pool is not None:
                kids0 |= set(self.pool.worker_pids())
            fn = self.rng.choice(rounds)
            b0 = faultlib.arena_backing()
            try:
                fn()
            except Exception as e:
                self.unexpected["%s: %s: %s" % (fn.__name__, type(e).__name__, e)] += 1
            self.c["rounds"] += 1
            self._leaks(shm0, kids0)
            b1 = faultlib.arena_backing()
            self.growth[fn.__name__] += b1 - b0
            self.backing_peak = max(self.backing_peak, b1)
        self.close_pools()
        self._leaks(set(common._shm_entries()), set())

    def _leaks(self, shm0, kids0):
        time.sleep(0.05)
        keep = set(self.pool.worker_pids()) if self.pool is not None else set()
        keep |= set(self.ex._pool.worker_pids()) if self.ex is not None else set()
        left = common._children() - kids0 - keep
        for pid in left:  # processes the round should not have left
            if faultlib.wait_gone([pid], 3):
                self.c["leaked processes"] += 1
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        self.c["leaked shm"] += len(common._shm_entries() - shm0)


CTRL_C = """
import json, os, sys, time
import gilfree, faultlib
pool = gilfree.Pool(2)
print(json.dumps(pool.worker_pids()), flush=True)
try:
    pool.map(faultlib.slow, range(200), chunksize=1)
except KeyboardInterrupt:
    print("KI %.6f" % time.monotonic(), flush=True)
    pool.terminate()
"""

PARENT = """
import json, time
import gilfree, faultlib
pool = gilfree.Pool(2)
rs = [pool.apply_async(faultlib.slow, (i, 60)) for i in range(4)]
q = gilfree.Queue(); q.put(b"x" * (1 << 20))
print(json.dumps(pool.worker_pids()), flush=True)
time.sleep(60)
"""


def table(s, minutes, seed, wall):
    c = s.c
    faults = sum(v for k, v in c.items() if k.startswith("fault "))
    rows = [("rounds", c["rounds"]), ("faults injected", faults)]
    rows += sorted((k, v) for k, v in c.items() if k.startswith("fault "))
    rows += [("tasks submitted", c["tasks"]), ("task executions", c["executions"]),
             ("tasks ok", c["tasks ok"]), ("tasks failed as expected (their fault)",
                                           c["tasks failed as expected"]),
             ("tasks wrong value", c["tasks wrong"]), ("lost", c["lost"]),
             ("duplicated", c["duplicated"]),
             ("batch re-runs (documented)", c["batch re-runs (documented)"]),
             ("hangs", c["hangs"]), ("leaked processes", c["leaked processes"]),
             ("leaked shm entries", c["leaked shm"]),
             ("arena backing at start (MiB)", "%.1f" % (s.backing0 / 2 ** 20)),
             ("arena backing peak (MiB)", "%.1f" % (s.backing_peak / 2 ** 20)),
             ("arena backing at end (MiB)", "%.1f" % (faultlib.arena_backing() / 2 ** 20)),
             ("arena live blocks growth", common.live_blocks() - s.blocks0)]
    rows += [("arena backing growth in %s rounds (MiB)" % k[len("round_"):],
              "%.1f" % (v / 2 ** 20)) for k, v in sorted(s.growth.items())]
    rows += [
             ("unexpected outcomes", sum(s.unexpected.values()))]
    out = ["# Soak run of the fault suite (tests/faults/soak.py)", "",
           "%.1f minutes asked, %.1f run, seed %d, %d CPUs; 1-minute load average at the "
           "end %.2f (the soak's own load included)." % (minutes, wall / 60, seed, os.cpu_count(), os.getloadavg()[0]),
           "", "| count | value |", "| --- | --- |"]
    out += ["| %s | %s |" % r for r in rows]
    if s.unexpected:
        out += ["", "Unexpected outcomes:", ""]
        out += ["- %s: %d" % kv for kv in s.unexpected.most_common()]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the table here (Markdown)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        s = Soak(random.Random(a.seed), tmp)
        t0 = time.monotonic()
        s.run(a.minutes * 60)
        text = table(s, a.minutes, a.seed, time.monotonic() - t0)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    bad = sum(s.c[k] for k in ("lost", "duplicated", "hangs", "leaked processes",
                               "leaked shm", "tasks wrong")) + sum(s.unexpected.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
