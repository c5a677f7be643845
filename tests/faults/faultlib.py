"""Shared pieces of the fault suite (tests/faults/test_*.py) and its soak mode (soak.py):
tasks that inject a fault into the worker running them, a ledger that counts executions
across processes, and checks for processes and shared memory left behind.

Tasks are module-level functions here, so that a forked worker finds them by name."""

import collections
import ctypes
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time

FAULTS = ("kill", "segv", "exit", "oom", "stop", "hang", "raise")
# what the caller sees for a task that injected each fault (a task timeout covers the last two)
LOST_FAULTS = ("kill", "segv", "exit")


class Ledger:
    """Executions counted through one O_APPEND file: each run of a task appends one line
    (a single write(2) of a few bytes is atomic), so a worker killed right after its line
    still counts. ``counts()`` -> Counter of task keys."""

    def __init__(self, path):
        self.path = str(path)
        open(self.path, "a").close()

    def record(self, key):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"%s\n" % str(key).encode())
        finally:
            os.close(fd)

    def counts(self):
        with open(self.path) as f:
            return collections.Counter(line.strip() for line in f if line.strip())


def limit_memory(extra):
    """Cap this process's address space at its current size + extra bytes (RLIMIT_AS)."""
    with open("/proc/self/status") as f:
        vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra, resource.RLIM_INFINITY))


def inject(fault):
    """Do `fault` to the calling process (a pool worker, mid-task)."""
    if fault == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "segv":
        ctypes.string_at(0)
    elif fault == "exit":
        os._exit(7)
    elif fault == "oom":
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit_memory(32 << 20)
        try:
            bytearray(256 << 20)  # over the limit: MemoryError
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    elif fault == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif fault == "hang":
        time.sleep(3600)
    elif fault == "raise":
        raise ValueError("injected")
    elif fault is not None:
        raise AssertionError("unknown fault %r" % (fault,))


def task(ledger_path, key, fault=None, sleep=0.0):
    """Record one execution of task `key`, sleep, inject `fault`, return `key`."""
    Ledger(ledger_path).record(key)
    if sleep:
        time.sleep(sleep)
    inject(fault)
    return key


def die_with(arg, fault="kill"):
    """Inject `fault` while the task's argument (and its mailbox message) is in hand."""
    inject(fault)
    return len(arg)


def square(x):
    return x * x


def slow(x, seconds=0.2):
    time.sleep(seconds)
    return x


def slow_started(started, x, seconds=0.2):
    """slow(), setting the shared Event `started` first (the caller knows it runs)."""
    started.set()
    time.sleep(seconds)
    return x


def getpid(_=None):
    return os.getpid()


class Unpicklable:
    """Refuses to be pickled."""

    def __reduce__(self):
        raise TypeError("I refuse to be pickled")


def _fail_rebuild():
    raise RuntimeError("cannot rebuild")


class FailsToLoad:
    """Pickles, but raises when unpickled."""

    def __reduce__(self):
        return (_fail_rebuild, ())


def returns_unpicklable(_=None):
    return Unpicklable()


def returns_fails_to_load(_=None):
    return FailsToLoad()


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, timeout=5.0):
    """Wait until none of pids is alive; returns those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def arena_backing():
    """Bytes the kernel has allocated for this process tree's arena memfd (st_blocks)."""
    from gilfree import _core

    return os.fstat(_core.arena_fd()).st_blocks * 512


def memfd_holders(inode):
    """Pids (any user) with an fd or a mapping on the memfd whose inode is `inode`."""
    found = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % d):
                try:
                    if os.stat("/proc/%s/fd/%s" % (d, fd)).st_ino == inode and \
                            "memfd:" in os.readlink("/proc/%s/fd/%s" % (d, fd)):
                        found.add(int(d))
                except OSError:
                    pass
            with open("/proc/%s/maps" % d) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 6 and "memfd:" in line and int(parts[4]) == inode:
                        found.add(int(d))
                        break
        except OSError:
            pass
    return found


def run_script(src, *args, timeout=60, env=None):
    """Start `src` (dedented) in a fresh interpreter with tests/faults on sys.path; returns
    the Popen (stdout piped, text)."""
    path = [os.path.dirname(os.path.abspath(__file__))]
    if os.environ.get("PYTHONPATH"):  # e.g. the sanitizer runs' package copy
        path.append(os.environ["PYTHONPATH"])
    e = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    if env:
        e.update(env)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(src)] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)


def fill_dict(d, start, n):
    """Insert keys start..start+n-1 in order (a dict writer that may be killed)."""
    for i in range(start, start + n):
        d[i] = ("v%d" % i) * (1 + i % 5)


def check_dict_prefix(d):
    """The dict holds exactly keys 0..m-1 with fill_dict's values (its writer inserts in
    order, so a kill loses at most the insert it was doing) and its structure checks.
    Returns m."""
    m = d._check()
    assert m == len(d)
    keys = sorted(d.keys())
    assert keys == list(range(len(keys))), keys[:5]
    for k in keys:
        assert d[k] == ("v%d" % k) * (1 + k % 5)
    return len(keys)


def produce(q, size):
    """Put (seq, body) messages forever (a producer that will be killed)."""
    seq = 0
    while True:
        q.put((seq, bytes([seq % 251]) * size))
        seq += 1


def drain(q, timeout=0.5):
    """Every message until the queue stays empty for `timeout` seconds."""
    import queue

    got = []
    while True:
        try:
            got.append(q.get(timeout=timeout))
        except queue.Empty:
            return got


def check_produced(got, size):
    """produce()'s messages, in order from 0, none lost inside, each intact."""
    assert [s for s, _ in got] == list(range(len(got)))
    for s, body in got:
        assert body == bytes([s % 251]) * size


def put_after_a_death(q, marker):
    """Task: its first run SIGKILLs the worker running it (leaving `marker`), the re-run
    (``retries=``) puts "ran" into q."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    q.put("ran")


def hold_lock(lock, held):
    """Take lock, set the event `held`, sleep (a lock holder that will be killed)."""
    lock.acquire()
    held.set()
    time.sleep(60)


def note_pid_and_hang(d, started):
    """Task: write this worker's pid into d["pid"], set `started`, sleep (a task that holds
    shared handles until its worker dies)."""
    d["pid"] = os.getpid()
    started.set()
    time.sleep(60)


def pool_parent(d, started):
    """Process target: a pool whose one task holds d and started until this process is
    killed (its worker dies with it: PR_SET_PDEATHSIG)."""
    import gilfree

    pool = gilfree.Pool(1)
    pool.apply_async(note_pid_and_hang, (d, started))
    time.sleep(60)

