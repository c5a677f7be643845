"""Every seed example under examples/ runs, with the standard library and with gilfree, and
prints the same thing (allowing for process ordering, pids and times).

Each script runs in a subprocess (EXAMPLES_FAST=1 scales the tutorials' sleeps down) from one
scratch directory per session, where the seed 000 inputs are generated once.  The gilfree
variant is skipped only when ``import gilfree`` fails.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("seed*.py"))
TIMEOUT = 120

# what a script reads on standard input
STDIN = {"seed002_thread_module.py": "\n\nq\n"}

_TIME = (re.compile(r"^Wall time: .*$"), "Wall time: T")
_FLOAT_LINE = (re.compile(r"^\d+\.\d+(e-?\d+)?$"), "T")
_PID = (re.compile(r"(process) \d+", re.I), r"\1 PID")
_WORKER = (re.compile(r"(worker) \d+", re.I), r"\1 W")

# per script: substitutions applied to each line before comparing sorted lines
NORMALISE = {
    "seed000_log_analytics.py": [_TIME],
    "seed000_ascii_image.py": [_TIME],
    "seed000_gif_serial.py": [_TIME],
    "seed000_gif_queue.py": [_TIME],
    "seed000_gif_pool.py": [_TIME],
    "seed001_process.py": [_PID],
    "seed003_locks.py": [_WORKER],
    "seed003_queue.py": [_WORKER],
    "seed004_countdown_threads.py": [_FLOAT_LINE],
    "seed004_countdown_pool.py": [_FLOAT_LINE],
    "seed004_countdown_nogil.py": [_FLOAT_LINE],
}

# scripts that build a Cython module first: skipped, with the reason, where that cannot work
NEEDS_CYTHON = {"seed004_countdown_nogil.py"}


def _skip_unbuildable(script):
    if script in NEEDS_CYTHON:
        nogil = pytest.importorskip("gilfree.demo.nogil")
        ok, why = nogil.available()
        if not ok:
            pytest.skip("%s needs Cython and a C compiler: %s" % (script, why))

# lines (after normalising) that the standard library's run must print: the tutorials' outputs
EXPECT = {
    "seed000_shared_state.py": ["[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]", "[]"],
    "seed001_arraytest.py": ["[5, 6, 7]"],
    "seed001_pooltest.py": ["[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"],
    "seed001_process.py": ["Process PID spawning a new process", "I am process PID"],
    "seed002_process.py": ["hello bob"],
    "seed002_queue.py": ["[42, None, 'hello']"],
    "seed002_pipe.py": ["[42, None, 'hello']"],
    "seed002_lock.py": ["hello world %d" % i for i in range(10)],
    "seed002_value_array.py": ["3.1415927", "[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]"],
    "seed002_pool.py": ["100", "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"],
    "seed002_thread_module.py": ["Hello from thread %d" % i for i in (1, 2, 3)],
    "seed002_threading_doit.py": ["In the thread"] * 3,
    "seed002_mythread.py": ["4294967296"],
    "seed002_mutex.py": ["True", "False"],
    "seed002_queue_threads.py": ["queue.Full", "queue.Empty",
                                 "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"],
    "seed003_process_worker.py": ["Worker %d %s" % (i, s) for i in range(5)
                                  for s in ("started", "finished")],
    "seed003_pool_square.py": ["[1, 4, 9, 16, 25]"],
    "seed003_locks.py": ["Worker W has updated the resource to %d" % i for i in range(1, 21)],
    "seed003_pipe.py": ["Parent received response: Processed: hello",
                        "Parent received response: Processed: world", "Worker closing"],
    "seed003_queue.py": ["Processed by worker W: hello", "Processed by worker W: world"]
                        + ["Worker W closing"] * 3,
    "seed003_pool_map.py": ["Result: 10", "Result: 4", "Result: 2", "Result: 6"],
    "seed003_futures.py": ["Result: 5", "Result: 2", "Result: 1", "Result: 3"],
    "seed004_countdown_threads.py": ["T"],
    "seed004_countdown_pool.py": ["T"],
    "seed004_countdown_nogil.py": ["T"],
}


def normalise(script, out):
    lines = []
    for line in out.splitlines():
        for pat, rep in NORMALISE.get(script, ()):
            line = pat.sub(rep, line)
        lines.append(line)
    return lines


def run_example(script, cwd, stdlib, pythonpath=None):
    env = dict(os.environ)
    env["EXAMPLES_FAST"] = "1"
    env.setdefault("GILFREE_CYTHON_CACHE", str(Path(cwd) / "cython-cache"))  # not in ~/.cache
    env.pop("GILFREE_EXAMPLES_STDLIB", None)
    # unbuffered, print() makes two write()s (text, then "\n") and concurrent processes'
    # lines interleave mid-line; buffered, each flushed print is one atomic write
    env.pop("PYTHONUNBUFFERED", None)
    if stdlib:
        env["GILFREE_EXAMPLES_STDLIB"] = "1"
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([pythonpath] + [p for p in
                                             env.get("PYTHONPATH", "").split(os.pathsep) if p])
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=str(cwd), env=env,
                          input=STDIN.get(script, ""), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, "%s (%s) exited %d\nstdout:\n%s\nstderr:\n%s" % (
        script, "stdlib" if stdlib else "gilfree", proc.returncode, proc.stdout, proc.stderr)
    return normalise(script, proc.stdout)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """One scratch directory for all examples: the seed 000 inputs are generated once."""
    return tmp_path_factory.mktemp("examples")


_stdlib_cache = {}


def stdlib_output(script, workdir):
    if script not in _stdlib_cache:
        _stdlib_cache[script] = run_example(script, workdir, stdlib=True)
    return _stdlib_cache[script]


def test_every_seed_example_is_listed():
    assert len(SCRIPTS) >= 20
    assert set(EXPECT) <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_stdlib(script, workdir):
    _skip_unbuildable(script)
    lines = stdlib_output(script, workdir)
    assert lines, "%s printed nothing" % script
    want = EXPECT.get(script)
    if want:
        missing = list(want)
        for line in lines:
            if line in missing:
                missing.remove(line)
        assert not missing, "%s: missing lines %r in %r" % (script, missing, lines)
    if script == "seed000_shared_state.py":
        assert lines == ["[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]", "[]"]
    if script.startswith("seed000_log"):
        counts = [l for l in lines if l.startswith("[(")]
        assert len(counts) == 2 and counts[0] == counts[1]  # serial == Pool


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_gilfree(script, workdir):
    gilfree = pytest.importorskip("gilfree")  # the only reason to skip (but a compiler)
    _skip_unbuildable(script)
    pkg_parent = None
    if getattr(gilfree, "__file__", None):  # make the child import this same gilfree
        pkg_parent = str(Path(gilfree.__file__).resolve().parent.parent)
    got = run_example(script, workdir, stdlib=False, pythonpath=pkg_parent)
    want = stdlib_output(script, workdir)
    if script == "seed000_shared_state.py":
        assert got == want  # order matters here: the list, then []
    assert sorted(got) == sorted(want)
