"""Run a Python program in a subprocess with a timeout; if it outlives it, say where it and
its children are stuck before killing them: every process's Python stacks (faulthandler,
registered on SIGUSR1 in the program and inherited by forked workers), every thread's
kernel wait channel and state, and every thread's C stack (gdb, if installed). A hang then
fails with a diagnosis, not only "timed out"."""

import os
import shutil
import signal
import subprocess
import sys
import time

# The program runs as `python -c PRELUDE args...`: faulthandler on SIGUSR1 for every thread,
# then the module runs as with `python -m`.
PRELUDE = ("import faulthandler, runpy, signal, sys; "
           "faulthandler.register(signal.SIGUSR1, all_threads=True); "
           "del sys.argv[0]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")


def _children():
    """{ppid: [pid, ...]} of every process now."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def descendants(pid):
    """pid and every process below it, parents first."""
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        return "(%s)" % e.strerror


def kernel_state(pids):
    """One line per thread: pid/tid, state, wait channel, command."""
    lines = []
    for pid in pids:
        cmd = _read("/proc/%d/cmdline" % pid).replace("\0", " ")[:100]
        try:
            tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
        except OSError:
            continue
        for tid in tids:
            base = "/proc/%d/task/%d/" % (pid, tid)
            stat = _read(base + "stat")
            state = stat[stat.rfind(")") + 2:].split()[0] if ")" in stat else "?"
            lines.append("%d/%d %s wchan=%s comm=%s  %s" % (
                pid, tid, state, _read(base + "wchan"), _read(base + "comm"), cmd))
    return "\n".join(lines)


def native_stacks(pids, budget=90.0):
    """Every thread's C stack (gdb, when installed), per process, within `budget` seconds in
    all (gdb attaching to an ASan process can take long)."""
    gdb = shutil.which("gdb")
    if not gdb:
        return "(no gdb)"
    out = []
    end = time.monotonic() + budget
    for pid in pids:
        left = end - time.monotonic()
        if left < 5:
            out.append("pid %d: no time left for gdb" % pid)
            continue
        try:
            cmd = [gdb, "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt 25"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=min(30.0, left))
            bt = [ln for ln in r.stdout.splitlines() if ln.startswith(("#", "Thread"))]
            out.append("pid %d:\n%s" % (pid, "\n".join(bt) or r.stderr[-500:]))
        except (OSError, subprocess.SubprocessError) as e:
            out.append("pid %d: gdb failed: %s" % (pid, e))
    return "\n".join(out)


def run_module(module, args, timeout, **kw):
    """subprocess.run([python, -m, module, *args], capture_output, text) with a timeout that
    reports the stuck processes' stacks and wait channels (AssertionError) instead of raising
    TimeoutExpired."""
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", PRELUDE, module]
                            + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        pass
    pids = descendants(proc.pid)
    kstate = kernel_state(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGUSR1)
        except OSError:
            pass
        time.sleep(0.2)  # one at a time: their dumps share the stderr pipe
    time.sleep(1.0)
    cstacks = native_stacks(pids)
    for pid in reversed(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    out, err = proc.communicate()
    raise AssertionError(
        "`python -m %s %s` still ran after %s s; processes %s\n--- threads (kernel)\n%s\n"
        "--- stdout\n%s\n--- stderr (with every process's Python stacks)\n%s\n"
        "--- C stacks\n%s" % (module, " ".join(args), timeout, pids, kstate, out, err, cstacks))
